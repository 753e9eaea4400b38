"""ROC AUC (diffam.evaluation.metrics.roc_auc) against a brute-force count over all pairs."""

from __future__ import annotations

import numpy as np
import pytest

from diffam.evaluation.metrics import roc_auc


def _pair_count(values, positive) -> float:
    pos = [v for v, p in zip(values, positive) if p]
    neg = [v for v, p in zip(values, positive) if not p]
    wins = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(5))
def test_auc_equals_the_pair_count_with_ties(seed):
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 8, 60).astype(float)  # many ties
    positive = rng.random(60) < 0.3 + 0.05 * values
    assert roc_auc(values, positive) == pytest.approx(_pair_count(values, positive), abs=1e-12)


def test_auc_limits():
    assert roc_auc([1, 2, 3, 4], [False, False, True, True]) == 1.0
    assert roc_auc([1, 2, 3, 4], [True, True, False, False]) == 0.0
    assert roc_auc([5, 5, 5], [True, False, False]) == 0.5
    assert np.isnan(roc_auc([1, 2], [True, True]))
