"""Per-vertebra measurements from a label map and its CT: HU, body heights, border flag.

What :func:`vertebra_statistics` measures for each vertebra (one row each,
units in the key names; ``statistics.json``, ``statistics.csv``, ``report.md``):

* ``volume_ml``, the label's centroid (LPS mm) and ``cut_by_border``: the
  mask touches the first or last slice of any index axis, so every number of
  that vertebra is partial.
* ``hu_mean_vertebra``, ``hu_median_vertebra``: over the whole label.
* ``hu_mean_trabecular``, ``hu_median_trabecular``: over the trabecular ROI,
  the vertebral body eroded by ``cortex_margin_mm`` (distance to the body's
  border, in mm), as in opportunistic osteoporosis screening (Comp2Comp, L1).
* ``body_height_{anterior,middle,posterior}_mm``: heights of the vertebral
  body along the vertebra's cranio-caudal axis, in its mid-sagittal plane,
  measured at 10 %, 50 % and 90 % of the body's depth from its anterior wall
  (the median over a band of 10 % of the depth around each position, and
  over a slab of +-``slab_half_width_mm`` across the midline), and
  ``body_depth_mm`` (antero-posterior).
* Genant-style ratios: ``height_ratio_anterior_posterior`` (wedge),
  ``height_ratio_middle_posterior`` (biconcave),
  ``height_ratio_posterior_neighbours`` (crush: posterior height over the
  mean posterior height of the adjacent measured vertebrae),
  ``height_reduction_percent`` (the largest of the three reductions) and
  ``genant_grade`` (0 < 20 %, 1 mild 20-25 %, 2 moderate 25-40 %, 3 severe
  > 40 %; None when cut by the border). A screening aid, not a diagnosis:
  normal thoracic vertebrae are slightly wedged.

The vertebra's frame: the cranio-caudal axis ``s`` is the spine's direction
through the centroids of the adjacent labelled vertebrae (world superior when
a vertebra has no labelled neighbour); the anterior axis ``a`` points from
the whole vertebra's centroid to its body's centroid, perpendicular to ``s``
(world anterior at first). The body is the part of the mask anterior of the
vertebral canal: in the mid-sagittal slab the mask's anterior-most run along
``a`` ends where the canal (a gap of at least ``canal_min_mm``) begins
(:func:`diffam.core.body_centre.canal_posterior_wall`, the split the body
centres use too). Body
measures are left out (None) for C1, C2 and the sacrum, and when no canal is
found.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from diffam.core.body_centre import MIN_GAP_MM, canal_posterior_wall
from diffam.core.labels import anatomical_order, verse_id
from diffam.core.volume import Volume

#: Levels without a measurable vertebral body (C1 has none, C2 carries the dens).
NO_BODY_LEVELS = ("C1", "C2", "sacrum")

#: Columns of statistics.csv, in order (keys of every row of vertebra_statistics).
COLUMNS: tuple[str, ...] = (
    "level", "label_value", "voxels", "volume_ml", "cut_by_border",
    "centroid_l_mm", "centroid_p_mm", "centroid_s_mm",
    "hu_mean_vertebra", "hu_median_vertebra",
    "hu_mean_trabecular", "hu_median_trabecular", "trabecular_roi_ml",
    "body_height_anterior_mm", "body_height_middle_mm", "body_height_posterior_mm",
    "body_depth_mm",
    "height_ratio_anterior_posterior", "height_ratio_middle_posterior",
    "height_ratio_posterior_neighbours", "height_reduction_percent", "genant_grade",
)

#: Genant grade upper limits of the height reduction (percent): grade 0, 1, 2; above: 3.
GENANT_LIMITS = (20.0, 25.0, 40.0)


def genant_grade(reduction_percent: float | None) -> int | None:
    """Genant's semi-quantitative grade of a height reduction in percent (None stays None)."""
    if reduction_percent is None or not math.isfinite(reduction_percent):
        return None
    return int(np.searchsorted(GENANT_LIMITS, reduction_percent, side="left"))


def cut_by_border(bbox: tuple[slice, ...], shape: tuple[int, ...]) -> bool:
    """Whether a bounding box (array slices) touches the first or last slice of any axis."""
    return any(s.start == 0 or s.stop == n for s, n in zip(bbox, shape))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _perpendicular(v: np.ndarray, axis: np.ndarray) -> np.ndarray:
    return v - np.dot(v, axis) * axis


class _Frame:
    """Local frame of one vertebra: origin ``c`` and orthonormal axes (world LPS mm)."""

    def __init__(self, centre: np.ndarray, superior: np.ndarray, anterior: np.ndarray):
        self.c = centre
        self.s = _unit(superior)
        self.a = _unit(_perpendicular(anterior, self.s))
        self.r = np.cross(self.a, self.s)

    def project(self, points: np.ndarray) -> np.ndarray:
        """``(N, 3)`` world points -> ``(N, 3)`` local ``(r, a, s)`` coordinates in mm."""
        d = points - self.c
        return np.stack([d @ self.r, d @ self.a, d @ self.s], axis=1)


