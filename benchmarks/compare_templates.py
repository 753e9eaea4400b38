#!/usr/bin/env python
"""Compare spine templates on a synthetic phantom and a real chest CT: Dice per level.

Three template sets are fitted with the same settings:

* (a) ``spine``: the shipped level-specific template (``templates/spine.npz``).
* (b) ``L3 copied``: the paper's template, one lumbar vertebra stacked along the
  spine: the shipped L3 mesh copied to every level of ``spine``, placed in each
  level's local frame (origin at the body centre, axes along the body), so the
  copies sit where the shipped levels sit. ``--b-scale size`` also scales each
  copy to the shipped level's volume (not done by default: the paper copies one
  vertebra).
* (c) ``from data``: a set built beforehand by ``scripts/build_template.py``
  (``--data-template``); levels it lacks are taken from the shipped ``spine``
  set, and the script says which.

on two scans:

* ``phantom``: a synthetic L1-L3 phantom with exact ground truth, made once from
  the shipped ``spine`` set as ``scan=builtin:phantom`` makes it (1.5 mm, seed 0),
  and written to a file. (``scan=builtin:phantom`` itself builds the phantom
  from the template being fitted, so (b) and (c) would each get another ground
  truth.) Being made from (a), the phantom favours (a).
* ``chest``: ``../shared/data/ct/chest_t1_l2/ct.nii.gz`` with centroids from its
  TotalSegmentator label map (``scripts/make_centroids.py``), as in the README.

Every run is ``scripts/segment.py`` in a subprocess (``device=cpu seed=0``,
its log in the run's folder); Dice per level comes from
:mod:`diffam.evaluation` against the ground truth, restricted to the levels
the run fitted (``levels=predicted``). A run whose ``labels.nii.gz`` and wall
time already exist in ``--output`` is reused unless ``--overwrite``.

It prints the settings, the templates used (and any fallback levels), one
markdown table per scan (rows: levels, columns: templates, Dice in %, then the
mean over the levels, the mean over T1-T12 when there are thoracic levels,
and the wall time of each run), and writes ``results.md`` and
``results.json`` into ``--output``.

Build (c) first, e.g. from the meshes in ``../shared/data/meshes`` (the
``lumbar_mean`` meshes have +x anterior, +z superior: rotate them to LPS
first, x_L = y, y_P = -x, z_S = z, and write the copies under /tmp, never into
the repository)::

    python scripts/build_template.py \\
        --mesh-glob 'L1=../shared/data/meshes/l1_subjects/sub-verse*_segment_20.ply' \\
        --mesh L2=/tmp/lumbar_mean_lps/mean_L2.ply --mesh L3=/tmp/lumbar_mean_lps/mean_L3.ply \\
        --mesh L4=/tmp/lumbar_mean_lps/mean_L4.ply --mesh L5=/tmp/lumbar_mean_lps/mean_L5.ply \\
        --output /tmp/diffam_templates/from_data_l1_l5.npz

Run::

    python benchmarks/compare_templates.py --data-template /tmp/diffam_templates/from_data_l1_l5.npz \\
        [--scans phantom,chest] [--iterations phantom=300,chest=300] \\
        [--points phantom=4000,chest=6000] [--output /tmp/diffam_compare_templates] \\
        [--b-scale none|size] [--overwrite]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffam.authoring.phantom import PhantomConfig, make_phantom
from diffam.core.centroids import write_centroids_csv
from diffam.core.image import write_image
from diffam.core.labels import VERSE_IDS
from diffam.core.template import TemplateSet, Vertebra, load_template
from diffam.core.template_checks import TemplateError
from diffam.evaluation import attempted_levels, evaluate_files, restrict_to_attempted

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = "spine"
COPIED_LEVEL = "L3"
PHANTOM_LEVELS = ("L1", "L2", "L3")
PHANTOM_SPACING_MM = 1.5
THORACIC = [f"T{i}" for i in range(1, 13)]
DEFAULT_ITERATIONS = {"phantom": 300, "chest": 300}
DEFAULT_POINTS = {"phantom": 4000, "chest": 6000}
TITLES = {"a": "(a) spine", "b": "(b) L3 copied", "c": "(c) from data"}


@dataclass
class Scan:
    name: str
    ct: Path
    centroids: Path
    truth: Path
    truth_labels: str  # label convention of the ground truth
    optim: str  # optim config group of scripts/segment.py
    iterations: int
    points: int


# ---------------------------------------------------------------------- templates
def copied_template(shipped: TemplateSet, scale: str = "none") -> TemplateSet:
    """(b): the shipped L3 in the local frame of every shipped level."""
    source = shipped.by_level(COPIED_LEVEL)
    local = source.local_vertices()
    vertebrae = []
    for v in shipped.vertebrae:
        if v.frame is None:
            raise TemplateError(f"{shipped.name}: level {v.level} has no frame to place L3 in")
        s = (v.volume() / source.volume()) ** (1 / 3) if scale == "size" else 1.0
        vertices = s * local @ v.frame[:3, :3].T + v.frame[:3, 3]
        vertebrae.append(
            Vertebra(v.level, v.verse_id, vertices, source.faces.copy(), v.frame.copy())
        )
    template = TemplateSet(
        name=f"{shipped.name}_{COPIED_LEVEL}_copied",
        vertebrae=vertebrae,
        description=f"the {shipped.name} {COPIED_LEVEL} mesh at every level"
        + (" (scaled to each level's volume)" if scale == "size" else ""),
        source=f"benchmarks/compare_templates.py from template {shipped.name!r}",
    )
    template.validate()
    return template


def data_template(path: Path, shipped: TemplateSet) -> tuple[TemplateSet, list[str]]:
    """(c): the set at ``path``, plus shipped meshes for the levels it lacks (returned)."""
    data = load_template(path)
    if not np.array_equal(data.faces, shipped.faces):
        raise TemplateError(
            f"{path}: its connectivity is not the shipped {shipped.name!r} one, so shipped "
            "levels cannot fill in for missing ones (build it with --reference spine)"
        )
    fallback = [lv for lv in shipped.levels if lv not in data.levels]
    if not fallback:
        return data, []
    order = [lv for lv in VERSE_IDS if lv in data.levels or lv in shipped.levels]
    vertebrae = []
    for level in order:
        v = data.by_level(level) if level in data.levels else shipped.by_level(level)
        frame = None if v.frame is None else v.frame.copy()
        vertebrae.append(Vertebra(v.level, v.verse_id, v.vertices.copy(), v.faces.copy(), frame))
    merged = TemplateSet(  # no stored eigenbasis: it belonged to the data set's levels only
        name=f"{data.name}+{shipped.name}",
        vertebrae=vertebrae,
        description=f"{data.levels} from {path}; {fallback} from the shipped {shipped.name!r}",
        source=f"{data.source}; benchmarks/compare_templates.py",
    )
    merged.validate()
    return merged, fallback


def level_span(levels: list[str]) -> str:
    """``C1-T12, L2`` style summary of levels in cranio-caudal order."""
    order = list(VERSE_IDS)
    index = sorted(order.index(lv) for lv in levels)
    runs, start = [], index[0]
    for a, b in zip(index, index[1:] + [None]):
        if b != a + 1:
            runs.append(order[start] if start == a else f"{order[start]}-{order[a]}")
            start = b
    return ", ".join(runs)


# ---------------------------------------------------------------------- scans
def prepare_phantom(folder: Path, iterations: int, points: int) -> Scan:
    folder.mkdir(parents=True, exist_ok=True)
    config = PhantomConfig(levels=PHANTOM_LEVELS, spacing_mm=(PHANTOM_SPACING_MM,) * 3, seed=0)
    phantom = make_phantom(load_template(SHIPPED), config)
    ct, truth = folder / "phantom_ct.nii.gz", folder / "phantom_labels.nii.gz"
    write_image(phantom.image, ct, overwrite=True)
    write_image(phantom.labels, truth, label_map=True, overwrite=True)
    centroids = write_centroids_csv(
        phantom.centroids, folder / "phantom_centroids.csv", overwrite=True
    )
    return Scan("phantom", ct, centroids, truth, "verse", "fast", iterations, points)


def prepare_chest(data_root: Path, folder: Path, iterations: int, points: int) -> Scan:
    source = data_root / "ct" / "chest_t1_l2"
    truth = source / "labels_totalsegmentator.nii.gz"
    if not truth.is_file():
        raise FileNotFoundError(f"chest CT not found: {truth} (see --data-root)")
    folder.mkdir(parents=True, exist_ok=True)
    centroids = folder / "chest_centroids.csv"
    command = [
        sys.executable,
        str(ROOT / "scripts" / "make_centroids.py"),
        f"labels={truth}",
        "convention=totalsegmentator",
        f"output={centroids}",
        "overwrite=true",
    ]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
    return Scan(
        "chest",
        source / "ct.nii.gz",
        centroids,
        truth,
        "totalsegmentator",
        "default",
        iterations,
        points,
    )


# ---------------------------------------------------------------------- runs
def segment(scan: Scan, template: str, run_dir: Path, overwrite: bool) -> dict:
    """Run scripts/segment.py once (or reuse a finished run); wall time and status."""
    labels, record = run_dir / "labels.nii.gz", run_dir / "wall_time.json"
    if labels.exists() and record.exists() and not overwrite:
        return {**json.loads(record.read_text()), "reused": True}
    run_dir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, str(ROOT / "scripts" / "segment.py"),
        f"scan={scan.ct}", f"centroids={scan.centroids}", f"template.name={template}",
        f"optim={scan.optim}", f"optim.iterations={scan.iterations}",
        f"optim.num_image_points={scan.points}", f"optim.num_surface_points={scan.points}",
        "device=cpu", "seed=0", "overwrite=true",
        f"output_dir={run_dir}", f"hydra.run.dir={run_dir / 'hydra'}",
    ]  # fmt: skip
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    start = time.perf_counter()
    with open(run_dir / "segment.log", "w") as log:
        code = subprocess.run(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        ).returncode
    result = {
        "seconds": round(time.perf_counter() - start, 1),
        "returncode": code,
        "command": " ".join(command),
    }
    if code == 0:
        record.write_text(json.dumps(result, indent=1))
    return {**result, "reused": False}


def dice_per_level(labels: Path, scan: Scan) -> dict[str, float]:
    """Dice of every ground-truth level the run fitted (0 when it left no voxel)."""
    case = evaluate_files(labels, scan.truth, pred_labels="verse", gt_labels=scan.truth_labels)
    restrict_to_attempted(case, attempted_levels(labels))
    return {r.name: float(r.dice) for r in case.vertebrae if r.status in ("matched", "missing")}


# ---------------------------------------------------------------------- report
def table(scan: Scan, results: dict[str, dict]) -> str:
    order = list(VERSE_IDS)
    levels = sorted({lv for r in results.values() for lv in r.get("dice", {})}, key=order.index)

    def cell(key: str, values: list[float | None]) -> str:
        if results[key].get("error"):
            return "failed"
        values = [v for v in values if v is not None]
        return f"{100 * np.mean(values):.1f}" if values else "-"

    keys = list(results)
    lines = [
        f"| {scan.name} | " + " | ".join(TITLES[k] for k in keys) + " |",
        "|---|" + "---:|" * len(keys),
    ]
    for level in levels:
        lines.append(
            f"| {level} | "
            + " | ".join(cell(k, [results[k].get("dice", {}).get(level)]) for k in keys)
            + " |"
        )
    means = [("mean", levels), ("mean T1-T12", [lv for lv in levels if lv in THORACIC])]
    for title, chosen in means:
        if chosen and (title == "mean" or len(chosen) < len(levels)):
            lines.append(
                f"| **{title}** | "
                + " | ".join(
                    cell(k, [results[k].get("dice", {}).get(lv) for lv in chosen]) for k in keys
                )
                + " |"
            )
    lines.append(
        "| wall time (min) | "
        + " | ".join(
            f"{results[k]['seconds'] / 60:.1f}" + (" (reused)" if results[k].get("reused") else "")
            if "seconds" in results[k]
            else "-"
            for k in keys
        )
        + " |"
    )
    return "\n".join(lines)


def per_scan(text: str, default: dict[str, int]) -> dict[str, int]:
    """``300`` (every scan) or ``phantom=300,chest=250`` (other scans keep ``default``)."""
    if "=" not in text:
        return dict.fromkeys(default, int(text))
    given = {k.strip(): int(v) for k, v in (item.split("=") for item in text.split(","))}
    return {**default, **given}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-template", type=Path, help="(c): .npz from scripts/build_template.py"
    )
    parser.add_argument("--scans", default="phantom,chest", help="phantom, chest or both")
    parser.add_argument(
        "--iterations",
        default="phantom=300,chest=300",
        help="iterations: N, or phantom=N,chest=M (default: %(default)s)",
    )
    parser.add_argument(
        "--points",
        default="phantom=4000,chest=6000",
        help="image and surface points each: N, or phantom=N,chest=M (default: %(default)s)",
    )
    parser.add_argument("--output", type=Path, default=Path("/tmp/diffam_compare_templates"))
    parser.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument(
        "--b-scale",
        choices=["none", "size"],
        default="none",
        help="(b): scale each L3 copy to the shipped level's volume",
    )
    parser.add_argument("--overwrite", action="store_true", help="redo finished runs")
    args = parser.parse_args()
    iterations = per_scan(args.iterations, DEFAULT_ITERATIONS)
    points = per_scan(args.points, DEFAULT_POINTS)
    out: Path = args.output
    out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []

    shipped = load_template(SHIPPED)
    templates = {
        "a": SHIPPED,
        "b": str(copied_template(shipped, args.b_scale).save(out / "templates" / "l3_copied.npz")),
    }
    notes.append(f"(a) shipped {SHIPPED!r}: {level_span(shipped.levels)}, level-specific meshes")
    notes.append(
        f"(b) shipped {COPIED_LEVEL} at every level of {SHIPPED!r} (its frames), "
        f"scaling: {args.b_scale}: {templates['b']}"
    )
    if args.data_template:
        merged, fallback = data_template(args.data_template, shipped)
        templates["c"] = str(merged.save(out / "templates" / "from_data_merged.npz"))
        built = [lv for lv in merged.levels if lv not in fallback]
        notes.append(
            f"(c) {args.data_template}: {level_span(built)} from data"
            + (
                f"; NOT covered by the data, shipped {SHIPPED!r} meshes used for "
                f"{level_span(fallback)}"
                if fallback
                else ""
            )
            + f": {templates['c']}"
        )
    else:
        notes.append("(c) skipped: no --data-template given")

    scans = []
    for name in [s.strip() for s in args.scans.split(",") if s.strip()]:
        if name == "phantom":
            scans.append(prepare_phantom(out / "phantom", iterations[name], points[name]))
        elif name == "chest":
            scans.append(
                prepare_chest(args.data_root, out / "chest", iterations[name], points[name])
            )
        else:
            parser.error(f"unknown scan {name!r} (phantom, chest)")

    print("## Settings\n")
    for scan in scans:
        print(
            f"- {scan.name}: {scan.ct}, centroids {scan.centroids}, optim={scan.optim} "
            f"optim.iterations={scan.iterations} optim.num_image_points={scan.points} "
            f"optim.num_surface_points={scan.points} device=cpu seed=0"
        )
    for note in notes:
        print(f"- {note}")
    print(flush=True)

    report: dict = {"notes": notes, "scans": {}}
    markdown = []
    for scan in scans:
        results: dict[str, dict] = {}
        for key, template in templates.items():
            run_dir = out / scan.name / key
            print(f"running {scan.name} with {TITLES[key]} -> {run_dir}", flush=True)
            run = segment(scan, template, run_dir, args.overwrite)
            if run["returncode"] != 0:
                run["error"] = (
                    f"segment.py exited with {run['returncode']}, see {run_dir}/segment.log"
                )
                print(f"  FAILED: {run['error']}", flush=True)
            else:
                run["dice"] = dice_per_level(run_dir / "labels.nii.gz", scan)
                print(
                    f"  {run['seconds'] / 60:.1f} min{' (reused)' if run['reused'] else ''}, "
                    f"mean Dice {100 * np.mean(list(run['dice'].values())):.1f} %",
                    flush=True,
                )
            results[key] = run
        markdown.append(table(scan, results))
        report["scans"][scan.name] = {
            "settings": {"optim": scan.optim, "iterations": scan.iterations, "points": scan.points},
            "runs": results,
        }
    text = "## Dice per level (%)\n\n" + "\n\n".join(markdown)
    print("\n" + text)
    (out / "results.md").write_text("\n".join(f"- {n}" for n in notes) + "\n\n" + text + "\n")
    (out / "results.json").write_text(json.dumps(report, indent=1))
    print(f"\nresults in {out}")
    failed = any(r.get("error") for s in report["scans"].values() for r in s["runs"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
