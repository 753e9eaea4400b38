"""Smoke test of the benchmark: ``bench_sdf.py --quick`` runs and prints its table.

Peers are optional: the run must succeed whichever of them are installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks" / "bench_sdf.py"


def test_bench_quick_prints_table(tmp_path):
    report = tmp_path / "bench.md"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    completed = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--meshes", "sphere,bumpy",
         "--output", str(report)],
        cwd=tmp_path, env=env, capture_output=True, text=True, encoding="utf-8", timeout=240,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    out = completed.stdout
    assert "| mesh | points | method | build ms | query ms | points/s |" in out
    for method in ("diffsd signed", "diffsd unsigned", "diffsd backward", "diffsd BVH build",
                   "diffsd BVH refit", "naive O(PF) torch"):
        assert method in out, method
    assert "| sphere | 1,000 | diffsd signed" in out
    for target in ("forward >= 2x", "one step", "backward <= 20 %"):
        assert any(line.split(" ", 1)[0] in ("PASS", "FAIL", "SKIP") and target in line
                   for line in out.splitlines()), target
    assert report.read_text(encoding="utf-8").startswith("## diffsd signed distance benchmark")


def test_bench_runs_without_peers(tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    completed = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--meshes", "torus", "--sizes", "500",
         "--peers", "none", "--no-cold-compile", "--plot", str(tmp_path / "memory.png")],
        cwd=tmp_path, env=env, capture_output=True, text=True, encoding="utf-8", timeout=240,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "| torus | 500 | diffsd signed" in completed.stdout
    assert "SKIP forward >= 2x the fastest peer: no peer measured" in completed.stdout
    assert (tmp_path / "memory.png").read_bytes()[:4] == b"\x89PNG"


def test_implementations_are_alternated_in_rounds_after_a_warm_up(monkeypatch):
    """The runner times implementations in rounds (each called once per round,
    the order rotated), after one warm-up call each, so that a slow spell of
    a shared machine is not charged to whichever was being measured."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from bench_sdf import measure_alternating

    calls = []
    functions = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    timings = measure_alternating(functions, budget=0.0, min_rounds=3, max_rounds=3)
    assert calls == list("abc") + list("abc") + list("bca") + list("cab")
    assert {name: t.repeats for name, t in timings.items()} == {"a": 3, "b": 3, "c": 3}


def test_rounds_scale_with_the_call_time(monkeypatch):
    """Calls far under the budget get the most rounds (their medians need
    the samples), calls that spend it early the fewest."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import time

    from bench_sdf import MAX_ROUNDS, MIN_ROUNDS, measure_alternating

    budget = 0.02
    quick = measure_alternating({"a": lambda: None, "b": lambda: None}, budget=budget)
    assert {t.repeats for t in quick.values()} == {MAX_ROUNDS}
    slow = measure_alternating({"a": lambda: time.sleep(budget / 2),
                                "b": lambda: time.sleep(budget / 2)}, budget=budget)
    assert {t.repeats for t in slow.values()} == {MIN_ROUNDS}
    assert MIN_ROUNDS < MAX_ROUNDS


def test_the_step_is_timed_in_rounds_with_the_peers_build_and_forward(monkeypatch):
    """The step target compares diffsd's step with a peer's build + forward:
    both are timed in the same alternating rounds, each peer call building
    its structure afresh."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import bench_sdf
    import numpy as np
    import torch

    import diffsd

    vertices, faces = diffsd.primitives.icosphere(1)
    points = torch.rand(50, 3, dtype=torch.float64)
    calls = []

    class Peer:
        label = "fake"

        @staticmethod
        def prepare_points(p):
            return p

        @staticmethod
        def query(state, prepared):
            calls.append(("query", state, prepared.dtype))

    def build():
        calls.append("build")
        return "state"

    alternated = {}

    def fake_alternating(functions, **_):
        alternated.update(functions)
        for function in functions.values():
            function()
        return {name: bench_sdf.Timing(1.0, 1, [1.0]) for name in functions}

    monkeypatch.setattr(bench_sdf, "measure_alternating", fake_alternating)
    bench = bench_sdf.Benchmark.__new__(bench_sdf.Benchmark)
    bench.started = 0.0
    timings = bench.time_step_against_peers(
        vertices, faces, points, diffsd.MeshBVH(vertices, faces), points,
        [(Peer, None, np.float32, None)], {"fake": build}, budget=0.0)
    assert list(alternated) == [bench_sdf.STEP_LABEL, "fake"]
    assert set(timings) == {bench_sdf.STEP_LABEL, "fake"}
    assert calls == ["build", ("query", "state", np.dtype(np.float32))]
