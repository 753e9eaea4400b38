#!/usr/bin/env python
"""Time per DiffAM iteration, split into stages, for 5 lumbar vertebrae.

Fits the shipped lumbar template (L1-L5) to a synthetic phantom and reports
the mean time of each stage of an iteration (sampling, signed distance,
losses, backward, update) after a warm-up, plus the projected time of the
paper's 3,000 iterations against the 5-minute target (the authors needed
about an hour per scan on an RTX 3090).

    python benchmarks/bench_pipeline.py [--iterations 60] [--device cpu] [--points 10000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from diffam.authoring.phantom import PhantomConfig, make_phantom
from diffam.core.config import SegmentationConfig
from diffam.core.template import load_template
from diffam.fit.interpolation import VolumeSampler
from diffam.fit.model import SpineFit
from diffam.fit.roi import processing_volume

PAPER_ITERATIONS = 3000
TARGET_SECONDS = 300.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=60, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--points", type=int, default=10000, help="N = M sample points")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--hidden", type=int, default=0, help="appearance MLP width (0: config)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    tick = time.perf_counter()
    template = load_template("lumbar")
    levels = ("L1", "L2", "L3", "L4", "L5")
    phantom = make_phantom(template, PhantomConfig(levels=levels, spacing_mm=(1.5, 1.5, 1.5)))
    print(f"phantom: {time.perf_counter() - tick:.1f} s")

    config = SegmentationConfig(device=args.device)
    config.optim.num_image_points = config.optim.num_surface_points = args.points
    if args.hidden:
        config.appearance.hidden = args.hidden
    chosen = template.subset(list(levels))
    target = np.stack([phantom.centroids[v.verse_id] for v in chosen.vertebrae])
    lo = np.concatenate([m[0] for m in phantom.meshes]).min(0) - 40
    hi = np.concatenate([m[0] for m in phantom.meshes]).max(0) + 40
    roi = processing_volume(phantom.image, lo, hi, config.optim.processing_spacing_mm)
    sampler = VolumeSampler.from_volume(roi, outside_value=float(np.median(roi.array)),
                                        sigma_step_mm=0.16, device=device)
    tick = time.perf_counter()
    fit = SpineFit(sampler, chosen, target, config, device)
    print(f"setup (eigenbasis, BVHs, JIT warm caches): {time.perf_counter() - tick:.1f} s")
    tick = time.perf_counter()
    for _ in range(args.warmup):
        fit.step()
    print(f"warm-up ({args.warmup} iterations, includes any compilation): "
          f"{time.perf_counter() - tick:.1f} s")

    fit.time_stages = True
    fit.stage_seconds = {}
    tick = time.perf_counter()
    for _ in range(args.iterations):
        fit.step()
    per_iteration = (time.perf_counter() - tick) / args.iterations
    faces = fit.packed_faces.shape[0]
    print(f"\n5 vertebrae, {faces} faces, N = M = {args.points} points, device {device}, "
          f"torch threads {torch.get_num_threads()}\n")
    print("| stage | ms / iteration | share |")
    print("|---|---:|---:|")
    for name, seconds in fit.stage_seconds.items():
        ms = 1000 * seconds / args.iterations
        print(f"| {name} | {ms:.1f} | {100 * ms / (1000 * per_iteration):.0f} % |")
    print(f"| **total** | **{1000 * per_iteration:.1f}** | 100 % |")
    projected = per_iteration * PAPER_ITERATIONS
    verdict = "PASS" if projected < TARGET_SECONDS else "FAIL"
    print(f"\n{PAPER_ITERATIONS} iterations: {projected:.0f} s projected "
          f"(target < {TARGET_SECONDS:.0f} s): {verdict}")


if __name__ == "__main__":
    main()
