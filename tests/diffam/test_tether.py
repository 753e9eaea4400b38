"""The axial tether (diffam.fit.tether): dead zone, axis, tracked volume centroid, given centroids only."""

from __future__ import annotations

import math

import numpy as np
import torch

from diffam.fit import objective as L
from diffam.fit.tether import axial_volume_centroid, build_tether, tether_loss


def test_tether_loss_is_free_in_the_dead_zone_and_quadratic_beyond():
    axial = torch.tensor([0.5, -2.0, 3.0, -0.9])
    active = torch.tensor([True, True, False, True])
    # only the second is active and beyond 1 mm, by 1 mm: (1/64)^2 averaged over 3 active
    expected = (1.0 / 64.0) ** 2 / 3
    assert math.isclose(float(tether_loss(axial, active, 1.0, 64.0)), expected, rel_tol=1e-6)
    assert float(tether_loss(axial, torch.zeros(4, dtype=torch.bool), 1.0, 64.0)) == 0.0
    # beyond the dead zone it grows with the square of the excess
    two = float(tether_loss(torch.tensor([3.0]), torch.tensor([True]), 1.0, 64.0))
    one = float(tether_loss(torch.tensor([2.0]), torch.tensor([True]), 1.0, 64.0))
    assert math.isclose(two, 4 * one, rel_tol=1e-6)


def _t8():
    """T8 of the shipped template in its local frame (+y posterior, +z superior)."""
    from diffam.core.template import load_template

    vertebra = load_template("spine").by_level("T8")
    return vertebra.local_vertices(), vertebra.faces


def test_axial_centroid_of_a_closed_mesh_is_its_volume_centroid():
    """Against the tetrahedral formula, along an oblique axis and after a translation."""
    from diffam.core.mesh_ops import solid_centroid

    vertices, faces = _t8()
    axis = np.array([0.3, -0.2, 0.9]) / np.linalg.norm([0.3, -0.2, 0.9])
    moved = vertices + np.array([40.0, -25.0, 300.0])
    inside_out = faces[:, ::-1].copy()
    for mesh, triangles in ((vertices, faces), (moved, faces), (moved, inside_out)):
        origin = np.array([10.0, 5.0, 280.0])
        got = axial_volume_centroid(torch.as_tensor(mesh)[None], torch.as_tensor(triangles),
                                    torch.as_tensor(axis)[None], torch.as_tensor(origin)[None])
        reference = (solid_centroid(mesh, faces) - origin) @ axis
        assert abs(float(got[0]) - reference) < 1e-6


def test_axial_centroid_of_the_body_patch_is_that_of_the_solid_in_front_of_its_plane():
    """The body's faces alone (an open patch) give the axial centroid of the solid anterior
    of the body plane: against inside points on a 0.5 mm grid (winding numbers)."""
    from diffsd import winding_number

    vertices, faces = _t8()
    body = L.body_face_mask(vertices, faces)
    plane_y = vertices[:, 1].mean()
    lo, hi = vertices.min(0), vertices.max(0)
    axes = [np.arange(a, b, 0.5) + 0.25 for a, b in zip(lo, hi)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    grid = grid[grid[:, 1] < plane_y]
    inside = winding_number(torch.as_tensor(vertices), torch.as_tensor(faces),
                            torch.as_tensor(grid)).numpy() > 0.5
    reference = grid[inside, 2].mean()
    got = axial_volume_centroid(torch.as_tensor(vertices)[None], torch.as_tensor(faces[body]),
                                torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64),
                                torch.zeros(1, 3, dtype=torch.float64))
    assert abs(float(got[0]) - reference) < 0.1
    # the whole solid's centroid lies 0.5 mm lower: the patch is not taken for the whole
    from diffam.core.mesh_ops import solid_centroid

    assert abs(float(got[0]) - solid_centroid(vertices, faces)[2]) > 0.3


def _two_vertebrae(shift: torch.Tensor, kind="vertebra"):
    """Two T8s 30 mm apart along z; the first's given centroid 0.5 mm above where it was put."""
    vertices, faces = _t8()
    placed = torch.as_tensor(np.stack([vertices, vertices + [0.0, 0.0, 30.0]]))
    tracked = faces if kind == "vertebra" else faces[L.body_face_mask(vertices, faces)]
    centres = np.stack([vertices.mean(0), vertices.mean(0) + [0.0, 0.0, 30.0]])
    targets = centres + np.array([[0.0, 0, 0.5], [0.0, 0, 0]])
    axes = np.array([[0.0, 0, 1], [0, 0, 1]])
    tether = build_tether(placed.numpy(), tracked, centres, targets, axes, [True, True], 1.0,
                          torch.device("cpu"))
    return tether, (placed + shift).float()


def test_tracked_centre_starts_on_the_placed_centre_and_moves_with_the_bone_along_the_axis():
    vertices, faces = _t8()
    for kind in ("vertebra", "body"):
        shift = torch.zeros(2, len(vertices), 3, dtype=torch.float64)
        shift[0, :, 2] = 3.0     # the first slides 3 mm up
        shift[1, :, 0] = 5.0     # the second moves sideways: not along the axis
        tether, moved = _two_vertebrae(shift, kind)
        _, start = _two_vertebrae(torch.zeros_like(shift), kind)
        assert torch.allclose(tether.axial_offsets_mm(start), torch.tensor([-0.5, 0.0]), atol=1e-3)
        assert torch.allclose(tether.axial_offsets_mm(moved), torch.tensor([2.5, 0.0]), atol=1e-3)


