"""Per-vertebra statistics on analytic phantoms of known HU and heights (diffam.export.statistics).

The phantom (``tests/diffam/phantom_spine.py``): three vertebrae stacked,
each a box-shaped body of 40 x 32 x 25 mm (the middle one wedged: anterior
height 70 % of the posterior one) with a 1.5 mm cortical shell at 900 HU, a
trabecular interior at 150 HU, posterior elements (pedicles, lamina,
spinous and transverse processes) at 600 HU around a 16 mm canal, 20 HU
noise, voxelised at 0.5 mm on grids of several orientations.
"""

from __future__ import annotations

import numpy as np
import pytest

from diffam.export.statistics import COLUMNS, cut_by_border, genant_grade, vertebra_statistics
from tests.diffam.phantom_spine import HP, TRABECULAR_HU, D, height, spine_phantom

WEDGE = 0.7 * HP
VERTEBRAE = [("L1", 20), ("L2", 21), ("L3", 22)]
GRIDS = {
    "identity": {},
    "tilted_flipped": {"tilt_deg": (12.0, 0.0, 8.0), "direction": np.diag([-1.0, 1.0, 1.0])},
    "pir_anisotropic": {"direction": [[0, 0, -1], [1, 0, 0], [0, -1, 0]],
                        "spacing": (0.5, 0.45, 0.55)},
}


@pytest.fixture(scope="module", params=sorted(GRIDS))
def measured(request):
    labels, ct, truth = spine_phantom((HP, WEDGE, HP), (20, 21, 22), **GRIDS[request.param])
    return labels, truth, vertebra_statistics(labels, ct, VERTEBRAE)


def test_heights_and_ratios_match_the_phantom_within_half_a_millimetre(measured):
    _, _, rows = measured
    for row, ha in zip(rows, (HP, WEDGE, HP)):
        # measured at 10 %, 50 %, 90 % of the depth from the anterior wall (a = D)
        for key, fraction in (("anterior", 0.9), ("middle", 0.5), ("posterior", 0.1)):
            expected = float(height(fraction * D, ha))
            assert row[f"body_height_{key}_mm"] == pytest.approx(expected, abs=0.5), (row, key)
        assert row["body_depth_mm"] == pytest.approx(D, abs=1.0)
    wedge = rows[1]
    expected_ratio = float(height(0.9 * D, WEDGE) / height(0.1 * D, WEDGE))
    assert wedge["height_ratio_anterior_posterior"] == pytest.approx(expected_ratio, rel=0.03)
    assert wedge["height_reduction_percent"] == pytest.approx(100 * (1 - expected_ratio), abs=3)
    assert wedge["genant_grade"] in (1, 2)  # 24.7 % at the measuring positions: mild/moderate
    assert rows[0]["genant_grade"] == rows[2]["genant_grade"] == 0
    assert rows[0]["height_ratio_anterior_posterior"] == pytest.approx(1.0, abs=0.03)


def test_hu_of_vertebra_and_trabecular_bone_within_two_percent(measured):
    labels, truth, rows = measured
    voxel_ml = float(np.prod(labels.spacing)) / 1000
    for row, (_, value) in zip(rows, VERTEBRAE):
        known = truth[value]["hu"]  # noise-free HU of the labelled voxels
        assert row["voxels"] == len(known)
        assert row["volume_ml"] == pytest.approx(len(known) * voxel_ml)
        assert row["hu_mean_vertebra"] == pytest.approx(known.mean(), rel=0.02)
        # the median of a mixture of 150/600/900 HU moves with the noise: the noisy values
        assert row["hu_median_vertebra"] == pytest.approx(
            np.median(truth[value]["hu_noisy"]), rel=0.02)
        assert row["hu_mean_trabecular"] == pytest.approx(TRABECULAR_HU, rel=0.02)
        assert row["hu_median_trabecular"] == pytest.approx(TRABECULAR_HU, rel=0.02)
        # the ROI (3 mm inside the body) lies within the trabecular interior (1.5 mm shell)
        assert 0 < row["trabecular_roi_ml"] < truth[value]["trabecular_voxels"] * voxel_ml
        assert row["cut_by_border"] is False
        assert list(row) == list(COLUMNS)


def test_a_vertebra_cut_by_the_scan_border_is_flagged_and_not_graded():
    labels, ct, _ = spine_phantom((HP, HP, HP), (20, 21, 22), spacing=(1.0, 1.0, 1.0),
                                  crop_top_mm=20.0)
    rows = vertebra_statistics(labels, ct, VERTEBRAE + [("L4", 23)])
    assert [r["cut_by_border"] for r in rows[:3]] == [True, False, False]
    assert rows[0]["genant_grade"] is None
    assert rows[1]["genant_grade"] == 0
    assert rows[3]["voxels"] == 0 and rows[3]["hu_mean_vertebra"] is None


def test_no_ct_and_levels_without_a_body():
    labels, _, _ = spine_phantom((HP,), (26,), spacing=(1.0, 1.0, 1.0))
    (row,) = vertebra_statistics(labels, None, [("sacrum", 26)])
    assert row["voxels"] > 0 and row["hu_mean_vertebra"] is None
    assert row["body_height_anterior_mm"] is None and row["genant_grade"] is None


def test_genant_grades_and_border_test():
    assert [genant_grade(p) for p in (0, 19.9, 20.5, 25.5, 39.9, 40.5, None)] == \
        [0, 0, 1, 2, 2, 3, None]
    assert cut_by_border((slice(0, 3), slice(2, 4)), (10, 10))
    assert cut_by_border((slice(1, 10), slice(2, 4)), (10, 10))
    assert not cut_by_border((slice(1, 9), slice(1, 9)), (10, 10))


def test_chest_ct_statistics_are_plausible():
    """T12-L2 of the shared chest CT with TotalSegmentator's labels (skipped without the data)."""
    from pathlib import Path

    from diffam.core.image import read_image
    from diffam.core.labels import VERSE_IDS, totalsegmentator_to_verse

    folder = Path(__file__).resolve().parents[3] / "shared/data/ct/chest_t1_l2"
    if not (folder / "ct.nii.gz").exists():
        pytest.skip("shared chest CT not available (../shared/data/ct/chest_t1_l2)")
    ct = read_image(folder / "ct.nii.gz")
    labels = read_image(folder / "labels_totalsegmentator.nii.gz")
    labels = labels.with_array(totalsegmentator_to_verse(labels.array))
    levels = ["T11", "T12", "L1", "L2", "L3"]
    rows = {r["level"]: r for r in
            vertebra_statistics(labels, ct, [(lv, VERSE_IDS[lv]) for lv in levels])}
    for level in ("T12", "L1", "L2"):
        row = rows[level]
        assert 80 < row["hu_median_trabecular"] < 250, row
        for key in ("anterior", "middle", "posterior"):
            assert 18 < row[f"body_height_{key}_mm"] < 32, row
    assert not rows["T12"]["cut_by_border"] and not rows["L1"]["cut_by_border"]
    assert rows["L3"]["cut_by_border"]  # L3 is cut by the last slice
