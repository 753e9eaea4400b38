"""Re-seating given centroids on detected vertebrae (diffam.fit.reseat), on synthetic columns."""

from __future__ import annotations

import numpy as np
import pytest

from diffam.fit.reseat import (
    MATCH_MM,
    TURN_DEG,
    match_levels,
    reseat_centroids,
    rotation_between,
    smoothed_run,
    turn_onto_column,
)
from diffam.localize.centerline import Centerline
from tests.diffam.perturb import moved_points

#: A column of vertebrae every 24 mm down a slightly tilted line (a mid-thoracic period).
STEP = np.array([0.0, 4.0, -24.0])
TOP = np.array([10.0, 20.0, 300.0])


def _column(ids, first_id):
    """True centres of ``ids``, the level ``first_id`` at ``TOP``."""
    return {v: TOP + (v - first_id) * STEP for v in ids}


def _straight_column(first_id=12, levels=9):
    """The centreline of :func:`_column` from two levels below ``first_id + levels`` to two
    above ``first_id``, sampled every mm from inferior to superior."""
    up = -STEP / np.linalg.norm(STEP)
    bottom = TOP + (levels + 1) * STEP
    arc = np.arange(0.0, (levels + 3) * np.linalg.norm(STEP), 1.0)
    return Centerline(bottom + arc[:, None] * up, np.repeat(up[None], len(arc), 0), arc)


#: Axes perpendicular to the column: left-right, and the one perpendicular to it and STEP.
LEFT_RIGHT = np.array([1.0, 0.0, 0.0])
ACROSS = np.cross(STEP, LEFT_RIGHT) / np.linalg.norm(np.cross(STEP, LEFT_RIGHT))


