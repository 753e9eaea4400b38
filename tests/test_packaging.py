"""What a wheel carries: every config folder and the templates, and the console commands."""

from __future__ import annotations

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_every_config_folder_travels_with_the_wheel():
    data_files = _pyproject()["tool"]["setuptools"]["data-files"]
    shipped = {pattern for patterns in data_files.values() for pattern in patterns}
    folders = {p.parent for p in (ROOT / "configs").rglob("*.yaml")}
    for folder in folders:
        pattern = f"{folder.relative_to(ROOT).as_posix()}/*.yaml"
        assert pattern in shipped, f"add {pattern} to [tool.setuptools.data-files]"
    assert "templates/*.npz" in shipped


def test_console_commands_point_at_existing_mains():
    import importlib

    for command, target in _pyproject()["project"]["scripts"].items():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), command
        shim = ROOT / "scripts" / f"{command.removeprefix('diffam-').replace('-', '_')}.py"
        assert shim.exists(), f"{command} has no scripts/ shim"
