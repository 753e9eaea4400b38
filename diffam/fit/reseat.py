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

Before step 3 the run's direction is checked against the column's: a run turned
about its middle (its ends 12 mm off for 15 degrees over T5-T9) keeps its
median level within ``keep_mm`` of the detections, so step 4 keeps it, yet
every template is placed tilted along it, and the fit recovers only part of
a 15 degree tilt (chest CT T5-T9: T5 78 and T8 79 against 84 and 86 uncut).
When the chord of the smoothed run and the chord of the column's centreline
between the same two ends differ by more than :data:`TURN_DEG`, and step 4
would keep the run, it is turned about its mean onto the column's chord, and
kept turned only when its levels then lie nearer their detections (median
distance) than before; step 4 then judges the turned run.

Where the evidence is weak (fewer than :data:`MIN_LEVELS` given levels, no
column found, fewer than half of the levels matched, fewer than
:data:`MIN_LEVELS` matched to whole, uncut detections) every centroid is kept.
Body centres (VerSe ``*_ctd.json``) are compared through a per-level offset
to the whole vertebra's centre, which the caller computes from the template.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
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
#: turned 15 degrees about its middle (ends 12 mm off, the median level 6 mm)
#: stays below it; its direction is checked against the column's instead
#: (:data:`TURN_DEG`).
OUTLIER_FACTOR = 2.0
#: Voxel size (mm) of the localiser's working grid (its default).
WORKING_SPACING_MM = 2.0
#: A given run whose direction differs from the column's by more than this
#: (degrees) is turned onto the column. The label-map centroids of the five
#: shared scans (both kinds) differ from their column by 0.9-3.2 degrees, the
#: 70 mm l3_crop (three levels, two cut) by 5.9; a run turned 15 degrees by
#: 12.5-16.5 (the chest CT's T5-T9 turned either way).
TURN_DEG = 8.0


@dataclass
class Reseating:
    """What :func:`reseat_centroids` did.

    Attributes:
        centroids: VerSe id -> (3,) LPS mm, the centroids to fit from.
        moved: VerSe id -> distance (mm) each re-seated centroid was moved.
        reason: why nothing was moved, when nothing was (else empty).
        turned_deg: the turn of the whole run onto the column (degrees; 0: none).
    """

    centroids: dict[int, np.ndarray]
    moved: dict[int, float] = field(default_factory=dict)
    reason: str = ""
    #: Degrees the run was turned onto the column's direction (0: not turned).
    turned_deg: float = 0.0


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


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotation (3, 3) taking direction ``a`` to direction ``b`` (Rodrigues)."""
    a = np.asarray(a, dtype=np.float64) / np.linalg.norm(a)
    b = np.asarray(b, dtype=np.float64) / np.linalg.norm(b)
    axis = np.cross(a, b)
    sine, cosine = float(np.linalg.norm(axis)), float(a @ b)
    if sine < 1e-12:
        if cosine > 0:
            return np.eye(3)
        raise ValueError("rotation_between: opposite directions have no smallest rotation")
    k = axis / sine
    cross = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + sine * cross + (1.0 - cosine) * cross @ cross


def turn_onto_column(whole: Mapping[int, np.ndarray], column) -> tuple[np.ndarray, float]:
    """Rotation (3, 3) of the run onto the column's direction, and its angle (degrees).

    The run's direction is the chord of its smoothed run (:func:`smoothed_run`)
    from the first to the last level; the column's is the chord of ``column``
    (a :class:`diffam.localize.centerline.Centerline`) between the points
    nearest those two ends.
    """
    smooth = smoothed_run(whole)
    ids = sorted(smooth)
    ends = np.stack([smooth[ids[0]], smooth[ids[-1]]])
    run = ends[1] - ends[0]
    arc, _ = column.project(ends)
    along = column.at(arc[1]) - column.at(arc[0])
    if np.linalg.norm(along) < 1e-6 or np.linalg.norm(run) < 1e-6:
        return np.eye(3), 0.0
    if along @ run < 0:
        along = -along
    cosine = float(along @ run / (np.linalg.norm(along) * np.linalg.norm(run)))
    return rotation_between(run, along), float(np.degrees(np.arccos(min(cosine, 1.0))))


def detect_column_vertebrae(image: Volume, centroids: Mapping[int, np.ndarray]):
    """The localiser's vertebra centres (N, 3) mm near the given centroids, which are cut
    (N,) bool, and the column's centreline (:class:`diffam.localize.centerline.Centerline`).

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
    return (detection.points.reshape(-1, 3), np.asarray(detection.partial, dtype=bool),
            centerline)


