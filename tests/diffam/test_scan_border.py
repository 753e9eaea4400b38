"""The fit where the scan ends, on a real VerSe crop cut smaller (slow, needs ../shared/data).

A tight crop around L4-L5 and a cut leaving only the lowest 9 mm of L1 in
view: the vertebrae must stay on their own bone (Dice on the part in view
within 5 points of the fit on the uncut scan) and a vertebra cut by the
border must keep what is in view.
"""

from __future__ import annotations

import numpy as np
import pytest

from diffam.core.centroids import centroids_from_label_map
from diffam.core.image import read_image
from diffam.fit.pipeline import segment
from diffam.fit.roi import crop_to_world_box
from tests.diffam.real_scan import dice_by_label as _dice
from tests.diffam.real_scan import fast_config as _config

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]

@pytest.fixture(scope="module")
def verse005(shared_data):
    folder = shared_data / "ct" / "verse005_l1_l5_crop"
    image = read_image(folder / "ct.nii.gz")
    labels = read_image(folder / "labels_verse.nii.gz")
    truth = np.rint(labels.array).astype(np.int32)
    result = segment(image, _config(), centroids=centroids_from_label_map(labels))
    return image, labels, truth, np.asarray(result.labels.array).astype(np.int32)


def _cut(image, labels, truth, full_pred, lo, hi, levels):
    cut_image = crop_to_world_box(image, lo, hi)
    cut_labels = crop_to_world_box(labels, lo, hi)
    cut_truth = crop_to_world_box(image.with_array(truth), lo, hi).array
    cut_full = crop_to_world_box(image.with_array(full_pred), lo, hi).array
    keep = lambda a: np.where(np.isin(a, levels), a, 0).astype(np.int32)  # noqa: E731
    centroids = {k: v for k, v in centroids_from_label_map(cut_labels).items() if k in levels}
    result = segment(cut_image, _config(), centroids=centroids)
    cut_pred = keep(np.asarray(result.labels.array))
    return (_dice(cut_pred, keep(cut_truth), cut_image),
            _dice(keep(cut_full), keep(cut_truth), cut_image))


def _world(image, truth, level):
    k, j, i = np.nonzero(truth == level)
    return image.index_to_world(np.stack([i, j, k], 1).astype(np.float64))


def test_tight_crop_around_l4_l5_keeps_both_on_their_bone(verse005):
    image, labels, truth, full_pred = verse005
    points = np.concatenate([_world(image, truth, 23), _world(image, truth, 24)])
    cut, full = _cut(image, labels, truth, full_pred, points.min(0), points.max(0), [23, 24])
    for level in (23, 24):
        assert cut[level] > full[level] - 5.0, (level, cut, full)


def test_vertebra_cut_by_the_top_keeps_what_is_in_view(verse005):
    image, labels, truth, full_pred = verse005
    l1 = _world(image, truth, 20)
    lo, hi = np.full(3, -1e6), np.full(3, 1e6)
    hi[2] = l1[:, 2].min() + 9.0  # the lowest 9 mm of L1 in view
    cut, full = _cut(image, labels, truth, full_pred, lo, hi, [20, 21, 22, 23, 24])
    # Was xfail (2026-12-07: L1 29, L2 85 against 91 uncut: the centroid of L1's visible
    # spinous process put its whole template over L2); passes since the template is placed so
    # that its part in view has that centroid (diffam.fit.view_placement): L1 73, L2 91.
    assert cut[20] > 30.0, cut  # not empty
    for level in (21, 22, 23, 24):
        assert cut[level] > full[level] - 5.0, (level, cut, full)
