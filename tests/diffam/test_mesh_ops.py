"""Tests of diffam.core.mesh_ops: edges, normals, areas, sampling, topology, volume."""

import math

import numpy as np
import pytest
import torch

from diffam.core.mesh_ops import (
    connected_component_count,
    euler_characteristic,
    face_areas,
    face_normals,
    genus,
    is_closed_manifold,
    largest_component,
    sample_surface,
    signed_volume,
    solid_centroid,
    unique_edges,
    vertex_normals,
)
from diffsd.primitives import box, icosphere, torus


def test_unique_edges_box_and_numpy():
    _, f = box()
    e = unique_edges(f)
    assert isinstance(e, torch.Tensor) and e.shape == (18, 2)
    assert bool((e[:, 0] < e[:, 1]).all())
    en = unique_edges(f.numpy())
    assert isinstance(en, np.ndarray)
    np.testing.assert_array_equal(en, e.numpy())


def test_unique_edges_bad_shape():
    with pytest.raises(ValueError, match="faces"):
        unique_edges(np.zeros((4, 2), dtype=int))


def test_areas_normals_volume_sphere():
    v, f = icosphere(3)
    assert face_areas(v, f).sum().item() == pytest.approx(4 * math.pi, rel=1e-2)
    assert signed_volume(v.numpy(), f.numpy()) == pytest.approx(4 / 3 * math.pi, rel=2e-2)
    assert signed_volume(v.numpy(), f[:, [0, 2, 1]].numpy()) < 0
    vn = vertex_normals(v.numpy(), f.numpy())
    np.testing.assert_allclose(vn, v.numpy(), atol=1e-2)  # unit sphere: normal = position
    np.testing.assert_allclose(solid_centroid(v.numpy() + 5.0, f.numpy()), [5.0] * 3, atol=1e-9)
    fn = face_normals(v, f)
    centres = v[f].mean(1)
    assert bool(((fn * centres).sum(-1) > 0.99).all())


def test_box_volume_and_gradients():
    v, f = box((1.0, 2.0, 3.0))
    assert signed_volume(v.numpy(), f.numpy()) == pytest.approx(6.0)
    v = v.clone().requires_grad_(True)
    (face_areas(v, f).sum() + face_normals(v, f).sum()).backward()
    assert torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0


def test_degenerate_face_has_finite_gradient():
    v = torch.tensor([[0.0, 0, 0], [1, 0, 0], [2, 0, 0]], requires_grad=True)
    f = torch.tensor([[0, 1, 2]])
    (face_areas(v, f).sum() + face_normals(v, f).sum()).backward()
    assert torch.isfinite(v.grad).all()


def test_sample_surface_uniform_and_differentiable():
    v, f = box((1.0, 2.0, 4.0))
    v = v.clone().requires_grad_(True)
    g = torch.Generator().manual_seed(0)
    pts, idx, bary = sample_surface(v, f, 20000, generator=g)
    assert pts.shape == (20000, 3) and idx.shape == (20000,) and bary.shape == (20000, 3)
    assert torch.allclose(bary.sum(1), torch.ones(20000, dtype=bary.dtype))
    assert bool((bary >= 0).all())
    recon = (bary[:, :, None] * v[f[idx]]).sum(1)
    assert torch.allclose(recon, pts)
    # Points lie on the box surface; faces at z = +-2 (area 2 each of total 28).
    on_surface = (pts.detach().abs() - torch.tensor([0.5, 1.0, 2.0], dtype=pts.dtype)).abs()
    assert bool((on_surface.min(1).values < 1e-9).all())
    frac_top = (pts[:, 2].detach().abs() > 2 - 1e-9).double().mean().item()
    assert frac_top == pytest.approx(4 / 28, abs=0.01)
    pts.sum().backward()
    assert torch.allclose(v.grad.sum(0), torch.full((3,), 20000.0, dtype=v.dtype))
    # Deterministic with a seeded generator.
    p2, _, _ = sample_surface(v, f, 20000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(p2, pts)


def test_sample_surface_bad_input():
    v, f = box()
    with pytest.raises(ValueError, match="n"):
        sample_surface(v, f, -1)
    with pytest.raises(ValueError, match="area"):
        sample_surface(torch.zeros(8, 3), f, 10)


def test_topology_sphere_torus():
    _, fs = icosphere(2)
    _, ft = torus(major_segments=16, minor_segments=8)
    assert is_closed_manifold(fs) and is_closed_manifold(ft)
    assert euler_characteristic(fs) == 2 and euler_characteristic(ft) == 0
    assert genus(fs) == 0 and genus(ft) == 1
    both = torch.cat([fs, ft + int(fs.max()) + 1])
    assert connected_component_count(both) == 2 and genus(both) == 1


def test_not_closed_or_not_manifold():
    _, f = icosphere(1)
    assert not is_closed_manifold(f[1:])  # hole
    flipped = f.clone()
    flipped[0] = flipped[0, [0, 2, 1]]
    assert not is_closed_manifold(flipped)
    assert is_closed_manifold(flipped, check_orientation=False)
    # Two tetrahedra sharing one vertex: edge-manifold but not vertex-manifold.
    tet = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    pinched = np.concatenate([tet, np.where(tet == 0, 0, tet + 3)])
    assert not is_closed_manifold(pinched)
    assert is_closed_manifold(tet)
    with pytest.raises(ValueError, match="manifold"):
        genus(f[1:])


def test_largest_component_keeps_the_bigger_mesh():
    vs, fs = icosphere(1)
    vt, ft = icosphere(3)
    v = np.concatenate([vs.numpy(), vt.numpy() + 10.0])
    f = np.concatenate([fs.numpy(), ft.numpy() + len(vs)])
    v2, f2 = largest_component(v, f)
    assert len(f2) == len(ft) and len(v2) == len(vt)
    assert signed_volume(v2, f2) == pytest.approx(signed_volume(vt.numpy(), ft.numpy()))
