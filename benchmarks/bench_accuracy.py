#!/usr/bin/env python
"""Accuracy on the real labelled scans: Dice and HD95 per level, per segment, worst vertebra.

Scans (``../shared/data/ct``, see ``../shared/data/DATA.md``):

* ``verse005``, ``verse007``, ``verse008``: the VerSe crops (manual labels,
  cut tight to the labels: vertebrae touch the faces of the volume).
* ``chest``: the chest CT over T1-L1 (TotalSegmentator labels; only T1-L1 are
  fitted and scored).
* ``l3_crop``: the 70 mm crop around L3 (L2 and L4 cut by the borders).

Centroids (``--centroids``), made from each scan's own label map:

* ``vertebra``: the centre of mass of each vertebra's voxels
  (:func:`diffam.core.centroids.centroids_from_label_map`).
* ``body``: the centre of the vertebral body, as VerSe ``*_ctd.json`` files
  give it (:func:`diffam.core.body_centre.body_centres_from_label_map`: the
  centroid of the voxels anterior of the spinal canal; 10-15 mm anterior of
  the whole-vertebra centre on these scans).
* ``none``: no centroids; the localiser finds and names the vertebrae (with
  ``levels.lowest`` set to the scan's lowest labelled level).

Each run is :func:`diffam.fit.pipeline.segment` in this process, on the CPU unless
an override says otherwise, with the configuration of ``configs/segment.yaml``
plus the Hydra-style overrides of ``--set`` and of each ``--variant``; Dice and
HD95 come from :func:`diffam.evaluation.evaluate_arrays` on the scan's grid,
over the levels that have ground truth and were fitted.

Run (all three VerSe crops, both centroid kinds, default settings)::

    python benchmarks/bench_accuracy.py

    python benchmarks/bench_accuracy.py --scans verse005,verse007,verse008,chest \\
        --centroids vertebra,body --set optim=fast --set optim.iterations=600 \\
        --variant base= --variant nomask=optim.mask_outside_view=false \\
        --markdown /tmp/bench_accuracy/results.md

Cut scans (the scan made smaller, to test the fit where the scan ends):
``verse005@L4-L5`` is the scan cut to the box of the L4 and L5 labels (no
margin), ``verse005@slab80`` an 80 mm sagittal slab (left-right) centred on
the labelled vertebrae, ``verse005@top9`` the scan cut 9 mm above the lowest
voxel of its highest labelled vertebra (that vertebra mostly out of view).
Dice is scored on the part in view; vertebrae with fewer than 200 voxels in
view are not fitted.

A variant is ``NAME=override[,override...]``; ``--variant base=`` adds none.
``--refine none,likelihood`` scores each fit's label map refined each way
(:mod:`diffam.fit.refine` works on the fitted meshes, so one fit serves all);
the rows are named ``VARIANT+METHOD``.
Results go to ``--output`` (``results.json``, ``results.md``).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from diffam.core.body_centre import body_centres_from_label_map  # noqa: E402
from diffam.core.centroids import centroids_from_label_map  # noqa: E402
from diffam.core.image import read_image  # noqa: E402
from diffam.core.labels import level_name, totalsegmentator_to_verse  # noqa: E402
from diffam.evaluation import evaluate_arrays, summarize  # noqa: E402

SHARED = Path(os.environ.get("DIFFAM_SHARED_DATA", ROOT.parent / "shared" / "data"))


@dataclass
class Scan:
    name: str
    folder: str
    labels: str
    convention: str
    levels: tuple[int, ...] | None = None  # VerSe ids fitted and scored (None: all labelled)
    cut: str = ""  # see cut_scan


SCANS = {
    "verse005": Scan("verse005", "verse005_l1_l5_crop", "labels_verse.nii.gz", "verse"),
    "verse007": Scan("verse007", "verse007_t9_l3_crop", "labels_verse.nii.gz", "verse"),
    "verse008": Scan("verse008", "verse008_t12_l5_crop", "labels_verse.nii.gz", "verse"),
    "chest": Scan("chest", "chest_t1_l2", "labels_totalsegmentator.nii.gz", "totalsegmentator",
                  tuple(range(8, 21))),
    "l3_crop": Scan("l3_crop", "l3_crop", "labels_verse.nii.gz", "verse"),
}


def compose_config(overrides: list[str], output_dir: Path):
    """Typed configuration from ``configs/segment.yaml`` and Hydra-style overrides."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from diffam.cli.runner import segmentation_config

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="segment", overrides=list(overrides))
    cfg.output_dir = str(output_dir)
    settings = OmegaConf.to_container(cfg, resolve=True)
    return segmentation_config(settings), settings


def ground_truth(scan: Scan):
    folder = SHARED / "ct" / scan.folder
    image = read_image(folder / "ct.nii.gz")
    labels = read_image(folder / scan.labels)
    verse = totalsegmentator_to_verse(labels.array) if scan.convention == "totalsegmentator" \
        else np.rint(labels.array).astype(np.int32)
    present = sorted(int(v) for v in np.unique(verse) if 0 < v < 29)
    levels = [v for v in present if scan.levels is None or v in scan.levels]
    verse = np.where(np.isin(verse, levels), verse, 0).astype(np.int32)
    return image, labels, verse, levels


