"""Tests of diffam.fit.deformation: SpineShapeModel and InitialTransform."""

import math

import pytest
import torch

from diffam.fit.deformation import InitialTransform, SpineShapeModel
from diffam.fit.optim import VectorAdam
from diffam.fit.spectral import laplace_beltrami_basis
from diffsd.primitives import icosphere


@pytest.fixture(scope="module")
def spine():
    v, f = icosphere(2)
    v = v * 20.0  # mm
    templates = [v + torch.tensor([0.0, 0.0, 40.0 * i], dtype=v.dtype) for i in range(3)]
    basis = laplace_beltrami_basis(v, f, 12)
    return templates, f, basis


def _model(spine, **kw):
    templates, f, basis = spine
    return SpineShapeModel(
        templates,
        f,
        torch.from_numpy(basis.eigenvectors),
        torch.from_numpy(basis.eigenvalues),
        **kw,
    )


def test_identity_reproduces_template(spine):
    model = _model(spine, dtype=torch.float64)
    out = model()
    assert out.shape == (3, spine[0][0].shape[0], 3)
    for m, t in enumerate(spine[0]):
        assert torch.equal(out[m], t)
    assert model.packed(out).shape == (3 * t.shape[0], 3)
    assert model.packed_faces.shape == (3 * spine[1].shape[0], 3)
    assert torch.equal(
        model.packed(out)[model.packed_faces[spine[1].shape[0] :][:1]][0], out[1][spine[1][:1]][0]
    )


def test_float32_identity_exact(spine):
    templates, f, basis = spine
    t32 = [t.float() for t in templates]
    model = SpineShapeModel(
        t32, f, torch.from_numpy(basis.eigenvectors), torch.from_numpy(basis.eigenvalues)
    )
    assert torch.equal(model()[2], t32[2])


def test_translation_moves_centroid_exactly(spine):
    model = _model(spine, dtype=torch.float64)
    t_mm = torch.tensor([3.0, -5.0, 7.5], dtype=torch.float64)
    with torch.no_grad():
        model.translation[1] = t_mm / model.unit_mm
    out = model()
    assert torch.allclose(out[1].mean(0) - spine[0][1].mean(0), t_mm, atol=1e-12)
    assert torch.equal(out[0], spine[0][0])


def test_affine_acts_about_centroid(spine):
    model = _model(spine, dtype=torch.float64)
    with torch.no_grad():
        model.affine[2] = 1.5 * torch.eye(3, dtype=torch.float64)
    out = model()
    c = spine[0][2].mean(0)
    assert torch.allclose(out[2].mean(0), c, atol=1e-10)
    assert torch.allclose(out[2] - c, 1.5 * (spine[0][2] - c), atol=1e-10)


def test_spectral_basis_rescaled_to_model_units(spine):
    model = _model(spine, dtype=torch.float64)
    templates, f, basis = spine
    phi = model.eigenvectors
    mass_units = torch.from_numpy(basis.mass) / model.unit_mm**2
    gram = phi.T @ (mass_units[:, None] * phi)
    assert torch.allclose(gram, torch.eye(phi.shape[1], dtype=phi.dtype), atol=1e-8)
    # Sphere of radius 20 mm = 0.3125 units: lambda_1 = 2 / r**2.
    assert model.eigenvalues[1].item() == pytest.approx(2 / 0.3125**2, rel=0.03)
    # The constant mode translates the whole mesh.
    with torch.no_grad():
        model.coefficients[0, 0] = torch.tensor([1.0, 0.0, 0.0])
    shift = model()[0] - templates[0]
    assert torch.allclose(shift, shift[:1].expand_as(shift), atol=1e-9)


def test_gradients_reach_all_groups(spine):
    model = _model(spine)
    with torch.no_grad():
        model.coefficients.normal_(0, 0.01)
        model.affine.add_(0.01 * torch.randn_like(model.affine))
    target = torch.randn(3, 3)
    loss = ((model().mean(1) - target) ** 2).sum() + (model() ** 2).mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    groups = model.param_groups()
    assert [g["name"] for g in groups] == ["affine", "spectral"]
    opt = VectorAdam(groups)
    opt.set_frequency_scale(torch.ones(model.eigenvalues.shape[0]))
    opt.step()


def test_initial_transform_from_centroids(spine):
    templates, f, basis = spine
    centroids = torch.stack([t.mean(0) for t in templates])
    targets = centroids + torch.tensor([10.0, 20.0, -30.0], dtype=centroids.dtype)
    angle = math.pi / 3
    rot = torch.tensor(
        [
            [math.cos(angle), -math.sin(angle), 0.0],
            [math.sin(angle), math.cos(angle), 0.0],
            [0.0, 0.0, 1.0],
        ],
        dtype=torch.float64,
    )
    init = InitialTransform.from_centroids(
        centroids, targets, rotation=rot.expand(3, 3, 3), scale=torch.tensor([1.0, 2.0, 0.5])
    )
    model = _model(spine, dtype=torch.float64, initial_transform=init)
    out = model()
    assert torch.allclose(out.mean(1), targets, atol=1e-9)
    radii = (out - out.mean(1, keepdim=True)).norm(dim=-1).mean(1)
    assert torch.allclose(radii, torch.tensor([20.0, 40.0, 10.0], dtype=radii.dtype), rtol=1e-3)


def test_bad_input(spine):
    templates, f, basis = spine
    phi = torch.from_numpy(basis.eigenvectors)
    lam = torch.from_numpy(basis.eigenvalues)
    with pytest.raises(ValueError, match="same vertex count"):
        SpineShapeModel([templates[0], templates[1][:-1]], f, phi, lam)
    with pytest.raises(ValueError, match="eigenvectors"):
        SpineShapeModel(templates, f, phi[:-1], lam)
    with pytest.raises(ValueError, match="eigenvalues"):
        SpineShapeModel(templates, f, phi, lam[:-1])
    with pytest.raises(TypeError, match=r"template_vertices\[0\]"):
        SpineShapeModel([templates[0].numpy()], f, phi, lam)
    with pytest.raises(ValueError, match="faces"):
        SpineShapeModel(templates, f[:, :2], phi, lam)