class _MaskSampler:
    """Nearest-voxel lookup of a cropped mask at world points."""

    def __init__(self, mask: np.ndarray, offset_kji: np.ndarray, volume: Volume):
        self.mask, self.offset = mask, offset_kji
        self.to_index = volume.world_to_index_affine

    def __call__(self, points: np.ndarray) -> np.ndarray:
        ijk = points @ self.to_index[:3, :3].T + self.to_index[:3, 3]
        kji = np.rint(ijk[..., ::-1]).astype(np.int64) - self.offset
        inside = np.all((kji >= 0) & (kji < np.array(self.mask.shape)), axis=-1)
        out = np.zeros(points.shape[:-1], bool)
        out[inside] = self.mask[tuple(kji[inside].T)]
        return out


def _slab(frame: _Frame, sampler: _MaskSampler, a_range, s_range, half_width: float, step: float):
    """Mask samples on the mid-sagittal slab: bool ``(n_r, n_a, n_s)`` and the ``a`` coordinates."""
    ur = np.arange(-half_width, half_width + 1e-9, step)
    ua = np.arange(a_range[0], a_range[1] + 1e-9, step)
    us = np.arange(s_range[0], s_range[1] + 1e-9, step)
    grid = (frame.c + ur[:, None, None, None] * frame.r + ua[None, :, None, None] * frame.a
            + us[None, None, :, None] * frame.s)
    return sampler(grid), ua


def _heights(body: np.ndarray, ua: np.ndarray, step: float) -> dict:
    """Body heights (mm) at 10/50/90 % of its depth from a bool slab ``(n_r, n_a, n_s)``."""
    profile = np.median(body.sum(axis=2), axis=0) * step  # (n_a,) height over a
    if not (profile > 0).any():
        return {}
    # ends where the profile reaches half the typical height (not a tilted endplate's rim)
    present = np.flatnonzero(profile >= 0.5 * np.median(profile[profile > 0]))
    if not len(present):
        return {}
    front, back = ua[present[-1]] + step / 2, ua[present[0]] - step / 2
    depth = front - back

    def at(fraction: float) -> float:
        centre = front - fraction * depth
        band = np.abs(ua - centre) <= 0.05 * depth
        return float(np.median(profile[band])) if band.any() else float("nan")

    return {"body_height_anterior_mm": at(0.10), "body_height_middle_mm": at(0.50),
            "body_height_posterior_mm": at(0.90), "body_depth_mm": float(depth)}


