"""Overlap and surface-distance metrics of binary masks on anisotropic grids.

All masks are boolean arrays indexed (Z, Y, X); ``spacing`` is given in the
same order, (sz, sy, sx) in millimetres (note: SimpleITK's ``GetSpacing()``
is (sx, sy, sz) and must be reversed).

Surface voxels are the mask voxels removed by one binary erosion with the
6-connected cross (voxels outside the array count as background, so a mask
touching the border has a surface there). Surface distances are Euclidean
distances in mm between surface voxel centres, computed with
:func:`scipy.ndimage.distance_transform_edt` and ``sampling=spacing``.

Conventions for the distances (the ones of MONAI and Heimann et al. 2009):

* ``hd95`` = max of the two directed 95th percentiles of the surface
  distances (pred -> gt and gt -> pred);
* ``hd`` = the classical (maximum) Hausdorff distance;
* ``assd`` = mean of all surface distances of both directions together,
  (sum d(P->G) + sum d(G->P)) / (|dP| + |dG|).

Empty masks: Dice of two empty masks is NaN and of one empty mask is 0;
every surface distance involving an empty mask is NaN (undefined, not
infinite), so that means over vertebrae can skip them explicitly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

_CROSS = ndimage.generate_binary_structure(3, 1)


@dataclass(frozen=True)
class MaskMetrics:
    """Metrics of one predicted mask against one ground-truth mask.

    Attributes:
        dice: Dice coefficient in [0, 1] (NaN when both masks are empty).
        hd95_mm: 95th-percentile symmetric Hausdorff distance, mm (NaN if a
            mask is empty).
        hd_mm: Maximum Hausdorff distance, mm (NaN if a mask is empty).
        assd_mm: Average symmetric surface distance, mm (NaN if a mask is empty).
        volume_pred_ml: Volume of the prediction, ml.
        volume_gt_ml: Volume of the ground truth, ml.
    """

    dice: float
    hd95_mm: float
    hd_mm: float
    assd_mm: float
    volume_pred_ml: float
    volume_gt_ml: float


def _check_spacing(spacing: Sequence[float], ndim: int) -> np.ndarray:
    sp = np.asarray(spacing, dtype=np.float64)
    if sp.shape != (ndim,) or not np.all(sp > 0):
        raise ValueError(
            f"spacing must be {ndim} positive values in (Z, Y, X) order (mm), got {tuple(spacing)}"
        )
    return sp


def _check_pair(pred: np.ndarray, gt: np.ndarray) -> None:
    if pred.shape != gt.shape:
        raise ValueError(
            f"prediction shape {pred.shape} differs from ground truth {gt.shape}: "
            "resample the prediction onto the ground-truth grid first "
            "(diffam.evaluation.grid.align_to_reference)"
        )


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice coefficient 2|P & G| / (|P| + |G|).

    Args:
        pred: Boolean mask, shape (Z, Y, X).
        gt: Boolean mask, same shape.

    Returns:
        Dice in [0, 1]; NaN when both masks are empty.
    """
    _check_pair(pred, gt)
    p, g = pred.astype(bool), gt.astype(bool)
    denom = int(p.sum()) + int(g.sum())
    if denom == 0:
        return float("nan")
    return 2.0 * int(np.logical_and(p, g).sum()) / denom


def volume_ml(mask: np.ndarray, spacing: Sequence[float]) -> float:
    """Volume of a mask in millilitres (voxel count x voxel volume / 1000).

    Args:
        mask: Boolean mask, shape (Z, Y, X).
        spacing: Voxel size (sz, sy, sx) in mm.

    Returns:
        Volume in ml (cm^3).
    """
    sp = _check_spacing(spacing, mask.ndim)
    return float(np.count_nonzero(mask)) * float(np.prod(sp)) / 1000.0


def surface(mask: np.ndarray) -> np.ndarray:
    """Surface voxels: the mask minus its erosion by the 6-connected cross.

    Args:
        mask: Boolean mask, shape (Z, Y, X).

    Returns:
        Boolean array, same shape, True on surface voxels.
    """
    m = mask.astype(bool)
    return m & ~ndimage.binary_erosion(m, structure=_CROSS, border_value=0)


def _bbox(mask: np.ndarray) -> tuple[slice, ...] | None:
    objs = ndimage.find_objects(mask.astype(np.uint8))
    return objs[0] if objs else None


