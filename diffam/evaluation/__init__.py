"""Evaluation of vertebra label maps against ground truth.

Per vertebra (VerSe ids, :mod:`.vertebrae`): Dice, HD95, maximum Hausdorff
distance and ASSD in mm on the ground-truth grid (anisotropic spacing
respected, :mod:`.metrics`), volumes in ml, centroids in LPS world mm and the
VerSe identification (:mod:`.identification`). Missing vertebrae count as
Dice 0 and not identified; extra vertebrae are listed. :mod:`.report` makes
the per-segment summary (cervical, thoracic, lumbar, total) and writes CSV,
JSON and markdown.

Example:
    >>> from diffam.evaluation import evaluate_paths, write_report
    >>> res = evaluate_paths("pred/", "gt/", gt_labels="totalsegmentator")  # doctest: +SKIP
    >>> write_report("out/", res.cases, res.pairing.unpaired_pred,
    ...              res.pairing.unpaired_gt)  # doctest: +SKIP
"""

from .batch import BatchResult, evaluate_paths
from .case import (
    CaseResult,
    VertebraResult,
    attempted_levels,
    evaluate_arrays,
    evaluate_files,
    evaluate_images,
    restrict_to_attempted,
)
from .identification import Identification, identification_rate, identify
from .metrics import MaskMetrics, mask_metrics, surface_distances
from .pairing import Pairing, pair_paths, stem
from .report import markdown_per_vertebra, markdown_summary, summarize, write_report
from .vertebrae import get_mapping, to_verse

__all__ = [
    "BatchResult",
    "CaseResult",
    "Identification",
    "MaskMetrics",
    "Pairing",
    "VertebraResult",
    "attempted_levels",
    "evaluate_arrays",
    "evaluate_files",
    "evaluate_images",
    "evaluate_paths",
    "get_mapping",
    "identification_rate",
    "identify",
    "mask_metrics",
    "markdown_per_vertebra",
    "markdown_summary",
    "pair_paths",
    "restrict_to_attempted",
    "stem",
    "summarize",
    "surface_distances",
    "to_verse",
    "write_report",
]
