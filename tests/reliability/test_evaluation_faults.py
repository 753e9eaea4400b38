"""evaluate.py does not misreport quietly (issue case 9).

A ground-truth case without a prediction, ground truth in the other label
convention, a prediction from a killed or stopped segment.py run: each is a
failure with a message, exit status 1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from diffam.core.labels import verse_to_totalsegmentator
from diffam.evaluation import evaluate_paths

ROOT = Path(__file__).resolve().parents[2]


def _labels(values=(20, 21)) -> np.ndarray:
    array = np.zeros((40, 20, 20), np.uint8)
    for n, value in enumerate(values):
        array[4 + 16 * n: 16 + 16 * n, 5:15, 5:15] = value
    return array


def _save(array: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    return path


def _run_folder(folder: Path, report: dict | None) -> Path:
    labels = _save(_labels(), folder / "labels.nii.gz")
    (folder / "centroids.json").write_text("[]")
    if report is not None:
        (folder / "report.json").write_text(json.dumps(report))
    return labels


def evaluate(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "evaluate.py"), *args],
                          cwd=cwd, env=env, capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=300)


def test_ground_truth_in_the_other_convention_fails_the_case(tmp_path):
    pred = _save(_labels(), tmp_path / "pred" / "a.nii.gz")
    ts = verse_to_totalsegmentator(_labels(), unmapped="drop").astype(np.uint8)
    gt = _save(ts, tmp_path / "gt" / "a.nii.gz")
    result = evaluate_paths(pred, gt, gt_labels="verse")
    assert result.failed and "gt_labels=totalsegmentator" in result.failed[0].error
    assert not evaluate_paths(pred, gt, gt_labels="totalsegmentator").failed
    verse_gt = _save(_labels(), tmp_path / "gt2" / "a.nii.gz")
    wrong = evaluate_paths(pred, verse_gt, gt_labels="totalsegmentator")
    assert wrong.failed and "gt_labels=verse" in wrong.failed[0].error


@pytest.mark.parametrize("report, expected", [
    (None, "unfinished segment.py run"),
    ({"completed": False, "vertebrae": []}, "stopped run"),
])
def test_unfinished_run_folder_is_not_scored(tmp_path, report, expected):
    _run_folder(tmp_path / "pred" / "a", report)
    _save(_labels(), tmp_path / "gt" / "a.nii.gz")
    result = evaluate_paths(tmp_path / "pred", tmp_path / "gt")
    assert result.failed and expected in result.failed[0].error


def test_finished_run_folder_is_scored(tmp_path):
    _run_folder(tmp_path / "pred" / "a", {"completed": True, "vertebrae": []})
    _save(_labels(), tmp_path / "gt" / "a.nii.gz")
    assert not evaluate_paths(tmp_path / "pred", tmp_path / "gt").failed


@pytest.mark.slow
def test_missing_case_exits_1_unless_allowed(tmp_path):
    for case in ("a", "b"):
        _save(_labels(), tmp_path / "gt" / f"{case}.nii.gz")
    _save(_labels(), tmp_path / "pred" / "a.nii.gz")
    args = [f"pred={tmp_path / 'pred'}", f"gt={tmp_path / 'gt'}",
            f"output_dir={tmp_path / 'eval'}"]
    proc = evaluate(*args, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "have no prediction (b.nii.gz)" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    proc = evaluate(*args, "allow_missing=true", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_truncated_label_map_fails_the_case(tmp_path):
    pred = _save(_labels(), tmp_path / "pred" / "a.nii.gz")
    gt = _save(_labels(), tmp_path / "gt" / "a.nii.gz")
    gt.write_bytes(gt.read_bytes()[:-40])
    result = evaluate_paths(pred, gt)
    assert result.failed and "truncated" in result.failed[0].error
