"""Local vertebra frames from the centreline tangent and the patient's anterior."""

from __future__ import annotations

import numpy as np

#: Patient anterior in LPS world coordinates.
ANTERIOR_LPS = np.array([0.0, -1.0, 0.0])


def local_frame(tangent: np.ndarray, anterior: np.ndarray = ANTERIOR_LPS) -> np.ndarray:
    """Rotation whose columns are a vertebra's local L, P, S axes in LPS world.

    S is the centreline tangent (towards the head); P is the posterior
    direction (``-anterior``) made orthogonal to S; L completes a right-handed
    frame (``L = P x S``), so the identity is an upright vertebra in an LPS
    scan.

    Args:
        tangent: ``(3,)`` centreline tangent, pointing towards the head.
        anterior: ``(3,)`` patient anterior in world coordinates.

    Returns:
        ``(3, 3)`` rotation matrix (determinant +1).

    Raises:
        ValueError: the tangent is (nearly) parallel to the anterior direction.
    """
    s = np.asarray(tangent, dtype=np.float64)
    s = s / np.linalg.norm(s)
    p = -np.asarray(anterior, dtype=np.float64)
    p = p - (p @ s) * s
    if np.linalg.norm(p) < 1e-3:
        raise ValueError("the centreline tangent is parallel to the anterior direction")
    p /= np.linalg.norm(p)
    left = np.cross(p, s)
    return np.stack([left, p, s], axis=1)
