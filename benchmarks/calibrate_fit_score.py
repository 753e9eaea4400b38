#!/usr/bin/env python
"""Calibrate the per-vertebra fit score against Dice: ROC AUC for "Dice < 70 %" and the threshold.

Fits (``optim=fast``, CPU, centroids made from each scan's own label map,
the helpers of ``benchmarks/bench_accuracy.py``) every labelled scan of
``../shared/data/ct`` as it is and with deliberate failures, then scores
every fitted vertebra with :func:`diffam.fit.quality.fit_scores` and
compares the score with the vertebra's Dice against the scan's labels.

Cases per scan (``--cases``):

* ``base``: whole-vertebra centroids from the label map (a normal run).
* ``fail``: the same with three deliberate failures in one fit: the highest
  vertebra started 2 mm inside the scan's upper border (a fit run off the
  scan; a centroid outside the scan is refused before any fit); the third from the top started one level off (on its upper
  neighbour's centroid, nudged 2 mm so that the centroid curve keeps a
  tangent; scans with four or more vertebrae); the second from the bottom
  started 12 mm off (superior and anterior, half a vertebra's height).
* ``shift``: only the shift of ``fail``.
* ``top9``: the scan cut 9 mm above the lowest voxel of its highest labelled
  vertebra (that vertebra mostly out of view; ``bench_accuracy``'s cut).

Every fit is cached under ``--cache`` (``<scan>_<case>.npz``: fitted
meshes, levels, appearance profile, initial centroids, Dice per level), so
re-scoring (a new score, another threshold) never refits; ``--refit``
ignores the cache.

The score's threshold is chosen on the tuning scans (``--tune``) only; the
AUC is reported on the tuning scans, the held-out scans and all of them.

Run::

    python benchmarks/calibrate_fit_score.py \\
        --scans verse005,verse007,verse008,chest,l3_crop --tune chest,verse005,verse008
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_accuracy import (  # noqa: E402
    SCANS,
    SHARED,
    compose_config,
    cut_scan,
    ground_truth,
    make_centroids,
)

from diffam.core.labels import level_name  # noqa: E402

#: A vertebra counts as failed below this Dice (percent), as in the issue.
FAILED_DICE_PERCENT = 70.0
#: Displacement of the ``shift`` case, LPS mm (superior and anterior).
SHIFT_MM = np.array([0.0, -8.5, 8.5])
#: How far inside the scan's upper border the run-off vertebra starts, mm (a centroid
#: outside the scan is refused before the fit).
OFFSCAN_INSIDE_MM = 2.0
#: Nudge of the one-level-off start from its neighbour's centroid (two equal centroids
#: leave the spine curve without a tangent), LPS mm.
ONEOFF_NUDGE_MM = np.array([0.0, 0.0, -2.0])
CASES = ("base", "fail", "top9")  # and "shift" on request


def _near_upper_border(point: np.ndarray, image) -> np.ndarray:
    """``point`` moved superiorly (+z) to ``OFFSCAN_INSIDE_MM`` inside the scan's border."""
    up = np.array([0.0, 0.0, 1.0])
    step = 0.5
    shift = 0.0
    while image.contains_world((point + (shift + step + OFFSCAN_INSIDE_MM) * up)[None])[0]:
        shift += step
    return point + shift * up


def perturbed_centroids(case: str, centroids: dict[int, np.ndarray], image) -> dict:
    """The initial centroids of ``case`` (a copy; see the module docstring)."""
    out = {k: np.array(v, dtype=np.float64) for k, v in centroids.items()}
    ids = sorted(out)  # head to tail
    if case == "shift" and len(ids) >= 3:
        out[ids[-2]] = out[ids[-2]] + SHIFT_MM
    if case != "fail":
        return out
    out[ids[0]] = _near_upper_border(out[ids[0]], image)
    if len(ids) >= 4:
        out[ids[2]] = centroids[ids[1]] + ONEOFF_NUDGE_MM
    if len(ids) >= 3:
        out[ids[-2]] = out[ids[-2]] + SHIFT_MM
    return out


def _dice_per_level(pred: np.ndarray, truth: np.ndarray, levels: list[int]) -> dict[int, float]:
    """Dice (percent) of every fitted level against the labels, on the scan's grid."""
    out = {}
    for v in levels:
        p, t = pred == v, truth == v
        total = int(p.sum()) + int(t.sum())
        if t.any():
            out[v] = 200.0 * float((p & t).sum()) / total
    return out


