"""Tables of evaluation results: per vertebra, summary by spine segment, writers.

The summary has one row per segment in the layout of the paper's Table 1
(cervical, thoracic, lumbar, total), plus a ``sacrum`` row when a sacrum
was evaluated (the sacrum is not counted in ``total``). Per segment:

* ``n_gt``: ground-truth vertebrae over all cases; ``n_missing``: those not
  predicted; ``n_extra``: predicted vertebrae absent from the ground truth;
* ``n_not_attempted``: ground-truth vertebrae at levels the prediction did
  not try (evaluation with ``levels=predicted``); they are left out of every
  other column;
* ``dice_mean``/``dice_std`` (%): over ground-truth vertebrae, a missing
  vertebra counting as 0 (extra vertebrae are counted, not averaged in);
* ``hd95_mm``, ``hd_mm``, ``assd_mm``: means over vertebrae present in both
  (distances are undefined for missing ones);
* ``id_rate`` (%): VerSe identification rate over ground-truth vertebrae.

Undefined values are NaN in memory, ``nan`` in CSV and ``null`` in JSON.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from diffam.core.atomic import write_json_atomic, write_text_atomic
from diffam.core.labels import SEGMENTS

from .case import CaseResult, VertebraResult

PER_VERTEBRA_COLUMNS: tuple[str, ...] = tuple(VertebraResult.__dataclass_fields__)
SUMMARY_COLUMNS: tuple[str, ...] = (
    "segment",
    "n_cases",
    "n_gt",
    "n_missing",
    "n_extra",
    "n_not_attempted",
    "dice_mean",
    "dice_std",
    "hd95_mm",
    "hd_mm",
    "assd_mm",
    "id_rate",
)


def _mean(values: Sequence[float]) -> float:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    return float(v.mean()) if v.size else float("nan")


def summarize(rows: Iterable[VertebraResult]) -> list[dict[str, Any]]:
    """Summary by spine segment (see module docstring).

    Args:
        rows: Per-vertebra results of one or more cases.

    Returns:
        One dict per segment with the keys of :data:`SUMMARY_COLUMNS`;
        ``dice_*`` and ``id_rate`` in percent.
    """
    rows = list(rows)
    groups = {s: [r for r in rows if r.segment == s] for s in SEGMENTS}
    groups["total"] = [r for r in rows if r.segment in SEGMENTS]
    if any(r.segment == "sacrum" for r in rows):
        groups["sacrum"] = [r for r in rows if r.segment == "sacrum"]
    out = []
    for seg, rs in groups.items():
        gt = [r for r in rs if r.status in ("matched", "missing")]
        matched = [r for r in rs if r.status == "matched"]
        dices = np.asarray([r.dice for r in gt], dtype=np.float64) * 100.0
        out.append(
            {
                "segment": seg,
                "n_cases": len({r.case for r in rs if r.status != "not_attempted"}),
                "n_gt": len(gt),
                "n_missing": sum(r.status == "missing" for r in rs),
                "n_extra": sum(r.status == "extra" for r in rs),
                "n_not_attempted": sum(r.status == "not_attempted" for r in rs),
                "dice_mean": float(dices.mean()) if dices.size else float("nan"),
                "dice_std": float(dices.std()) if dices.size else float("nan"),
                "hd95_mm": _mean([r.hd95_mm for r in matched]),
                "hd_mm": _mean([r.hd_mm for r in matched]),
                "assd_mm": _mean([r.assd_mm for r in matched]),
                "id_rate": (100.0 * sum(bool(r.identified) for r in gt) / len(gt))
                if gt
                else float("nan"),
            }
        )
    return out


def _fmt(x: Any, digits: int = 1) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return "-" if math.isnan(x) else f"{x:.{digits}f}"
    return str(x)


def markdown_summary(summary: Sequence[dict[str, Any]]) -> str:
    """Markdown table of :func:`summarize` output (Table 1 layout).

    Args:
        summary: Rows from :func:`summarize`.

    Returns:
        The table as text ("-" marks undefined values); a column "not
        attempted" is added when some ground-truth vertebrae were left out
        (``levels=predicted``).
    """
    extra_col = any(s.get("n_not_attempted") for s in summary)
    head = (
        "| segment | vertebrae | Dice (%) | HD95 (mm) | ASSD (mm) | ID rate (%) "
        "| missing | extra |"
        + (" not attempted |" if extra_col else "")
        + "\n|---|---:|---:|---:|---:|---:|---:|---:|"
        + ("---:|" if extra_col else "")
    )
    lines = [head]
    for s in summary:
        dice = "-" if math.isnan(s["dice_mean"]) else f"{s['dice_mean']:.1f} ± {s['dice_std']:.1f}"
        lines.append(
            f"| {s['segment']} | {s['n_gt']} | {dice} | {_fmt(s['hd95_mm'], 2)} "
            f"| {_fmt(s['assd_mm'], 2)} | {_fmt(s['id_rate'])} | {s['n_missing']} "
            f"| {s['n_extra']} |" + (f" {s.get('n_not_attempted', 0)} |" if extra_col else "")
        )
    return "\n".join(lines)


def markdown_per_vertebra(rows: Sequence[VertebraResult]) -> str:
    """Markdown table with one line per vertebra and case.

    Args:
        rows: Per-vertebra results.

    Returns:
        The table as text.
    """
    lines = [
        "| case | vertebra | status | Dice (%) | HD95 (mm) | ASSD (mm) | V gt (ml) "
        "| V pred (ml) | centroid err. (mm) | identified |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        ident = "-" if r.identified is None else ("yes" if r.identified else "no")
        lines.append(
            f"| {r.case} | {r.name} | {r.status} | {_fmt(100 * r.dice)} "
            f"| {_fmt(r.hd95_mm, 2)} | {_fmt(r.assd_mm, 2)} | {_fmt(r.volume_gt_ml, 2)} "
            f"| {_fmt(r.volume_pred_ml, 2)} | {_fmt(r.centroid_error_mm, 2)} | {ident} |"
        )
    return "\n".join(lines)


def _csv_value(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, tuple):
        return " ".join(f"{x:.3f}" for x in v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else (f"{v:.6g}" if math.isfinite(v) else str(v))
    return v


def write_csv(path: str | Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> Path:
    """Write dict rows as CSV (atomically).

    Args:
        path: Destination file.
        rows: Rows; keys outside ``columns`` are ignored.
        columns: Column order.

    Returns:
        The destination path. Centroids are written as ``"x y z"`` (mm),
        NaN as ``nan`` and None as an empty field.
    """
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _csv_value(r.get(k)) for k in columns})
    return write_text_atomic(path, buf.getvalue())


def write_report(
    output_dir: str | Path,
    cases: Sequence[CaseResult],
    unpaired_pred: Sequence[Path] = (),
    unpaired_gt: Sequence[Path] = (),
    settings: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Write ``per_vertebra.csv``, ``summary.csv``, ``evaluation.json`` and ``report.md``.

    Args:
        output_dir: Destination folder (created).
        cases: Evaluated cases (failed ones carry ``error``).
        unpaired_pred: Prediction files without ground truth.
        unpaired_gt: Ground-truth files without prediction.
        settings: Options recorded in the JSON file.

    Returns:
        Name -> written path.
    """
    out = Path(output_dir)
    rows = [v for c in cases for v in c.vertebrae]
    summary = summarize(rows)
    dict_rows = [asdict(r) for r in rows]
    failed = {c.case: c.error for c in cases if c.error}
    paths = {
        "per_vertebra_csv": write_csv(out / "per_vertebra.csv", dict_rows, PER_VERTEBRA_COLUMNS),
        "summary_csv": write_csv(out / "summary.csv", summary, SUMMARY_COLUMNS),
    }
    paths["json"] = write_json_atomic(
        out / "evaluation.json",
        {
            "settings": settings or {},
            "summary": summary,
            "cases": [
                {
                    "case": c.case,
                    "error": c.error,
                    "resampled": c.resampled,
                    "missing": c.missing,
                    "extra": c.extra,
                    "not_attempted": c.not_attempted,
                    "ignored_gt_labels": c.ignored_gt_labels,
                    "ignored_pred_labels": c.ignored_pred_labels,
                }
                for c in cases
            ],
            "per_vertebra": dict_rows,
            "unpaired_pred": [str(p) for p in unpaired_pred],
            "unpaired_gt": [str(p) for p in unpaired_gt],
            "failed": failed,
        },
    )
    md = [
        "# Evaluation",
        "",
        markdown_summary(summary),
        "",
        "## Per vertebra",
        "",
        markdown_per_vertebra(rows),
        "",
    ]
    skipped = {c.case: c.not_attempted for c in cases if c.not_attempted}
    if skipped:
        md += ["## Not attempted by the prediction (left out of the summary)", ""]
        md += [f"- {case}: {', '.join(names)}" for case, names in skipped.items()]
        md.append("")
    if unpaired_pred or unpaired_gt or failed:
        md += ["## Not evaluated", ""]
        md += [f"- prediction without ground truth: {p}" for p in unpaired_pred]
        md += [f"- ground truth without prediction: {p}" for p in unpaired_gt]
        md += [f"- failed: {v}" for v in failed.values()]
        md.append("")
    paths["markdown"] = write_text_atomic(out / "report.md", "\n".join(md))
    return paths
