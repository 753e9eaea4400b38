"""Vertebra identification as defined by the VerSe challenge.

A ground-truth vertebra ``v`` is *identified* when the prediction contains
label ``v``, its centroid lies within ``max_distance_mm`` (20 mm) of the true
centroid of ``v``, and among all true centroids of the scan the one of ``v``
is the closest to it. A vertebra missing from the prediction is not
identified. The identification rate is identified / ground-truth vertebrae.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

DEFAULT_MAX_DISTANCE_MM = 20.0


@dataclass(frozen=True)
class Identification:
    """Identification outcome of one ground-truth vertebra.

    Attributes:
        label: VerSe id of the ground-truth vertebra.
        identified: True when identified (see module docstring).
        distance_mm: Distance between predicted and true centroid, mm (NaN
            when the vertebra is missing from the prediction).
        closest_label: Ground-truth label whose centroid is closest to the
            predicted centroid (None when missing).
    """

    label: int
    identified: bool
    distance_mm: float
    closest_label: int | None


def identify(
    pred_centroids: Mapping[int, np.ndarray],
    gt_centroids: Mapping[int, np.ndarray],
    max_distance_mm: float = DEFAULT_MAX_DISTANCE_MM,
) -> dict[int, Identification]:
    """Identify each ground-truth vertebra from centroids.

    Args:
        pred_centroids: Predicted label -> centroid, shape (3,), world mm.
        gt_centroids: True label -> centroid, shape (3,), world mm (same frame).
        max_distance_mm: Largest accepted centroid distance, mm.

    Returns:
        Ground-truth label -> :class:`Identification`, for every label of
        ``gt_centroids``.
    """
    if max_distance_mm <= 0:
        raise ValueError(f"max_distance_mm must be positive, got {max_distance_mm}")
    gt_ids = sorted(gt_centroids)
    result: dict[int, Identification] = {}
    if not gt_ids:
        return result
    gt_pts = np.stack([np.asarray(gt_centroids[i], dtype=np.float64) for i in gt_ids])
    for label in gt_ids:
        if label not in pred_centroids:
            result[label] = Identification(label, False, float("nan"), None)
            continue
        c = np.asarray(pred_centroids[label], dtype=np.float64)
        dists = np.linalg.norm(gt_pts - c, axis=1)
        closest = gt_ids[int(np.argmin(dists))]
        own = float(dists[gt_ids.index(label)])
        result[label] = Identification(
            label=label,
            identified=bool(own <= max_distance_mm and closest == label),
            distance_mm=own,
            closest_label=closest,
        )
    return result


def identification_rate(results: Mapping[int, Identification]) -> float:
    """Fraction of identified ground-truth vertebrae.

    Args:
        results: Output of :func:`identify`.

    Returns:
        Rate in [0, 1]; NaN when there is no ground-truth vertebra.
    """
    if not results:
        return float("nan")
    return sum(r.identified for r in results.values()) / len(results)
