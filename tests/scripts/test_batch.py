"""Batch segmentation: folder mode and Hydra multirun of scripts/segment.py, and the
evaluation of batch outputs.

The end-to-end test runs a two-scan multirun with the joblib launcher on two
synthetic phantoms (needs ``hydra-joblib-launcher``, part of the ``test``
extra); the other tests check the batch glue without fitting anything.
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

from diffam.cli.runner import (
    SettingsError,
    _done_state,
    find_jobs,
    resolve_centroids,
    run_from_settings,
    scan_name,
)

ROOT = Path(__file__).resolve().parents[2]
SEGMENT = ROOT / "scripts" / "segment.py"
EVALUATE = ROOT / "scripts" / "evaluate.py"


def run_script(script: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True, encoding="utf-8",
        env=env,
        cwd=ROOT,
        timeout=timeout,
    )


def fake_result(folder: Path, scan: Path, completed: bool = True) -> None:
    """The files of a finished run of ``scan`` in ``folder`` (no fit)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "labels.nii.gz").write_bytes(b"")
    inputs = {"scan": str(scan), "scan_path": str(scan.resolve())}
    (folder / "report.json").write_text(json.dumps({"inputs": inputs, "completed": completed}))


# --- naming, centroid lookup, skipping --------------------------------------------------------


def test_scan_name():
    assert scan_name("data/sub-01.nii.gz") == "sub-01"
    assert scan_name("data/sub 01.mha") == "sub_01"
    assert scan_name("data/dicom_series/") == "dicom_series"
    assert scan_name("builtin:phantom") == "phantom"


def test_resolve_centroids(tmp_path):
    ctd = tmp_path / "ctd"
    ctd.mkdir()
    (ctd / "a.csv").touch()
    (ctd / "b_ctd.json").touch()
    assert resolve_centroids(None, "x/a.nii.gz") is None
    assert resolve_centroids(str(ctd), "x/a.nii.gz") == str(ctd / "a.csv")
    assert resolve_centroids(str(ctd), "x/b.nii.gz") == str(ctd / "b_ctd.json")
    assert resolve_centroids(f"{ctd}/{{stem}}.csv", "x/a.nii.gz") == str(ctd / "a.csv")
    assert resolve_centroids(str(ctd / "a.csv"), "x/zzz.nii.gz") == str(ctd / "a.csv")
    with pytest.raises(SettingsError, match="looked for c.json, c.csv, c_ctd.json"):
        resolve_centroids(str(ctd), "x/c.nii.gz")
    with pytest.raises(SettingsError, match="does not exist"):
        resolve_centroids(f"{ctd}/{{stem}}.csv", "x/b.nii.gz")
    with pytest.raises(SettingsError, match="only {stem} and {dir}"):
        resolve_centroids(f"{ctd}/{{case}}.csv", "x/b.nii.gz")
    (ctd / "a.json").touch()
    with pytest.raises(SettingsError, match="more than one"):
        resolve_centroids(str(ctd), "x/a.nii.gz")


def test_folder_mode_names_scans_by_stem_and_by_path_when_stems_repeat(tmp_path):
    data = tmp_path / "data"
    for case in ("case1", "case2"):
        (data / case).mkdir(parents=True)
        (data / case / "ct.nii.gz").touch()
    (data / "other.nii.gz").touch()
    (data / "notes").mkdir()  # not a DICOM series: ignored
    (data / "notes" / "readme.txt").write_text("x", encoding="utf-8")
    settings = {"scans": str(data), "pattern": "**/*.nii.gz", "output_dir": str(tmp_path / "o")}
    jobs, folder_mode = find_jobs(settings)
    assert folder_mode
    assert [j.output_dir.name for j in jobs] == ["case1_ct", "case2_ct", "other"]


def test_done_state(tmp_path):
    scan, other = tmp_path / "a.nii.gz", tmp_path / "elsewhere" / "a.nii.gz"
    from diffam.cli.runner import Job

    job = Job(str(scan), tmp_path / "out")
    assert _done_state(job) is None
    fake_result(job.output_dir, scan)
    assert _done_state(job) == "done"
    fake_result(job.output_dir, other)
    assert "another scan" in _done_state(job)
    fake_result(job.output_dir, scan, completed=False)
    assert "unfinished run" in _done_state(job)


