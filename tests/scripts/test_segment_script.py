"""scripts/segment.py as a user runs it: --help, bad input, Ctrl-C and resume.

Every bad input must end with a clear one-line message and a non-zero exit
status, without a Python traceback. The inputs are small synthetic files in
``tmp_path``; no test here fits for long (the fits use a handful of
iterations and 500 sample points).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "segment.py"
QUICK = [
    "optim.iterations=2",
    "optim.num_image_points=500",
    "optim.num_surface_points=500",
    "device=cpu",
    "export.qc_images=false",
]


def _env() -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "PYTHONIOENCODING": "utf-8",
    }
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    return env


def run_script(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        encoding="utf-8",
    )


def _error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    text = proc.stdout + proc.stderr
    return [line for line in text.splitlines() if "[ERROR]" in line]


def assert_clean_failure(proc: subprocess.CompletedProcess, pattern: str) -> str:
    """Non-zero exit, no traceback, one ERROR line matching ``pattern``; returns that line."""
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, text
    assert "Traceback" not in text, text
    errors = _error_lines(proc)
    assert len(errors) == 1, text
    assert re.search(pattern, errors[0]), errors[0]
    return errors[0]


def _write(volume: np.ndarray, path: Path, spacing=None) -> Path:
    image = sitk.GetImageFromArray(volume, isVector=False)
    if spacing is not None:
        image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))
    return path


def _soft_tissue_ct(path: Path) -> Path:
    """A 3D 'CT' of soft tissue only (40 HU): no bone anywhere."""
    return _write(np.full((40, 40, 40), 40, np.int16), path, (2.0, 2.0, 2.0))


def _centroids_csv(path: Path, points: dict[str, tuple[float, float, float]]) -> Path:
    path.write_text(
        "label,x,y,z\n" + "".join(f"{k},{x},{y},{z}\n" for k, (x, y, z) in points.items())
    )
    return path


# ---------------------------------------------------------------------- --help, --cfg job
def _leaf_keys(tree, prefix="") -> list[str]:
    if isinstance(tree, dict):
        return [k for name, value in tree.items() for k in _leaf_keys(value, f"{prefix}{name}.")]
    return [prefix.rstrip(".")]


def test_help_lists_every_option_with_an_explanation(tmp_path):
    import yaml

    job = run_script("--cfg", "job", cwd=tmp_path)
    assert job.returncode == 0, job.stderr
    keys = _leaf_keys(yaml.safe_load(job.stdout))
    assert "optim.iterations" in keys and "export.format" in keys
    helped = run_script("optim=fast", "--help", cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    lines = helped.stdout.splitlines()
    for key in keys:
        line = next((x for x in lines if x.strip().startswith(f"{key}=")), None)
        assert line is not None, f"--help does not list {key}"
        explanation = line.strip().split("    ", 1)
        assert len(explanation) == 2 and len(explanation[1].split()) >= 2, line
    # Values are those of the composed config, overrides included.
    assert any(x.strip().startswith("optim.iterations=300 ") for x in lines)
    assert "resume=true" in helped.stdout  # how to continue after Ctrl-C


# ---------------------------------------------------------------------- bad input
def test_missing_scan(tmp_path):
    proc = run_script(
        f"scan={tmp_path / 'nope.nii.gz'}", f"output_dir={tmp_path / 'out'}", *QUICK, cwd=tmp_path
    )
    assert_clean_failure(proc, r"does not exist")


def test_not_an_image(tmp_path):
    fake = tmp_path / "notes.nii.gz"
    fake.write_text("this is not an image\n", encoding="utf-8")
    proc = run_script(f"scan={fake}", f"output_dir={tmp_path / 'out'}", *QUICK, cwd=tmp_path)
    assert_clean_failure(proc, r"not a readable image")


def test_2d_image(tmp_path):
    path = _write(np.zeros((64, 64), np.int16), tmp_path / "slice.nii.gz")
    proc = run_script(f"scan={path}", f"output_dir={tmp_path / 'out'}", *QUICK, cwd=tmp_path)
    assert_clean_failure(proc, r"2D image")


def test_4d_image(tmp_path):
    image = sitk.Image([8, 8, 8, 3], sitk.sitkInt16)
    path = tmp_path / "series4d.nii.gz"
    sitk.WriteImage(image, str(path))
    proc = run_script(f"scan={path}", f"output_dir={tmp_path / 'out'}", *QUICK, cwd=tmp_path)
    assert_clean_failure(proc, r"4 dimensions")


def test_bad_level_hint_is_refused_before_any_work(tmp_path):
    """Even where the hint would go unused (the phantom brings its centroids)."""
    out = tmp_path / "out"
    proc = run_script(
        "scan=builtin:phantom", "levels.lowest=Q9", f"output_dir={out}", *QUICK, cwd=tmp_path
    )
    assert_clean_failure(proc, r"levels\.lowest='Q9'.*unknown vertebra level")
    # only the log of the refusal (Hydra logs into output_dir): no result, no phantom
    assert not out.exists() or [p.name for p in out.iterdir()] == ["segment.log"]


def test_centroids_outside_the_image(tmp_path):
    scan = _soft_tissue_ct(tmp_path / "ct.nii.gz")
    csv = _centroids_csv(tmp_path / "c.csv", {"L1": (500.0, 500.0, 500.0)})
    proc = run_script(
        f"scan={scan}", f"centroids={csv}", f"output_dir={tmp_path / 'out'}", *QUICK, cwd=tmp_path
    )
    assert_clean_failure(proc, r"(?i)outside")


def test_scan_with_no_bone(tmp_path):
    scan = _soft_tissue_ct(tmp_path / "ct.nii.gz")
    csv = _centroids_csv(tmp_path / "c.csv", {"L1": (40.0, 40.0, 30.0), "L2": (40.0, 40.0, 50.0)})
    proc = run_script(
        f"scan={scan}", f"centroids={csv}", f"output_dir={tmp_path / 'out'}", *QUICK, cwd=tmp_path
    )
    assert_clean_failure(proc, r"no bone near the centroids")


def test_existing_output_is_refused_unless_overwrite(tmp_path):
    scan = _soft_tissue_ct(tmp_path / "ct.nii.gz")
    csv = _centroids_csv(tmp_path / "c.csv", {"L1": (40.0, 40.0, 40.0)})
    out = tmp_path / "out"
    out.mkdir()
    (out / "labels.nii.gz").write_bytes(b"an earlier result")
    proc = run_script(f"scan={scan}", f"centroids={csv}", f"output_dir={out}", *QUICK, cwd=tmp_path)
    assert_clean_failure(proc, r"exists.*overwrite=true")
    assert (out / "labels.nii.gz").read_bytes() == b"an earlier result"
    # With overwrite=true the run goes past that check (and stops at the next problem).
    proc = run_script(
        f"scan={scan}",
        f"centroids={csv}",
        f"output_dir={out}",
        "overwrite=true",
        *QUICK,
        cwd=tmp_path,
    )
    assert_clean_failure(proc, r"no bone")


def test_unwritable_output_folder(tmp_path):
    scan = _soft_tissue_ct(tmp_path / "ct.nii.gz")
    blocker = tmp_path / "a_file"
    blocker.write_text("x", encoding="utf-8")
    proc = run_script(f"scan={scan}", f"output_dir={blocker / 'out'}", *QUICK, cwd=tmp_path)
    assert_clean_failure(proc, r"cannot create output folder")
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        proc = run_script(f"scan={scan}", f"output_dir={locked / 'out'}", *QUICK, cwd=tmp_path)
        assert_clean_failure(proc, r"output folder")


# ---------------------------------------------------------------------- Ctrl-C and resume
class _Reader(threading.Thread):
    """Collects a subprocess's output (tqdm writes with carriage returns, not lines)."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream, self.chunks = stream, []

    def run(self):
        while True:
            data = os.read(self.stream.fileno(), 4096)
            if not data:
                return
            self.chunks.append(data.decode("utf-8", "replace"))

    @property
    def text(self) -> str:
        return "".join(self.chunks)


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_resume_completes(tmp_path):
    out = tmp_path / "out"
    iterations = 60
    args = [
        sys.executable,
        str(SCRIPT),
        "scan=builtin:phantom",
        "optim=fast",
        f"optim.iterations={iterations}",
        "optim.num_image_points=500",
        "optim.num_surface_points=500",
        "device=cpu",
        f"output_dir={out}",
        "phantom.spacing_mm=2.0",
        "phantom.levels=[L1,L2]",
    ]
    proc = subprocess.Popen(
        args, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    reader = _Reader(proc.stdout)
    reader.start()
    deadline = time.time() + 300
    progress = re.compile(rf"(\d+)/{iterations} ")
    while time.time() < deadline and proc.poll() is None:
        done = [int(n) for n in progress.findall(reader.text)]
        if done and max(done) >= 3:
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("the fit did not start in time:\n" + reader.text)
    proc.wait(timeout=300)
    reader.join(timeout=10)
    text = reader.text
    assert proc.returncode == 130, text  # stopped by the user
    assert "Traceback" not in text, text
    assert "stopping after this iteration" in text  # the warning of the first Ctrl-C
    assert re.search(r"stopped at iteration \d+ of 60.*resume=true", text), text
    assert (out / "checkpoint.pt").is_file()
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    stopped_at = report["iterations"]
    assert report["completed"] is False and 3 <= stopped_at < iterations

    resumed = subprocess.run(
        [*args, "resume=true"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
        encoding="utf-8",
    )
    text = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, text
    assert f"at iteration {stopped_at}" in text  # "resumed from ... at iteration N"
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["completed"] is True and report["iterations"] == iterations
    assert not (out / "checkpoint.pt").exists()
    assert (out / "qc" / "losses.png").is_file()