def run_case(scan_name: str, case: str, cache: Path, refit: bool) -> Path | None:
    """Fit one case (or find it in the cache); returns the cache file, None when refused."""
    from diffam.fit.pipeline import segment

    path = cache / f"{scan_name}_{case}.npz"
    if path.exists() and not refit:
        return path
    scan = SCANS[scan_name]
    image, labels, truth, levels = ground_truth(scan)
    if case == "top9":
        image, labels, truth, levels = cut_scan(image, labels, truth, levels, "top9")
    start = make_centroids("vertebra", labels, scan.convention, levels)
    centroids = perturbed_centroids(case, start, image)
    config, _ = compose_config(["optim=fast", "device=cpu"], cache / "run")
    tick = time.perf_counter()
    try:
        result = segment(image, config, centroids=centroids, centroids_kind="vertebra")
    except Exception as error:  # noqa: BLE001 - a refused case is a result too
        print(f"{scan_name} {case}: refused ({error})", flush=True)
        (cache / f"{scan_name}_{case}.refused").write_text(str(error))
        return None
    seconds = time.perf_counter() - tick
    fit = result.fit
    pred = np.asarray(result.labels.array).astype(np.int32)
    dice = _dice_per_level(pred, truth, list(fit.verse_ids))
    partial = path.with_name(path.stem + ".partial.npz")  # complete or absent
    np.savez_compressed(
        partial, vertices=fit.vertices, faces=fit.faces, verse_ids=np.array(fit.verse_ids),
        appearance_profile=fit.appearance_profile,
        initial=np.array([centroids[v] for v in fit.verse_ids]),
        dice=np.array([dice.get(v, np.nan) for v in fit.verse_ids]),
        seconds=seconds,
    )
    partial.replace(path)
    print(f"{scan_name:9s} {case:8s} {seconds:4.0f} s  " + " ".join(
        f"{level_name(v)}:{dice.get(v, float('nan')):.0f}" for v in fit.verse_ids), flush=True)
    return path


def case_image(scan_name: str, case: str):
    scan = SCANS[scan_name]
    image, labels, truth, levels = ground_truth(scan)
    if case == "top9":
        image, *_ = cut_scan(image, labels, truth, levels, "top9")
    return image


def score_case(scan_name: str, case: str, path: Path) -> list[dict]:
    """One row per fitted vertebra with Dice: its score's features (from the cached fit)."""
    from diffam.fit.quality import fit_scores

    data = np.load(path)
    image = case_image(scan_name, case)
    levels = [level_name(int(v)) for v in data["verse_ids"]]
    scores = fit_scores(data["vertices"], data["faces"], levels, data["appearance_profile"],
                        image, initial_centroids=data["initial"])
    rows = []
    for score, dice in zip(scores, data["dice"]):
        if not np.isfinite(dice):
            continue
        row = {"scan": scan_name, "case": case, "level": score.level, "dice": float(dice)}
        row.update(score.features())
        row["score"] = score.score
        row["doubtful"] = score.doubtful
        rows.append(row)
    return rows


def best_threshold(scores: np.ndarray, failed: np.ndarray) -> tuple[float, float, float]:
    """Threshold maximising Youden's J (sensitivity + specificity - 1) for flagging ``failed``.

    A vertebra is flagged when its score is below the threshold. Returns
    (threshold, sensitivity, specificity); the threshold is midway between
    two adjacent observed scores.
    """
    values = np.unique(scores[np.isfinite(scores)])
    candidates = np.r_[values[0] - 1e-3, 0.5 * (values[1:] + values[:-1]), values[-1] + 1e-3]
    best = (-2.0, 0.0, 0.0, 0.0)
    for t in candidates:
        flagged = ~(scores >= t)  # NaN is flagged
        sensitivity = float(flagged[failed].mean()) if failed.any() else float("nan")
        specificity = float((~flagged[~failed]).mean()) if (~failed).any() else float("nan")
        j = sensitivity + specificity - 1
        if j > best[0]:
            best = (j, float(t), sensitivity, specificity)
    return best[1], best[2], best[3]


#: Measures where a high value, not a low one, points to a failure.
HIGH_IS_BAD = ("residual_hu", "overlap", "moved")


def _auc(rows: list[dict], key: str) -> float:
    """AUC of ``key`` for Dice < 70 %; an uncomputable value counts as the worst."""
    from diffam.evaluation.metrics import roc_auc

    failed = np.array([r["dice"] < FAILED_DICE_PERCENT for r in rows])
    values = np.array([r[key] if r[key] is not None else np.nan for r in rows], float)
    badness = values if key in HIGH_IS_BAD else -values
    return roc_auc(np.nan_to_num(badness, nan=np.inf), failed)