def cut_scan(image, labels, verse, levels, how: str):
    """The scan, label map and truth cut as ``how`` says (see the module docstring)."""
    from diffam.fit.roi import crop_to_world_box

    k, j, i = np.nonzero(verse)
    world = image.index_to_world(np.stack([i, j, k], 1).astype(np.float64))
    lo, hi = np.full(3, -1e6), np.full(3, 1e6)
    if how.startswith("slab"):
        centre = 0.5 * (world[:, 0].min() + world[:, 0].max())
        half = 0.5 * float(how[4:])
        lo[0], hi[0] = centre - half, centre + half
    elif how.startswith("top"):
        top = min(levels)
        z = world[verse[k, j, i] == top, 2]
        hi[2] = z.min() + float(how[3:])
    else:
        from diffam.core.labels import verse_id

        wanted = [verse_id(n) for n in how.split("-")]
        wanted = list(range(min(wanted), max(wanted) + 1))
        sel = np.isin(verse[k, j, i], wanted)
        lo, hi = world[sel].min(0) - 0.01, world[sel].max(0) + 0.01
    cut = crop_to_world_box(image.with_array(verse), lo, hi).array
    image = crop_to_world_box(image, lo, hi)
    labels = crop_to_world_box(labels, lo, hi)
    counts = {v: int((cut == v).sum()) for v in levels}
    levels = [v for v in levels if counts[v] >= 200]
    cut = np.where(np.isin(cut, levels), cut, 0).astype(np.int32)
    return image, labels, cut, levels


def make_centroids(kind: str, labels, convention: str, levels: list[int]):
    if kind == "none":
        return None
    if kind == "vertebra":
        found = centroids_from_label_map(labels, convention)
    elif kind == "body":
        found = body_centres_from_label_map(labels, convention)
    else:
        raise SystemExit(f"--centroids: unknown kind {kind!r} (vertebra, body, none)")
    return {k: v for k, v in found.items() if k in levels}


def run_one(scan: Scan, kind: str, overrides: list[str], output: Path,
            refine_methods: list[str] = (), save_fit: Path | None = None) -> list[dict]:
    """One fit; its label map scored as configured and, for each of ``refine_methods``,
    refined that way instead (the refinement works on the fitted meshes, after the fit).
    ``save_fit``: an ``.npz`` file for the fitted meshes as the refinement saw them
    (vertices, faces, VerSe ids, LPS mm; ``guard_ids``: the guard neighbours among them,
    dropped from the label map after the refinement)."""
    from dataclasses import replace as _replace

    from diffam.fit.pipeline import draw_labels, segment

    image, labels, truth, levels = ground_truth(scan)
    if scan.cut:
        image, labels, truth, levels = cut_scan(image, labels, truth, levels, scan.cut)
    centroids = make_centroids(kind, labels, scan.convention, levels)
    config, settings = compose_config(overrides, output)
    kwargs = {}
    if centroids is not None and "centroids_kind" in inspect.signature(segment).parameters:
        kwargs["centroids_kind"] = kind
    hint = {} if centroids is not None else {"hint_lowest": level_name(max(levels))}
    tick = time.perf_counter()
    result = segment(image, config, centroids=centroids, **hint, **kwargs)
    seconds = time.perf_counter() - tick
    drawn = result.drawn_from
    if save_fit is not None:
        np.savez_compressed(save_fit, vertices=drawn.vertices, faces=drawn.faces,
                            verse_ids=np.asarray(drawn.verse_ids),
                            guard_ids=np.asarray(result.guard_ids, dtype=np.int64))
    predictions = [(config.refine.method, np.asarray(result.labels.array).astype(np.int32))]
    for method in refine_methods:
        if method != config.refine.method:
            predictions.append((method, draw_labels(image, drawn, result.guard_ids,
                                                    _replace(config.refine, method=method))))
    return [score(scan, kind, overrides, image, truth, levels, pred, centroids is not None,
                  seconds, result, config, method) for method, pred in predictions]


def score(scan, kind, overrides, image, truth, levels, pred, given, seconds, result, config,
          refine_method) -> dict:
    if given:
        pred = np.where(np.isin(pred, levels), pred, 0)
    sx, sy, sz = (float(s) for s in image.spacing)
    rows = evaluate_arrays(pred, truth, (sz, sy, sx), tuple(float(o) for o in image.origin),
                           np.asarray(image.direction), case=scan.name)
    per_level = {r.name: {"dice": 100 * r.dice, "hd95": r.hd95_mm, "status": r.status}
                 for r in rows}
    gt_rows = [r for r in rows if r.status in ("matched", "missing")]
    worst = min(gt_rows, key=lambda r: r.dice)
    return {
        "scan": scan.name, "centroids": kind, "overrides": overrides, "refine": refine_method,
        "levels": [level_name(v) for v in levels], "per_level": per_level,
        "summary": summarize(rows),
        "mean_dice": float(np.mean([100 * r.dice for r in gt_rows])),
        "mean_hd95": float(np.nanmean([r.hd95_mm for r in gt_rows])),
        "worst": [worst.name, 100 * worst.dice],
        "seconds": seconds, "fit_seconds": result.timings.get("fit", float("nan")),
        "iterations": result.fit.completed_iterations,
    }


