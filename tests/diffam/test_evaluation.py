"""Tests of diffam.evaluation: metrics with known answers, identification, pairing, grids."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from diffam.core.labels import VERSE_IDS
from diffam.evaluation import (
    evaluate_arrays,
    evaluate_files,
    evaluate_images,
    evaluate_paths,
    get_mapping,
    identification_rate,
    identify,
    mask_metrics,
    pair_paths,
    stem,
    summarize,
    to_verse,
    write_report,
)
from diffam.evaluation.metrics import centroids_world

SPACING = (1.5, 0.8, 1.0)  # (sz, sy, sx) mm: anisotropic


def ball(shape, spacing, centre_zyx, radius, origin_zyx=(0.0, 0.0, 0.0)):
    """Boolean ball of ``radius`` mm at ``centre_zyx`` mm (array-axis coordinates)."""
    axes = [o + np.arange(n) * s for n, s, o in zip(shape, spacing, origin_zyx)]
    zz, yy, xx = np.meshgrid(*axes, indexing="ij")
    c = centre_zyx
    return (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= radius**2


def two_sphere_truth(radius, d):
    """Analytic Dice, HD95, ASSD, HD of two balls of equal radius offset by d."""
    overlap = np.pi * (4 * radius + d) * (2 * radius - d) ** 2 / 12
    dice = overlap / (4 / 3 * np.pi * radius**3)
    # On a sphere, the area is uniform in t = cos(angle to the offset axis).
    t = np.linspace(-1, 1, 1_000_001)
    f = np.abs(np.sqrt(radius**2 + d**2 - 2 * radius * d * t) - radius)
    return dice, float(np.percentile(f, 95)), float(f.mean()), d


def image(arr, spacing_zyx, origin_xyz=(0.0, 0.0, 0.0), direction=None):
    img = sitk.GetImageFromArray(np.asarray(arr, dtype=np.uint8))
    img.SetSpacing(tuple(float(s) for s in spacing_zyx[::-1]))
    img.SetOrigin(tuple(float(o) for o in origin_xyz))
    if direction is not None:
        img.SetDirection(tuple(float(v) for v in np.ravel(direction)))
    return img


# --- metrics -----------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [0, 2])
def test_offset_spheres_match_analytic_values(axis):
    radius, d = 12.0, 4.0
    shape = tuple(int(40 / s) for s in SPACING)
    c = np.array([20.0, 20.0, 20.0])
    c2 = c.copy()
    c2[axis] += d
    gt, pred = ball(shape, SPACING, c, radius), ball(shape, SPACING, c2, radius)
    m = mask_metrics(pred, gt, SPACING)
    dice, hd95, assd, hd = two_sphere_truth(radius, d)
    tol = 0.5 * max(SPACING)  # half a voxel along the coarsest axis
    assert m.dice == pytest.approx(dice, abs=0.01)
    assert m.hd95_mm == pytest.approx(hd95, abs=tol)
    assert m.assd_mm == pytest.approx(assd, abs=tol)
    assert m.hd_mm == pytest.approx(hd, abs=tol)
    assert m.volume_gt_ml == pytest.approx(4 / 3 * np.pi * radius**3 / 1000, rel=0.02)


def test_offset_boxes_exact_dice_and_hausdorff():
    gt = np.zeros((20, 30, 40), bool)
    gt[5:15, 5:25, 5:25] = True
    pred = np.roll(gt, 3, axis=2)  # 3 voxels along x = 3 mm
    m = mask_metrics(pred, gt, SPACING)
    assert m.dice == pytest.approx(17 / 20)
    assert m.hd_mm == pytest.approx(3 * SPACING[2])
    assert m.volume_gt_ml == pytest.approx(10 * 20 * 20 * np.prod(SPACING) / 1000)
    # Shift along z (1.5 mm voxels): the distances scale with the z spacing.
    pred_z = np.roll(gt, 2, axis=0)
    assert mask_metrics(pred_z, gt, SPACING).hd_mm == pytest.approx(2 * SPACING[0])


def test_identical_and_empty_masks():
    gt = ball((20, 20, 20), SPACING, (15, 8, 10), 5)
    same = mask_metrics(gt, gt, SPACING)
    assert (same.dice, same.hd95_mm, same.assd_mm, same.hd_mm) == (1.0, 0.0, 0.0, 0.0)
    empty = np.zeros_like(gt)
    m = mask_metrics(empty, gt, SPACING)
    assert m.dice == 0.0 and np.isnan(m.hd95_mm) and np.isnan(m.assd_mm)
    assert np.isnan(mask_metrics(empty, empty, SPACING).dice)
    with pytest.raises(ValueError, match="resample"):
        mask_metrics(gt[:-1], gt, SPACING)


def test_against_simpleitk_filters():
    """Dice and maximum Hausdorff distance agree with ITK's own filters."""
    shape = tuple(int(40 / s) for s in SPACING)
    gt = ball(shape, SPACING, (20, 20, 20), 11)
    zz, yy, xx = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, SPACING)], indexing="ij")
    pred = ((zz - 22) / 9) ** 2 + ((yy - 19) / 13) ** 2 + ((xx - 23) / 10) ** 2 <= 1
    m = mask_metrics(pred, gt, SPACING)
    overlap = sitk.LabelOverlapMeasuresImageFilter()
    overlap.Execute(image(gt, SPACING), image(pred, SPACING))
    hausdorff = sitk.HausdorffDistanceImageFilter()
    hausdorff.Execute(image(gt, SPACING), image(pred, SPACING))
    assert m.dice == pytest.approx(overlap.GetDiceCoefficient(), abs=1e-9)
    # ITK measures from all voxels to the other set, this module between surfaces;
    # the maximum agrees to within a voxel.
    assert m.hd_mm == pytest.approx(hausdorff.GetHausdorffDistance(), abs=max(SPACING))


