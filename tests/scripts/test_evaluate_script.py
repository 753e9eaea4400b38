"""End-to-end test of scripts/evaluate.py as a subprocess on small synthetic label maps."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[2]
SPACING_ZYX = (2.0, 0.8, 1.0)


def write_labels(path: Path, arr: np.ndarray, origin=(0.0, 0.0, 0.0)) -> None:
    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    img.SetSpacing(SPACING_ZYX[::-1])
    img.SetOrigin(origin)
    sitk.WriteImage(img, str(path))


def spine(labels: tuple[int, ...], shift_vox: int = 0) -> np.ndarray:
    """Boxes stacked along z (one label each, 30 mm apart), optionally shifted along x."""
    arr = np.zeros((50, 40, 40), np.uint8)
    for n, lab in enumerate(labels):
        arr[3 + 15 * n : 11 + 15 * n, 10:30, 10 + shift_vox : 30 + shift_vox] = lab
    return arr


def test_evaluate_script_folders(tmp_path):
    pred, gt, out = tmp_path / "pred", tmp_path / "gt", tmp_path / "out"
    pred.mkdir(), gt.mkdir()
    # Ground truth in TotalSegmentator v2 ids: 31 L1, 30 L2, 29 L3.
    write_labels(gt / "case1.nii.gz", spine((31, 30, 29)))
    write_labels(gt / "case2.nii.gz", spine((31, 30, 29)))
    write_labels(gt / "only_gt.nii.gz", spine((31,)))
    # Predictions in VerSe ids: case1 shifted by 2 voxels (2 mm), case2 misses L3
    # and has an extra L4; 'far' does not overlap its ground truth.
    write_labels(pred / "case1_seg.nii.gz", spine((20, 21, 22), shift_vox=2))
    write_labels(pred / "case2_seg.nii.gz", spine((20, 21, 0, 23)))
    write_labels(gt / "far.nii.gz", spine((31,)))
    write_labels(pred / "far_seg.nii.gz", spine((20,)), origin=(1000.0, 0.0, 0.0))
    write_labels(pred / "only_pred_seg.nii.gz", spine((20,)))

    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "evaluate.py"),
            f"pred={pred}",
            f"gt={gt}",
            f"output_dir={out}",
            "gt_labels=totalsegmentator",
            "pred_labels=verse",
            "pred_strip=[_seg]",
        ],
        capture_output=True,
        text=True, encoding="utf-8",
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1, text  # one pair failed (no overlap)
    assert "FAILED far" in proc.stdout and "do not overlap" in proc.stdout
    assert "only_pred_seg.nii.gz" in text and "only_gt.nii.gz" in text
    assert "| segment | vertebrae | Dice (%)" in proc.stdout

    with (out / "per_vertebra.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    by = {(r["case"], r["name"]): r for r in rows}
    assert float(by["case1", "L1"]["dice"]) == 18 / 20  # 20-voxel boxes shifted by 2
    assert float(by["case1", "L1"]["hd95_mm"]) == 2.0
    assert by["case1", "L2"]["identified"] == "True"
    assert by["case2", "L3"]["status"] == "missing" and float(by["case2", "L3"]["dice"]) == 0
    assert by["case2", "L4"]["status"] == "extra"

    with (out / "summary.csv").open(encoding="utf-8") as f:
        summary = {r["segment"]: r for r in csv.DictReader(f)}
    assert list(summary) == ["cervical", "thoracic", "lumbar", "total"]
    assert summary["lumbar"]["n_gt"] == "6" and summary["lumbar"]["n_missing"] == "1"
    assert summary["lumbar"]["n_extra"] == "1" and summary["cervical"]["dice_mean"] == "nan"
    assert float(summary["total"]["id_rate"]) == pytest.approx(500 / 6, abs=1e-3)

    data = json.loads((out / "evaluation.json").read_text(encoding="utf-8"))
    assert data["failed"].keys() == {"far"}
    assert [Path(p).name for p in data["unpaired_gt"]] == ["only_gt.nii.gz"]
    assert data["settings"]["gt_labels"] == "totalsegmentator"
    assert "| lumbar | 6 |" in (out / "report.md").read_text(encoding="utf-8")