def _f(x, digits=1):
    return "-" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def markdown(results: list[dict], settings_line: str) -> str:
    lines = [f"Settings: {settings_line}", "",
             "| scan | centroids | variant | mean Dice | worst | mean HD95 mm | "
             "thoracic | lumbar | fit s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        seg = {s["segment"]: s for s in r["summary"]}
        lines.append(
            f"| {r['scan']} | {r['centroids']} | {r['variant']} | {_f(r['mean_dice'])} | "
            f"{r['worst'][0]} {_f(r['worst'][1])} | {_f(r['mean_hd95'])} | "
            f"{_f(seg['thoracic']['dice_mean']) if seg['thoracic']['n_gt'] else '-'} | "
            f"{_f(seg['lumbar']['dice_mean']) if seg['lumbar']['n_gt'] else '-'} | "
            f"{r['seconds']:.0f} |")
    lines.append("")
    for scan in dict.fromkeys(r["scan"] for r in results):
        runs = [r for r in results if r["scan"] == scan]
        names = list(dict.fromkeys(n for r in runs for n in r["per_level"]))
        lines += [f"**{scan}**: Dice % (HD95 mm) per level", "",
                  "| level | " + " | ".join(f"{r['centroids']}/{r['variant']}" for r in runs) + " |",
                  "|---" * (len(runs) + 1) + "|"]
        for name in names:
            cells = []
            for r in runs:
                v = r["per_level"].get(name)
                cells.append("-" if v is None else f"{_f(v['dice'])} ({_f(v['hd95'])})")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scans", default="verse005,verse007,verse008",
                        help=f"comma list of {','.join(SCANS)}")
    parser.add_argument("--centroids", default="vertebra,body",
                        help="comma list of vertebra, body, none")
    parser.add_argument("--set", action="append", default=[], metavar="OVERRIDE",
                        help="Hydra-style override for every run (optim=fast, "
                             "optim.iterations=600, device=cpu); repeatable")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=OV[,OV]",
                        help="an ablation: runs every scan with these extra overrides; repeatable")
    parser.add_argument("--refine", default="", metavar="METHODS",
                        help="comma list of refine.method values (none, likelihood) also scored "
                             "on each fit, as variant NAME+METHOD")
    parser.add_argument("--output", type=Path, default=Path("/tmp/bench_accuracy"))
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table here")
    parser.add_argument("--save-fits", action="store_true",
                        help="also save each fit's meshes to OUTPUT/fits/SCAN_CENTROIDS_VARIANT.npz")
    args = parser.parse_args(argv)
    if not (SHARED / "ct").is_dir():
        print(f"shared data not found at {SHARED}: set DIFFAM_SHARED_DATA")
        return 2
    scans = []
    for s in (s for s in args.scans.split(",") if s):
        name, _, cut = s.partition("@")
        scans.append(replace(SCANS[name], name=s, cut=cut))
    kinds = [k for k in args.centroids.split(",") if k]
    variants = []
    for v in args.variant or ["base="]:
        name, _, ovs = v.partition("=")
        variants.append((name, [o for o in ovs.split(",") if o]))
    base = list(args.set)
    if not any(o.startswith("device") for o in base):
        base.append("device=cpu")
    args.output.mkdir(parents=True, exist_ok=True)
    refine_methods = [m for m in args.refine.split(",") if m]
    results = []
    for name, extra in variants:
        for scan in scans:
            for kind in kinds:
                save = None
                if args.save_fits:
                    (args.output / "fits").mkdir(exist_ok=True)
                    save = args.output / "fits" / f"{scan.name}_{kind}_{name}.npz"
                for r in run_one(scan, kind, base + extra, args.output, refine_methods, save):
                    r["variant"] = f"{name}+{r['refine']}" if refine_methods else name
                    results.append(r)
                    print(f"{scan.name:9s} {kind:8s} {r['variant']:10s} mean Dice "
                          f"{r['mean_dice']:5.1f}  worst {r['worst'][0]} {r['worst'][1]:5.1f}  "
                          f"HD95 {r['mean_hd95']:5.1f} mm  {r['seconds']:.0f} s  " + " ".join(
                              f"{k}:{v['dice']:.0f}" for k, v in r["per_level"].items()),
                          flush=True)
    text = markdown(results, " ".join(base))
    print()
    print(text)
    (args.output / "results.json").write_text(json.dumps(results, indent=1, default=str))
    (args.output / "results.md").write_text(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