def test_centroids_in_world_mm_follow_direction_and_origin():
    labels = np.zeros((10, 12, 14), np.uint8)
    labels[2:4, 3:5, 6:8] = 20  # centre index (k, j, i) = (2.5, 3.5, 6.5)
    direction = np.diag([-1.0, -1.0, 1.0])
    c = centroids_world(labels, SPACING, (10.0, 20.0, 30.0), direction)[20]
    img = image(labels, SPACING, (10.0, 20.0, 30.0), direction)
    assert np.allclose(c, img.TransformContinuousIndexToPhysicalPoint((6.5, 3.5, 2.5)))


# --- identification ------------------------------------------------------------------------


def stacked_vertebrae(labels=(20, 21, 22), gap_vox=20):
    """Three boxes stacked along z, 30 mm apart (z spacing 1.5 mm)."""
    arr = np.zeros((70, 30, 30), np.uint8)
    for n, lab in enumerate(labels):
        arr[5 + n * gap_vox : 15 + n * gap_vox, 8:22, 8:22] = lab
    return arr


def test_identification_with_swapped_labels():
    gt = stacked_vertebrae((20, 21, 22))
    pred = stacked_vertebrae((21, 20, 22))
    rows = {r.label: r for r in evaluate_arrays(pred, gt, SPACING)}
    assert not rows[20].identified and not rows[21].identified and rows[22].identified
    assert rows[20].centroid_error_mm == pytest.approx(30.0)
    assert rows[20].dice == 0.0 and rows[22].dice == 1.0


def test_identification_distance_threshold():
    gt = {20: np.zeros(3), 21: np.array([0.0, 0.0, 60.0])}
    near = identify({20: np.array([19.0, 0, 0]), 21: np.array([0, 0, 81.0])}, gt)
    assert near[20].identified and not near[21].identified  # 21 mm away
    # Closer to another vertebra's true centroid than to its own: not identified.
    swapped = identify({20: np.array([0, 0, 40.0])}, gt)
    assert not swapped[20].identified and swapped[20].closest_label == 21
    assert not swapped[21].identified and np.isnan(swapped[21].distance_mm)  # missing
    assert identification_rate(near) == 0.5


def test_missing_and_extra_vertebrae_are_counted():
    gt = stacked_vertebrae((20, 21, 22))
    pred = stacked_vertebrae((19, 21, 23))
    rows = evaluate_arrays(pred, gt, SPACING, case="c1")
    status = {r.name: r.status for r in rows}
    assert status == {
        "T12": "extra",
        "L1": "missing",
        "L2": "matched",
        "L3": "missing",
        "L4": "extra",
    }
    missing = [r for r in rows if r.status == "missing"]
    assert all(r.dice == 0.0 and r.identified is False for r in missing)
    assert all(r.volume_gt_ml > 0 and r.volume_pred_ml == 0 for r in missing)
    summary = {s["segment"]: s for s in summarize(rows)}
    assert summary["lumbar"]["n_gt"] == 3 and summary["lumbar"]["n_missing"] == 2
    assert summary["lumbar"]["n_extra"] == 1 and summary["thoracic"]["n_extra"] == 1
    assert summary["lumbar"]["dice_mean"] == pytest.approx(100 / 3)
    assert summary["total"]["id_rate"] == pytest.approx(100 / 3)
    assert summary["total"]["n_extra"] == 2


# --- label conventions -------------------------------------------------------------------


@pytest.mark.shared_data
def test_totalsegmentator_mapping_matches_structures_names(shared_data):
    path = shared_data / "ct" / "chest_t1_l2" / "structures.csv"
    by_name = dict(VERSE_IDS)
    mapping = get_mapping("totalsegmentator")
    with path.open(encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["group"] == "vertebrae"]
    assert len(rows) == 26
    for r in rows:
        level = r["structure"].removeprefix("vertebrae_")
        expected = by_name["sacrum"] if level in {"sacrum", "S1"} else by_name[level]
        assert mapping[int(r["id"])] == expected, r
    assert set(mapping) == {int(r["id"]) for r in rows}


