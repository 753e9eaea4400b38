"""Detect vertebrae along the centreline from the cortical endplates.

The scan is resampled in the centreline's frame ("straightened"): arc length
``s`` along the curve, ``v`` along the local posterior axis and ``u`` along
the local left axis, 1 mm apart. Then:

1. Spinal canal and posterior wall of the bodies: in the mid-sagittal plane,
   the canal is the dark band with bone on both sides (body in front, arch
   behind); the posterior wall of the bodies is the steepest rise in density
   going anteriorly from it. The wall is a sharp, contrast-independent edge.
2. Endplate profile: inside the bodies (a slab 4-16 mm in front of the
   posterior wall, 8 mm either side of the midline), a white top-hat along
   ``s`` keeps the thin bright plates perpendicular to the curve (the
   cortical endplates, with the disc between them when it is thinner than
   the resolution) and drops the cancellous interior whatever its density.
   This is what makes detection work both on dense bone, where discs are the
   dark gaps, and on low-density (osteoporotic or contrast-window) bone,
   where the blurred endplate pair around a thin disc is brighter than the
   body centres.
3. Discs: a dynamic programme picks the sequence of peaks of that profile plus
   the dark disc gaps of the slab (:func:`~diffam.localize.periodicity.disc_profile`)
   with a smoothly varying spacing (vertebral period 12-48 mm, penalised changes of
   period from one level to the next), so that one missing or spurious peak
   does not add or drop a vertebra; a thick disc's two endplate peaks are
   paired and the disc put between them (:func:`disc_endplates`). When a hint names the end level, the
   period is also pulled towards each level's typical height (body plus
   disc, from the cited measurements of :mod:`diffam.core.anatomy`).
4. One vertebra lies between each pair of consecutive discs, plus one at
   each end of the curve when the bone seen past the end disc's gap
   (:func:`end_segment_bone_mm`) holds a fifth of its volume
   (:data:`~diffam.localize.end_segments.VOLUME_FIFTH_ABOVE`, ``_BELOW``). Its centroid
   is the centre of the bone (above :data:`CENTROID_BONE_HU`, with the
   bodies' cancellous interior filled in) between its two discs within
   :data:`CENTROID_RADIUS_MM` of the centreline: body, pedicles and the root
   of the arch, the mass a label-map centroid is made of. Where too
   little bone is seen (an end vertebra beyond the scan), it lies on the
   mid-sagittal line :data:`WALL_TO_CENTROID_MM` behind the posterior wall
   of its body (calibrated on the template meshes, see
   :func:`~diffam.localize.template_calibration.wall_to_centroid_offset`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from diffam.core.volume import Volume
from diffam.localize.centerline import Centerline
from diffam.localize.end_sections import column_sections
from diffam.localize.end_segments import (
    OUTSIDE_DENSITY_HU,
    end_segment_bone_mm,
    marrow_density_hu,
    shows_a_fifth,
)
from diffam.localize.orientation import local_frame
from diffam.localize.periodicity import (
    MAX_PERIOD_MM,
    MIN_PERIOD_MM,
    PERIOD_PRIOR,
    disc_endplates,
    disc_profile,
    expected_periods,
    periodic_peaks,
)

#: Distance (mm) from the posterior wall of the vertebral body (mid-sagittal,
#: at mid-height) to the vertebra's solid centroid, posteriorly, in the local
#: frame. Mean over L1-L5 of the shipped lumbar template, recomputed by
#: :func:`~diffam.localize.template_calibration.wall_to_centroid_offset` in the tests. Only lumbar levels calibrate it;
#: on thoracic levels of real scans it places centroids ~4 mm too far back.
WALL_TO_CENTROID_MM = 6.0

#: Bone threshold (HU) and radius (mm) around the centreline of the bone whose
#: centre is a vertebra's initial centroid. On the shared chest CT (T1-L1, against
#: TotalSegmentator centroids): median error 5.0 mm, against 5.6 mm for the
#: wall offset (chosen on that scan); the rest is mostly the spinous processes' mass below the slab.
CENTROID_BONE_HU = 150.0
CENTROID_RADIUS_MM = 35.0

#: Mean-shift steps of the bone centroid.
MEAN_SHIFT_STEPS = 3

#: Fewest bone samples (1 mm^3) for a bone centroid; below, the wall offset is used.
MIN_CENTROID_SAMPLES = 500

#: Straightened sampling extents in mm: (u left-right, v anterior-posterior).
U_HALF_MM = 80.0
V_RANGE_MM = (-70.0, 50.0)

#: How far (mm, along the local posterior axis) from the centreline the spinal
#: canal is looked for. The centreline follows the bone's centre of mass, which
#: can lie inside the body (the 40 mm DICOM series: canal 30 mm behind it);
#: at 40 mm the search meets other dark bands between bones (the chest CT).
CANAL_SEARCH_MM = 30.0

#: Fraction of a curve sample's mid-sagittal strip that must lie in the scan for
#: its canal and wall to be measured (and of its body slab, for its density).
MIN_SEEN_FRACTION = 0.5

@dataclass
class Straightened:
    """A scan resampled along a centreline.

    Attributes:
        array: ``(M, V, U)`` HU; ``M`` centreline samples, ``V`` posterior
            offsets ``v``, ``U`` left offsets ``u``.
        v: ``(V,)`` mm offsets along the local posterior axis.
        u: ``(U,)`` mm offsets along the local left axis.
        frames: ``(M, 3, 3)`` local L, P, S frames.
        inside: ``(M, V, U)`` whether each sample lies inside the scan
            (outside ones hold the fill value); None when not tracked.
    """

    array: np.ndarray
    v: np.ndarray
    u: np.ndarray
    frames: np.ndarray
    inside: np.ndarray | None = None

    def v_index(self, v_mm: np.ndarray | float) -> np.ndarray:
        return np.asarray(v_mm, dtype=float) - self.v[0]

    def u_index(self, u_mm: np.ndarray | float) -> np.ndarray:
        return np.asarray(u_mm, dtype=float) - self.u[0]


@dataclass
class Detection:
    """Vertebrae found along a centreline, from inferior to superior.

    Attributes:
        discs_mm: ``(D,)`` arc lengths of the detected discs.
        bounds_mm: ``(V, 2)`` arc-length interval of each vertebra.
        centres_mm: ``(V,)`` arc length of each vertebra's centre.
        partial: ``(V,)`` whether the vertebra is cut by the end of the column.
        confidence: ``(V,)`` in ``[0, 1]``: strength of the bounding endplates.
        profile: ``(M,)`` endplate profile on the centreline samples.
        points: ``(V, 3)`` LPS mm initial centroid of each vertebra.
        wall_mm: ``(M,)`` posterior-wall offset ``v`` (mm) along the curve.
        straightened: the straightened scan the detection worked on.
    """

    discs_mm: np.ndarray
    bounds_mm: np.ndarray
    centres_mm: np.ndarray
    partial: np.ndarray
    confidence: np.ndarray
    profile: np.ndarray
    points: np.ndarray
    wall_mm: np.ndarray
    straightened: Straightened | None = None


def straighten(
    volume: Volume,
    centerline: Centerline,
    *,
    u_half_mm: float = U_HALF_MM,
    v_range_mm: tuple[float, float] = V_RANGE_MM,
    step_mm: float = 1.0,
    outside_hu: float = -1024.0,
) -> Straightened:
    """Resample ``volume`` on planes perpendicular to the centreline (trilinear)."""
    u = np.arange(-u_half_mm, u_half_mm + 1e-9, step_mm)
    v = np.arange(v_range_mm[0], v_range_mm[1] + 1e-9, step_mm)
    frames = np.stack([local_frame(t) for t in centerline.tangents])
    array = np.empty((len(frames), len(v), len(u)), dtype=np.float32)
    inside = np.empty(array.shape, dtype=bool)
    image = volume.array.astype(np.float32, copy=False)
    upper = np.array(image.shape, dtype=float)[:, None] - 1.0
    # The map is affine: transform the curve points and the frame axes to
    # (k, j, i) index space once, and combine them there.
    origin_kji = volume.world_to_index(centerline.points)[:, ::-1].astype(np.float32)
    linear = volume.world_to_index_affine[:3, :3][::-1]  # world mm -> (k, j, i)
    left_kji = (frames[:, :, 0] @ linear.T).astype(np.float32)
    post_kji = (frames[:, :, 1] @ linear.T).astype(np.float32)
    v32, u32 = v.astype(np.float32), u.astype(np.float32)
    for start in range(0, len(frames), 32):
        rows = slice(start, start + 32)
        kji = (
            origin_kji[rows, None, None, :]
            + v32[None, :, None, None] * post_kji[rows, None, None, :]
            + u32[None, None, :, None] * left_kji[rows, None, None, :]
        ).reshape(-1, 3).T
        # The scan's field of view reaches half a voxel past its outer voxel
        # centres: samples there take the edge voxel's value, not a blend
        # with the fill, which would darken the bone cut by the scan's face.
        values = ndimage.map_coordinates(image, kji, order=1, mode="nearest")
        within = ((kji >= -0.5) & (kji <= upper + 0.5)).all(axis=0)
        array[rows] = np.where(within, values, outside_hu).reshape(-1, len(v), len(u))
        inside[rows] = within.reshape(-1, len(v), len(u))
    return Straightened(array, v, u, frames, inside)


def _midsagittal(st: Straightened, values: np.ndarray | None = None, half_mm: float = 3.0):
    """``(M, V)`` mean over the mid-sagittal strip of ``values`` (default: the HU array)."""
    keep = np.abs(st.u) <= half_mm
    return (st.array if values is None else values)[:, :, keep].mean(axis=2)


def _canal_and_wall(
    profile: np.ndarray, v: np.ndarray, canal_guess: float, *, search_mm: float = 8.0
) -> tuple[float, float, float]:
    """Canal centre, posterior wall (both ``v`` mm) and canal depth (HU) of one AP profile."""
    n = len(v)
    best, canal = -np.inf, canal_guess
    for iv in range(n):
        if abs(v[iv] - canal_guess) > search_mm:
            continue
        front = profile[max(0, iv - 25) : iv]
        back = profile[iv + 1 : iv + 26]
        if len(front) == 0 or len(back) == 0:
            continue
        depth = min(front.max(), back.max()) - profile[iv]
        if depth > best:
            best, canal = depth, float(v[iv])
    # Posterior wall: steepest rise going anteriorly, within 15 mm in front of the canal.
    grad = np.gradient(profile)
    window = (v >= canal - 15.0) & (v <= canal + 1.0)
    if not window.any():
        return canal, canal - 6.0, float(best)
    idx = np.nonzero(window)[0]
    wall = float(v[idx[int(np.argmin(grad[idx]))]])
    return canal, wall, float(best)


def posterior_wall(st: Straightened, *, smooth_mm: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """Canal centre and posterior body wall ``v`` (mm) at every centreline sample.

    Returns:
        ``(canal, wall)``, each ``(M,)``.
    """
    mid = ndimage.gaussian_filter(_midsagittal(st), (smooth_mm, 1.0))
    # Rows of the curve that lie in the scan: the extended ends of a crop's
    # centreline sample only fill, whose median would hide the canal.
    seen = np.ones(len(mid), dtype=bool)
    if st.inside is not None:
        seen = _midsagittal(st, st.inside).mean(axis=1) >= MIN_SEEN_FRACTION
        if not seen.any():
            seen[:] = True
    # Global canal: from the median profile of the rows in the scan.
    mean_profile = np.median(mid[seen], axis=0)
    canal0, _, _ = _canal_and_wall(mean_profile, st.v, 0.0, search_mm=CANAL_SEARCH_MM)
    canal, wall = np.empty(len(mid)), np.empty(len(mid))
    for n in range(len(mid)):
        canal[n], wall[n], _ = _canal_and_wall(mid[n], st.v, canal0)
    # Robust smoothing: running median, reject outliers, re-smooth.
    for arr in (canal, wall):
        trend = ndimage.median_filter(arr, size=41, mode="nearest")
        bad = np.abs(arr - trend) > 4.0
        if (~bad).sum() >= 2:
            idx = np.arange(len(arr))
            arr[:] = np.interp(idx, idx[~bad], arr[~bad])
        arr[:] = ndimage.gaussian_filter1d(arr, 6.0, mode="nearest")
    return canal, wall


def endplate_profile(
    st: Straightened,
    wall: np.ndarray,
    *,
    depth_mm: tuple[float, float] = (4.0, 16.0),
    half_width_mm: float = 8.0,
    plate_mm: int = 9,
) -> tuple[np.ndarray, np.ndarray]:
    """Endplate and body-density profiles of the body slab along the curve.

    Returns:
        ``(plates, density)``, each ``(M,)``: the white top-hat along the
        curve (high at endplates and thin discs) and the mean HU of the part
        of the slab inside the scan (:data:`OUTSIDE_DENSITY_HU` where less
        than :data:`MIN_SEEN_FRACTION` of it is).
    """
    offsets = np.arange(depth_mm[0], depth_mm[1] + 1e-9, 1.0)
    ucols = np.nonzero(np.abs(st.u) <= half_width_mm)[0]
    rows = np.arange(len(wall))
    index = (
        rows[:, None, None],
        np.clip(
            np.rint(st.v_index(wall[:, None] - offsets[None, :])).astype(int), 0, len(st.v) - 1
        )[:, :, None],
        ucols[None, None, :],
    )
    slab = st.array[index]  # (M, offsets, u)
    slab = np.maximum(slab, -200.0)  # lung or air beside a thin body must not dominate
    tophat = slab - ndimage.grey_opening(slab, size=(plate_mm, 1, 1))
    density = slab.mean(axis=(1, 2))
    if st.inside is not None:
        # Where the opening reaches past the end of the scan, the cut bone
        # looks like a thin plate: no endplate can be seen there.
        seen = st.inside[index]
        outside = ndimage.binary_dilation(~seen, structure=np.ones((plate_mm, 1, 1)))
        tophat[outside] = 0.0
        # The density of what the scan shows: a tight crop's face cuts the
        # slab obliquely, and fill values would hide the bone that is seen.
        n_seen = seen.sum(axis=(1, 2))
        seen_mean = (slab * seen).sum(axis=(1, 2)) / np.maximum(n_seen, 1)
        enough = n_seen >= MIN_SEEN_FRACTION * seen[0].size
        density = np.where(enough, seen_mean, OUTSIDE_DENSITY_HU)
    return tophat.mean(axis=(1, 2)), density


def detect_vertebrae(
    volume: Volume,
    centerline: Centerline,
    *,
    min_body_hu: float = 100.0,
    period_mm: tuple[float, float] = (MIN_PERIOD_MM, MAX_PERIOD_MM),
    hinted_end: tuple[int, bool] | None = None,
) -> Detection:
    """Detect discs and vertebrae along a centreline.

    Args:
        volume: CT volume in HU (typically the working grid).
        centerline: the spine centreline (arc-length step about 1 mm).
        min_body_hu: mean HU of the body slab above which the curve is
            inside the bony column (ends of the spine, beyond the scan).
        period_mm: range of the vertebral period (body plus disc height, mm);
            narrower when the region of the spine is known
            (:func:`period_range`).
        hinted_end: ``(VerSe id, from_inferior)`` when a hint names the
            lowest (``True``) or highest (``False``) vertebra in view: the disc
            spacing is then pulled towards the typical period of each level
            (:func:`expected_periods`, :func:`periodic_peaks`).

    Returns:
        The :class:`Detection`.
    """
    step = float(np.median(np.diff(centerline.arc_mm))) if len(centerline.arc_mm) > 1 else 1.0
    st = straighten(volume, centerline)
    _, wall = posterior_wall(st)
    raw, density = endplate_profile(st, wall)
    profile = disc_profile(raw, density, step, OUTSIDE_DENSITY_HU)
    # The bony column: where the body slab is denser than soft tissue.
    bony = np.nonzero(ndimage.gaussian_filter1d(density, 3.0 / step) > min_body_hu)[0]
    lo, hi = (int(bony[0]), int(bony[-1])) if len(bony) else (0, len(profile) - 1)
    margin = int(round(4.0 / step))
    lo_c, hi_c = max(0, lo - margin), min(len(profile) - 1, hi + margin)
    expected = None
    if hinted_end is not None:
        # Levels are counted from where the bony column starts at the hinted end.
        anchor, from_inferior = hinted_end
        if from_inferior:
            walk = expected_periods(hi_c + 1 - lo, step, anchor, from_inferior=True)
            expected = np.concatenate([np.full(lo - lo_c, walk[0]), walk])
        else:
            walk = expected_periods(hi + 1 - lo_c, step, anchor, from_inferior=False)
            expected = np.concatenate([walk, np.full(hi_c - hi, walk[-1])])
    peaks = (
        periodic_peaks(
            profile[lo_c : hi_c + 1],
            step,
            period_mm=period_mm,
            expected_mm=expected,
            prior=PERIOD_PRIOR,
        )
        + lo_c
    )
    plates = disc_endplates(raw, peaks, step, period_mm[0]) * step
    discs = plates.mean(axis=1)
    strength = profile[peaks] / max(np.percentile(profile, 95), 1e-6) if len(peaks) else []
    bounds, partial, conf = [], [], []
    for n in range(len(discs) - 1):
        bounds.append((discs[n], discs[n + 1]))
        partial.append(False)
        conf.append(float(min(1.0, strength[n], strength[n + 1])))
    if len(discs):
        gaps = np.diff(discs)
        first_gap = gaps[0] if len(gaps) else 25.0
        last_gap = gaps[-1] if len(gaps) else 25.0
        # An end vertebra beyond the last disc counts by how much of its
        # body the scan shows as bone past the disc gap (a tight crop's
        # oblique face can leave only the disc and its blurred endplate
        # below the last vertebra in view, as S1 under L5 in verse008).
        # Past a paired disc, also by its density relative to the scan's own
        # marrow, or by the whole bony cross-sections it shows (end_sections).
        paired = plates[:, 1] > plates[:, 0]
        cues = dict(marrow_hu=marrow_density_hu(density, step, discs),
                    sections=column_sections(st.array, st.inside, st.v, st.u, discs, step))
        below, below_span = end_segment_bone_mm(density, step, plates[0, 0], -1, first_gap,
                                                min_body_hu, paired=paired[0], **cues)
        above, above_span = end_segment_bone_mm(density, step, plates[-1, 1], +1, last_gap,
                                                min_body_hu, paired=paired[-1], **cues)
        # A label map counts a cut vertebra when a fifth of its volume is in
        # view; the body length past the disc that holds it differs by end.
        if shows_a_fifth(below, first_gap, -1):
            bounds.insert(0, (discs[0] - first_gap, discs[0]))
            partial.insert(0, below < 0.9 * below_span)
            conf.insert(0, 0.5 * float(min(1.0, strength[0])))
        if shows_a_fifth(above, last_gap, +1):
            bounds.append((discs[-1], discs[-1] + last_gap))
            partial.append(above < 0.9 * above_span)
            conf.append(0.5 * float(min(1.0, strength[-1])))
    bounds_a = np.array(bounds, dtype=float).reshape(-1, 2)
    centres = bounds_a.mean(axis=1)
    # The end vertebrae past the end discs, where the face may cut them.
    past = (bounds_a[:, 0] < discs[0]) | (bounds_a[:, 1] > discs[-1]) if len(discs) else []
    points = np.array([_vertebra_point(st, centerline, wall, a, b, end=e)
                       for (a, b), e in zip(bounds_a, past)])
    return Detection(
        discs_mm=np.asarray(discs, dtype=float),
        bounds_mm=bounds_a,
        centres_mm=centres,
        partial=np.array(partial, dtype=bool),
        confidence=np.array(conf, dtype=float),
        profile=raw,
        points=points.reshape(-1, 3),
        wall_mm=wall,
        straightened=st,
    )


def extrapolate(centerline: Centerline, s: float) -> np.ndarray:
    """Point at arc length ``s``, continued along the end tangents beyond the curve."""
    if s < 0:
        return centerline.points[0] + s * centerline.tangents[0]
    if s > centerline.length_mm:
        return centerline.points[-1] + (s - centerline.length_mm) * centerline.tangents[-1]
    return centerline.at(s)


def _filled_bodies(dense: np.ndarray, v: np.ndarray, wall: np.ndarray) -> np.ndarray:
    """``dense`` ``(R, V, U)`` with the cancellous interior of the bodies filled in.

    A label map's centroid counts the whole body, but low-density cancellous
    bone falls below the bone threshold, leaving only the cortex: the bone's
    centre would then lie too far back (dense arch). Holes of each section
    enclosed by bone in front of the posterior wall are filled; the canal,
    behind the wall, stays empty.
    """
    out = dense.copy()
    for r in range(len(dense)):
        holes = ndimage.binary_fill_holes(dense[r]) & ~dense[r]
        holes &= (v < wall[r])[:, None]
        out[r] |= holes
    return out


#: Half-width (mm) of the midline strip whose connected bone is an end vertebra's own.
BODY_STRIP_HALF_MM = 8.0


def _column_bone(dense: np.ndarray, v: np.ndarray, u: np.ndarray, wall: np.ndarray) -> np.ndarray:
    """The connected parts of ``dense`` ``(R, V, U)`` that reach the column's midline strip
    (:data:`BODY_STRIP_HALF_MM` either side, from the front of the body slab, 16 mm before
    the posterior wall, to the spinous process); all of ``dense`` where none does."""
    labels, _ = ndimage.label(dense)
    strip = (np.abs(u)[None, None, :] <= BODY_STRIP_HALF_MM) & (
        (v[None, :] >= wall[:, None] - 16.0) & (v[None, :] <= wall[:, None] + 40.0))[:, :, None]
    keep = np.unique(labels[strip & dense])
    return np.isin(labels, keep[keep > 0]) if (keep > 0).any() else dense


def _vertebra_point(
    st: Straightened, centerline: Centerline, wall: np.ndarray, a: float, b: float,
    *, end: bool = False,
) -> np.ndarray:
    """Initial centroid of the vertebra between arc lengths ``a`` and ``b``.

    For an ``end`` vertebra, past the end discs, only the bone connected to the
    column's midline strip counts (:func:`_column_bone`): where the scan's face
    cuts it, the little of it in view is outweighed by other bone within the
    radius (the chest CT's C6, a
    wedge of its body under the top face: the first ribs and clavicles in its
    planes pulled its centroid 19-23 mm forward and down).
    """
    s = 0.5 * (a + b)
    arc = centerline.arc_mm
    inside = (arc >= a) & (arc <= b)
    rows = np.nonzero((arc >= a) & (arc < b))[0]
    if len(rows):
        # Mean shift from the wall-offset point: the centreline itself can lie
        # off the centroid (towards the arch when a body's interior is not bone-dense).
        v, u = np.meshgrid(st.v, st.u, indexing="ij")
        dense = _filled_bodies(st.array[rows] > CENTROID_BONE_HU, st.v, wall[rows])
        if end:
            dense = _column_bone(dense, st.v, st.u, wall[rows])
        centre = np.array([float(np.median(wall[rows])) + WALL_TO_CENTROID_MM, 0.0])
        for _ in range(MEAN_SHIFT_STEPS):
            near = ((v - centre[0]) ** 2 + (u - centre[1]) ** 2) <= CENTROID_RADIUS_MM**2
            m, j, i = np.nonzero(dense & near[None])
            if len(m) < MIN_CENTROID_SAMPLES:
                break
            centre = np.array([st.v[j].mean(), st.u[i].mean()])
        else:
            at = rows[m]
            offsets = (
                st.v[j][:, None] * st.frames[at, :, 1] + st.u[i][:, None] * st.frames[at, :, 0]
            )
            return (centerline.points[at] + offsets).mean(axis=0)
    if inside.any():
        w = float(np.median(wall[inside]))
    else:
        w = float(wall[0] if s < arc[0] else wall[-1])
    base = extrapolate(centerline, s)
    frame = local_frame(centerline.tangent_at(min(max(s, 0.0), centerline.length_mm)))
    return base + (w + WALL_TO_CENTROID_MM) * frame[:, 1]
