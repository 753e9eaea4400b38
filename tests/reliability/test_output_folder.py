"""A result folder is complete and consistent, or visibly not (issue cases 1-3).

Fault injection in-process: a writer raising ``OSError(ENOSPC)`` after the
label map was written (disk full), an export setting that cannot be written,
a process killed during the swap. The fits are tiny (2 iterations, a
two-vertebra phantom at 2 mm).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from diffam.cli import checkpoints
from diffam.cli.runner import BAD_SETTINGS, FAILED, OK, Job, _done_state, run_from_settings
from diffam.export import staging, writers


def settings_for(out: Path, **extra) -> dict:
    settings = {
        "scan": "builtin:phantom",
        "output_dir": str(out),
        "template": {"name": "lumbar"},
        "optim": {"iterations": 2, "num_image_points": 300, "num_surface_points": 300,
                  "processing_spacing_mm": 2.0},
        "export": {"qc_images": False, "fit_score": False},
        "device": "cpu",
        "phantom": {"levels": ["L1", "L2", "L3"], "spacing_mm": 2.0, "seed": 0},
    }
    for key, value in extra.items():
        if isinstance(value, dict):
            settings[key] = {**settings.get(key, {}), **value}
        else:
            settings[key] = value
    return settings


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def first_result(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("first") / "out"
    assert run_from_settings(settings_for(out)) == OK
    return out


def _copy(folder: Path, tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / "out"
    shutil.copytree(folder, target)
    return target


def test_disk_full_during_overwrite_keeps_the_previous_result(first_result, tmp_path,
                                                              monkeypatch):
    out = _copy(first_result, tmp_path)
    before = snapshot(out)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writers, "write_mesh", disk_full)  # after labels.nii.gz is written
    code = run_from_settings(settings_for(out, overwrite=True,
                                          phantom={"levels": ["L1", "L2"]}))
    assert code == FAILED
    assert snapshot(out) == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    assert _done_state(Job("builtin:phantom", out)) == "done"


def test_bad_mesh_format_is_refused_before_any_work(first_result, tmp_path):
    out = _copy(first_result, tmp_path)
    before = snapshot(out)
    code = run_from_settings(settings_for(out, overwrite=True, export={"mesh_format": "foo"}))
    assert code == BAD_SETTINGS
    assert snapshot(out) == before


def test_overwrite_removes_what_the_new_run_does_not_write(first_result, tmp_path):
    out = _copy(first_result, tmp_path)
    assert (out / "meshes" / "L3.ply").exists() and (out / "labels.nii.gz").exists()
    code = run_from_settings(settings_for(out, overwrite=True, phantom={"levels": ["L1", "L2"]},
                                          export={"format": "nii"}))
    assert code == OK
    assert not (out / "labels.nii.gz").exists()
    assert (out / "labels.nii").exists()
    assert sorted(p.name for p in (out / "meshes").iterdir()) == ["L1.ply", "L2.ply"]
    report = json.loads((out / "report.json").read_text())
    listed = {out / name for name in report["files"].values()}
    assert all(p.exists() for p in listed)
    written = {p for p in out.rglob("*") if p.is_file()}
    extra = {p.name for p in written - listed}
    assert extra <= {"phantom_ct.nii.gz", "phantom_labels.nii.gz"}, extra
    assert not (out / "checkpoint.pt").exists() and not (out / "checkpoint.json").exists()


def test_killed_during_the_swap_leaves_a_visibly_unfinished_folder(first_result, tmp_path,
                                                                   monkeypatch):
    out = _copy(first_result, tmp_path)
    real_move = staging._move
    calls = {"n": 0}

    def killed(src, dst):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the process dies mid-swap
        return real_move(src, dst)

    monkeypatch.setattr(staging, "_move", killed)
    code = run_from_settings(settings_for(out, overwrite=True))
    assert code == 130
    assert not (out / "report.json").exists()
    state = _done_state(Job("builtin:phantom", out))
    assert state != "done" and "incomplete" in state
    monkeypatch.setattr(staging, "_move", real_move)
    # a batch run does not skip it; overwrite=true redoes it cleanly
    assert run_from_settings(settings_for(out, overwrite=True)) == OK
    assert _done_state(Job("builtin:phantom", out)) == "done"


def test_leftovers_of_a_killed_process_are_removed(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, encoding="utf-8", errors="replace").stdout.strip()
    (out / f".staging-{dead}-0123abcd").mkdir()
    (out / f".staging-{dead}-0123abcd" / "labels.nii.gz").write_bytes(b"x")
    (out / ".labels.0123abcd.tmp.nii.gz").write_bytes(b"x")
    (out / ".report.89abcdef.tmp.json").write_bytes(b"x")
    (out / "notes.txt").write_text("user file")
    alive = out / f".staging-{os.getpid()}-0123abcd"
    alive.mkdir()
    removed = staging.clean_leftovers(out)
    assert len(removed) == 3
    assert sorted(p.name for p in out.iterdir()) == sorted(["notes.txt", alive.name])


def test_resume_on_a_finished_folder_is_refused(first_result, tmp_path):
    out = _copy(first_result, tmp_path)
    before = snapshot(out)
    assert run_from_settings(settings_for(out, resume=True)) == BAD_SETTINGS
    assert snapshot(out) == before


def test_resume_without_checkpoint_does_not_replace_another_result(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "labels.nii.gz").write_bytes(b"old")
    report = {"inputs": {"scan": "/elsewhere/other.nii.gz",
                         "scan_path": "/elsewhere/other.nii.gz"}, "completed": True}
    (out / "report.json").write_text(json.dumps(report))
    before = snapshot(out)
    assert run_from_settings(settings_for(out, resume=True)) == BAD_SETTINGS
    assert snapshot(out) == before


def test_resume_with_another_scan_is_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"state")
    settings = settings_for(out)
    from diffam.cli.runner import segmentation_config

    identity = checkpoints.scan_identity("builtin:phantom", settings,
                                         segmentation_config(settings))
    checkpoints.write_record(out, identity)
    other = settings_for(out, resume=True, phantom={"seed": 7})
    assert run_from_settings(other) == BAD_SETTINGS
    (out / "checkpoint.json").unlink()  # a checkpoint that does not say its scan
    assert run_from_settings(settings_for(out, resume=True)) == BAD_SETTINGS
    assert (out / "checkpoint.pt").read_bytes() == b"state"


def test_identity_changes_with_the_scan_file(tmp_path):
    scan = tmp_path / "a.nii.gz"
    scan.write_bytes(b"1234")
    settings = settings_for(tmp_path)
    from diffam.cli.runner import segmentation_config

    config = segmentation_config(settings)
    first = checkpoints.scan_identity(str(scan), settings, config)
    scan.write_bytes(b"123456")
    assert checkpoints.scan_identity(str(scan), settings, config) != first


def test_stop_then_resume_gives_the_labels_of_an_uninterrupted_run(tmp_path, two_threads):
    whole = tmp_path / "whole"
    assert run_from_settings(settings_for(whole, optim={"iterations": 6})) == OK
    out = tmp_path / "out"
    polls = {"n": 0}

    def stop_after_three():
        polls["n"] += 1
        return polls["n"] > 3

    code = run_from_settings(settings_for(out, optim={"iterations": 6}),
                             should_stop=stop_after_three)
    assert code == 130
    report = json.loads((out / "report.json").read_text())
    assert report["completed"] is False and (out / "checkpoint.pt").exists()
    assert (out / "checkpoint.json").exists()
    assert run_from_settings(settings_for(out, resume=True, optim={"iterations": 6})) == OK
    assert json.loads((out / "report.json").read_text())["completed"] is True
    assert not (out / "checkpoint.pt").exists() and not (out / "checkpoint.json").exists()
    assert (out / "labels.nii.gz").read_bytes() == (whole / "labels.nii.gz").read_bytes()


KILL_DURING_SWAP = """
import os, sys
from diffam.export import staging
real, calls = staging._move, []
def move(src, dst):
    calls.append(src)
    if len(calls) == 4:
        os._exit(137)  # killed: no clean-up of any kind runs
    real(src, dst)
