#!/usr/bin/env python
"""Re-score label-map refinements on saved fits, in seconds instead of a fit per variant.

``benchmarks/bench_accuracy.py --save-fits --output DIR`` stores each fit's meshes
(the guard neighbours included, as the refinement sees them) in
``DIR/fits/SCAN_CENTROIDS_VARIANT.npz``. This script reads them back with the
scan and its truth (the same scans, cuts and levels as ``bench_accuracy.py``),
computes each fit's nearest-surface field once (cached beside the fits in
``DIR/fields``) and scores every refinement variant on it: Dice per level on the
scan's grid, guards dropped, over the levels that have ground truth.

A variant is ``NAME=field=value[,field=value]`` of :class:`diffam.core.config.RefineConfig`
(``--variant default=`` is RefineConfig as it stands)::

    python benchmarks/refine_saved.py --fits /work/bench/acc7_base \\
        --variant none=method=none --variant default= --variant wide=band_mm=4

Results go to ``--output`` (``results.json``) when given.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_accuracy import SCANS, cut_scan, ground_truth  # noqa: E402

from diffam.core.config import RefineConfig  # noqa: E402
from diffam.core.labels import level_name  # noqa: E402
from diffam.fit.rasterize import nearest_surface_field  # noqa: E402
from diffam.fit.refine import refine_field  # noqa: E402

#: Signed distances are cached this far outside the fitted surfaces, mm (enough
#: for every band a variant may ask for).
CACHE_REACH_MM = 8.0


def parse_variant(text: str) -> tuple[str, RefineConfig]:
    name, _, fields = text.partition("=")
    known = {f.name: f for f in dataclasses.fields(RefineConfig)}
    values = {}
    for item in (f for f in fields.split(",") if f):
        key, _, value = item.partition("=")
        if key not in known:
            raise SystemExit(f"--variant {text!r}: unknown field {key!r} (valid: {sorted(known)})")
        default = getattr(RefineConfig(), key)
        values[key] = (value.lower() in ("1", "true", "yes")) if isinstance(default, bool) \
            else type(default)(value)
    return name, dataclasses.replace(RefineConfig(), **values)


def load_case(fit_path: Path):
    """The scan, truth, levels and saved meshes of one ``SCAN_CENTROIDS_VARIANT.npz``."""
    scan_name, kind = fit_path.stem.split("_")[:2]
    if scan_name == "l3":  # l3_crop: the name holds an underscore
        scan_name, kind = "l3_crop", fit_path.stem.split("_")[2]
    name, _, cut = scan_name.partition("@")
    scan = dataclasses.replace(SCANS[name], name=scan_name, cut=cut)
    image, labels, truth, levels = ground_truth(scan)
    if scan.cut:
        image, labels, truth, levels = cut_scan(image, labels, truth, levels, scan.cut)
    saved = np.load(fit_path)
    meshes = [(v, saved["faces"]) for v in saved["vertices"]]
    values = [int(v) for v in saved["verse_ids"]]
    guards = [int(v) for v in saved["guard_ids"]] if "guard_ids" in saved else []
    return scan_name, kind, image, truth, levels, meshes, values, guards


def field(fit_path: Path, image, meshes, values, cache: Path):
    cached = cache / (fit_path.stem + ".npz")
    if cached.exists() and cached.stat().st_mtime >= fit_path.stat().st_mtime:
        data = np.load(cached)
        return data["owner"], data["distance"]
    owner, distance = nearest_surface_field(meshes, values, image, reach_mm=CACHE_REACH_MM)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cached, owner=owner, distance=distance)
    return owner, distance


def dice_per_level(pred: np.ndarray, truth: np.ndarray, levels) -> dict[str, float]:
    out = {}
    for v in levels:
        p, t = pred == v, truth == v
        total = int(p.sum() + t.sum())
        out[level_name(v)] = 100.0 * 2 * int((p & t).sum()) / total if total else float("nan")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fits", type=Path, required=True,
                        help="the --output folder of bench_accuracy.py --save-fits")
    parser.add_argument("--scans", default="", help="comma list of fit names (file stems) to "
                        "use; all saved fits when empty")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=F=V[,F=V]")
    parser.add_argument("--per-level", action="store_true", help="print Dice per level")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    variants = [parse_variant(v) for v in args.variant or ["none=method=none", "default="]]
    paths = sorted((args.fits / "fits").glob("*.npz"))
    if args.scans:
        wanted = args.scans.split(",")
        paths = [p for p in paths if any(p.stem.startswith(w) for w in wanted)]
    results = []
    for path in paths:
        scan_name, kind, image, truth, levels, meshes, values, guards = load_case(path)
        owner, distance = field(path, image, meshes, values, args.fits / "fields")
        for name, config in variants:
            tick = time.perf_counter()
            if config.method == "none":
                pred = np.where(distance < 0, owner, 0).astype(np.int32)
            else:
                pred = refine_field(image, owner, distance, config)
            seconds = time.perf_counter() - tick
            pred = np.where(np.isin(pred, guards), 0, pred)
            per_level = dice_per_level(pred, truth, levels)
            mean = float(np.nanmean(list(per_level.values())))
            worst = min(per_level, key=per_level.get)
            results.append({"fit": path.stem, "scan": scan_name, "centroids": kind,
                            "variant": name, "config": dataclasses.asdict(config),
                            "mean_dice": mean, "per_level": per_level, "seconds": seconds})
            line = (f"{path.stem:28s} {name:14s} {mean:5.1f}  worst {worst} "
                    f"{per_level[worst]:5.1f}  {seconds:5.1f} s")
            if args.per_level:
                line += "  " + " ".join(f"{k}:{v:.1f}" for k, v in per_level.items())
            print(line, flush=True)
    print()
    names = list(dict.fromkeys(r["variant"] for r in results))
    fits = list(dict.fromkeys(r["fit"] for r in results))
    print("| variant | " + " | ".join(fits) + " |")
    print("|---" * (len(fits) + 1) + "|")
    for name in names:
        cells = {r["fit"]: r["mean_dice"] for r in results if r["variant"] == name}
        print(f"| {name} | " + " | ".join(f"{cells[f]:.1f}" for f in fits) + " |")
    if args.output:
        args.output.mkdir(parents=True, exist_ok=True)
        (args.output / "results.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
