"""Find the spinal column: bone threshold, spinal canal and the vertebral column axis.

Works on an LPS-aligned isotropic working grid (:func:`diffam.localize.grid.to_working_grid`),
axial slice by axial slice:

1. Bone: smoothed HU above a threshold; homogeneous enhanced blood (contrast
   in the aorta and heart, as bright as bone) is removed.
2. Column sections, from three cues: canal holes closed by bone in one
   axial slice ("canal ring"), the canal as a low-density tube enclosed by
   bone closed across slices ("canal tube") and the bright compact sections
   of the vertebral bodies ("vertebral bodies"), see
   :mod:`diffam.localize.column_cues`. Each cue's sections are chained from
   slice to slice (the longest continuous chain, dynamic programming over
   all candidates, which rejects sections elsewhere); the chain that spans
   most of the scan most densely gives the column, and the cue is recorded.
3. Column axis: from that rough chain, the centroid of the vertebral bone
   within a radius in each axial slice (mean shift): the bone's centre of
   mass, the quantity a vertebra centroid is made of. A column shorter than
   :data:`SHORT_COLUMN_MM` keeps the canal's direction instead
   (:func:`canal_parallel_points`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from diffam.core.volume import Volume
from diffam.localize.column_cues import (
    Section,
    body_midline,
    body_sections,
    canal_tube_sections,
    trim_closing_overhang,
)
from diffam.localize.grid import grid_to_world

#: Longest gap (mm) along z between linked canal sections in the second pass.
LONG_GAP_MM = 40.0


@dataclass
class SpineColumn:
    """The vertebral column found in a scan, one row per axial slice of the working grid.

    Attributes:
        points: ``(N, 3)`` LPS mm in-plane centroids of the vertebral bone,
            from the lowest to the highest slice the column spans; NaN rows
            where a slice holds no bone near the axis.
        bone_area_mm2: ``(N,)`` bone area in mm^2 inside the search radius.
        bone_threshold_hu: the bone threshold used.
        cue: name of the cue that found the column (:data:`COLUMN_CUES`).
        confidence: that cue's score in ``[0, 1]`` (:func:`_chain_score`).
    """

    points: np.ndarray
    bone_area_mm2: np.ndarray
    bone_threshold_hu: float
    cue: str = "none"
    confidence: float = 0.0

    @property
    def extent_mm(self) -> float:
        """Length in mm of the column (sum of steps between valid points)."""
        valid = self.points[~np.isnan(self.points[:, 0])]
        if len(valid) < 2:
            return 0.0
        return float(np.linalg.norm(np.diff(valid, axis=0), axis=1).sum())


def _canal_candidates(
    grid: Volume,
    bone: np.ndarray,
    *,
    area_mm2: tuple[float, float] = (30.0, 1500.0),
    max_hu: float = 200.0,
) -> list[Section]:
    """Canal-sized, low-density holes of the bone mask closed in one axial slice (the ring cue)."""
    h = float(grid.spacing[0])
    midline_i, max_offset = body_midline(grid)
    holes: list[Section] = []
    for k in range(bone.shape[0]):
        sl = bone[k]
        if not sl.any():
            continue
        filled = ndimage.binary_fill_holes(sl)
        hole = filled & ~sl
        labels, n = ndimage.label(hole)
        if n == 0:
            continue
        index = np.arange(1, n + 1)
        counts = ndimage.sum_labels(np.ones_like(labels), labels, index)
        means = ndimage.mean(grid.array[k], labels, index)
        for lab, count, mean in zip(index, counts, means):
            area = count * h * h
            if not (area_mm2[0] <= area <= area_mm2[1]) or mean > max_hu:
                continue
            jj, ii = np.nonzero(labels == lab)
            # Elongated slivers (gaps between bones) are not a canal.
            extent = max(np.ptp(jj), np.ptp(ii)) + 1
            if extent * extent > 6.0 * count:
                continue
            if abs(ii.mean() - midline_i) > max_offset:
                continue  # the medullary canal of an arm bone, not the spinal canal
            holes.append(Section(k, float(jj.mean()), float(ii.mean()), float(area), int(jj.min())))
    return holes


def _longest_chain(
    holes: list[Section],
    spacing: float,
    *,
    max_gap_mm: float = 24.0,
    max_slope: float = 2.0,
    max_shift_mm: float = np.inf,
    skip_cost: float = 0.15,
) -> list[Section]:
    """The longest slice-to-slice continuous chain of holes (dynamic programming).

    Two holes link when they are at most ``max_gap_mm`` apart along z and their
    in-plane distance is at most ``3 mm + max_slope * dz`` (a column tilted up
    to ``atan(max_slope)`` from the z axis), and never more than
    ``3 mm + max_shift_mm``. A chain scores one per hole, minus ``skip_cost``
    per skipped slice.
    """
    if not holes:
        return []
    holes = sorted(holes, key=lambda h: h.k)
    ks = np.array([h.k for h in holes])
    pos = np.array([[h.j, h.i] for h in holes]) * spacing
    score = np.ones(len(holes))
    prev = -np.ones(len(holes), dtype=int)
    max_gap = max(1, int(round(max_gap_mm / spacing)))
    for n in range(len(holes)):
        lo = np.searchsorted(ks, ks[n] - max_gap, side="left")
        hi = np.searchsorted(ks, ks[n], side="left")
        if hi <= lo:
            continue
        dz = (ks[n] - ks[lo:hi]) * spacing
        dxy = np.linalg.norm(pos[lo:hi] - pos[n], axis=1)
        ok = dxy <= 3.0 + np.minimum(max_slope * dz, max_shift_mm)
        if not ok.any():
            continue
        cand = score[lo:hi] - skip_cost * (dz / spacing - 1) - 0.05 * dxy / spacing
        cand[~ok] = -np.inf
        best = int(np.argmax(cand))
        if cand[best] > 0:
            score[n] = 1.0 + cand[best]
            prev[n] = lo + best
    # The chain: backtrack from the best end, keep one hole per slice.
    n = int(np.argmax(score))
    chain = []
    while n >= 0:
        chain.append(holes[n])
        n = prev[n]
    return chain[::-1]


def _rough_axis(chain: list[Section], n_slices: int, spacing: float, smooth_mm: float) -> dict:
    """Chain positions interpolated over every slice it spans and smoothed: k -> (j, i)."""
    ks = np.array([h.k for h in chain], dtype=float)
    ji = np.array([[h.j, h.i] for h in chain])
    all_k = np.arange(int(ks[0]), int(ks[-1]) + 1)
    path = np.stack([np.interp(all_k, ks, ji[:, c]) for c in range(2)], axis=1)
    sigma = smooth_mm / spacing
    if len(all_k) > 1 and sigma > 0:
        path = ndimage.gaussian_filter1d(path, sigma, axis=0, mode="nearest")
    return {int(k): path[n] for n, k in enumerate(all_k)}


def blood_pool_mask(grid: Volume | np.ndarray) -> np.ndarray:
    """Voxels of homogeneous enhanced tissue (contrast-filled vessels, heart, kidneys).

    Every voxel of a 3-voxel neighbourhood between 150 and 700 HU: blood
    with contrast agent, which the bone threshold would otherwise take. The
    interior of dense cancellous bone can be caught too; its cortex stays, so
    centroids of the remaining bone are barely affected.

    Args:
        grid: a working grid, or any HU array (a straightened scan).
    """
    array = grid.array if isinstance(grid, Volume) else grid
    low = ndimage.minimum_filter(array, 3)
    high = ndimage.maximum_filter(array, 3)
    return ndimage.binary_dilation((low > 150.0) & (high < 700.0), iterations=1)


def _slice_centroid(
    bone_slice: np.ndarray, start: np.ndarray, radius_vox: float, iterations: int = 3
) -> tuple[np.ndarray, float] | None:
    """Mean-shift the in-plane centroid of the bone within ``radius_vox`` of ``start``."""
    centre = np.asarray(start, dtype=float)
    jj, ii = np.nonzero(bone_slice)
    if len(jj) == 0:
        return None
    inside = np.zeros(0, bool)
    for _ in range(iterations):
        inside = (jj - centre[0]) ** 2 + (ii - centre[1]) ** 2 <= radius_vox**2
        if inside.sum() < 3:
            return None
        centre = np.array([jj[inside].mean(), ii[inside].mean()])
    return centre, float(inside.sum())


#: Column length (mm) below which its axis runs parallel to the canal
#: (:func:`canal_parallel_points`): about one vertebral period.
SHORT_COLUMN_MM = 48.0


def canal_parallel_points(points: np.ndarray, axis: dict) -> np.ndarray:
    """Column points on the canal's path, shifted by the median offset of the bone centroids.

    The bone centroid of an axial slice swings within a vertebra. Slices
    through the body, the disc and the arch have their bone in different
    places. Over a column of several vertebrae the centreline's smoothing
    averages the swing out. Over one period or less it tilts the centreline
    (the 40 mm DICOM series: about 30 degrees off the spine). The canal is
    a straight tube there. The column keeps the canal's direction and the
    bone's position.

    Args:
        points: ``(N, 3)`` ``(k, j, i)`` bone centroids, one per slice of
            ``axis``; NaN rows where a slice holds no bone.
        axis: slice ``k`` -> ``(j, i)`` of the canal chain (:func:`_rough_axis`).
    """
    canal = np.array([(k, *ji) for k, ji in axis.items()], dtype=float)
    valid = ~np.isnan(points).any(axis=1)
    if not valid.any():
        return points
    offset = np.median(points[valid] - canal[valid], axis=0)
    return np.where(valid[:, None], canal + offset, np.nan)


#: The cues that find column sections, in order of preference on equal
#: scores, and the weight of each one's chain score: bright compact sections
#: of a body's size are less specific than a canal (the 40 mm DICOM series: a
#: chain of them 47 mm from the spine spans the scan as well as the canal does).
COLUMN_CUES = {"canal ring": 1.0, "canal tube": 1.0, "vertebral bodies": 0.8}


def _chain_score(chain: list[Section], n_slices: int) -> float:
    """Share of the scan's slices the chain spans, times the share of those it holds a section in."""
    if len(chain) < 2:
        return 0.0
    span = chain[-1].k - chain[0].k + 1
    return (span / max(n_slices, 1)) * (len(chain) / span)


