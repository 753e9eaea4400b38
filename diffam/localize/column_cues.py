"""Cues that find sections of the vertebral column in the axial slices of a working grid.

Each cue returns candidate sections (one point per slice and component) that
:func:`diffam.localize.spine_column.find_column` chains from slice to slice;
the cue whose chain covers the most of the scan, weighted by how densely it
is filled, finds the column, and its name goes to the log.

* ``canal tube`` (:func:`canal_tube_sections`): the spinal canal as a
  low-density tube that bone surrounds in 3D. Bone is first closed across
  slices (the maximum over :data:`SLAB_MM` along z), because in lumbar axial
  slices the canal is seldom closed by bone in one slice (interlaminar gaps,
  thin cortex, partial volume); a low-density voxel is enclosed when bone lies
  within :data:`REACH_MM` in at least :data:`MIN_ENCLOSED_DIRECTIONS` of eight
  in-plane directions. A closed ring is the special case of eight.
* ``vertebral bodies`` (:func:`body_sections`): the bodies as compact, bright
  cylinders (smoothed HU above :data:`BODY_HU`) of a body's cross-section,
  for scans whose canal cannot be seen (strong noise, a canal filled by
  contrast).

Both keep only sections near the left-right middle of the body
(:func:`body_midline`): the spine lies on the body's plane of symmetry; arm
bones, the table edge and the iliac wings lie far from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from diffam.core.volume import Volume

#: Thickness (mm, along z) over which bone is closed across slices for the canal tube.
SLAB_MM = 12.0

#: Farthest distance (mm, in-plane) at which bone counts as enclosing a canal
#: voxel: the canal's half-width (about 8-12 mm) with room for a missing lamina.
REACH_MM = 24.0

#: Of eight in-plane directions, how many must meet bone within :data:`REACH_MM`.
MIN_ENCLOSED_DIRECTIONS = 7

#: Highest smoothed HU of the canal (CSF and cord, with partial volume).
CANAL_MAX_HU = 150.0

#: Cross-section (mm^2) of a canal section: a child's canal to an adult's
#: canal widened by the closing.
CANAL_AREA_MM2 = (20.0, 800.0)

#: A canal-tube section with another one behind it (posterior, larger ``j``)
#: is the low-density marrow of a vertebral body, enclosed by its cortex,
#: not the canal, which lies behind the body: where the one behind lies
#: within :data:`BEHIND_LR_MM` left-right and :data:`BEHIND_MM` behind (a
#: body's centre lies 25-40 mm in front of its canal's: verse005 and
#: verse008, 30-36 mm) and is at least :data:`BEHIND_MIN_MM2` (smaller than
#: an adult canal's section, about 150 mm^2 in the neck and more below). The
#: gaps between laminae and spinous processes 10-16 mm behind a canal
#: (20-100 mm^2 in verse005 and verse008) are nearer than 20 mm, so they
#: never remove a canal section.
BEHIND_LR_MM = 10.0
BEHIND_MM = (20.0, 50.0)
BEHIND_MIN_MM2 = 60.0

#: Smoothed HU above which the vertebral bodies (cancellous bone) are found.
BODY_HU = 140.0

#: Cross-section (mm^2) of a vertebral body: C3 (about 250) to L5 (about 2000).
BODY_AREA_MM2 = (150.0, 3000.0)

#: Left-right distance of the spine from the body's midline, as a fraction of
#: the body's width, with a floor in mm (thin crops: the crop is all spine).
MIDLINE_FRACTION = 0.2
MIDLINE_MIN_MM = 40.0


@dataclass
class Section:
    """One candidate section of the column in axial slice ``k`` of a working grid.

    Attributes:
        k: slice index.
        j, i: in-plane centre (array indices, posterior and left).
        area_mm2: area of the section.
        anterior_j: most anterior row of the section.
    """

    k: int
    j: float
    i: float
    area_mm2: float
    anterior_j: int


def body_midline(grid: Volume) -> tuple[float, float]:
    """Left-right index of the body's midline and the largest offset (voxels) of the spine from it.

    The spine lies near the left-right middle of the body (soft tissue above
    -300 HU); a section farther than :data:`MIDLINE_FRACTION` of the body's
    width (at least :data:`MIDLINE_MIN_MM`) is an arm bone or the table.
    """
    ii = np.nonzero(grid.array > -300.0)[2]
    if len(ii) == 0:
        return grid.array.shape[2] / 2.0, np.inf
    lo, mid, hi = np.percentile(ii, [2, 50, 98])
    return float(mid), max(MIDLINE_FRACTION * (hi - lo), MIDLINE_MIN_MM / float(grid.spacing[0]))


def _shifted(mask: np.ndarray, dj: int, di: int) -> np.ndarray:
    """``out[k, j, i] = mask[k, j + dj, i + di]`` (False beyond the array)."""
    out = np.zeros_like(mask)
    nj, ni = mask.shape[1:]
    out[:, max(-dj, 0) : nj + min(-dj, 0), max(-di, 0) : ni + min(-di, 0)] = mask[
        :, max(dj, 0) : nj + min(dj, 0), max(di, 0) : ni + min(di, 0)
    ]
    return out


def _bone_ahead(bone: np.ndarray, dj: int, di: int, steps: int) -> np.ndarray:
    """Whether bone lies 1..``steps`` voxels away from each voxel in direction ``(dj, di)``.

    Doubling: the reach is built as OR of shifted copies in ``log2(steps)`` passes.
    """
    hit = _shifted(bone, dj, di)
    reach = 1
    while reach < steps:
        extra = min(reach, steps - reach)
        hit = hit | _shifted(hit, extra * dj, extra * di)
        reach += extra
    return hit


def enclosed_low_density(grid: Volume, bone: np.ndarray, smoothed: np.ndarray) -> np.ndarray:
    """Low-density voxels surrounded in-plane by bone closed across slices (the canal tube)."""
    h = float(grid.spacing[0])
    half = max(1, int(round(0.5 * SLAB_MM / h)))
    slab = ndimage.maximum_filter1d(bone.view(np.uint8), 2 * half + 1, axis=0).view(bool)
    steps = max(1, int(round(REACH_MM / h)))
    count = np.zeros(bone.shape, np.uint8)
    for dj, di in ((1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1)):
        # Diagonal steps are sqrt(2) longer: fewer of them for the same reach.
        n = steps if dj == 0 or di == 0 else max(1, int(round(steps / np.sqrt(2.0))))
        count += _bone_ahead(slab, dj, di, n)
    return (count >= MIN_ENCLOSED_DIRECTIONS) & (smoothed < CANAL_MAX_HU) & ~slab


def _sections(
    grid: Volume,
    mask: np.ndarray,
    area_mm2: tuple[float, float],
    *,
    max_elongation: float = 6.0,
) -> list[Section]:
    """Compact connected components of each axial slice of ``mask`` near the body's midline."""
    h = float(grid.spacing[0])
    midline_i, max_offset = body_midline(grid)
    out: list[Section] = []
    for k in range(mask.shape[0]):
        labels, n = ndimage.label(mask[k])
        if n == 0:
            continue
        for lab, found in enumerate(ndimage.find_objects(labels), start=1):
            if found is None:
                continue
            jj, ii = np.nonzero(labels[found] == lab)
            area = len(jj) * h * h
            if not (area_mm2[0] <= area <= area_mm2[1]):
                continue
            jj = jj + found[0].start
            ii = ii + found[1].start
            # Elongated slivers (gaps between bones) are no canal or body.
            extent = max(np.ptp(jj), np.ptp(ii)) + 1
            if extent * extent > max_elongation * len(jj):
                continue
            if abs(ii.mean() - midline_i) > max_offset:
                continue
            out.append(Section(k, float(jj.mean()), float(ii.mean()), float(area), int(jj.min())))
    return out


