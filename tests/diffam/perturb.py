"""Perturbed starting points shared by the tests that move given centroids."""

from __future__ import annotations

import numpy as np


def moved_points(points: dict, distance_mm: float, seed: int) -> dict:
    """Each point of ``points`` (key -> (3,) world mm) moved ``distance_mm`` in a random direction.

    The directions are drawn from ``seed`` in the dict's order, so a test repeats exactly.
    """
    rng = np.random.default_rng(seed)
    out = {}
    for key, point in points.items():
        direction = rng.normal(size=3)
        out[key] = point + distance_mm * direction / np.linalg.norm(direction)
    return out
