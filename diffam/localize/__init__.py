"""Find and name the vertebrae of a CT scan without given centroids.

Pipeline (one module each): :mod:`~diffam.localize.grid` resamples to an LPS
working grid; :mod:`~diffam.localize.spine_column` finds the column (bone,
canal and body holes, per-slice bone centroid); :mod:`~diffam.localize.centerline`
smooths it; :mod:`~diffam.localize.detection` cuts it into vertebrae at the
intervertebral discs (:mod:`~diffam.localize.end_segments`: whether the bone
beyond the end discs is a cut vertebra, by its density or by the whole
cross-sections :mod:`~diffam.localize.end_sections` finds); :mod:`~diffam.localize.ribs` finds the ribs and
:mod:`~diffam.localize.sacrum` the sacrum, and :mod:`~diffam.localize.naming` names the
vertebrae (lowest ribs = T12, the vertebra above the sacrum = L5, or a hint);
:mod:`~diffam.localize.orientation` gives each one a local frame.

Example:
    >>> loc = localize_vertebrae(read_image("ct.nii.gz"), hint_lowest="L5")  # doctest: +SKIP
    >>> loc.centroids[24]  # L5, (3,) LPS mm  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from diffam.core.labels import verse_id
from diffam.core.volume import Volume
from diffam.localize.centerline import Centerline, extend_centerline, fit_centerline
from diffam.localize.detection import Detection, detect_vertebrae
from diffam.localize.grid import to_working_grid
from diffam.localize.naming import HINT_ADVICE, L5, SACRAL, LocalizationError, name_vertebrae
from diffam.localize.orientation import local_frame
from diffam.localize.periodicity import period_range
from diffam.localize.ribs import find_ribs, rib_levels
from diffam.localize.sacrum import find_sacrum, lowest_lumbar
from diffam.localize.spine_column import find_column

__all__ = ["Localization", "LocalizationError", "localize_vertebrae"]

#: Shortest column (mm) worth detecting vertebrae on.
MIN_COLUMN_MM = 15.0

#: How far (mm) the centreline is continued beyond the column found, at each end.
EXTEND_MM = 50.0


@dataclass
class Localization:
    """Vertebrae found in a scan.

    Attributes:
        centroids: VerSe id -> ``(3,)`` LPS mm initial centroid.
        frames: VerSe id -> ``(3, 3)`` rotation whose columns are the
            vertebra's local L, P, S axes in LPS world.
        naming: how the levels were named, in words.
        confidence: VerSe id -> detection confidence in ``[0, 1]``.
        partial: VerSe ids of vertebrae cut by the end of the scan.
        centerline: the fitted spine centreline.
        detection: discs and intervals along the centreline.
    """

    centroids: dict[int, np.ndarray]
    frames: dict[int, np.ndarray]
    naming: str
    confidence: dict[int, float]
    partial: set[int] = field(default_factory=set)
    centerline: Centerline | None = None
    detection: Detection | None = None


def _hint_anchors(hint_lowest, hint_highest) -> list[tuple[int, bool]]:
    """``(VerSe id, from_inferior)`` of each valid hint: lowest first, then highest."""
    anchors = []
    for hint, from_inferior in ((hint_lowest, True), (hint_highest, False)):
        try:
            anchor = verse_id(hint) if hint is not None else None
        except ValueError:
            anchor = None  # name_levels reports the bad hint
        if anchor is not None and 1 <= anchor <= 24:
            anchors.append((anchor, from_inferior))
    return anchors


def _hinted_levels(anchors: list[tuple[int, bool]]) -> list[int]:
    """VerSe ids the hints make likely to be in view (each hinted level and three beyond)."""
    levels = []
    for anchor, from_inferior in anchors:
        step = -1 if from_inferior else 1
        levels += [anchor + step * n for n in range(4) if 1 <= anchor + step * n <= 24]
    return levels


def localize_vertebrae(
    volume: Volume,
    *,
    hint_lowest: str | int | None = None,
    hint_highest: str | int | None = None,
    working_spacing_mm: float = 2.0,
) -> Localization:
    """Find, name and orient the vertebrae of a CT scan.

    Args:
        volume: CT volume in HU (any orientation and spacing).
        hint_lowest: level of the lowest vertebra visible, e.g. ``"L5"``
            (``levels.lowest`` in the configuration); a vertebra cut by the
            scan counts when a fifth of its volume is in view.
        hint_highest: level of the highest vertebra visible, e.g. ``"T10"``.
        working_spacing_mm: voxel size of the internal working grid.

    Returns:
        The :class:`Localization`.

    Raises:
        LocalizationError: no spine in the scan, too little of it, or no way
            to name the levels; the message says what to pass.
    """
    grid = to_working_grid(volume, working_spacing_mm)
    column = find_column(grid)
    if column.extent_mm < MIN_COLUMN_MM:
        raise LocalizationError(
            "no spinal column was found in the scan (no chain of canal or vertebral-body "
            f"sections); check that it is a CT in HU that shows the spine, or {HINT_ADVICE}"
        )
    centerline = extend_centerline(fit_centerline(column.points), EXTEND_MM)
    anchors = _hint_anchors(hint_lowest, hint_highest)
    detection = detect_vertebrae(
        grid,
        centerline,
        period_mm=period_range(_hinted_levels(anchors)),
        hinted_end=anchors[0] if anchors else None,
    )
    sacrum = find_sacrum(grid, centerline, detection)
    if sacrum is not None and not anchors:
        # The sacrum says the lowest levels are lumbar: detect again with their periods
        # (without a hint every level's period is allowed, and lumbar bodies were split).
        again = detect_vertebrae(grid, centerline, period_mm=period_range(_hinted_levels([(L5, True)])))
        lowest = lowest_lumbar(again, sacrum.top_mm)
        if lowest is not None:
            detection, sacrum.lowest_lumbar = again, lowest
    count = len(detection.centres_mm)
    if count == 0:
        raise LocalizationError(
            f"a {centerline.length_mm:.0f} mm spine segment was found but no vertebra could be "
            f"separated along it; {HINT_ADVICE}"
        )
    carried = rib_levels(find_ribs(grid, centerline), detection.bounds_mm)
    cut = {n for n in range(count) if detection.partial[n]}
    ids, how = name_vertebrae(count, carried, cut, sacrum,
                              hint_lowest=hint_lowest, hint_highest=hint_highest)
    centroids, frames, confidence, partial = {}, {}, {}, set()
    for n, label in enumerate(ids):
        if label == SACRAL:
            continue  # a segment of the sacrum, not a mobile vertebra
        s = detection.centres_mm[n]
        centroids[label] = detection.points[n]
        frames[label] = local_frame(centerline.tangent_at(s))
        confidence[label] = float(detection.confidence[n])
        if detection.partial[n]:
            partial.add(label)
    naming = (
        f"column found by the {column.cue} cue (confidence {column.confidence:.2f}); {count} "
        f"vertebrae detected along a {centerline.length_mm:.0f} mm centreline; {how}"
    )
    return Localization(centroids, frames, naming, confidence, partial, centerline, detection)
