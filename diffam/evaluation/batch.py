"""Evaluate every pair of prediction and ground-truth files of two paths."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .case import CaseResult, attempted_levels, evaluate_files, restrict_to_attempted
from .checks import convention_problem, run_folder_problem
from .identification import DEFAULT_MAX_DISTANCE_MM
from .pairing import Pairing, display_name, pair_paths
from .vertebrae import get_mapping

log = logging.getLogger(__name__)


@dataclass
class BatchResult:
    """Results of :func:`evaluate_paths`.

    Attributes:
        cases: One result per pair (failed ones carry ``error``, no rows).
        pairing: What was and was not paired.
    """

    cases: list[CaseResult]
    pairing: Pairing

    @property
    def failed(self) -> list[CaseResult]:
        """Cases that could not be evaluated."""
        return [c for c in self.cases if c.error]


def evaluate_paths(
    pred: str | Path,
    gt: str | Path,
    pred_labels: str | Path = "verse",
    gt_labels: str | Path = "verse",
    pattern: str = "*",
    pred_strip: Sequence[str] = (),
    gt_strip: Sequence[str] = (),
    max_distance_mm: float = DEFAULT_MAX_DISTANCE_MM,
    levels: str = "all",
) -> BatchResult:
    """Pair files by stem and evaluate every pair.

    A pair that cannot be evaluated (unreadable file, no overlap in world
    space) is logged and recorded with its error; the others go on.

    Args:
        pred: Prediction file or folder.
        gt: Ground-truth file or folder.
        pred_labels: Prediction label convention (``verse``,
            ``totalsegmentator`` or a CSV mapping path).
        gt_labels: Ground-truth label convention (same choices).
        pattern: fnmatch pattern for files in folders.
        pred_strip: Suffixes stripped from prediction stems before pairing.
        gt_strip: Suffixes stripped from ground-truth stems before pairing.
        max_distance_mm: Identification distance threshold, mm.
        levels: ``all`` (every ground-truth vertebra counts) or ``predicted``
            (only the levels the prediction tried, from the run's
            ``report.json`` or else the labels present; the other
            ground-truth vertebrae are marked ``not_attempted`` and left out
            of the summary, see :func:`.case.restrict_to_attempted`).

    Returns:
        A :class:`BatchResult`.
    """
    get_mapping(pred_labels), get_mapping(gt_labels)  # fail early on a bad mapping
    if levels not in ("all", "predicted"):
        raise ValueError(f"levels={levels!r}: choose all or predicted")
    pairing = pair_paths(pred, gt, pattern, pred_strip, gt_strip)
    for line in pairing.report().splitlines():
        (log.warning if "without" in line else log.info)(line)
    cases = []
    for n, (case, p, g) in enumerate(pairing.pairs, start=1):
        log.info(
            "[%d/%d] %s: %s vs %s", n, len(pairing.pairs), case, display_name(p), display_name(g)
        )
        try:
            problem = run_folder_problem(p)
            if problem:
                raise ValueError(problem)
            result = evaluate_files(p, g, pred_labels, gt_labels, case, max_distance_mm)
            problem = convention_problem(result, "gt", gt_labels) or \
                convention_problem(result, "pred", pred_labels)
            if problem:
                raise ValueError(problem)
            if levels == "predicted":
                restrict_to_attempted(result, attempted_levels(p))
            cases.append(result)
        except (ValueError, OSError) as e:
            log.error("%s: not evaluated: %s", case, e)
            cases.append(CaseResult(case=case, error=str(e)))
    return BatchResult(cases=cases, pairing=pairing)
