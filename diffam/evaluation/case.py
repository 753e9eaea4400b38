"""Per-vertebra evaluation of one predicted label map against its ground truth."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from diffam.core.labels import LEVEL_NAMES, anatomical_order, segment_of

from .grid import align_to_reference, geometry, read_label_image
from .identification import DEFAULT_MAX_DISTANCE_MM, identify
from .metrics import centroids_world, mask_metrics, volume_ml
from .pairing import stem
from .vertebrae import get_mapping, to_verse

log = logging.getLogger(__name__)


@dataclass
class VertebraResult:
    """One row of the per-vertebra table.

    Attributes:
        case: Case name (file-name stem).
        label: VerSe id.
        name: Level name (``"L1"``, ``"T13"``, ``"sacrum"``).
        segment: ``cervical``, ``thoracic``, ``lumbar`` or ``sacrum``.
        status: ``"matched"`` (in both), ``"missing"`` (in ground truth
            only: Dice 0, not identified), ``"extra"`` (predicted only) or
            ``"not_attempted"`` (in ground truth only, at a level the
            prediction did not try; only with ``levels="predicted"``, see
            :func:`restrict_to_attempted`; left out of the summary, Dice NaN,
            identified None).
        dice: Dice in [0, 1] (0 for missing and extra vertebrae).
        hd95_mm: 95th-percentile Hausdorff distance, mm (NaN unless matched).
        hd_mm: Maximum Hausdorff distance, mm (NaN unless matched).
        assd_mm: Average symmetric surface distance, mm (NaN unless matched).
        volume_gt_ml: Ground-truth volume, ml (0 for extra).
        volume_pred_ml: Predicted volume, ml (0 for missing).
        centroid_gt_mm: True centroid (x, y, z) LPS mm, None for extra.
        centroid_pred_mm: Predicted centroid (x, y, z) LPS mm, None for missing.
        centroid_error_mm: Distance between the centroids, mm (NaN unless matched).
        identified: VerSe identification (False for missing, None for extra).
    """

    case: str
    label: int
    name: str
    segment: str
    status: str
    dice: float
    hd95_mm: float
    hd_mm: float
    assd_mm: float
    volume_gt_ml: float
    volume_pred_ml: float
    centroid_gt_mm: tuple[float, float, float] | None
    centroid_pred_mm: tuple[float, float, float] | None
    centroid_error_mm: float
    identified: bool | None


@dataclass
class CaseResult:
    """Evaluation of one case.

    Attributes:
        case: Case name.
        vertebrae: Per-vertebra rows, head to tail.
        resampled: True when the prediction was resampled onto the ground truth.
        ignored_gt_labels: Non-zero ground-truth values not mapped to a VerSe id.
        ignored_pred_labels: Non-zero predicted values not mapped to a VerSe id.
        error: Message when the case could not be evaluated (then no rows).
    """

    case: str
    vertebrae: list[VertebraResult] = field(default_factory=list)
    resampled: bool = False
    ignored_gt_labels: list[int] = field(default_factory=list)
    ignored_pred_labels: list[int] = field(default_factory=list)
    error: str | None = None

    @property
    def missing(self) -> list[str]:
        """Names of ground-truth vertebrae absent from the prediction."""
        return [v.name for v in self.vertebrae if v.status == "missing"]

    @property
    def extra(self) -> list[str]:
        """Names of predicted vertebrae absent from the ground truth."""
        return [v.name for v in self.vertebrae if v.status == "extra"]

    @property
    def not_attempted(self) -> list[str]:
        """Names of ground-truth vertebrae at levels the prediction did not try."""
        return [v.name for v in self.vertebrae if v.status == "not_attempted"]


def _tuple(c: np.ndarray | None) -> tuple[float, float, float] | None:
    return None if c is None else tuple(round(float(x), 3) for x in c)


def evaluate_arrays(
    pred: np.ndarray,
    gt: np.ndarray,
    spacing: tuple[float, float, float],
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0),
    direction: np.ndarray | None = None,
    case: str = "case",
    max_distance_mm: float = DEFAULT_MAX_DISTANCE_MM,
) -> list[VertebraResult]:
    """Per-vertebra metrics of two VerSe label maps on the same grid.

    Args:
        pred: Predicted VerSe ids, shape (Z, Y, X).
        gt: Ground-truth VerSe ids, same shape.
        spacing: Voxel size (sz, sy, sx) in mm.
        origin: (x, y, z) LPS mm of voxel (0, 0, 0) (for centroids).
        direction: 3x3 ITK direction matrix (identity if None).
        case: Case name written into each row.
        max_distance_mm: Identification distance threshold, mm.

    Returns:
        One :class:`VertebraResult` per label present in either map, head to
        tail; missing and extra vertebrae included.
    """
    if pred.shape != gt.shape:
        raise ValueError(
            f"{case}: prediction shape {pred.shape} differs from ground truth "
            f"{gt.shape}; use evaluate_images, which resamples"
        )
    direction = np.eye(3) if direction is None else np.asarray(direction).reshape(3, 3)
    boxes_gt = ndimage.find_objects(gt)
    boxes_pred = ndimage.find_objects(pred)
    c_gt = centroids_world(gt, spacing, origin, direction, boxes_gt)
    c_pred = centroids_world(pred, spacing, origin, direction, boxes_pred)
    ident = identify(c_pred, c_gt, max_distance_mm)
    nan = float("nan")
    rows: list[VertebraResult] = []
    for label in sorted(set(c_gt) | set(c_pred), key=anatomical_order):
        if label not in LEVEL_NAMES:
            raise ValueError(f"{case}: {label} is not a VerSe id; convert labels with to_verse")
        common = dict(case=case, label=label, name=LEVEL_NAMES[label], segment=segment_of(label))
        if label in c_gt and label in c_pred:
            box = _union(boxes_gt[label - 1], boxes_pred[label - 1])
            m = mask_metrics(pred[box] == label, gt[box] == label, spacing)
            rows.append(
                VertebraResult(
                    **common,
                    status="matched",
                    dice=m.dice,
                    hd95_mm=m.hd95_mm,
                    hd_mm=m.hd_mm,
                    assd_mm=m.assd_mm,
                    volume_gt_ml=m.volume_gt_ml,
                    volume_pred_ml=m.volume_pred_ml,
                    centroid_gt_mm=_tuple(c_gt[label]),
                    centroid_pred_mm=_tuple(c_pred[label]),
                    centroid_error_mm=ident[label].distance_mm,
                    identified=ident[label].identified,
                )
            )
        elif label in c_gt:
            rows.append(
                VertebraResult(
                    **common,
                    status="missing",
                    dice=0.0,
                    hd95_mm=nan,
                    hd_mm=nan,
                    assd_mm=nan,
                    volume_gt_ml=volume_ml(gt[boxes_gt[label - 1]] == label, spacing),
                    volume_pred_ml=0.0,
                    centroid_gt_mm=_tuple(c_gt[label]),
                    centroid_pred_mm=None,
                    centroid_error_mm=nan,
                    identified=False,
                )
            )
        else:
            rows.append(
                VertebraResult(
                    **common,
                    status="extra",
                    dice=0.0,
                    hd95_mm=nan,
                    hd_mm=nan,
                    assd_mm=nan,
                    volume_gt_ml=0.0,
                    volume_pred_ml=volume_ml(pred[boxes_pred[label - 1]] == label, spacing),
                    centroid_gt_mm=None,
                    centroid_pred_mm=_tuple(c_pred[label]),
                    centroid_error_mm=nan,
                    identified=None,
                )
            )
    return rows


def _union(a: tuple[slice, ...], b: tuple[slice, ...]) -> tuple[slice, ...]:
    return tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b))


def evaluate_images(
    pred: sitk.Image,
    gt: sitk.Image,
    pred_labels: str | Path = "verse",
    gt_labels: str | Path = "verse",
    case: str = "case",
    max_distance_mm: float = DEFAULT_MAX_DISTANCE_MM,
) -> CaseResult:
    """Evaluate a predicted label image against its ground truth.

    The prediction is resampled (nearest neighbour, with a warning) onto the
    ground-truth grid when the grids differ; metrics are computed on the
    ground-truth grid.

    Args:
        pred: Predicted label image.
        gt: Ground-truth label image.
        pred_labels: Label convention of ``pred``: ``verse``,
            ``totalsegmentator`` or a CSV mapping path.
        gt_labels: Label convention of ``gt`` (same choices).
        case: Case name.
        max_distance_mm: Identification distance threshold, mm.

    Returns:
        A :class:`CaseResult`.

    Raises:
        ValueError: When the images do not overlap in world space or hold
            non-label values.
    """
    aligned = align_to_reference(pred, gt, name=case)
    pred_v, ign_p = to_verse(sitk.GetArrayViewFromImage(aligned), get_mapping(pred_labels))
    gt_v, ign_g = to_verse(sitk.GetArrayViewFromImage(gt), get_mapping(gt_labels))
    for what, ign, conv in (("ground truth", ign_g, gt_labels), ("prediction", ign_p, pred_labels)):
        if ign:
            log.info(
                "%s: %d %s label value(s) are not vertebrae in the '%s' convention and "
                "were ignored: %s",
                case,
                len(ign),
                what,
                conv,
                ign,
            )
    spacing, origin, direction = geometry(gt)
    rows = evaluate_arrays(pred_v, gt_v, spacing, origin, direction, case, max_distance_mm)
    if not any(r.status != "extra" for r in rows):
        log.warning(
            "%s: the ground truth holds no vertebra label in the '%s' convention; check gt_labels",
            case,
            gt_labels,
        )
    return CaseResult(
        case=case,
        vertebrae=rows,
        resampled=aligned is not pred,
        ignored_gt_labels=ign_g,
        ignored_pred_labels=ign_p,
    )


def evaluate_files(
    pred_path: str | Path,
    gt_path: str | Path,
    pred_labels: str | Path = "verse",
    gt_labels: str | Path = "verse",
    case: str | None = None,
    max_distance_mm: float = DEFAULT_MAX_DISTANCE_MM,
) -> CaseResult:
    """Read two label images and evaluate them (see :func:`evaluate_images`).

    Args:
        pred_path: Predicted label image file.
        gt_path: Ground-truth label image file.
        pred_labels: Label convention of the prediction.
        gt_labels: Label convention of the ground truth.
        case: Case name (default: the ground-truth file stem).
        max_distance_mm: Identification distance threshold, mm.

    Returns:
        A :class:`CaseResult`.
    """
    case = case or stem(gt_path)
    return evaluate_images(
        read_label_image(pred_path),
        read_label_image(gt_path),
        pred_labels,
        gt_labels,
        case,
        max_distance_mm,
    )


#: Run report written beside ``labels.nii.gz`` by ``scripts/segment.py``.
RUN_REPORT_FILE = "report.json"


def attempted_levels(pred_path: str | Path) -> set[int] | None:
    """VerSe ids of the levels a ``scripts/segment.py`` run fitted.

    Args:
        pred_path: A predicted label file.

    Returns:
        The ``verse_id`` of every fitted vertebra listed in the
        ``report.json`` beside ``pred_path``, or None when there is no such
        report (or it lists none).
    """
    report = Path(pred_path).parent / RUN_REPORT_FILE
    if not report.is_file():
        return None
    try:
        data = json.loads(report.read_text(encoding="utf-8"))
        ids = {int(v["verse_id"]) for v in data.get("vertebrae") or []}
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("%s: unreadable run report (%s); using the labels present instead", report, e)
        return None
    return ids or None


def restrict_to_attempted(result: CaseResult, attempted: set[int] | None = None) -> CaseResult:
    """Mark missing vertebrae at levels the prediction did not try as ``not_attempted``.

    For predictions that cover only part of the spine by design (a template of
    L1-L5 fitted to a chest CT labelled T1-L3): the summary is then about the
    levels tried, and the others are reported separately instead of counting
    as missing. A level that was tried but left no voxel stays ``missing``.

    Args:
        result: An evaluated case (changed in place).
        attempted: VerSe ids the prediction tried (see
            :func:`attempted_levels`); None: the labels present in the
            prediction.

    Returns:
        ``result``.
    """
    if attempted is None:
        attempted = {r.label for r in result.vertebrae if r.status in ("matched", "extra")}
    for r in result.vertebrae:
        if r.status == "missing" and r.label not in attempted:
            r.status, r.dice, r.identified = "not_attempted", float("nan"), None
    return result
