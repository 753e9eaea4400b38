"""Rib pairs for phantoms: straight bone bars leaving a vertebra sideways.

A rib here is a cylinder of radius :data:`RIB_RADIUS_MM` from its head
beside the upper body of its vertebra (:data:`HEAD_OFFSET_MM` from the
vertebra's centroid) out, back and down along :data:`DIRECTION` for
:data:`RIB_LENGTH_MM`. Real ribs curve forward round the chest; what the rib
cue (:mod:`diffam.localize.ribs`) needs is only a thin bar that starts near
the column and runs beyond 70 mm from it, on the level of its vertebra.
"""

from __future__ import annotations

import numpy as np

#: Rib head relative to the vertebra's centroid (mm: lateral, posterior, superior).
HEAD_OFFSET_MM = (20.0, -4.0, 6.0)
#: Course of the rib (lateral, posterior, superior), normalised.
DIRECTION = (1.0, 0.35, -0.25)
#: Length (mm) and radius (mm) of the bar.
RIB_LENGTH_MM = 110.0
RIB_RADIUS_MM = 5.0


def _segments(centroids: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(head, unit direction)`` of both ribs of each centroid (LPS: +x is the patient's left)."""
    out = []
    course = np.asarray(DIRECTION) / np.linalg.norm(DIRECTION)
    for centroid in centroids:
        for side in (1.0, -1.0):
            mirror = np.array([side, 1.0, 1.0])
            out.append((np.asarray(centroid) + mirror * HEAD_OFFSET_MM, mirror * course))
    return out


def rib_bone(centroids: list[np.ndarray], points: np.ndarray) -> np.ndarray:
    """Bool mask of ``(N, 3)`` LPS points inside the ribs of the vertebrae at ``centroids``."""
    inside = np.zeros(len(points), bool)
    for head, course in _segments(centroids):
        d = points - head
        along = d @ course
        radial = np.linalg.norm(d - along[:, None] * course, axis=1)
        inside |= (along >= 0.0) & (along <= RIB_LENGTH_MM) & (radial <= RIB_RADIUS_MM)
    return inside


def extent_points(centroids: list[np.ndarray]) -> np.ndarray:
    """LPS ends of every rib, for sizing the grid."""
    ends = [head + RIB_LENGTH_MM * course for head, course in _segments(centroids)]
    heads = [head for head, _ in _segments(centroids)]
    return np.array(ends + heads).reshape(-1, 3)
