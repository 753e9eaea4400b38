"""Localisation metrics: identification rate and localisation error (VerSe definitions)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from diffam.core.volume import Volume


@dataclass
class LocalizationScore:
    """Scores of predicted against true centroids.

    Attributes:
        evaluated: VerSe ids of the true vertebrae scored.
        identified: those identified (the prediction of the same id exists,
            lies within ``max_mm`` of the truth, and its closest true
            centroid is that vertebra).
        errors_mm: VerSe id -> distance (mm) from the prediction of that id
            to its true centroid, for every scored id that was predicted.
    """

    evaluated: list[int]
    identified: list[int]
    errors_mm: dict[int, float] = field(default_factory=dict)

    @property
    def identification_rate(self) -> float:
        return len(self.identified) / len(self.evaluated) if self.evaluated else float("nan")

    @property
    def median_error_mm(self) -> float:
        return float(np.median(list(self.errors_mm.values()))) if self.errors_mm else float("nan")


def score_localization(
    predicted: dict[int, np.ndarray],
    true: dict[int, np.ndarray],
    *,
    evaluate: list[int] | None = None,
    max_mm: float = 20.0,
) -> LocalizationScore:
    """Identification rate and localisation errors (VerSe challenge definition).

    Args:
        predicted: VerSe id -> ``(3,)`` mm predicted centroid.
        true: VerSe id -> ``(3,)`` mm true centroid (all vertebrae labelled).
        evaluate: the true ids to score (default: all of ``true``); the
            nearest-centroid test always uses every true centroid.
        max_mm: identification distance.

    Returns:
        The :class:`LocalizationScore`.
    """
    ids = sorted(true) if evaluate is None else sorted(evaluate)
    true_ids = sorted(true)
    true_xyz = np.array([true[k] for k in true_ids]).reshape(-1, 3)
    identified, errors = [], {}
    for k in ids:
        if k not in predicted:
            continue
        p = np.asarray(predicted[k], dtype=float)
        d = float(np.linalg.norm(p - true[k]))
        errors[k] = d
        nearest = true_ids[int(np.argmin(np.linalg.norm(true_xyz - p, axis=1)))]
        if d <= max_mm and nearest == k:
            identified.append(k)
    return LocalizationScore(ids, identified, errors)


def complete_labels(labels: Volume, ids: list[int] | None = None) -> list[int]:
    """Label values present in ``labels`` that do not touch the boundary of the grid."""
    a = np.asarray(labels.array)
    present = set(np.unique(a).tolist()) - {0}
    border = set()
    for axis in range(3):
        for index in (0, a.shape[axis] - 1):
            border |= set(np.unique(np.take(a, index, axis=axis)).tolist())
    out = sorted(present - border)
    return out if ids is None else [k for k in out if k in ids]
