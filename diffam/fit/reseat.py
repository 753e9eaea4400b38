"""Re-seat given centroids on the scan's own vertebrae before the fit.

A given centroid can be a centimetre or more off (hand-placed, from another
scan's registration, a body centre read as a whole-vertebra centre). The fit
only sees a few millimetres around the template's surface: a vertebra started
15 mm towards its neighbour fits the neighbour's bone (chest CT, T5-T9 moved
15 mm: Dice 18-57 against 69-77). The localiser's detection
(:mod:`diffam.localize`: the column, its centreline, the discs along it)
finds the vertebrae of the scan without knowing their names; the given
centroids name them:

1. The detection runs on the scan cut to the box of the given centroids plus
   :data:`CONTEXT_MM` (the column and one neighbour beyond each end).
2. The given centroids, ordered by level, are smoothed by a least-squares
   line (a parabola for six or more) of position against level, which
   averages out independent errors of single centroids.
3. One offset between level order and detection order (along the run of
   the given centroids) is chosen: the one whose detections lie nearest the
   smoothed centroids (each distance capped at :data:`MATCH_MM`). Vertebrae
   are contiguous, so neighbouring levels take neighbouring detections and a
   single far-off centroid cannot take its neighbour's bone.
4. The detection's own error is about 5 mm and up to 10 mm (label-map
   centroids of the VerSe crops and the chest CT against their nearest
   detection), so a correct given centroid is better than its detection,
   and one centroid alone cannot tell: a centroid moved 15 mm can lie 8 mm
   from its detection, a correct one 10-11 mm. The run decides: when the
   median distance of the given centroids from their detections exceeds
   ``keep_mm``, the given run is off and every matched level takes its
   detection; otherwise only a level farther than :data:`OUTLIER_FACTOR`
   times ``keep_mm`` from its detection does (one misplaced centroid).
   A level without a matched detection within :data:`MATCH_MM`, or matched
   to a vertebra cut by the scan's end, keeps its given centroid.

Where the evidence is weak (fewer than :data:`MIN_LEVELS` given levels, no
column found, fewer than half of the levels matched, fewer than
:data:`MIN_LEVELS` matched to whole, uncut detections) every centroid is kept.
Body centres (VerSe ``*_ctd.json``) are compared through a per-level offset
to the whole vertebra's centre, which the caller computes from the template.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from diffam.core.volume import Volume

log = logging.getLogger(__name__)

#: Fewer given levels cannot tell their own vertebra from a neighbour: a
#: single centroid 15 mm off lies about as near its neighbour (20-35 mm away).
MIN_LEVELS = 3
#: Margin (mm) around the box of the given centroids in which the column is
#: detected: one vertebral period (20-40 mm) beyond each end, so that the end
#: levels have a detection on either side to be told from.
CONTEXT_MM = 45.0
#: A detection farther than this (mm) from a level's smoothed centroid is not
#: that level's: about one vertebral period of the mid-thoracic spine.
MATCH_MM = 25.0
#: In a run whose centroids agree with the detections (median distance at
#: most ``keep_mm``), a level is re-seated only this many times ``keep_mm``
#: from its detection: most of a vertebral period, well above the largest
#: distance of a correct centroid seen (11 mm, chest body centres). A run
#: turned 15 degrees about its middle (ends 12 mm off, plus the detection's
#: error) is left to the fit, which recovers from it (chest T5-T9).
OUTLIER_FACTOR = 2.0
#: Voxel size (mm) of the localiser's working grid (its default).
WORKING_SPACING_MM = 2.0


@dataclass
class Reseating:
    """What :func:`reseat_centroids` did.

    Attributes:
        centroids: VerSe id -> (3,) LPS mm, the centroids to fit from.
        moved: VerSe id -> distance (mm) each re-seated centroid was moved.
        reason: why nothing was moved, when nothing was (else empty).
    """

    centroids: dict[int, np.ndarray]
    moved: dict[int, float] = field(default_factory=dict)
    reason: str = ""


def smoothed_run(centroids: Mapping[int, np.ndarray]) -> dict[int, np.ndarray]:
    """Least-squares line (parabola for six or more levels) of position against level id."""
    ids = sorted(centroids)
    x = np.asarray(ids, dtype=np.float64)
    points = np.stack([np.asarray(centroids[v], dtype=np.float64) for v in ids])
    degree = 2 if len(ids) >= 6 else 1
    coefficients = np.polynomial.polynomial.polyfit(x, points, degree)
    fitted = np.polynomial.polynomial.polyval(x, coefficients).T
    return dict(zip(ids, fitted))


def match_levels(smoothed: Mapping[int, np.ndarray], detections: np.ndarray
                 ) -> dict[int, int]:
    """Detection index of each level, by the best single offset between the two orders.

    Args:
        smoothed: VerSe id -> (3,) mm, contiguous or not, at least two levels.
        detections: (N, 3) mm detected vertebra centres, in any order.

    Returns:
        VerSe id -> index into ``detections`` for the levels whose detection lies
        within :data:`MATCH_MM` of their smoothed centroid.
    """
    ids = sorted(smoothed)
    points = np.stack([smoothed[v] for v in ids])
    if len(detections) == 0:
        return {}
    downward = points[-1] - points[0]  # VerSe ids grow caudally
    downward /= max(np.linalg.norm(downward), 1e-9)
    order = np.argsort(detections @ downward)
    ranked = detections[order]
    best, best_cost = None, np.inf
    steps = np.asarray(ids) - ids[0]
    for offset in range(-int(steps[-1]), len(ranked)):
        index = steps + offset
        valid = (index >= 0) & (index < len(ranked))
        distance = np.full(len(ids), MATCH_MM)
        distance[valid] = np.minimum(
            np.linalg.norm(ranked[index[valid]] - points[valid], axis=1), MATCH_MM)
        cost = float(np.sum(distance ** 2))
        if cost < best_cost:
            best, best_cost = index, cost
    out = {}
    for v, i, p in zip(ids, best, points):
        if 0 <= i < len(ranked) and np.linalg.norm(ranked[i] - p) < MATCH_MM:
            out[v] = int(order[i])
    return out


def detect_column_vertebrae(image: Volume, centroids: Mapping[int, np.ndarray]
                            ) -> tuple[np.ndarray, np.ndarray]:
    """The localiser's vertebra centres (N, 3) mm near the given centroids, and which are cut.

    Raises:
        LocalizationError (of :mod:`diffam.localize`): no column found.
    """
    from diffam.fit.roi import crop_to_world_box
    from diffam.localize import EXTEND_MM, MIN_COLUMN_MM, LocalizationError
    from diffam.localize.centerline import extend_centerline, fit_centerline
    from diffam.localize.detection import detect_vertebrae
    from diffam.localize.grid import to_working_grid
    from diffam.localize.periodicity import period_range
    from diffam.localize.spine_column import find_column

    points = np.stack([np.asarray(p, dtype=np.float64) for p in centroids.values()])
    region = crop_to_world_box(image, points.min(0) - CONTEXT_MM, points.max(0) + CONTEXT_MM)
    grid = to_working_grid(region, WORKING_SPACING_MM)
    column = find_column(grid)
    if column.extent_mm < MIN_COLUMN_MM:
        raise LocalizationError("no column")
    centerline = extend_centerline(fit_centerline(column.points), EXTEND_MM)
    detection = detect_vertebrae(grid, centerline, period_mm=period_range(sorted(centroids)))
    return detection.points.reshape(-1, 3), np.asarray(detection.partial, dtype=bool)


def reseat_centroids(
    image: Volume,
    centroids: Mapping[int, np.ndarray],
    *,
    keep_mm: float,
    to_vertebra: Mapping[int, np.ndarray] | None = None,
    detections: tuple[np.ndarray, np.ndarray] | None = None,
) -> Reseating:
    """Move the given centroids that lie far from their own vertebra onto it (module docstring).

    Args:
        image: the scan (HU).
        centroids: VerSe id -> (3,) LPS mm as given.
        keep_mm: the largest median distance (mm) of the given centroids from
            their detections at which the run counts as correct (see step 4).
        to_vertebra: VerSe id -> (3,) mm from each given point to the whole
            vertebra's centre (body centres: the template's body-to-vertebra
            offset as placed); None for whole-vertebra centroids.
        detections: (points (N, 3) mm, cut (N,) bool) instead of running the
            localiser's detection (tests).

    Returns:
        :class:`Reseating`.
    """
    given = {v: np.asarray(p, dtype=np.float64) for v, p in centroids.items()}
    offset = {v: np.asarray(to_vertebra[v], dtype=np.float64) if to_vertebra else np.zeros(3)
              for v in given}
    if len(given) < MIN_LEVELS:
        return Reseating(given, reason=f"fewer than {MIN_LEVELS} levels given")
    whole = {v: given[v] + offset[v] for v in given}
    if detections is None:
        from diffam.localize import LocalizationError

        try:
            detections = detect_column_vertebrae(image, whole)
        except (LocalizationError, ValueError, IndexError) as error:
            return Reseating(given, reason=f"no column detected ({error})")
    points, cut = detections
    matched = match_levels(smoothed_run(whole), np.asarray(points, dtype=np.float64))
    if 2 * len(matched) < len(given):
        return Reseating(given, reason=f"only {len(matched)} of {len(given)} levels matched")
    # A cut vertebra's detection and label centroid both sit off its centre,
    # so only whole ones judge the run (l3_crop: two cut ends 10-16 mm off
    # would have moved its one whole vertebra 13 mm).
    whole_matched = {v: i for v, i in matched.items() if not cut[i]}
    if len(whole_matched) < MIN_LEVELS:
        return Reseating(given, reason=f"only {len(whole_matched)} levels matched to whole "
                                       "detected vertebrae")
    distance = {v: float(np.linalg.norm(points[i] - whole[v])) for v, i in whole_matched.items()}
    run_off = float(np.median(list(distance.values()))) > keep_mm
    limit = 0.0 if run_off else OUTLIER_FACTOR * keep_mm
    out, moved = dict(given), {}
    for v, i in whole_matched.items():
        if distance[v] > limit:
            out[v] = points[i] - offset[v]
            moved[v] = distance[v]
    return Reseating(out, moved)