def _best_chain(sections: list[Section], spacing: float, n_slices: int) -> list[Section]:
    """The longest continuous chain of ``sections``; with gaps of up to a period if that spans more.

    The canal is enclosed by bone only at the level of the pedicles and
    laminae, so a ring cue can leave most of each vertebra without a section:
    then gaps of up to one vertebral period are allowed.
    """
    chain = _longest_chain(sections, spacing)
    if len(chain) >= 1 and (chain[-1].k - chain[0].k + 1) < 0.5 * n_slices:
        wide = _longest_chain(
            sections, spacing, max_gap_mm=LONG_GAP_MM, max_shift_mm=10.0, skip_cost=0.02
        )
        if wide[-1].k - wide[0].k > chain[-1].k - chain[0].k:
            chain = wide
    return chain


def find_column(
    grid: Volume, *, bone_threshold_hu: float = 180.0, radius_mm: float = 30.0
) -> SpineColumn:
    """Find the vertebral column in a working grid.

    Every cue of :mod:`diffam.localize.column_cues` (and the closed canal
    rings of single slices) proposes sections; each cue's sections are
    chained from slice to slice, and the chain with the best
    :func:`_chain_score` gives the rough axis.

    Args:
        grid: LPS-aligned isotropic working grid in HU
            (:func:`~diffam.localize.grid.to_working_grid`).
        bone_threshold_hu: bone threshold in HU.
        radius_mm: in-plane radius around the axis within which bone counts
            as vertebral.

    Returns:
        The :class:`SpineColumn`, one row per axial slice from the lowest to
        the highest slice the column spans; empty arrays when no column is
        found.
    """
    h = float(grid.spacing[0])
    n_slices = grid.array.shape[0]
    smoothed = ndimage.gaussian_filter(grid.array.astype(np.float32), 1.0 / h)
    bone = smoothed > bone_threshold_hu
    blood = blood_pool_mask(grid)
    best, best_score, best_cue = [], 0.0, "none"
    for cue, weight in COLUMN_CUES.items():
        if cue == "canal ring":
            sections = _canal_candidates(grid, bone)
        elif cue == "canal tube":
            sections = canal_tube_sections(grid, bone, smoothed)
        else:
            sections = body_sections(grid, smoothed, blood)
        chain = _best_chain(sections, h, n_slices)
        score = weight * _chain_score(chain, n_slices)
        if score > best_score + 1e-9:
            best, best_score, best_cue = chain, score, cue
    if len(best) < 2:
        return SpineColumn(np.zeros((0, 3)), np.zeros(0), bone_threshold_hu)
    if best_cue == "canal tube":
        best = trim_closing_overhang(best, n_slices, h)
    axis = _rough_axis(best, n_slices, h, smooth_mm=10.0)
    vertebral_bone = bone & ~blood
    points, area = [], []
    for k, near in axis.items():
        found = _slice_centroid(vertebral_bone[k], near, radius_mm / h)
        if found is None:
            points.append((np.nan,) * 3)
            area.append(0.0)
        else:
            points.append((k, *found[0]))
            area.append(found[1] * h * h)
    points = np.array(points, dtype=float)
    if best_cue != "vertebral bodies" and len(axis) * h < SHORT_COLUMN_MM:
        points = canal_parallel_points(points, axis)
    return SpineColumn(
        grid_to_world(grid, points),
        np.array(area),
        bone_threshold_hu,
        cue=best_cue,
        confidence=float(best_score),
    )