def test_mapping_csv_and_ignored_labels(tmp_path):
    csv_path = tmp_path / "map.csv"
    csv_path.write_text("source,verse\n5,20\n6,21\n", encoding="utf-8")
    verse, ignored = to_verse(np.array([[[0, 5, 6, 7]]]), get_mapping(csv_path))
    assert verse.tolist() == [[[0, 20, 21, 0]]] and ignored == [7]
    (tmp_path / "bad.csv").write_text("source,verse\n5,27\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not a VerSe id"):
        get_mapping(tmp_path / "bad.csv")
    with pytest.raises(FileNotFoundError, match="totalsegmentator"):
        get_mapping("totalsegmentatr")
    with pytest.raises(ValueError, match="non-integer"):
        to_verse(np.array([0.5]), get_mapping("verse"))


# --- pairing -----------------------------------------------------------------------------


def test_stem_handles_double_suffix():
    assert stem("a/sub-01.nii.gz") == "sub-01"
    assert stem("sub-01.v2.mha") == "sub-01.v2"
    assert stem("sub-01_seg.nii.gz", strip=["_seg"]) == "sub-01"


def test_pairing_reports_unmatched_files(tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir(), gt.mkdir()
    for name in ("a.nii.gz", "b_seg.nii.gz", "c.nii.gz", "notes.txt"):
        (pred / name).touch()
    for name in ("a.nii.gz", "b.nii", "d.mha"):
        (gt / name).touch()
    p = pair_paths(pred, gt, pred_strip=["_seg"])
    assert [k for k, _, _ in p.pairs] == ["a", "b"]
    assert [f.name for f in p.unpaired_pred] == ["c.nii.gz"]
    assert [f.name for f in p.unpaired_gt] == ["d.mha"]
    report = p.report()
    assert "c.nii.gz" in report and "d.mha" in report and "2 pair(s)" in report
    (gt / "a.nii").touch()
    with pytest.raises(ValueError, match="same stem 'a'"):
        pair_paths(pred, gt)
    with pytest.raises(ValueError, match="both be files or both be folders"):
        pair_paths(pred / "a.nii.gz", gt)


# --- grids -------------------------------------------------------------------------------


def test_prediction_on_other_grid_is_resampled_with_warning(caplog):
    shape = (24, 45, 36)  # 36 x 36 x 36 mm
    gt_arr = ball(shape, SPACING, (18, 18, 18), 10).astype(np.uint8) * 22
    gt = image(gt_arr, SPACING)
    # The same ball on a 0.6 mm isotropic grid, shifted origin, smaller field of view.
    fine = (0.6, 0.6, 0.6)
    origin_zyx = (4.0, 3.0, 5.0)
    f_shape = (50, 55, 50)
    pred_arr = ball(f_shape, fine, (18, 18, 18), 10, origin_zyx).astype(np.uint8) * 22
    pred = image(pred_arr, fine, origin_zyx[::-1])
    with caplog.at_level(logging.WARNING):
        res = evaluate_images(pred, gt, case="moved")
    assert res.resampled and "resampling the prediction" in caplog.text
    (row,) = res.vertebrae
    assert row.status == "matched" and row.dice > 0.95 and row.hd95_mm <= max(SPACING)

    far = image(pred_arr, fine, (500.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="do not overlap in world space"):
        evaluate_images(far, gt, case="far")


def test_write_report_outputs(tmp_path):
    gt = stacked_vertebrae((20, 21, 22))
    pred = stacked_vertebrae((20, 21, 23))
    pred_img, gt_img = image(pred, SPACING), image(gt, SPACING)
    sitk.WriteImage(pred_img, str(tmp_path / "p.nii.gz"))
    sitk.WriteImage(gt_img, str(tmp_path / "g.nii.gz"))
    case = evaluate_files(tmp_path / "p.nii.gz", tmp_path / "g.nii.gz", case="c")
    paths = write_report(tmp_path / "out", [case], unpaired_gt=[Path("x.nii.gz")])
    data = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert data["cases"][0]["missing"] == ["L3"] and data["cases"][0]["extra"] == ["L4"]
    assert data["unpaired_gt"] == ["x.nii.gz"]
    assert data["per_vertebra"][2]["hd95_mm"] is None  # NaN -> null
    assert "| lumbar | 3 |" in paths["markdown"].read_text(encoding="utf-8")
    assert not list((tmp_path / "out").glob(".*.tmp"))


@pytest.mark.shared_data
def test_real_label_map_against_itself(shared_data):
    path = shared_data / "ct" / "chest_t1_l2" / "labels_totalsegmentator.nii.gz"
    res = evaluate_paths(path, path, pred_labels="totalsegmentator", gt_labels="totalsegmentator")
    (case,) = res.cases
    names = [r.name for r in case.vertebrae]
    assert names == ["C5", "C6", "C7"] + [f"T{i}" for i in range(1, 13)] + ["L1", "L2", "L3"]
    assert all(r.dice == 1.0 and r.hd95_mm == 0.0 and r.identified for r in case.vertebrae)
    assert 1 in case.ignored_gt_labels  # spleen: not a vertebra, reported as ignored