def _turn(degrees, axis=LEFT_RIGHT):
    """Rotation by ``degrees`` about the unit vector ``axis``."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(np.radians(degrees) * np.asarray(axis)).as_matrix()


def _detections(ids, first_id, cut=()):
    truth = _column(ids, first_id)
    points = np.stack([truth[v] for v in ids])
    return points, np.array([v in cut for v in ids])


def test_smoothed_run_reproduces_a_line_and_a_parabola():
    line = {v: TOP + v * STEP for v in range(12, 17)}
    for v, p in smoothed_run(line).items():
        np.testing.assert_allclose(p, line[v], atol=1e-9)
    bent = {v: TOP + v * STEP + np.array([0.0, 0.3 * v * v, 0.0]) for v in range(10, 17)}
    for v, p in smoothed_run(bent).items():
        np.testing.assert_allclose(p, bent[v], atol=1e-6)


@pytest.mark.parametrize("seed", range(6))
def test_centroids_moved_15mm_go_back_to_their_own_vertebra(seed):
    levels = [12, 13, 14, 15, 16]
    truth = _column(levels, 12)
    # the detection sees two more vertebrae above and below, listed out of order
    points, cut = _detections(list(range(10, 19)), 12)
    order = np.random.default_rng(seed).permutation(len(points))
    given = moved_points(truth, 15.0, seed)
    out = reseat_centroids(None, given, keep_mm=10.0, detections=(points[order], cut[order]))
    for v in levels:
        np.testing.assert_allclose(out.centroids[v], truth[v], atol=1e-9)
    assert set(out.moved) == set(levels)


def test_centroids_near_their_vertebra_are_kept_exactly():
    levels = [12, 13, 14, 15, 16]
    truth = _column(levels, 12)
    given = moved_points(truth, 6.0, 0)  # as far as the detection's own error
    out = reseat_centroids(None, given, keep_mm=10.0,
                           detections=_detections(list(range(10, 19)), 12))
    assert out.moved == {}
    for v in levels:
        np.testing.assert_array_equal(out.centroids[v], given[v])


def test_in_a_moved_run_a_level_near_its_detection_is_reseated_too():
    levels = [12, 13, 14, 15, 16]
    truth = _column(levels, 12)
    given = moved_points(truth, 15.0, 4)
    given[12] = truth[12] + np.array([8.0, 0.0, 0.0])  # by chance near its own vertebra
    out = reseat_centroids(None, given, keep_mm=10.0,
                           detections=_detections(list(range(10, 19)), 12))
    assert set(out.moved) == set(levels)
    np.testing.assert_allclose(out.centroids[12], truth[12], atol=1e-9)


def test_in_a_correct_run_only_a_far_outlier_is_reseated():
    levels = [12, 13, 14, 15, 16]
    truth = _column(levels, 12)
    given = moved_points(truth, 5.0, 5)
    given[13] = truth[13] + np.array([15.0, 0.0, 0.0])  # within 2 keep_mm: kept
    given[15] = truth[15] + np.array([0.0, 10.0, -20.0])  # 22 mm, toward the level below
    out = reseat_centroids(None, given, keep_mm=10.0,
                           detections=_detections(list(range(10, 19)), 12))
    assert set(out.moved) == {15}
    np.testing.assert_allclose(out.centroids[15], truth[15], atol=1e-9)
    np.testing.assert_array_equal(out.centroids[13], given[13])


def test_a_run_turned_15_degrees_about_its_middle_agrees_with_the_detections():
    levels = [12, 13, 14, 15, 16]
    truth = _column(levels, 12)
    c, s = np.cos(np.radians(15.0)), np.sin(np.radians(15.0))
    turn = np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])  # about the left-right axis
    middle = truth[14]
    given = {v: middle + turn @ (p - middle) for v, p in truth.items()}
    # the ends move 2 * 48.7 * sin(7.5 deg) = 12.7 mm, the median level 6.4 mm: kept
    out = reseat_centroids(None, given, keep_mm=10.0,
                           detections=_detections(list(range(10, 19)), 12))
    assert out.moved == {} and out.turned_deg == 0.0


@pytest.mark.parametrize("degrees, axis", [(15.0, LEFT_RIGHT), (-15.0, LEFT_RIGHT),
                                           (12.0, ACROSS), (20.0, (LEFT_RIGHT + ACROSS) / 2 ** 0.5)])
def test_a_run_turned_about_its_middle_is_turned_back_onto_the_column(degrees, axis):
    levels = [12, 13, 14, 15, 16]
    truth = _column(levels, 12)
    middle = truth[14]
    given = {v: middle + _turn(degrees, axis) @ (p - middle) for v, p in truth.items()}
    out = reseat_centroids(None, given, keep_mm=10.0,
                           detections=_detections(list(range(10, 19)), 12),
                           column=_straight_column())
    assert out.turned_deg == pytest.approx(abs(degrees), abs=1e-6)
    for v in levels:
        np.testing.assert_allclose(out.centroids[v], truth[v], atol=1e-6)
    assert set(out.moved) == {12, 13, 15, 16}  # the middle stays where it was


def test_a_run_within_the_turn_limit_of_the_column_is_not_turned():
    levels = [12, 13, 14, 15, 16]
    truth = _column(levels, 12)
    middle = truth[14]
    given = {v: middle + _turn(TURN_DEG - 1.0) @ (p - middle) for v, p in truth.items()}
    out = reseat_centroids(None, given, keep_mm=10.0,
                           detections=_detections(list(range(10, 19)), 12),
                           column=_straight_column())
    assert out.turned_deg == 0.0 and out.moved == {}
    for v in levels:
        np.testing.assert_array_equal(out.centroids[v], given[v])


def test_a_turn_that_takes_the_run_away_from_its_detections_is_not_made():
    # the run lies on its detections, but the column's centreline (e.g. found on
    # another structure) runs 15 degrees off: turning would move the ends 12 mm off
    levels = [12, 13, 14, 15, 16]
    truth = _column(levels, 12)
    column = _straight_column()
    pivot = truth[14]
    tilted = Centerline(pivot + (column.points - pivot) @ _turn(15.0).T,
                        column.tangents @ _turn(15.0).T, column.arc_mm)
    out = reseat_centroids(None, truth, keep_mm=10.0,
                           detections=_detections(list(range(10, 19)), 12), column=tilted)
    assert out.turned_deg == 0.0 and out.moved == {}
    for v in levels:
        np.testing.assert_array_equal(out.centroids[v], truth[v])


def test_turn_onto_column_measures_the_angle_between_the_run_and_the_column():
    truth = _column([12, 13, 14, 15, 16], 12)
    rotation, angle = turn_onto_column(truth, _straight_column())
    assert angle == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(rotation, np.eye(3), atol=1e-9)
    middle = truth[14]
    turned = {v: middle + _turn(10.0, ACROSS) @ (p - middle) for v, p in truth.items()}
    rotation, angle = turn_onto_column(turned, _straight_column())
    assert angle == pytest.approx(10.0, abs=1e-6)
    np.testing.assert_allclose(rotation @ _turn(10.0, ACROSS), np.eye(3), atol=1e-9)


def test_rotation_between_agrees_with_scipy():
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.normal(size=3), rng.normal(size=3)
        rotation = rotation_between(a, b)
        np.testing.assert_allclose(rotation @ (a / np.linalg.norm(a)), b / np.linalg.norm(b),
                                   atol=1e-12)
        np.testing.assert_allclose(rotation.T @ rotation, np.eye(3), atol=1e-12)
        expected, _ = Rotation.align_vectors(b[None], a[None])  # the smallest rotation
        np.testing.assert_allclose(rotation, expected.as_matrix(), atol=1e-9)
    np.testing.assert_array_equal(rotation_between(a, 2 * a), np.eye(3))


def test_cut_or_unmatched_detections_leave_the_given_centroid():
    levels = [12, 13, 14, 15, 16]
    truth = _column(levels, 12)
    given = moved_points(truth, 15.0, 1)
    # level 16's detection is cut by the scan's end; 12 has no detection at all
    points, cut = _detections([13, 14, 15, 16], 12, cut=(16,))
    out = reseat_centroids(None, given, keep_mm=10.0, detections=(points, cut))
    assert set(out.moved) == {13, 14, 15}
    np.testing.assert_array_equal(out.centroids[12], given[12])
    np.testing.assert_array_equal(out.centroids[16], given[16])


def test_weak_evidence_keeps_every_centroid():
    truth = _column([12, 13, 14, 15], 12)
    given = moved_points(truth, 15.0, 2)
    two = {v: given[v] for v in (12, 13)}
    out = reseat_centroids(None, two, keep_mm=10.0, detections=_detections([12, 13, 14], 12))
    assert out.moved == {} and "fewer than" in out.reason
    far = (np.stack([p + np.array([200.0, 0.0, 0.0]) for p in truth.values()]), np.zeros(4, bool))
    out = reseat_centroids(None, given, keep_mm=10.0, detections=far)
    assert out.moved == {} and "matched" in out.reason


def test_body_centres_are_compared_through_the_offset_to_the_vertebra():
    levels = [12, 13, 14, 15, 16]
    truth = _column(levels, 12)
    anterior = np.array([0.0, -12.0, 0.0])  # body centres lie 12 mm anterior (LPS -y)
    bodies = {v: p + anterior for v, p in truth.items()}
    to_vertebra = {v: -anterior for v in levels}
    detections = _detections(list(range(10, 19)), 12)
    kept = reseat_centroids(None, bodies, keep_mm=10.0, to_vertebra=to_vertebra,
                            detections=detections)
    assert kept.moved == {}
    moved = moved_points(bodies, 15.0, 3)
    out = reseat_centroids(None, moved, keep_mm=10.0, to_vertebra=to_vertebra,
                           detections=detections)
    assert set(out.moved) == set(levels)
    for v in levels:
        np.testing.assert_allclose(out.centroids[v], bodies[v], atol=1e-9)


def test_match_levels_takes_no_detection_beyond_the_cap():
    truth = _column([12, 13, 14], 12)
    points = np.stack([truth[12], truth[13] + np.array([MATCH_MM + 1.0, 0.0, 0.0]), truth[14]])
    assert match_levels(truth, points) == {12: 0, 14: 2}


def test_cut_end_detections_do_not_judge_the_run():
    # l3_crop: three levels, both ends cut by the crop; their label centroids and
    # detections sit 10-16 mm apart, the whole middle one 13 mm from its detection.
    levels = [21, 22, 23]
    truth = _column(levels, 21)
    given = dict(truth)
    given[21] = truth[21] + np.array([0.0, 0.0, 14.0])
    given[23] = truth[23] + np.array([0.0, 0.0, -16.0])
    points, cut = _detections(levels, 21, cut=(21, 23))
    points[1] = points[1] + np.array([0.0, 13.0, 0.0])
    out = reseat_centroids(None, given, keep_mm=10.0, detections=(points, cut))
    assert out.moved == {} and "whole" in out.reason
    for v in levels:
        np.testing.assert_array_equal(out.centroids[v], given[v])


def test_a_run_far_off_its_detections_takes_them_without_a_turn():
    # moved 15 mm at random: the smoothed run may point off the column, but the run is
    # re-seated level by level on its detections, whatever its direction
    levels = [12, 13, 14, 15, 16]
    truth = _column(levels, 12)
    middle = truth[14]
    turned = {v: middle + _turn(15.0) @ (p - middle) for v, p in truth.items()}
    given = moved_points(turned, 15.0, 0)
    out = reseat_centroids(None, given, keep_mm=10.0,
                           detections=_detections(list(range(10, 19)), 12),
                           column=_straight_column())
    assert out.turned_deg == 0.0 and set(out.moved) == set(levels)
    for v in levels:
        np.testing.assert_allclose(out.centroids[v], truth[v], atol=1e-9)


def test_a_level_cut_by_the_border_is_kept_and_does_not_turn_the_run():
    # verse005 with the lowest 9 mm of L1 in view: L1's centroid is that of its spinous
    # process, 32 mm behind and 25 mm below its centre; in the run it turns the chord
    levels = [12, 13, 14, 15, 16]
    truth = _column(levels, 12)
    given = dict(truth)
    given[12] = truth[12] + np.array([0.0, 32.0, -25.0])
    detections = _detections(list(range(10, 19)), 12)
    bent = reseat_centroids(None, given, keep_mm=10.0, detections=detections,
                            column=_straight_column())
    assert bent.moved  # without the border's cut the spinous process drags the run
    out = reseat_centroids(None, given, keep_mm=10.0, detections=detections,
                           column=_straight_column(), cut_by_border={12})
    assert out.turned_deg == 0.0 and out.moved == {}
    for v in levels:
        np.testing.assert_array_equal(out.centroids[v], given[v])
