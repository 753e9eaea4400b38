"""The scan's extra blur along thick slices, applied to the predicted image (diffam.fit.slice_profile)."""

from __future__ import annotations

import contextlib
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import diffsd
from diffam.core.config import SegmentationConfig
from diffam.fit.objective import StepSamples, _image_term
from diffam.fit.slice_profile import blurred_prediction, slice_blur

CHEST_SPACING_MM = (0.703125, 0.703125, 2.5)


def test_the_excess_blur_lies_along_the_coarsest_axis_and_grows_with_the_slice_spacing():
    blur = slice_blur(CHEST_SPACING_MM, np.diag([1.0, -1.0, 1.0]), 1.0)
    np.testing.assert_allclose(blur.axis, [0.0, 0.0, 1.0])
    # box of the slice and linear interpolation (s^2 / 4), less the same in plane
    assert blur.sigma_mm == pytest.approx(math.sqrt(2.5 ** 2 - 0.703125 ** 2) / 2)
    # a sagittal scan (VerSe's PIR: k is the left-right axis) with 3 mm slices
    direction = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    blur = slice_blur((1.0, 1.0, 3.0), direction, 0.5)
    np.testing.assert_allclose(blur.axis, [1.0, 0.0, 0.0])
    assert blur.sigma_mm == pytest.approx(0.5 * math.sqrt(2.0))
    # an oblique grid: the axis is the world direction of the coarse index axis
    angle = math.radians(20.0)
    oblique = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(angle), -math.sin(angle)],
                        [0.0, math.sin(angle), math.cos(angle)]])
    np.testing.assert_allclose(slice_blur((0.8, 2.0, 0.8), oblique, 1.0).axis, oblique[:, 1])


def test_isotropic_scans_and_scale_zero_get_no_blur():
    assert slice_blur((1.0, 1.0, 1.0), np.eye(3), 1.0) is None
    assert slice_blur((1.5, 1.5, 1.5), np.eye(3), 1.0) is None
    assert slice_blur(CHEST_SPACING_MM, np.eye(3), 0.0) is None


def test_quadrature_is_exact_for_a_quadratic_profile():
    sigma = 1.3
    centre = torch.linspace(-3.0, 3.0, 7, dtype=torch.float64)
    offsets = torch.tensor([-math.sqrt(3.0) * sigma, math.sqrt(3.0) * sigma], dtype=torch.float64)
    moved = centre[None] + offsets[:, None]  # the distance to a plane across the axis
    out = blurred_prediction(lambda d: d * d, centre, moved)
    torch.testing.assert_close(out, centre * centre + sigma ** 2)


def _cube(half_mm: float):
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float) * half_mm
    faces = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                      [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    return torch.tensor(corners, dtype=torch.float32), torch.tensor(faces)


def test_the_image_loss_compares_the_target_with_the_prediction_blurred_along_the_slices():
    vertices, faces = _cube(10.0)
    bvh = diffsd.MeshBVH(vertices, faces)
    # samples on the axis through the top face, between 1 mm inside and 1 mm outside
    z = torch.linspace(9.0, 11.0, 9)
    points = torch.stack([torch.zeros_like(z), torch.zeros_like(z), z], 1)
    union = diffsd.signed_distance(vertices, faces, points, bvh=bvh)
    blur = slice_blur(CHEST_SPACING_MM, np.eye(3), 1.0)
    fit = SimpleNamespace(
        unit=1.0, config=SegmentationConfig(), union_bvh=bvh, in_view=lambda p: None,
        stage_timer=lambda name: contextlib.nullcontext(),
        appearance=_Square(), slice_offsets=torch.as_tensor(blur.offsets_mm(), dtype=torch.float32))
    samples = StepSamples(vertices=vertices[None], packed=vertices, points=points, union=union,
                          target_sampler=SimpleNamespace(sample=lambda p: torch.zeros(len(p))))
    sharp = ((z - 10.0) ** 2).mean()
    loss = _image_term(fit, samples)
    assert float(loss) == pytest.approx(float(sharp) + blur.sigma_mm ** 2, rel=1e-4)
    fit.slice_offsets = None
    assert float(_image_term(fit, samples)) == pytest.approx(float(sharp), rel=1e-4)


class _Square:
    """A stand-in appearance: intensity = distance squared, HU unchanged by normalize."""

    def __call__(self, distance):
        return distance * distance

    def normalize(self, hu):
        return hu


def _thick_slice_phantom(levels, slice_mm: float, pixel_mm: float, seed: int):
    """A phantom rendered on thin slices and averaged into slices ``slice_mm`` thick (k axis)."""
    from diffam.authoring.phantom import PhantomConfig, make_phantom
    from diffam.core.template import load_template
    from diffam.core.volume import Volume

    thin_mm, per_slice = 0.5, int(round(slice_mm / 0.5))
    template = load_template("spine")
    phantom = make_phantom(template, PhantomConfig(levels=levels, spacing_mm=(pixel_mm, pixel_mm, thin_mm),
                                                   noise_hu=0.0, margin_mm=20.0, seed=seed))
    thin = phantom.image.array
    count = thin.shape[0] // per_slice
    thick = thin[:count * per_slice].reshape(count, per_slice, *thin.shape[1:]).mean(1)
    thick = thick + 20.0 * np.random.default_rng(seed).normal(size=thick.shape)
    first_centre = phantom.image.index_to_world(np.array([[0.0, 0.0, (per_slice - 1) / 2]]))[0]
    image = Volume(thick.astype(np.float32), np.array([pixel_mm, pixel_mm, slice_mm]), first_centre,
                   phantom.image.direction)
    return template, phantom, image


@pytest.mark.slow
def test_bodies_stay_in_place_along_the_spine_on_thick_slices():
    """No shift along the slice axis from the resampling, the blur or the sampling
    (0.7 x 0.7 x 2.5 mm, the chest CT's grid): the fitted bodies' endplates lie within
    1 mm of the truth along the spine (vertices correspond: the phantom is the
    deformed template)."""
    from diffam.fit.pipeline import segment

    levels = ("T6", "T7", "T8")
    template, phantom, image = _thick_slice_phantom(levels, 2.5, 0.7, seed=3)
    config = SegmentationConfig(template="spine", device="cpu", seed=0)
    config.optim.guard_neighbours = False
    config.optim.reseat_centroids = False
    result = segment(image, config, centroids=phantom.centroids, template=template)
    chosen = template.subset(list(levels))
    for level, (truth, _), fitted in zip(levels, phantom.meshes, result.fit.vertices):
        local = chosen.by_level(level).local_vertices()
        body = local[:, 1] < local[:, 1].mean()
        u, _, vt = np.linalg.svd((local - local.mean(0)).T @ (truth - truth.mean(0)))
        along_spine = (fitted - truth) @ (u @ vt).T[:, 2]  # local z: superior
        assert abs(float(along_spine[body].mean())) < 1.0, level