staging._move = move
from diffam.cli.runner import run_from_settings
sys.exit(run_from_settings(json.loads(sys.argv[1])))
"""


def test_process_killed_during_the_swap(first_result, tmp_path):
    out = _copy(first_result, tmp_path)
    settings = settings_for(out, overwrite=True, phantom={"levels": ["L1", "L2"]})
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run([sys.executable, "-c", "import json\n" + KILL_DURING_SWAP,
                           json.dumps(settings)], env=env, capture_output=True, text=True, encoding="utf-8", errors="replace",
                          timeout=600)
    assert proc.returncode == 137, proc.stderr
    assert not (out / "report.json").exists()  # visibly unfinished
    assert [p for p in out.iterdir() if p.name.startswith(".staging-")]
    # a batch run (no overwrite) does not take it for finished
    assert "incomplete" in _done_state(Job("builtin:phantom", out))
    assert run_from_settings(settings_for(out)) == BAD_SETTINGS
    # overwrite=true cleans the dead run's staging folder and redoes it
    assert run_from_settings(settings) == OK
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    assert _done_state(Job("builtin:phantom", out)) == "done"
    assert sorted(p.name for p in (out / "meshes").iterdir()) == ["L1.ply", "L2.ply"]


def test_a_file_listed_in_the_report_but_missing_is_not_done(tmp_path):
    out = tmp_path / "out"
    (out / "meshes").mkdir(parents=True)
    (out / "labels.nii.gz").write_bytes(b"")
    (out / "meshes" / "L1.ply").write_bytes(b"")
    report = {"inputs": {"scan": "builtin:phantom", "scan_path": "builtin:phantom"},
              "completed": True,
              "files": {"labels": "labels.nii.gz", "mesh_L1": "meshes/L1.ply",
                        "mesh_L2": "meshes/L2.ply"}}
    (out / "report.json").write_text(json.dumps(report))
    state = _done_state(Job("builtin:phantom", out))
    assert "inconsistent" in state and "L2.ply" in state
    (out / "meshes" / "L2.ply").write_bytes(b"")
    assert _done_state(Job("builtin:phantom", out)) == "done"
