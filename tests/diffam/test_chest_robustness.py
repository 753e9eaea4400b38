"""Robustness on the shared chest CT (slow, needs ../shared/data): the scan cut to an
80 mm sagittal slab, cut tight around three vertebrae, centroids moved 15 mm, and the
run of centroids turned 15 degrees about its middle (each template starts tilted 15 degrees).

Five mid-thoracic vertebrae (T5-T9, TotalSegmentator labels) are fitted at the
fast settings on the whole scan first; on each cut or moved start every
vertebra must stay on its own bone: Dice on the part in view within 5 points
of the uncut fit's Dice on that same part.
"""

from __future__ import annotations

import numpy as np
import pytest

from diffam.core.centroids import centroids_from_label_map
from diffam.core.image import read_image
from diffam.core.labels import totalsegmentator_to_verse
from diffam.fit.pipeline import segment
from diffam.fit.roi import crop_to_world_box
from tests.diffam.real_scan import dice_by_label as _dice
from tests.diffam.real_scan import fast_config as _config
from tests.diffam.real_scan import keep_levels as _keep

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]

LEVELS = [12, 13, 14, 15, 16]  # T5-T9
#: Dice (points) a cut scan or a moved start may lose against the uncut fit.
TOLERANCE = 5.0
SLAB_MM = 80.0
MOVE_MM = 15.0
TURN_DEG = 15.0


@pytest.fixture(scope="module")
def chest(shared_data):
    folder = shared_data / "ct" / "chest_t1_l2"
    image = read_image(folder / "ct.nii.gz")
    labels = read_image(folder / "labels_totalsegmentator.nii.gz")
    truth = _keep(totalsegmentator_to_verse(labels.array), LEVELS)
    verse = image.with_array(truth)
    centroids = {k: v for k, v in centroids_from_label_map(verse).items() if k in LEVELS}
    full = segment(image, _config(), centroids=centroids)
    return image, truth, centroids, _keep(np.asarray(full.labels.array), LEVELS)


def _world(image, truth, levels):
    k, j, i = np.nonzero(np.isin(truth, levels))
    return image.index_to_world(np.stack([i, j, k], 1).astype(np.float64))


def _fit_cut(chest, lo, hi, levels):
    """(Dice of the fit on the cut scan, Dice of the uncut fit on the same part) per level."""
    image, truth, _, full = chest
    cut_image = crop_to_world_box(image, lo, hi)
    cut_truth = _keep(crop_to_world_box(image.with_array(truth), lo, hi).array, levels)
    cut_full = _keep(crop_to_world_box(image.with_array(full), lo, hi).array, levels)
    centroids = {k: v for k, v in centroids_from_label_map(cut_image.with_array(cut_truth)).items()
                 if k in levels}
    result = segment(cut_image, _config(), centroids=centroids)
    cut_pred = _keep(np.asarray(result.labels.array), levels)
    return _dice(cut_pred, cut_truth, cut_image), _dice(cut_full, cut_truth, cut_image)


def test_sagittal_slab_80mm(chest):
    # Passes since the coarse blur starts at 1.28 mm and the thick-slice blur (2026-12-07,
    # seed 0, 2 threads); before, T8 reached 74.0 against 81.1 uncut.
    # Was xfail (2026-12-06: T9, the lowest of the run, 63 against 77, grown into the
    # unfitted T10); passes since the guard neighbours (diffam.fit.guards) fit T4 and T10.
    image, truth, _, _ = chest
    points = _world(image, truth, LEVELS)
    middle = 0.5 * (points[:, 0].min() + points[:, 0].max())
    lo, hi = np.full(3, -1e6), np.full(3, 1e6)
    lo[0], hi[0] = middle - SLAB_MM / 2, middle + SLAB_MM / 2
    cut, full = _fit_cut(chest, lo, hi, LEVELS)
    for level in LEVELS:
        assert cut[level] > full[level] - TOLERANCE, (level, cut, full)


def test_tight_crop_around_three_vertebrae(chest):
    # Was xfail (2026-12-07: T6, the top of the crop, 76.7 against 82.6 uncut, its body slid
    # into the disc above); passes since the axial tether (diffam.fit.tether; 2026-12-08:
    # T6-T8 81.1/81.9/83.3 against 83.7/80.7/82.0 uncut).
    image, truth, _, _ = chest
    wanted = LEVELS[1:4]  # T6-T8
    points = _world(image, truth, wanted)
    cut, full = _fit_cut(chest, points.min(0), points.max(0), wanted)
    for level in wanted:
        assert cut[level] > full[level] - TOLERANCE, (level, cut, full)


def test_centroids_moved_15mm(chest):
    # Was xfail (2026-12-06, T5-T9 18/57/34/26/- against 69-77: whole vertebrae landed on
    # their neighbours); passes since the given centroids are re-seated on the detected
    # vertebrae (diffam.fit.reseat; 2026-12-07: 75/80/82/85/88 against 68-73 uncut).
    image, truth, centroids, full = chest
    rng = np.random.default_rng(3)
    moved = {}
    for level, point in centroids.items():
        direction = rng.normal(size=3)
        moved[level] = point + MOVE_MM * direction / np.linalg.norm(direction)
    result = segment(image, _config(), centroids=moved)
    got = _dice(_keep(np.asarray(result.labels.array), LEVELS), truth, image)
    reference = _dice(full, truth, image)
    for level in LEVELS:
        assert got[level] > reference[level] - TOLERANCE, (level, got, reference)


def test_centroids_turned_15_degrees(chest):
    # Passes since the given run is turned back onto the column's direction before the fit
    # (diffam.fit.reseat.TURN_DEG; 2026-12-07, seed 0, 2 threads: T5-T9 80.7/83.9/85.9/
    # 86.3/85.0 against 80.4/82.2/83.2/84.4/84.1 uncut; without the turn 73.1/77.2/78.1/
    # 81.7/76.4, T5, T6, T7 and T9 more than 5 points below). The ends start 12 mm off
    # and each template tilted 15 degrees.
    image, truth, centroids, full = chest
    middle = centroids[LEVELS[len(LEVELS) // 2]]
    c, s = np.cos(np.radians(TURN_DEG)), np.sin(np.radians(TURN_DEG))
    # about the left-right axis: the run tilts forward in the sagittal plane
    turn = np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    turned = {level: middle + turn @ (point - middle) for level, point in centroids.items()}
    result = segment(image, _config(), centroids=turned)
    got = _dice(_keep(np.asarray(result.labels.array), LEVELS), truth, image)
    reference = _dice(full, truth, image)
    for level in LEVELS:
        assert got[level] > reference[level] - TOLERANCE, (level, got, reference)
