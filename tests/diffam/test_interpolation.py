"""Trilinear sampling, world-space gradients, Gaussian blur and the cached sampler."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffam.core.volume import Volume
from diffam.fit.interpolation import (
    VolumeSampler,
    gaussian_blur,
    index_gradient,
    sample_volume,
    sample_volume_and_gradient,
)

C30, S30 = math.cos(math.radians(30)), math.sin(math.radians(30))
OBLIQUE_FLIPPED = np.array([[C30, -S30, 0.0], [S30, C30, 0.0], [0.0, 0.0, -1.0]])


def make_volume(array: np.ndarray, direction=OBLIQUE_FLIPPED) -> Volume:
    return Volume(array, [0.5, 1.0, 2.0], [10.0, -20.0, 5.0], direction)


def world_of(vol: Volume, ijk) -> torch.Tensor:
    return torch.tensor(vol.index_to_world(np.asarray(ijk, dtype=np.float64)), dtype=torch.float64)


def test_trilinear_values_by_hand_on_3x3x3():
    # f(i, j, k) = i + 10 j + 100 k + 1000 i j k is multilinear in every cell,
    # so trilinear interpolation reproduces it exactly.
    k, j, i = np.meshgrid(np.arange(3), np.arange(3), np.arange(3), indexing="ij")
    array = (i + 10 * j + 100 * k + 1000 * i * j * k).astype(np.float64)
    assert array[2, 1, 0] == 210.0  # array[k, j, i]
    vol = make_volume(array)
    ijk = np.array([[0, 0, 0], [1, 0, 0], [0.5, 0.5, 0.5], [1.25, 0.5, 1.75], [2, 2, 2]])
    expected = [0.0, 1.0, 0.5 + 5 + 50 + 125, 1.25 + 5 + 175 + 1000 * 1.25 * 0.5 * 1.75, 8222.0]
    values = sample_volume(torch.from_numpy(array), vol.world_to_index_affine, world_of(vol, ijk))
    np.testing.assert_allclose(values.numpy(), expected, atol=1e-9)


def test_trilinear_cell_centre_is_mean_of_corners():
    rng = np.random.default_rng(0)
    array = rng.normal(size=(3, 3, 3))
    vol = make_volume(array, direction=np.eye(3))
    value = sample_volume(
        torch.from_numpy(array), vol.world_to_index_affine, world_of(vol, [[1.5, 0.5, 1.5]])
    )
    np.testing.assert_allclose(value.item(), array[1:3, 0:2, 1:3].mean(), atol=1e-12)


def test_points_outside_get_outside_value():
    array = np.ones((3, 3, 3))
    vol = make_volume(array)
    ijk = [[-0.1, 1, 1], [1, 2.1, 1], [1, 1, 5], [0, 0, 0], [2, 2, 2]]
    values, grads = sample_volume_and_gradient(
        torch.from_numpy(array),
        vol.world_to_index_affine,
        world_of(vol, ijk),
        outside_value=-1000.0,
    )
    np.testing.assert_allclose(values.numpy(), [-1000, -1000, -1000, 1, 1])
    assert torch.all(grads[:3] == 0)


def linear_ramp_volume(shape=(5, 6, 7), direction=OBLIQUE_FLIPPED):
    a = np.array([0.3, -1.2, 0.7])  # value per mm along LPS x, y, z
    vol = make_volume(np.zeros(shape), direction)
    k, j, i = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    world = vol.index_to_world(np.stack([i, j, k], -1).reshape(-1, 3))
    return vol.with_array((world @ a + 4.0).reshape(shape)), a


@pytest.mark.parametrize("direction", [OBLIQUE_FLIPPED, np.diag([-1.0, 1.0, -1.0]), np.eye(3)])
def test_gradient_of_linear_ramp_is_exact_on_oblique_and_flipped_grids(direction):
    vol, a = linear_ramp_volume(direction=direction)
    rng = np.random.default_rng(1)
    ijk = rng.uniform(0, 1, size=(50, 3)) * (np.array(vol.shape_ijk) - 1)
    ijk[:3] = [[0, 0, 0], [6, 5, 4], [0, 5, 2]]  # corners and border voxels
    pts = world_of(vol, ijk)
    values, grads = sample_volume_and_gradient(
        torch.from_numpy(vol.array), vol.world_to_index_affine, pts
    )
    np.testing.assert_allclose(values.numpy(), pts.numpy() @ a + 4.0, atol=1e-9)
    np.testing.assert_allclose(grads.numpy(), np.broadcast_to(a, grads.shape), atol=1e-9)


def test_gradient_matches_one_voxel_central_differences_at_voxel_centres():
    # At a voxel centre, stepping one voxel along index axis c in world space
    # (spacing_c * direction[:, c]) reproduces the central difference exactly.
    rng = np.random.default_rng(2)
    array = rng.normal(size=(5, 6, 7))
    vol = make_volume(array)
    w2i = vol.world_to_index_affine
    tensor = torch.from_numpy(array)
    centres = np.array([[3, 2, 1], [1, 4, 3], [5, 1, 2]], dtype=np.float64)
    _, grads = sample_volume_and_gradient(tensor, w2i, world_of(vol, centres))
    for c in range(3):
        step = vol.spacing[c] * vol.direction[:, c]
        plus = sample_volume(tensor, w2i, world_of(vol, centres) + torch.from_numpy(step))
        minus = sample_volume(tensor, w2i, world_of(vol, centres) - torch.from_numpy(step))
        fd = (plus - minus) / 2.0  # value per voxel along axis c
        np.testing.assert_allclose((grads @ torch.from_numpy(step)).numpy(), fd.numpy(), atol=1e-10)


def test_gradient_matches_finite_differences_and_analytic_on_smooth_data():
    shape = (24, 40, 64)  # 48 x 40 x 32 mm
    vol = make_volume(np.zeros(shape))
    k, j, i = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    world = vol.index_to_world(np.stack([i, j, k], -1).reshape(-1, 3))
    centre = vol.index_to_world(np.array([31.5, 19.5, 11.5]))
    sigma = 8.0
    field = np.exp(-np.sum((world - centre) ** 2, axis=1) / (2 * sigma**2)).reshape(shape)
    tensor = torch.from_numpy(field)
    w2i = vol.world_to_index_affine
    rng = np.random.default_rng(3)
    pts = world_of(vol, rng.uniform([16, 10, 6], [48, 30, 17], size=(20, 3)))
    _, grads = sample_volume_and_gradient(tensor, w2i, pts)
    d = pts.numpy() - centre
    analytic = -d / sigma**2 * np.exp(-np.sum(d**2, axis=1, keepdims=True) / (2 * sigma**2))
    scale = np.abs(analytic).max()
    # Central differences on 2 mm voxels smooth the slope by a few per cent.
    np.testing.assert_allclose(grads.numpy(), analytic, atol=0.05 * scale)
    h = 0.2
    fd = torch.stack(
        [
            (sample_volume(tensor, w2i, pts + h * e) - sample_volume(tensor, w2i, pts - h * e))
            / (2 * h)
            for e in torch.eye(3, dtype=torch.float64)
        ],
        dim=1,
    )
    # FD of the trilinear interpolant is piecewise constant per cell: O(voxel) error.
    np.testing.assert_allclose(grads.numpy(), fd.numpy(), atol=0.1 * scale)


def test_values_are_differentiable_wrt_points_exactly():
    # Autograd through grid_sample is the exact derivative of the trilinear
    # interpolant: compare with central finite differences inside one cell.
    rng = np.random.default_rng(4)
    array = rng.normal(size=(4, 4, 4))
    vol = make_volume(array)
    w2i = vol.world_to_index_affine
    tensor = torch.from_numpy(array)
    pts = world_of(vol, [[1.3, 1.6, 1.2], [0.4, 2.7, 2.5]]).requires_grad_(True)
    (grad,) = torch.autograd.grad(sample_volume(tensor, w2i, pts).sum(), pts)
    h = 1e-5
    for e in torch.eye(3, dtype=torch.float64):
        fd = (
            sample_volume(tensor, w2i, pts.detach() + h * e)
            - sample_volume(tensor, w2i, pts.detach() - h * e)
        ) / (2 * h)
        np.testing.assert_allclose((grad @ e).numpy(), fd.numpy(), atol=1e-6)


def test_gradients_are_differentiable_wrt_points():
    rng = np.random.default_rng(5)
    array = torch.from_numpy(rng.normal(size=(4, 4, 4)))
    vol = make_volume(array.numpy())
    pts = world_of(vol, [[1.3, 1.6, 1.2]]).requires_grad_(True)
    _, grads = sample_volume_and_gradient(array, vol.world_to_index_affine, pts)
    (g,) = torch.autograd.grad(grads[:, 0].sum(), pts)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_index_gradient_shape_and_axis_order():
    array = torch.zeros(3, 4, 5, dtype=torch.float64)
    array += torch.arange(5, dtype=torch.float64) * 2.0  # increases along i (last axis)
    grad = index_gradient(array)
    assert grad.shape == (3, 3, 4, 5)
    assert torch.all(grad[0] == 2.0) and torch.all(grad[1] == 0) and torch.all(grad[2] == 0)


def test_bad_inputs_raise_clear_errors():
    vol = torch.zeros(3, 3, 3)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        sample_volume(vol, torch.eye(4), torch.zeros(5, 2))
    with pytest.raises(ValueError, match=r"\(Z, Y, X\)"):
        sample_volume(torch.zeros(3, 3), torch.eye(4), torch.zeros(5, 3))
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        sample_volume(vol, torch.eye(3), torch.zeros(5, 3))


# ---------------------------------------------------------------------- blur
def test_blur_sigma_zero_returns_input_and_preserves_constants():
    vol = torch.rand(5, 6, 7)
    assert gaussian_blur(vol, 0.0, (1.0, 1.0, 1.0)) is vol
    const = torch.full((5, 6, 7), 3.0)
    torch.testing.assert_close(gaussian_blur(const, 2.0, (0.7, 0.7, 2.5)), const)
    with pytest.raises(ValueError, match="sigma"):
        gaussian_blur(vol, -1.0, (1.0, 1.0, 1.0))


def test_blur_respects_anisotropic_spacing():
    shape = (41, 41, 41)
    spacing = (0.5, 1.0, 2.0)  # i, j, k in mm
    impulse = torch.zeros(shape, dtype=torch.float64)
    impulse[20, 20, 20] = 1.0
    sigma = 3.0
    out = gaussian_blur(impulse, sigma, spacing)
    assert out.sum().item() == pytest.approx(1.0, abs=1e-9)
    coords = torch.arange(41, dtype=torch.float64) - 20
    # array dim 2 is i (0.5 mm), dim 1 is j (1 mm), dim 0 is k (2 mm)
    for dim, step in ((2, 0.5), (1, 1.0), (0, 2.0)):
        marginal = out.sum(dim=tuple(d for d in range(3) if d != dim))
        var_mm = float((marginal * (coords * step) ** 2).sum())
        assert math.sqrt(var_mm) == pytest.approx(sigma, rel=0.05), (dim, var_mm)


def test_blur_cpu_fast_path_matches_torch_path_and_is_differentiable():
    vol = torch.rand(9, 10, 11, dtype=torch.float64)
    fast = gaussian_blur(vol, 2.56, (0.7, 1.0, 2.5))  # scipy
    leaf = vol.clone().requires_grad_(True)
    slow = gaussian_blur(leaf, 2.56, (0.7, 1.0, 2.5))  # torch conv3d
    torch.testing.assert_close(fast, slow.detach(), atol=1e-12, rtol=0)
    slow.sum().backward()
    assert torch.isfinite(leaf.grad).all()
    with pytest.raises(ValueError, match="floating-point"):
        gaussian_blur(torch.zeros(3, 3, 3, dtype=torch.int16), 1.0, (1.0, 1.0, 1.0))


# ---------------------------------------------------------------------- sampler
def test_volume_sampler_matches_functions_and_caches():
    vol, a = linear_ramp_volume()
    sampler = VolumeSampler.from_volume(vol, outside_value=-5.0, max_cached=2)
    pts = world_of(vol, [[1.0, 2.0, 1.5], [3.3, 0.2, 2.2], [-3, 0, 0]]).float()
    values = sampler.sample(pts)
    expected = sample_volume(
        torch.from_numpy(vol.array).float(), vol.world_to_index_affine, pts, outside_value=-5.0
    )
    torch.testing.assert_close(values, expected)
    _, grads = sampler.sample_with_gradient(pts)
    np.testing.assert_allclose(grads[:2].numpy(), np.broadcast_to(a, (2, 3)), atol=1e-4)

    assert sampler.blurred(0.01) is sampler  # quantised to 0
    b1 = sampler.blurred(1.0)
    assert sampler.blurred(1.02) is b1 and b1.sigma_mm == pytest.approx(1.0)
    b2 = sampler.blurred(0.5)
    assert b2 is not b1
    sampler.blurred(0.25)  # evicts the least recently used (1.0)
    assert sampler.blurred(1.0) is not b1
    # The cached sampler holds the blurred volume at the quantised sigma.
    v_blur, g_blur = b2.sample_with_gradient(pts)
    blurred = gaussian_blur(torch.from_numpy(vol.array).float(), 0.5, vol.spacing)
    v_ref, g_ref = sample_volume_and_gradient(
        blurred, vol.world_to_index_affine, pts, outside_value=-5.0
    )
    torch.testing.assert_close(v_blur, v_ref)
    torch.testing.assert_close(g_blur, g_ref)
