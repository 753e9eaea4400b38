"""A memory estimate before any work (issue case 5): a scan too large is refused with the fix."""

from __future__ import annotations

import logging

from diffam.cli.runner import FAILED, run_from_settings
from diffam.core import memory
from tests.reliability.test_reading import _header_only


def test_estimate_grows_with_the_scan_and_the_localisation():
    small = memory.estimate_bytes((512, 512, 133), localise=True)
    assert 1.5 * memory.GB < small < 3 * memory.GB  # measured peak: about 2.1 GB
    assert memory.estimate_bytes((512, 512, 133), localise=False) < small
    assert memory.estimate_bytes((1024, 1024, 1000), localise=True) > 40 * memory.GB


def test_large_scan_is_refused_before_reading(tmp_path, monkeypatch, caplog):
    scan = tmp_path / "big.nii"
    scan.write_bytes(_header_only((1024, 1024, 1000)))
    monkeypatch.setattr(memory, "available_bytes", lambda: 10 * memory.GB)
    out = tmp_path / "out"
    caplog.set_level(logging.ERROR)
    assert run_from_settings({"scan": str(scan), "output_dir": str(out)}) == FAILED
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "1024x1024x1000 scan needs about" in text and "10.0 GB available" in text
    assert "give centroids=" in text and "crop" in text and "downsample" in text
    assert not (out / "checkpoint.json").exists()


def test_memory_limit_setting_and_switch(tmp_path, caplog):
    scan = tmp_path / "big.nii"
    scan.write_bytes(_header_only((512, 512, 400)))
    settings = {"scan": str(scan), "output_dir": str(tmp_path / "out"), "memory_limit_gb": 2}
    caplog.set_level(logging.ERROR)
    assert run_from_settings(settings) == FAILED
    assert "memory_limit_gb setting" in caplog.text
    caplog.clear()
    assert run_from_settings({**settings, "memory_check": False}) == FAILED
    assert "truncated" in caplog.text  # went past the estimate to the reading