def surface_distances(
    pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances between two masks.

    Both masks are cropped to the bounding box of their union (plus one voxel
    of background margin, which keeps the border convention of the full
    array) before the distance transforms, so cost scales with the object,
    not with the scan.

    Args:
        pred: Boolean mask, shape (Z, Y, X).
        gt: Boolean mask, same shape.
        spacing: Voxel size (sz, sy, sx) in mm.

    Returns:
        ``(d_pred_to_gt, d_gt_to_pred)``: 1-D float arrays of distances in
        mm, from each surface voxel of one mask to the nearest surface voxel
        of the other. Both are empty when either mask is empty.
    """
    _check_pair(pred, gt)
    sp = _check_spacing(spacing, pred.ndim)
    p, g = pred.astype(bool), gt.astype(bool)
    if not p.any() or not g.any():
        return np.empty(0), np.empty(0)
    box = _bbox(p | g)
    p = np.pad(p[box], 1)
    g = np.pad(g[box], 1)
    sp_, sg = surface(p), surface(g)
    dist_to_g = ndimage.distance_transform_edt(~sg, sampling=sp)
    dist_to_p = ndimage.distance_transform_edt(~sp_, sampling=sp)
    return dist_to_g[sp_], dist_to_p[sg]


def mask_metrics(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float]) -> MaskMetrics:
    """Dice, HD95, HD, ASSD and volumes of one mask pair.

    Args:
        pred: Boolean predicted mask, shape (Z, Y, X).
        gt: Boolean ground-truth mask, same shape and grid.
        spacing: Voxel size (sz, sy, sx) in mm.

    Returns:
        A :class:`MaskMetrics`; distances are NaN when a mask is empty.
    """
    d_pg, d_gp = surface_distances(pred, gt, spacing)
    if d_pg.size == 0 or d_gp.size == 0:
        hd95 = hd = assd = float("nan")
    else:
        hd95 = float(max(np.percentile(d_pg, 95), np.percentile(d_gp, 95)))
        hd = float(max(d_pg.max(), d_gp.max()))
        assd = float((d_pg.sum() + d_gp.sum()) / (d_pg.size + d_gp.size))
    return MaskMetrics(
        dice=dice(pred, gt),
        hd95_mm=hd95,
        hd_mm=hd,
        assd_mm=assd,
        volume_pred_ml=volume_ml(pred, spacing),
        volume_gt_ml=volume_ml(gt, spacing),
    )


def index_to_world(
    index_zyx: np.ndarray,
    spacing: Sequence[float],
    origin: Sequence[float],
    direction: np.ndarray,
) -> np.ndarray:
    """Map continuous voxel indices (Z, Y, X order) to LPS world mm.

    Args:
        index_zyx: Indices, shape (..., 3), in (k, j, i) order.
        spacing: Voxel size (sz, sy, sx) in mm.
        origin: World position of voxel (0, 0, 0), (x, y, z) LPS mm as ITK gives it.
        direction: 3x3 direction matrix (ITK convention: columns are the
            world directions of the i, j, k axes).

    Returns:
        World points, shape (..., 3), (x, y, z) LPS mm.
    """
    ijk = np.asarray(index_zyx, dtype=np.float64)[..., ::-1]
    sp_xyz = np.asarray(spacing, dtype=np.float64)[::-1]
    d = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    return np.asarray(origin, dtype=np.float64) + (ijk * sp_xyz) @ d.T


def centroids_world(
    labels: np.ndarray,
    spacing: Sequence[float],
    origin: Sequence[float],
    direction: np.ndarray,
    boxes: list[tuple[slice, ...] | None] | None = None,
) -> dict[int, np.ndarray]:
    """Centroid of every non-zero label in LPS world mm.

    Args:
        labels: Integer label map, shape (Z, Y, X).
        spacing: Voxel size (sz, sy, sx) in mm.
        origin: (x, y, z) LPS mm of voxel (0, 0, 0).
        direction: 3x3 ITK direction matrix.
        boxes: ``scipy.ndimage.find_objects(labels)`` if already computed.

    Returns:
        Label -> centroid, shape (3,), (x, y, z) LPS mm.
    """
    if labels.size == 0 or labels.max() == 0:
        return {}
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise ValueError("centroids_world needs a non-negative integer label map")
    out: dict[int, np.ndarray] = {}
    # Bounding boxes first: the centroid of each label is computed in its box only.
    boxes = ndimage.find_objects(labels) if boxes is None else boxes
    for n, box in enumerate(boxes, start=1):
        if box is None:
            continue
        idx = np.nonzero(labels[box] == n)
        mean = np.array([i.mean() + b.start for i, b in zip(idx, box)])
        out[n] = index_to_world(mean, spacing, origin, direction)
    return out


def roc_auc(values: Sequence[float], positive: Sequence[bool]) -> float:
    """Area under the ROC curve of ``values`` (higher: more likely positive) for ``positive``.

    The Mann-Whitney form: the probability that a random positive scores
    higher than a random negative, ties counted half (average ranks). NaN
    when either class is empty.
    """
    from scipy.stats import rankdata

    values = np.asarray(values, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(values)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
