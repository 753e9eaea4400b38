"""``report.md``: the run report (``report.json``) written for a person.

Made from the same dictionary as ``report.json`` (:func:`diffam.export.report.build_report`),
so the two never disagree: what was segmented, a table per vertebra (volume,
fit score, doubtful flag), the QC pictures, the final losses, timings, the
files written and the software versions.
"""

from __future__ import annotations

import math
from pathlib import Path

from diffam.core.atomic import atomic_path


def _number(value, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _point(value) -> str:
    if value is None:
        return "–"
    return "(" + ", ".join(f"{float(c):.1f}" for c in value) + ")"


def markdown_report(report: dict) -> str:
    """The markdown text of a run report dictionary."""
    inputs = report.get("inputs") or {}
    image = report.get("image") or {}
    lines = ["# Vertebra segmentation report (diffam)", ""]
    scan = inputs.get("scan", "?")
    lines += [
        f"- **Scan:** `{scan}`",
        f"- **Image:** {' x '.join(str(n) for n in image.get('shape_ijk', []))} voxels, "
        f"spacing {' x '.join(f'{s:.3g}' for s in image.get('spacing_mm', []))} mm, "
        f"orientation {image.get('orientation', '?')}",
        f"- **Initial centroids:** {report.get('centroids_source', '?')}"
        + (f" (`{inputs['centroids']}`)" if inputs.get("centroids") else ""),
        f"- **Label values:** {report.get('label_convention', 'verse')}",
        f"- **Iterations:** {report.get('iterations', '?')}"
        + (f" of {report['iterations_configured']}" if report.get("iterations_configured") else ""),
        "",
    ]
    if not report.get("completed", True):
        lines += [
            "> **The run was stopped before the last iteration.** The labels show the "
            "state reached; continue with `resume=true` and the same `output_dir`.",
            "",
        ]
    doubtful = [v["level"] for v in report.get("vertebrae", []) if v.get("doubtful")]
    if doubtful:
        lines += [
            f"> **Check these vertebrae:** {', '.join(doubtful)} — near their surface "
            "the fitted surface explains the scan poorly (fit score below "
            f"{report.get('fit_score_threshold')}): wrong level, fitted onto a "
            "neighbour or a disc, cut by the image border, or unusual anatomy.",
            "",
        ]
    for warning in report.get("warnings", []):
        lines += [f"> Warning: {warning}", ""]

    lines += [
        "## Vertebrae",
        "",
        "| level | label | volume (ml) | fit score | fit residual (HU) | correlation | "
        "in view (%) | doubtful | centroid of the label (LPS mm) |",
        "|---|---:|---:|---:|---:|---:|---:|:---:|---|",
    ]
    for v in report.get("vertebrae", []):
        flag = "**yes**" if v.get("doubtful") else ("no" if "doubtful" in v else "–")
        lines.append(
            f"| {v['level']} | {v.get('label_value', v.get('verse_id'))} | "
            f"{_number(v.get('volume_ml'))} | {_number(v.get('fit_score'), 2)} | "
            f"{_number(v.get('fit_residual_hu'))} | {_number(v.get('fit_correlation'), 2)} | "
            f"{_number(None if v.get('fit_in_view') is None else 100 * v['fit_in_view'])} | "
            f"{flag} | "
            f"{_point(v.get('label_centroid_mm'))} |"
        )
    lines += [
        "",
        "Fit residual: mean absolute difference between the intensity the fitted "
        "appearance predicts and the scan within 3 mm of the vertebra's surface (lower "
        "is better); correlation: between those predicted and observed intensities "
        "(higher is better); in view: the part of the band around the surface inside "
        "the scan; fit score: these combined (`diffam.fit.quality`, higher is better; "
        "below the threshold the vertebra is flagged doubtful).",
        "",
    ]

    lines += _statistics_section(report.get("statistics") or [])
    files = report.get("files", {})
    pictures = [(name, path) for name, path in files.items() if name.startswith("qc_")]
    if pictures:
        lines += ["## Quality control", ""]
        for name, path in pictures:
            lines += [f"![{name[3:]}]({path})", ""]

    final = report.get("final_losses") or {}
    if final:
        lines += ["## Final losses", "", "| loss | value |", "|---|---:|"]
        lines += [
            f"| {k} | {v:.4g} |"
            for k, v in final.items()
            if k not in ("iteration", "blur_mm", "alpha") and isinstance(v, int | float)
        ]
        lines.append("")
    timings = report.get("timings_s") or {}
    if timings:
        lines += ["## Timings", "", "| stage | seconds |", "|---|---:|"]
        lines += [f"| {k} | {v:.1f} |" for k, v in timings.items()]
        lines.append("")
    if files:
        lines += ["## Files", ""]
        lines += [f"- `{path}` ({name})" for name, path in files.items()]
        lines.append("")
    versions = report.get("versions") or {}
    if versions:
        lines += ["## Software", "", ", ".join(f"{k} {v}" for k, v in versions.items()), ""]
    lines += ["Not a medical device: check every vertebra before use.", ""]
    return "\n".join(lines)


def _statistics_section(rows: list[dict]) -> list[str]:
    """The per-vertebra measurements (statistics.csv) as a markdown table."""
    if not rows:
        return []
    lines = [
        "## Measurements",
        "",
        "| level | HU mean / median | trabecular HU mean / median | body height A / M / P (mm) "
        "| A/P | M/P | reduction (%) | Genant grade | cut by border |",
        "|---|---:|---:|---:|---:|---:|---:|:---:|:---:|",
    ]
    for r in rows:
        heights = " / ".join(_number(r.get(f"body_height_{p}_mm"))
                             for p in ("anterior", "middle", "posterior"))
        lines.append(
            f"| {r['level']} | {_number(r.get('hu_mean_vertebra'), 0)} / "
            f"{_number(r.get('hu_median_vertebra'), 0)} | "
            f"{_number(r.get('hu_mean_trabecular'), 0)} / "
            f"{_number(r.get('hu_median_trabecular'), 0)} | {heights} | "
            f"{_number(r.get('height_ratio_anterior_posterior'), 2)} | "
            f"{_number(r.get('height_ratio_middle_posterior'), 2)} | "
            f"{_number(r.get('height_reduction_percent'), 0)} | "
            f"{_number(r.get('genant_grade'))} | {'**yes**' if r.get('cut_by_border') else 'no'} |"
        )
    lines += [
        "",
        "Trabecular HU: the vertebral body eroded away from its cortex (opportunistic "
        "osteoporosis screening). Body heights along the spine axis in the mid-sagittal plane "
        "at 10 %, 50 %, 90 % of the body depth; Genant grade from the largest height "
        "reduction (anterior or middle vs posterior, posterior vs neighbours): 1 mild "
        "20-25 %, 2 moderate 25-40 %, 3 severe > 40 %. A screening aid, not a diagnosis; "
        "vertebrae cut by the scan border have partial numbers and no grade.",
        "",
    ]
    return lines


def write_markdown_report(report: dict, path: Path, *, overwrite: bool = False) -> Path:
    """Write ``report.md`` atomically."""
    with atomic_path(path, overwrite=overwrite) as temporary:
        Path(temporary).write_text(markdown_report(report), encoding="utf-8")
    return Path(path)