def report(rows: list[dict], tune: set[str], threshold: float | None) -> str:
    """The AUC per measure and of the score on the tuning, held-out and all scans; the threshold."""
    from diffam.fit.quality import DEFAULT_THRESHOLD, FEATURES

    groups = {"tuning": [r for r in rows if r["scan"] in tune],
              "held-out": [r for r in rows if r["scan"] not in tune], "all": rows}
    lines = ["| measure | " + " | ".join(
        f"AUC {name} ({len(g)} vertebrae, {sum(r['dice'] < FAILED_DICE_PERCENT for r in g)} "
        f"< {FAILED_DICE_PERCENT:.0f} % Dice)" for name, g in groups.items()) + " |",
        "|---" * (len(groups) + 1) + "|"]
    for key in (*FEATURES, "score"):
        name = f"{key} (high: failed)" if key in HIGH_IS_BAD else key
        lines.append(f"| {name} | " + " | ".join(
            f"{_auc(g, key):.3f}" if g else "-" for g in groups.values()) + " |")
    tuning = groups["tuning"]
    scores = np.array([r["score"] if r["score"] is not None else np.nan for r in tuning], float)
    failed = np.array([r["dice"] < FAILED_DICE_PERCENT for r in tuning])
    chosen, sensitivity, specificity = best_threshold(scores, failed)
    lines += ["", f"Threshold from the tuning scans (Youden's J): {chosen:.3f} "
              f"(sensitivity {sensitivity:.2f}, specificity {specificity:.2f}); "
              f"in the code: {DEFAULT_THRESHOLD}"]
    use = DEFAULT_THRESHOLD if threshold is None else threshold
    for name, g in groups.items():
        if not g:
            continue
        sc = np.array([r["score"] if r["score"] is not None else np.nan for r in g], float)
        fl = np.array([r["dice"] < FAILED_DICE_PERCENT for r in g])
        flagged = ~(sc >= use)
        lines.append(f"At {use:.3f}, {name}: {int((flagged & fl).sum())}/{int(fl.sum())} failed "
                     f"vertebrae flagged, {int((flagged & ~fl).sum())}/{int((~fl).sum())} good "
                     f"ones flagged")
    return "\n".join(lines)


#: Weights tried by ``--search`` (every combination).
SEARCH_GRID = {"moved": (0.0, 0.1, 0.2, 0.3, 0.5), "out_of_view": (0.0, 0.25, 0.5, 1.0)}


def search_weights(rows: list[dict]) -> tuple[dict, float]:
    """The weights of :func:`combined_score` with the best AUC on ``rows`` (first best wins)."""
    import itertools

    from diffam.evaluation.metrics import roc_auc
    from diffam.fit.quality import combined_score

    failed = np.array([r["dice"] < FAILED_DICE_PERCENT for r in rows])
    best = ({}, -1.0)
    for values in itertools.product(*SEARCH_GRID.values()):
        weights = dict(zip(SEARCH_GRID, values))
        scores = np.array([combined_score(_features(r), weights) for r in rows])
        auc = roc_auc(np.nan_to_num(-scores, nan=np.inf), failed)
        if auc > best[1] + 1e-9:
            best = (weights, auc)
    return best


def _features(row: dict) -> dict:
    return {k: (np.nan if row[k] is None else row[k]) for k in ("correlation", "in_view", "moved")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scans", default="verse005,verse007,verse008,chest,l3_crop")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--tune", default="chest,verse005,verse008",
                        help="scans the threshold (and the score's design) are chosen on")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/calibrate_fit_score"))
    parser.add_argument("--refit", action="store_true", help="refit even if cached")
    parser.add_argument("--no-fit", action="store_true", help="score the cached fits only")
    parser.add_argument("--search", action="store_true",
                        help="also search the score's weights on the tuning scans")
    parser.add_argument("--threshold", type=float, default=None,
                        help="report the flags at this threshold (default: the code's)")
    args = parser.parse_args(argv)
    from diffam.fit.quality import FEATURES

    if not (SHARED / "ct").is_dir():
        print(f"shared data not found at {SHARED}: set DIFFAM_SHARED_DATA")
        return 2
    args.cache.mkdir(parents=True, exist_ok=True)
    rows = []
    for scan_name in args.scans.split(","):
        for case in args.cases.split(","):
            path = args.cache / f"{scan_name}_{case}.npz"
            if not args.no_fit:
                path = run_case(scan_name, case, args.cache, args.refit) or path
            if path.exists():
                rows += score_case(scan_name, case, path)
    (args.cache / "scores.json").write_text(json.dumps(rows, indent=1))
    for r in rows:
        print(f"{r['scan']:9s} {r['case']:5s} {r['level']:4s} Dice {r['dice']:5.1f}  " + "  ".join(
            f"{k} {r[k]:.2f}" if r[k] is not None and np.isfinite(r[k]) else f"{k} -"
            for k in (*FEATURES, "score")) + ("  DOUBTFUL" if r["doubtful"] else ""))
    print()
    text = report(rows, set(args.tune.split(",")), args.threshold)
    if args.search:
        tuning = [r for r in rows if r["scan"] in set(args.tune.split(","))]
        weights, auc = search_weights(tuning)
        text += f"\n\nBest weights on the tuning scans: {weights} (AUC {auc:.3f})"
    print(text)
    (args.cache / "calibration.md").write_text(text + "\n")
    return 0


def _fit_all(scans: list[str], cases: list[str], cache: Path, refit: bool) -> None:
    for scan_name in scans:
        for case in cases:
            run_case(scan_name, case, cache, refit)


if __name__ == "__main__" and sys.argv[1:2] == ["--fit-only"]:
    _fit_all(sys.argv[2].split(","), sys.argv[3].split(","), Path("/tmp/calibrate_fit_score"),
             False)
elif __name__ == "__main__":
    sys.exit(main())