def canal_tube_sections(grid: Volume, bone: np.ndarray, smoothed: np.ndarray) -> list[Section]:
    """Canal sections: low-density voxels enclosed by bone closed across slices,
    without the bodies' marrow in front of them (:func:`drop_marrow_in_front`)."""
    sections = _sections(grid, enclosed_low_density(grid, bone, smoothed), CANAL_AREA_MM2)
    return drop_marrow_in_front(sections, float(grid.spacing[0]))


def drop_marrow_in_front(sections: list[Section], spacing_mm: float) -> list[Section]:
    """``sections`` without those that have a canal-sized section behind them in their slice.

    Low-density marrow (a scan of osteoporotic bone: 55-65 HU) enclosed by a
    body's cortex looks like a canal section too, 20-40 mm in front of the
    canal. Its chain runs parallel to the canal's, and which of the two the
    chaining keeps was up to the noise (verse005, noise seed 2: the column
    followed the bodies' marrow for its lowest 26 mm, the centreline's end
    tilted 40 degrees forward, and a spurious disc in its extension named
    every level one off). The canal lies behind the body, so of two such
    sections on the midline the one in front is the marrow.
    """
    lr = BEHIND_LR_MM / spacing_mm
    near, far = (d / spacing_mm for d in BEHIND_MM)
    kept = []
    for s in sections:
        marrow = any(
            o.k == s.k and near <= o.j - s.j <= far and abs(o.i - s.i) <= lr
            and o.area_mm2 >= BEHIND_MIN_MM2
            for o in sections
        )
        if not marrow:
            kept.append(s)
    return kept


def trim_closing_overhang(chain: list[Section], n_slices: int, spacing_mm: float) -> list[Section]:
    """A canal-tube chain without the half slab the closing adds beyond the bone at each end.

    Closing across :data:`SLAB_MM` carries the last laminae half a slab past
    the end of the spine's posterior elements, where the slices hold only a
    vertebral body: a column point there (the bone's centroid) jumps 20-30 mm
    anteriorly and bends the centreline's end, which the extension beyond
    the column then follows. An end at the scan's face is kept (the closing
    adds nothing there).
    """
    half = max(1, int(round(0.5 * SLAB_MM / spacing_mm)))
    lo = chain[0].k + half if chain[0].k > 0 else chain[0].k
    hi = chain[-1].k - half if chain[-1].k < n_slices - 1 else chain[-1].k
    trimmed = [section for section in chain if lo <= section.k <= hi]
    return trimmed if len(trimmed) >= 2 else chain


def body_sections(grid: Volume, smoothed: np.ndarray, blood: np.ndarray) -> list[Section]:
    """Vertebral-body sections: compact bright regions of a body's size, enhanced blood removed."""
    bright = (smoothed > BODY_HU) & ~blood
    # Opening detaches the body from ribs and processes that touch it.
    bright = ndimage.binary_opening(bright, structure=np.ones((1, 3, 3), bool))
    return _sections(grid, bright, BODY_AREA_MM2, max_elongation=4.0)
