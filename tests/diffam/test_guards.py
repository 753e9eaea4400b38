"""Guard neighbours: extrapolated beyond each end, only in view, only levels the template has."""

from __future__ import annotations

import numpy as np

from diffam.core.volume import Volume
from diffam.fit.guards import guard_centroids

#: 200 mm cube of 2 mm voxels with its corner at the LPS origin.
CUBE = Volume(np.zeros((100, 100, 100), np.int16), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))
ALL_LEVELS = range(1, 25)


def _column(ids, top=(100.0, 90.0, 150.0), step=(0.0, 3.0, -30.0)):
    """Centroids every ``step`` mm per level from ``top`` (an oblique straight column)."""
    return {v: np.asarray(top) + (v - ids[0]) * np.asarray(step) for v in ids}


def test_guards_lie_one_step_beyond_each_end():
    given = _column([9, 10, 11])  # T2-T4 at z 150, 120, 90
    guards = guard_centroids(given, ALL_LEVELS, CUBE)
    assert sorted(guards) == [8, 12]
    np.testing.assert_allclose(guards[8], [100.0, 87.0, 180.0])
    np.testing.assert_allclose(guards[12], [100.0, 99.0, 60.0])


def test_a_gap_at_the_end_is_divided_per_level():
    given = {9: np.array([100.0, 90.0, 150.0]), 11: np.array([100.0, 96.0, 90.0])}
    guards = guard_centroids(given, ALL_LEVELS, CUBE)
    np.testing.assert_allclose(guards[8], [100.0, 87.0, 180.0])
    np.testing.assert_allclose(guards[12], [100.0, 99.0, 60.0])


def test_no_guard_outside_the_scan_or_the_template_or_already_given():
    given = _column([9, 10, 11], top=(100.0, 90.0, 190.0))  # the level above would be at z 220
    assert sorted(guard_centroids(given, ALL_LEVELS, CUBE)) == [12]
    assert guard_centroids(given, [9, 10, 11], CUBE) == {}
    assert guard_centroids({10: given[10]}, ALL_LEVELS, CUBE) == {}  # one centroid: no direction
    with_neighbour = {**given, 12: given[11] + np.array([0.0, 3.0, -30.0])}
    assert sorted(guard_centroids(with_neighbour, ALL_LEVELS, CUBE)) == [13]


def test_a_guard_just_outside_the_scan_is_fitted_when_allowed():
    # the level above would be at z 210: 12 mm above the last voxel centre (z 198)
    given = _column([9, 10, 11], top=(100.0, 90.0, 180.0))
    assert sorted(guard_centroids(given, ALL_LEVELS, CUBE)) == [12]
    assert sorted(guard_centroids(given, ALL_LEVELS, CUBE, outside_mm=11.0)) == [12]
    guards = guard_centroids(given, ALL_LEVELS, CUBE, outside_mm=13.0)
    assert sorted(guards) == [8, 12]
    np.testing.assert_allclose(guards[8], [100.0, 87.0, 210.0])
