"""Localisation metrics: identification rate and localisation error (VerSe definitions)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from diffam.core.volume import Volume

from .identification import DEFAULT_MAX_DISTANCE_MM, identify


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
    max_mm: float = DEFAULT_MAX_DISTANCE_MM,
) -> LocalizationScore:
    """Identification rate and localisation errors (VerSe challenge definition,
    :func:`diffam.evaluation.identification.identify`).

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
    outcome = identify(predicted, true, max_distance_mm=max_mm)
    identified = [k for k in ids if outcome[k].identified]
    errors = {k: outcome[k].distance_mm for k in ids if k in predicted}
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
