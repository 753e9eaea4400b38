"""The sphere-to-cube demonstration runs, lowers its loss and writes its frames."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sphere_to_cube.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("sphere_to_cube", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_sphere_to_cube_short_run(example, tmp_path):
    result = example.main(["--steps", "30", "--points", "4000", "--seed", "1",
                           "--output-dir", str(tmp_path), "--frames", "3", "--log-every", "10"])

    assert len(result.losses) == 31
    first, last = sum(result.losses[:3]) / 3, sum(result.losses[-3:]) / 3
    assert last < 0.2 * first, (first, last)
    assert result.final.rms_sdf_error < 0.5 * result.initial.rms_sdf_error
    assert result.final.chamfer < 0.5 * result.initial.chamfer

    frames = sorted(tmp_path.glob("*.png"))
    assert [p.name for p in frames] == [p.name for p in result.frames]
    assert len(frames) == 3
    assert all(p.stat().st_size > 1000 and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
               for p in frames)


def test_frame_steps_cover_the_run(example):
    assert example.frame_steps(300, 5) == [0, 4, 17, 72, 300]
    assert example.frame_steps(30, 1) == [30]
    assert example.frame_steps(0, 5) == [0]


def test_sample_points_split(example):
    import torch

    vertices, faces = example.primitives.icosphere(2)
    generator = torch.Generator().manual_seed(0)
    points = example.sample_points(vertices, faces, 1001, generator)
    assert points.shape == (1001, 3)
    assert points.dtype == vertices.dtype
    assert bool((points.abs() <= example.SAMPLE_HALF_EXTENT + 0.5).all())
