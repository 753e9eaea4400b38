"""Experiments on diffsd's CPU performance, outside the kernels (reproducers).

Two measurements, printed as tables:

1. ``wait``: the same calls in child processes with ``OMP_WAIT_POLICY``
   unset (libgomp's default, active spinning) and ``PASSIVE``. Torch and
   Numba's ``omp`` threading layer load two different libgomp copies, whose
   idle threads spin against each other on few cores.
2. ``overhead``: the per-call cost of :func:`diffsd.signed_distance` beyond
   the traversal kernel, for a handful of points (input validation is
   O(V + F) per call even when a BVH is passed).

Usage::

    python benchmarks/exp_diffsd_overheads.py [wait] [overhead]

(A third experiment, Morton-sorting the query points, measured 1.5-3.3x on
the traversal kernels; :meth:`diffsd.MeshBVH.query` now does it itself.)
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

# As the parent process started (importing bench_sdf sets a default later).
WAIT_POLICY = os.environ.get("OMP_WAIT_POLICY", "unset")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sdf import make_meshes, sample_points  # noqa: E402

import diffsd  # noqa: E402
from diffsd.validation import check_faces, check_points  # noqa: E402

NO_MESH_INDEX = torch.zeros(0, dtype=torch.int64)


def median_ms(function, repeats: int = 5) -> float:
    """Median wall time of ``function()`` in ms, after one warm-up call."""
    function()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return 1e3 * statistics.median(samples)


CHILD = r"""
import sys, time, statistics, torch
sys.path.insert(0, sys.argv[1])
import diffsd
from bench_sdf import make_meshes, sample_points
mesh = make_meshes(["sphere"], quick=False)[0]
v = mesh.vertices.float()
p = sample_points(mesh, 10_000, 0).float()
def ms(f, n=9):
    f(); s = []
    for _ in range(n):
        t = time.perf_counter(); f(); s.append(time.perf_counter() - t)
    return 1e3 * statistics.median(s)
bvh = diffsd.MeshBVH(v, mesh.faces)
vv = v.clone().requires_grad_(True)
def step():
    diffsd.signed_distance(vv, mesh.faces, p, bvh=bvh).distance.sum().backward()
print(ms(lambda: diffsd.MeshBVH(v, mesh.faces)), ms(lambda: bvh.refit(v)),
      ms(lambda: diffsd.signed_distance(v, mesh.faces, p, bvh=bvh, refit=False)), ms(step))
"""


def experiment_wait(rounds: int = 3) -> None:
    print("\n### OMP_WAIT_POLICY (icosphere 20,480 faces, 10,000 points, float32; "
          f"medians over {rounds} alternating child processes)\n")
    print("| OMP_WAIT_POLICY | BVH build ms | refit ms | forward ms | refit+fwd+bwd ms |")
    print("|---|---|---|---|---|")
    results: dict[str, list[list[float]]] = {"unset (active)": [], "PASSIVE": []}
    for _ in range(rounds):
        for label in results:
            env = dict(os.environ)
            env.pop("OMP_WAIT_POLICY", None)
            if label == "PASSIVE":
                env["OMP_WAIT_POLICY"] = "PASSIVE"
            out = subprocess.run([sys.executable, "-c", CHILD, str(Path(__file__).parent)],
                                 env=env, capture_output=True, text=True, check=True).stdout
            results[label].append([float(x) for x in out.split()])
    for label, runs in results.items():
        cells = [statistics.median(r[k] for r in runs) for k in range(4)]
        print(f"| {label} | " + " | ".join(f"{c:.1f}" for c in cells) + " |", flush=True)


def experiment_overhead() -> None:
    print("\n### Per-call overhead of signed_distance (10 points, prebuilt BVH, refit=False)\n")
    print("| mesh | faces | kernel ms | signed_distance ms | check_points(vertices) ms | "
          "check_faces ms |")
    print("|---|---|---|---|---|---|")
    for mesh in make_meshes(["sphere", "bumpy"], quick=False):
        v = mesh.vertices.float()
        f = mesh.faces
        bvh = diffsd.MeshBVH(v, f)
        p = sample_points(mesh, 10, 0).float()
        partial = functools.partial
        kernel = median_ms(partial(bvh.query, p, NO_MESH_INDEX, closest=True, winding=True,
                                   beta=2.0), 21)
        call = median_ms(partial(diffsd.signed_distance, v, f, p, bvh=bvh, refit=False), 21)
        points_check = median_ms(partial(check_points, "vertices", v), 21)
        faces_check = median_ms(partial(check_faces, f, v.shape[0]), 21)
        print(f"| {mesh.name} | {mesh.num_faces:,} | {kernel:.2f} | {call:.2f} | "
              f"{points_check:.2f} | {faces_check:.2f} |", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiments", nargs="*",
                        help="among wait, overhead (default: both)")
    args = parser.parse_args(argv)
    unknown = set(args.experiments) - {"wait", "overhead"}
    if unknown:
        parser.error(f"unknown experiments {sorted(unknown)}; choose among wait, overhead")
    print(f"torch threads {torch.get_num_threads()}, OMP_WAIT_POLICY={WAIT_POLICY}, "
          f"load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    for name in args.experiments or ["wait", "overhead"]:
        {"wait": experiment_wait, "overhead": experiment_overhead}[name]()


if __name__ == "__main__":
    main()
