"""Centroids of vertebrae cut by the scan's border locate the part in view (diffam.fit.view_placement)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffam.core.config import SegmentationConfig
from diffam.core.template import load_template
from diffam.core.volume import Volume
from diffam.fit.field_of_view import FieldOfView
from diffam.fit.model import initial_placement
from diffam.fit.view_placement import cut_levels, in_view_centres, template_points

#: Grid spacing of the synthetic scans, mm.
SPACING_MM = 1.0


@pytest.fixture(scope="module")
def spine():
    return load_template("spine").subset(["L1", "L2", "L3", "L4"])


def _view_below(z_top_mm: float, z_bottom_mm: float = -400.0) -> FieldOfView:
    """A scan 400 x 400 mm wide (LPS, axis-aligned) reaching from ``z_bottom_mm`` up to ``z_top_mm``."""
    nz = int(round((z_top_mm - z_bottom_mm) / SPACING_MM)) + 1
    volume = Volume(np.zeros((nz, 2, 2), np.float32), np.array([400.0, 400.0, SPACING_MM]),
                    np.array([-200.0, -200.0, z_bottom_mm]), np.eye(3))
    return FieldOfView.of_volume(volume)


def _centres_in_view(spine, centres, view, config):
    """Centroid of each placed template's part in view: what a cut label map's centroid gives."""
    placement = initial_placement(spine, centres, config)
    out = []
    for m, points in enumerate(template_points(spine, "vertebra")):
        placed = (float(placement.scale[m]) * torch.as_tensor(points) @ placement.rotation[m].T
                  + placement.translation[m])
        out.append(placed[view.inside(placed)].mean(0).numpy())
    return np.stack(out)


def _cut_l1(spine, fraction_in_view):
    """L1 cut from above with ``fraction_in_view`` of its template below the top face:
    (the given centroids, as a label map's, the whole centres, the view)."""
    config = SegmentationConfig()
    whole = np.stack([v.centroid() for v in spine.vertebrae])
    points = template_points(spine, "vertebra")[0]
    view = _view_below(float(np.quantile(points[:, 2], fraction_in_view)))
    return _centres_in_view(spine, whole, view, config), whole, view


@pytest.mark.parametrize("fraction_in_view", [0.3, 0.5, 0.6, 0.8])
def test_a_vertebra_cut_by_the_top_keeps_its_whole_centre(spine, fraction_in_view):
    """With only the lower part of L1 in view its centroid lies low and posterior (on the
    processes); the template's centre must go back near where the whole L1's is. With half
    or less in view the fixed point alone landed 18-23 mm off (the given centroid: 8-12 mm);
    the Gauss-Newton solution, chosen as the one nearer the run's extrapolation, 2-4 mm."""
    given, whole, view = _cut_l1(spine, fraction_in_view)
    ids = [v.verse_id for v in spine.vertebrae]
    before = np.linalg.norm(given[0] - whole[0])
    assert before > 2.0  # where the old placement put it
    moved = in_view_centres(spine, dict(zip(ids, given)), view, SegmentationConfig())
    after = np.linalg.norm(moved[ids[0]] - whole[0])
    assert after < min(before, 5.0)
    if fraction_in_view > 0.5:
        assert after < 2.0
    for m in range(1, 4):  # not cut: exactly as given
        np.testing.assert_array_equal(moved[ids[m]], given[m])


def test_nothing_moves_in_a_scan_that_cuts_no_vertebra(spine):
    config = SegmentationConfig()
    whole = np.stack([v.centroid() for v in spine.vertebrae])
    view = _view_below(float(whole[:, 2].max()) + 80.0)
    ids = [v.verse_id for v in spine.vertebrae]
    moved = in_view_centres(spine, dict(zip(ids, whole)), view, config)
    for m, v in enumerate(ids):
        np.testing.assert_array_equal(moved[v], whole[m])


def test_body_centres_of_a_vertebra_cut_through_its_body(spine):
    """Body centroids (VerSe files): L4 cut at its body's middle from below."""
    config = SegmentationConfig()
    from diffam.fit.model import template_centres

    body = template_centres(spine, "body")
    body_points = template_points(spine, "body")[3]
    z_bottom = float(np.quantile(body_points[:, 2], 0.5))
    view = _view_below(float(body[:, 2].max()) + 80.0, z_bottom)
    placement = initial_placement(spine, body, config, kind="body")
    placed = (float(placement.scale[3]) * torch.as_tensor(body_points) @ placement.rotation[3].T
              + placement.translation[3])
    given = body.copy()
    given[3] = placed[view.inside(placed)].mean(0).numpy()
    assert np.linalg.norm(given[3] - body[3]) > 4.0
    ids = [v.verse_id for v in spine.vertebrae]
    moved = in_view_centres(spine, dict(zip(ids, given)), view, config, kind="body")
    assert np.linalg.norm(moved[ids[3]] - body[3]) < 1.5


def test_cut_levels_names_the_vertebra_the_border_cuts(spine):
    given, whole, view = _cut_l1(spine, 0.3)
    ids = [v.verse_id for v in spine.vertebrae]
    assert cut_levels(spine, dict(zip(ids, given)), view, SegmentationConfig()) == {ids[0]}
    wide = _view_below(float(whole[:, 2].max()) + 80.0)
    assert cut_levels(spine, dict(zip(ids, whole)), wide, SegmentationConfig()) == set()


def test_gauss_newton_from_a_placement_wholly_out_of_view_does_not_move_it(spine):
    from diffam.fit.view_placement import _gauss_newton_shift

    points = torch.as_tensor(template_points(spine, "vertebra")[0])
    view = _view_below(float(points[:, 2].min()) - 50.0)
    shift = _gauss_newton_shift(points, torch.zeros(3, dtype=torch.float64), view)
    np.testing.assert_array_equal(shift.numpy(), np.zeros(3))