def test_body_tracking_ignores_the_processes_and_whole_tracking_does_not():
    """A spinous process bent down moves the whole solid's centroid, not the body's."""
    vertices, faces = _t8()
    shift = torch.zeros(2, len(vertices), 3, dtype=torch.float64)
    behind = torch.as_tensor(vertices[:, 1] > vertices[:, 1].mean() + 15.0)
    shift[0, behind, 2] = -6.0
    body, moved = _two_vertebrae(shift, "body")
    whole, _ = _two_vertebrae(shift, "vertebra")
    assert abs(float(body.axial_offsets_mm(moved)[0]) + 0.5) < 1e-3
    assert float(whole.axial_offsets_mm(moved)[0]) < -0.5 - 0.1


def test_tether_term_pulls_a_slid_vertebra_back_down():
    from types import SimpleNamespace

    vertices, _ = _t8()
    shift = torch.zeros(2, len(vertices), 3, dtype=torch.float64)
    shift[0, :, 2] = 3.0
    tether, moved = _two_vertebrae(shift)
    moved = moved.clone().requires_grad_(True)
    fit = SimpleNamespace(tether=tether, unit=64.0)
    samples = L.StepSamples(vertices=moved, packed=moved.reshape(-1, 3), points=None,
                            union=None, target_sampler=None)
    value = L._tether_term(fit, samples)
    assert math.isclose(float(value.detach()), (1.5 / 64) ** 2 / 2, rel_tol=1e-3)
    value.backward()
    assert float(moved.grad[0, :, 2].sum()) > 0       # descent moves it down
    assert float(moved.grad[1].abs().sum()) == 0       # within the dead zone


def test_tether_is_registered_and_on_by_default():
    from diffam.core.config import LossWeights, OptimConfig

    assert "tether" in L.LOSS_TERMS
    assert LossWeights().tether > 0.0
    assert OptimConfig().tether_free_mm > 0


def test_pipeline_tethers_only_the_given_centroids_and_starts_each_on_its_centroid(monkeypatch):
    """Guards (extrapolated centroids) are not tethered; each tethered vertebra's tracked
    centre starts on its given centroid, for both kinds of centroid."""
    from diffam.authoring.phantom import PhantomConfig, make_phantom
    from diffam.core.body_centre import body_centres_from_label_map
    from diffam.core.config import SegmentationConfig
    from diffam.core.template import load_template
    from diffam.fit import pipeline

    template = load_template("lumbar")
    phantom = make_phantom(template, PhantomConfig(levels=("L1", "L2", "L3", "L4"),
                                                   spacing_mm=(2.0, 2.0, 2.0), seed=1))
    l2, l3 = phantom.verse_ids[1:3]
    seen = {}
    build = pipeline.tether_to_given

    def spy(fit, *args, **kwargs):
        tether = build(fit, *args, **kwargs)
        with torch.no_grad():
            seen["offsets"] = tether.axial_offsets_mm(fit.shape()).numpy()
        seen["active"] = tether.active.tolist()
        return tether

    monkeypatch.setattr(pipeline, "tether_to_given", spy)
    config = SegmentationConfig(template="lumbar", device="cpu", seed=0)
    config.optim.iterations = 2
    config.losses.tether = 1000.0
    bodies = body_centres_from_label_map(phantom.labels)
    for kind, centres in (("vertebra", phantom.centroids), ("body", bodies)):
        given = {v: centres[v] for v in (l2, l3)}
        result = pipeline.segment(phantom.image, config, centroids=given, template=template,
                                  centroids_kind=kind)
        assert sorted(result.drawn_from.verse_ids) == [l2 - 1, l2, l3, l3 + 1]
        assert seen["active"] == [False, True, True, False], kind
        assert np.abs(seen["offsets"][1:3]).max() < 0.1, (kind, seen["offsets"])


def test_body_tracking_far_from_the_world_origin_is_not_thrown_by_a_tilt():
    """A T8 at 300 mm up the scanner's axis, tilted 3 degrees about its body's centroid:
    its body's tracked centre stays put (the open patch's missing cap, measured from the
    world origin, moved it centimetres)."""
    vertices, faces = _t8()
    body = faces[L.body_face_mask(vertices, faces)]
    anterior = vertices[vertices[:, 1] < vertices[:, 1].mean()]
    pivot = anterior.mean(0)
    angle = math.radians(3.0)
    rotation = np.array([[1, 0, 0], [0, math.cos(angle), -math.sin(angle)],
                         [0, math.sin(angle), math.cos(angle)]])
    up = np.array([0.0, 0.0, 300.0])
    placed = vertices + up
    tilted = (vertices - pivot) @ rotation.T + pivot + up
    target = (pivot + up)[None]
    tether = build_tether(placed[None], body, target, target, np.array([[0.0, 0, 1]]), [True],
                          1.0, torch.device("cpu"))
    moved = tether.axial_offsets_mm(torch.as_tensor(tilted, dtype=torch.float32)[None])
    assert abs(float(moved[0])) < 0.3
