"""Every setting is checked before any work (issue case 8): types, ranges, choices.

Hypothesis feeds random values of every type to every option of the config
sections; a value is either accepted (and then builds the typed config) or
refused with a message naming the option, before anything is read or written.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diffam.cli.runner import BAD_SETTINGS, SettingsError, run_from_settings, segmentation_config
from diffam.cli.settings_check import SECTIONS, check_segment_settings

ROOT = Path(__file__).resolve().parents[2]

ANY_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
    st.lists(st.integers(-5, 5), max_size=3), st.lists(st.floats(-2, 2), max_size=3),
)
OPTIONS = [(section, f.name) for section, cls in SECTIONS.items()
           for f in dataclasses.fields(cls)]


def test_defaults_pass():
    check_segment_settings({"scan": "builtin:phantom", "output_dir": "x"})


@settings(max_examples=300, deadline=None)
@given(option=st.sampled_from(OPTIONS), value=ANY_VALUE)
def test_any_value_is_accepted_as_typed_or_refused_by_name(option, value):
    section, key = option
    user = {"scan": "ct.nii.gz", "output_dir": "out", section: {key: value}}
    try:
        check_segment_settings(user)
    except SettingsError as error:
        assert f"{section}.{key}" in str(error)
        return
    config = segmentation_config(user)
    got = getattr(getattr(config, section), key)
    assert got is None or not isinstance(got, str) or key in (
        "labels", "format", "mesh_format", "activation", "dicom_seg", "method")


@pytest.mark.parametrize("override, expected", [
    ({"optim": {"iterations": 0}}, r"optim.iterations=0: must be >= 1"),
    ({"optim": {"iterations": -5}}, r"optim.iterations=-5"),
    ({"optim": {"iterations": "abc"}}, r"optim.iterations='abc'.*whole number"),
    ({"optim": {"num_image_points": 0}}, r"optim.num_image_points=0"),
    ({"export": {"labels": "nnunet"}}, r"export.labels='nnunet': must be one of verse, "),
    ({"export": {"format": "png"}}, r"export.format='png': must be one of auto, nii.gz"),
    ({"export": {"mesh_format": "foo"}}, r"export.mesh_format='foo': must be one of ply"),
    ({"optim": {"lr": float("nan")}}, r"optim.lr=nan: must be a finite number"),
    ({"optim": {"betas": [0.9]}}, r"optim.betas.*2 values"),
    ({"export": {"meshes": "yes"}}, r"export.meshes='yes'.*true or false"),
    ({"overwrite": "yes"}, r"overwrite='yes'.*true or false"),
    ({"device": "gpu"}, r"device='gpu': must be auto, cpu, cuda"),
    ({"seed": -1}, r"seed=-1"),
    ({"optim": {"bogus": 1}}, r"optim.bogus is not an option; valid: .*iterations"),
    ({"template": {"name": "spine", "levels": ["L9"]}}, r"not vertebra levels"),
    ({"shape": {"initial_scale_range": [1.3, 0.8]}}, r"must not exceed"),
    ({"template": {"name": "neck"}}, r"template.name='neck': no such template; valid: .*spine"),
    ({"centroids": "/nonexistent/c.csv"}, r"centroids=/nonexistent/c.csv does not exist"),
])
def test_bad_setting_is_refused_before_any_work(tmp_path, override, expected, caplog):
    import re

    out = tmp_path / "out"
    user = {"scan": "builtin:phantom", "output_dir": str(out), **override}
    assert run_from_settings(user) == BAD_SETTINGS
    assert not out.exists()  # nothing was made
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert re.search(expected, messages), messages


def test_every_problem_is_listed_at_once():
    with pytest.raises(SettingsError) as error:
        check_segment_settings({"optim": {"iterations": 0, "num_image_points": -1},
                                "export": {"mesh_format": "foo"}})
    text = str(error.value)
    assert "optim.iterations" in text and "optim.num_image_points" in text
    assert "export.mesh_format" in text


@pytest.mark.slow
def test_script_exits_2_without_traceback_for_a_type_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "segment.py"), "scan=builtin:phantom",
         f"output_dir={tmp_path / 'out'}", "optim.iterations=abc"],
        cwd=tmp_path, capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=300,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    assert "Traceback" not in text and "optim.iterations='abc'" in text
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["segment.log"]  # the log, no result
    assert not (tmp_path / "outputs").exists()  # no Hydra folder in the working folder


def test_run_dir_follows_output_dir():
    from diffam.cli.segment import run_dir_follows_output_dir

    assert run_dir_follows_output_dir(["scan=a", "output_dir=/tmp/x"]) == [
        "hydra.run.dir='/tmp/x'", "hydra.output_subdir=null"]
    assert run_dir_follows_output_dir(["-m", "scan=a,b", "output_dir=/tmp/x"]) == []
    assert run_dir_follows_output_dir(["scan=a"]) == []
    assert run_dir_follows_output_dir(["output_dir=/tmp/x", "hydra.run.dir=y"]) == []
    assert run_dir_follows_output_dir(["output_dir=/proc/1/nope"]) == []  # left to the run


def test_a_numeric_path_is_taken_as_a_path(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "12345").mkdir()  # a DICOM folder named by its accession number
    assert run_from_settings({"scan": 12345, "output_dir": str(tmp_path / "out")}) == 1
    assert "folder 12345 is empty" in caplog.text  # read as a path, not refused as a type