def reseat_centroids(
    image: Volume,
    centroids: Mapping[int, np.ndarray],
    *,
    keep_mm: float,
    to_vertebra: Mapping[int, np.ndarray] | None = None,
    detections: tuple[np.ndarray, np.ndarray] | None = None,
    column=None,
    cut_by_border: Collection[int] = (),
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
        column: with ``detections``, the column's centreline
            (:class:`diffam.localize.centerline.Centerline`) the run's direction
            is checked against; None: not checked.
        cut_by_border: levels the scan's border cuts: their centroids locate the part in
            view, off the run's curve (verse005 with the lowest 9 mm of L1 in view: L1's
            spinous process, 32 mm behind its centre, turned the run 11 degrees), so they
            are kept as given and take no part in judging or turning the run.

    Returns:
        :class:`Reseating`.
    """
    kept = {v: np.asarray(p, dtype=np.float64) for v, p in centroids.items() if v in cut_by_border}
    found = _reseat_run({v: p for v, p in centroids.items() if v not in cut_by_border}, image,
                        keep_mm, to_vertebra, detections, column, context=centroids)
    found.centroids.update(kept)
    return found


def _reseat_run(centroids, image, keep_mm, to_vertebra, detections, column, context
                ) -> Reseating:
    """:func:`reseat_centroids` on the levels of the run (``context``: all given centroids,
    whose box bounds the detection)."""
    given = {v: np.asarray(p, dtype=np.float64) for v, p in centroids.items()}
    offset = {v: np.asarray(to_vertebra[v], dtype=np.float64) if to_vertebra else np.zeros(3)
              for v in given}
    if len(given) < MIN_LEVELS:
        return Reseating(given, reason=f"fewer than {MIN_LEVELS} levels given")
    whole = {v: given[v] + offset[v] for v in given}
    if detections is None:
        from diffam.localize import LocalizationError

        try:
            *detections, column = detect_column_vertebrae(image, {**context, **whole})
        except (LocalizationError, ValueError, IndexError) as error:
            return Reseating(given, reason=f"no column detected ({error})")
    points, cut = (np.asarray(a) for a in detections)
    points = points.astype(np.float64)
    judged = _judge(whole, points, cut, len(given))
    if isinstance(judged, str):
        return Reseating(given, reason=judged)
    turned_deg = 0.0
    if column is not None and judged[1] <= keep_mm:  # a run off anyway takes its detections
        rotation, angle = turn_onto_column(whole, column)
        if angle > TURN_DEG:
            pivot = np.mean(np.stack(list(whole.values())), axis=0)
            turned = {v: pivot + rotation @ (p - pivot) for v, p in whole.items()}
            again = _judge(turned, points, cut, len(given))
            if not isinstance(again, str) and again[1] < judged[1]:
                log.info("the given run lies %.1f degrees off the column's direction: turned "
                         "onto it (median distance to the detections %.1f -> %.1f mm)",
                         angle, judged[1], again[1])
                whole, judged, turned_deg = turned, again, angle
    distance, median = judged
    limit = 0.0 if median > keep_mm else OUTLIER_FACTOR * keep_mm
    out = {v: whole[v] - offset[v] for v in given} if turned_deg else dict(given)
    for v, (i, d) in distance.items():
        if d > limit:
            out[v] = points[i] - offset[v]
    moved = {v: float(np.linalg.norm(out[v] - given[v])) for v in given
             if not np.array_equal(out[v], given[v])}
    return Reseating(out, moved, turned_deg=turned_deg)


def _judge(whole: Mapping[int, np.ndarray], points: np.ndarray, cut: np.ndarray, count: int
           ) -> tuple[dict[int, tuple[int, float]], float] | str:
    """Each level matched to a whole detection: its index and distance (mm), and the median
    distance; or why the detections cannot judge the run (a text)."""
    matched = match_levels(smoothed_run(whole), points)
    if 2 * len(matched) < count:
        return f"only {len(matched)} of {count} levels matched"
    # A cut vertebra's detection and label centroid both sit off its centre,
    # so only whole ones judge the run (l3_crop: two cut ends 10-16 mm off
    # would have moved its one whole vertebra 13 mm).
    whole_matched = {v: i for v, i in matched.items() if not cut[i]}
    if len(whole_matched) < MIN_LEVELS:
        return f"only {len(whole_matched)} levels matched to whole detected vertebrae"
    distance = {v: (i, float(np.linalg.norm(points[i] - whole[v])))
                for v, i in whole_matched.items()}
    return distance, float(np.median([d for _, d in distance.values()]))