def test_folder_mode_skips_done_scans_goes_on_and_writes_summary(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    for name in ("a", "b"):
        (data / f"{name}.nii.gz").write_bytes(b"not an image")
    fake_result(out / "a", data / "a.nii.gz")
    settings = {"scans": str(data), "pattern": "*.nii.gz", "output_dir": str(out)}
    assert run_from_settings(settings) == 1  # b is unreadable: failed, listed
    summary = json.loads((out / "batch_summary.json").read_text(encoding="utf-8"))
    assert summary["mode"] == "folder"
    assert summary["counts"]["skipped"] == 1 and summary["counts"]["failed"] == 1
    status = {Path(e["scan"]).name: e["status"] for e in summary["scans"]}
    assert status == {"a.nii.gz": "skipped", "b.nii.gz": "failed"}


def test_multirun_goes_on_past_failures_and_skips_done_scans(tmp_path):
    """Basic launcher, no fit: one scan already done, one without centroids."""
    sweep, ctd = tmp_path / "sweep", tmp_path / "ctd"
    ctd.mkdir()
    a, b = tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"
    a.write_bytes(b""), b.write_bytes(b"")
    fake_result(sweep / "a", a)
    proc = run_script(
        SEGMENT, "-m", f"scan={a},{b}", f"centroids={ctd}", f"hydra.sweep.dir={sweep}"
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "FAILED" in proc.stderr + proc.stdout
    summary = json.loads((sweep / "batch_summary.json").read_text(encoding="utf-8"))
    assert summary["mode"] == "multirun"
    status = {Path(e["scan"]).name: e["status"] for e in summary["scans"]}
    assert status == {"a.nii.gz": "skipped", "b.nii.gz": "failed"}
    assert "b.csv" in summary["scans"][1]["error"]
    assert (sweep / "b").is_dir() and not (sweep / ".batch_jobs").exists()


# --- evaluation of batch outputs --------------------------------------------------------------


def write_labels(path: Path, arr: np.ndarray) -> None:
    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    img.SetSpacing((1.0, 1.0, 2.0))
    sitk.WriteImage(img, str(path))


def spine(labels: tuple[int, ...]) -> np.ndarray:
    arr = np.zeros((50, 40, 40), np.uint8)
    for n, lab in enumerate(labels):
        if lab:
            arr[3 + 15 * n : 11 + 15 * n, 10:30, 10:30] = lab
    return arr


def test_evaluate_run_folders_and_levels_predicted(tmp_path):
    """pred=<batch output> pairs <case>/labels.nii.gz with gt/<case>.nii.gz; levels=predicted
    leaves ground-truth levels the run did not fit out of the summary."""
    runs, gt, out = tmp_path / "runs", tmp_path / "gt", tmp_path / "eval"
    (runs / "case1").mkdir(parents=True), gt.mkdir()
    write_labels(gt / "case1.nii.gz", spine((19, 20, 21)))  # T12, L1, L2
    write_labels(runs / "case1" / "labels.nii.gz", spine((0, 20, 0)))  # L2 fitted, came out empty
    report = {"vertebrae": [{"level": "L1", "verse_id": 20}, {"level": "L2", "verse_id": 21}]}
    (runs / "case1" / "report.json").write_text(json.dumps(report))
    proc = run_script(EVALUATE, f"pred={runs}", f"gt={gt}", f"output_dir={out}", "levels=predicted")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "not attempted" in proc.stdout and "case1: T12" in proc.stdout
    summary = json.loads((out / "evaluation.json").read_text(encoding="utf-8"))
    total = next(s for s in summary["summary"] if s["segment"] == "total")
    assert total["n_gt"] == 2 and total["n_missing"] == 1 and total["n_not_attempted"] == 1
    assert summary["cases"][0]["not_attempted"] == ["T12"]
    proc = run_script(EVALUATE, f"pred={runs}", f"gt={gt}", f"output_dir={out}")
    total = next(
        s
        for s in json.loads((out / "evaluation.json").read_text(encoding="utf-8"))["summary"]
        if s["segment"] == "total"
    )
    assert total["n_gt"] == 3 and total["n_missing"] == 2 and total["n_not_attempted"] == 0


# --- end to end: two phantoms, joblib launcher ------------------------------------------------


@pytest.mark.slow
def test_two_scan_multirun_with_joblib_launcher(tmp_path):
    pytest.importorskip(
        "hydra_plugins.hydra_joblib_launcher",
        reason="hydra-joblib-launcher is not installed (pip install -e '.[test]')",
    )
    from diffam.authoring.phantom import PhantomConfig, make_phantom
    from diffam.core.centroids import write_centroids_csv
    from diffam.core.image import write_image
    from diffam.core.template import load_template

    scans, ctd, sweep = tmp_path / "scans", tmp_path / "ctd", tmp_path / "results"
    scans.mkdir(), ctd.mkdir()
    template = load_template("lumbar")
    paths = []
    for seed, name in enumerate(("ph_a", "ph_b")):
        config = PhantomConfig(levels=("L2", "L3"), spacing_mm=(2, 2, 2), seed=seed)
        phantom = make_phantom(template, config)
        paths.append(write_image(phantom.image, scans / f"{name}.nii.gz"))
        write_centroids_csv(phantom.centroids, ctd / f"{name}.csv")
    args = [
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        f"hydra.sweep.dir={sweep}",
        "scan=" + ",".join(str(p) for p in paths),
        f"centroids={ctd}",
        "optim=fast",
        "optim.iterations=20",
        "optim.num_image_points=1000",
        "optim.num_surface_points=1000",
        "device=cpu",
    ]
    proc = run_script(SEGMENT, *args)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for name in ("ph_a", "ph_b"):
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(sweep / name / "labels.nii.gz")))
        assert set(np.unique(labels)) >= {21, 22}  # L2, L3 (VerSe ids)
        report = json.loads((sweep / name / "report.json").read_text(encoding="utf-8"))
        assert report["inputs"]["centroids"] == str(ctd / f"{name}.csv")
    summary = json.loads((sweep / "batch_summary.json").read_text(encoding="utf-8"))
    assert summary["counts"]["segmented"] == 2 and summary["counts"]["failed"] == 0

    mtime = (sweep / "ph_a" / "labels.nii.gz").stat().st_mtime_ns
    proc = run_script(SEGMENT, *args)
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((sweep / "batch_summary.json").read_text(encoding="utf-8"))
    assert summary["counts"]["skipped"] == 2
    assert (sweep / "ph_a" / "labels.nii.gz").stat().st_mtime_ns == mtime
