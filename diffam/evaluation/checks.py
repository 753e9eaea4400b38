"""Refuse to score what would misreport quietly (issue case 9).

* a prediction from a ``segment.py`` run folder that did not finish (no
  ``report.json``: killed or still running; ``completed: false``: stopped);
* a label map whose values do not fit its stated convention (ground truth in
  TotalSegmentator ids given as ``verse``, or the reverse), which would score
  every vertebra as missing or extra.
"""

from __future__ import annotations

import json
from pathlib import Path

from .case import RUN_REPORT_FILE, CaseResult

#: Files and folders only a ``segment.py`` run writes beside its label map.
_RUN_MARKERS = ("report.md", "labels.ctbl", "labels_itksnap.txt", "centroids.json",
                "checkpoint.pt", "meshes", RUN_REPORT_FILE)


def run_folder_problem(pred_path: str | Path) -> str | None:
    """Why the prediction's run folder is not a finished run; None when it is (or is no run)."""
    path = Path(pred_path)
    if not path.name.lower().startswith("labels."):
        return None
    folder = path.parent
    staging = any(p.name.startswith(".staging-") for p in folder.iterdir())
    if not staging and not any((folder / m).exists() for m in _RUN_MARKERS):
        return None  # a label file that is not in a run folder
    report = folder / RUN_REPORT_FILE
    if not report.is_file():
        return (f"{folder} is an unfinished segment.py run (no {RUN_REPORT_FILE}: killed, "
                "failed or still running); run it again (overwrite=true) before evaluating")
    try:
        data = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return f"{report} is unreadable ({error}); run the scan again (overwrite=true)"
    if data.get("completed") is False:
        return (f"{folder} holds a stopped run (completed: false in {RUN_REPORT_FILE}); "
                "finish it with resume=true before evaluating")
    return None


def convention_problem(result: CaseResult, side: str, spec: str | Path) -> str | None:
    """Why ``side``'s labels do not look like convention ``spec``; None when they do."""
    name = str(spec).strip().lower()
    ignored = result.ignored_gt_labels if side == "gt" else result.ignored_pred_labels
    if not ignored:
        return None
    present = {"gt": ("matched", "missing"), "pred": ("matched", "extra")}[side]
    vertebrae = [v for v in result.vertebrae if v.status in present]
    option = f"{side}_labels"
    if name == "verse":
        return (f"{side} holds label values {ignored[:10]} that are not VerSe vertebra ids "
                f"(1-28); if it is a TotalSegmentator map pass {option}=totalsegmentator, or "
                f"give a mapping CSV ({option}=mapping.csv)")
    if name.startswith("totalseg") and not vertebrae:
        return (f"{side} holds no TotalSegmentator vertebra label (values {ignored[:10]} are "
                f"organs or unknown); if it uses VerSe ids pass {option}=verse")
    return None