def _spine_axes(centroids: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """Cranial unit vector per VerSe id from the centroids of its labelled neighbours."""
    order = sorted(centroids, key=anatomical_order)
    axes = {}
    for n, v in enumerate(order):
        above = order[n - 1] if n and anatomical_order(v) - anatomical_order(order[n - 1]) <= 1 \
            else None
        below = order[n + 1] if n + 1 < len(order) \
            and anatomical_order(order[n + 1]) - anatomical_order(v) <= 1 else None
        top = centroids[above] if above is not None else centroids[v]
        bottom = centroids[below] if below is not None else centroids[v]
        if above is None and below is None:
            continue
        axes[v] = _unit(top - bottom)
    return axes


def _hu(values: np.ndarray, prefix: str) -> dict:
    if values is None or not values.size:
        return {f"hu_mean_{prefix}": None, f"hu_median_{prefix}": None}
    return {f"hu_mean_{prefix}": float(values.mean()),
            f"hu_median_{prefix}": float(np.median(values))}


def vertebra_statistics(
    labels: Volume,
    ct: Volume | None,
    vertebrae: Sequence[tuple[str, int]],
    *,
    cortex_margin_mm: float = 3.0,
    slab_half_width_mm: float = 2.0,
    canal_min_mm: float = MIN_GAP_MM,
    step_mm: float = 0.25,
) -> list[dict]:
    """Measurements of every vertebra of a label map (see the module docstring).

    Args:
        labels: integer label map, array ``(Z, Y, X)``, LPS geometry.
        ct: the CT in HU on the same grid (``labels.same_grid(ct)``), or None
            (HU keys are then None).
        vertebrae: ``(level name, label value)`` pairs to measure, e.g.
            ``[("L1", 20)]`` (VerSe) or ``[("L1", 31)]`` (TotalSegmentator).
        cortex_margin_mm: trabecular ROI = body voxels at least this far (mm)
            from the body's border.
        slab_half_width_mm: half width of the mid-sagittal slab (mm).
        canal_min_mm: shortest gap along the antero-posterior axis taken for
            the vertebral canal (mm).
        step_mm: sampling step on the slab (mm).

    Returns:
        One dict per vertebra with the keys of :data:`COLUMNS` (None where not
        measurable), in the order of ``vertebrae``; levels whose label is
        absent get ``voxels = 0`` and None elsewhere.
    """
    from scipy import ndimage

    if ct is not None and not labels.same_grid(ct):
        raise ValueError("the CT and the label map must share one grid for HU statistics")
    array = labels.array
    shape = array.shape
    voxel_ml = float(np.prod(labels.spacing)) / 1000.0
    values = [int(v) for _, v in vertebrae]
    boxes = ndimage.find_objects(array.astype(np.int32, copy=False), max(values, default=0)) \
        if values else []

    masks, centroids, rows = {}, {}, []
    for level, value in vertebrae:
        box = boxes[value - 1] if 0 < value <= len(boxes) else None
        row = dict.fromkeys(COLUMNS)
        row.update(level=level, label_value=value, voxels=0, volume_ml=0.0)
        rows.append(row)
        if box is None:
            continue
        pad = tuple(slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(box, shape))
        mask = array[pad] == value
        offset = np.array([s.start for s in pad])
        kji = np.argwhere(mask) + offset
        points = labels.index_to_world(kji[:, ::-1].astype(np.float64))
        centre = points.mean(axis=0)
        masks[level] = (mask, offset, points, pad)
        centroids[verse_id(level)] = centre
        row.update(voxels=len(kji), volume_ml=len(kji) * voxel_ml,
                   cut_by_border=cut_by_border(box, shape),
                   centroid_l_mm=float(centre[0]), centroid_p_mm=float(centre[1]),
                   centroid_s_mm=float(centre[2]))
        row.update(_hu(None if ct is None else ct.array[pad][mask], "vertebra"))

    axes = _spine_axes(centroids)
    for row in rows:
        level = row["level"]
        if level not in masks or level in NO_BODY_LEVELS:
            continue
        mask, offset, points, pad = masks[level]
        superior = axes.get(verse_id(level), np.array([0.0, 0.0, 1.0]))
        frame = _Frame(centroids[verse_id(level)], superior, np.array([0.0, -1.0, 0.0]))
        sampler = _MaskSampler(mask, offset, labels)
        body_sel = None
        for _ in range(2):  # world anterior first, then towards the body's centroid
            local = frame.project(points)
            lo, hi = local.min(axis=0) - step_mm, local.max(axis=0) + step_mm
            slab, ua = _slab(frame, sampler, (lo[1], hi[1]), (lo[2], hi[2]),
                             slab_half_width_mm, step_mm)
            a_cut = canal_posterior_wall(slab.any(axis=(0, 2)), ua, step_mm,
                                         min_gap_mm=canal_min_mm)
            if a_cut is None:
                body_sel = None
                break
            body_sel = local[:, 1] >= a_cut
            toward_body = _perpendicular(points[body_sel].mean(axis=0) - frame.c, frame.s)
            if np.linalg.norm(toward_body) < 1e-6 or np.dot(_unit(toward_body), frame.a) < 0.7:
                break
            frame = _Frame(frame.c, frame.s, toward_body)
        if body_sel is None or not body_sel.any():
            continue
        body_slab = slab & (ua[None, :, None] >= a_cut)
        row.update(_heights(body_slab, ua, step_mm))

        body = np.zeros(mask.shape, bool)
        body[tuple((np.argwhere(mask)[body_sel]).T)] = True
        inner = ndimage.distance_transform_edt(np.pad(body, 1), sampling=labels.spacing[::-1])
        roi = inner[1:-1, 1:-1, 1:-1] >= cortex_margin_mm
        row["trabecular_roi_ml"] = float(roi.sum()) * voxel_ml
        if ct is not None:
            row.update(_hu(ct.array[pad][roi], "trabecular"))
    _add_ratios(rows)
    return rows


def _add_ratios(rows: list[dict]) -> None:
    """Genant-style ratios, reduction and grade of every row with body heights (in place)."""
    posterior = {verse_id(r["level"]): r["body_height_posterior_mm"] for r in rows
                 if r["body_height_posterior_mm"] and not r["cut_by_border"]}
    for row in rows:
        ha, hm, hp = (row[f"body_height_{p}_mm"] for p in ("anterior", "middle", "posterior"))
        if not hp or ha is None or hm is None:
            continue
        order = anatomical_order(verse_id(row["level"]))
        near = [h for v, h in posterior.items()
                if 0 < abs(anatomical_order(v) - order) <= 1]
        row["height_ratio_anterior_posterior"] = ha / hp
        row["height_ratio_middle_posterior"] = hm / hp
        ratios = [ha / hp, hm / hp]
        if near:
            row["height_ratio_posterior_neighbours"] = hp / float(np.mean(near))
            ratios.append(row["height_ratio_posterior_neighbours"])
        reduction = max(0.0, 100.0 * (1.0 - min(ratios)))
        row["height_reduction_percent"] = reduction
        row["genant_grade"] = None if row["cut_by_border"] else genant_grade(reduction)
