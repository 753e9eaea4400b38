"""Fit score measures (diffam.fit.quality) on synthetic boxes with known answers.

Two bright boxes (700 HU in 40 HU) and box meshes exactly on them
(``tests/diffam/test_outputs.py``); the appearance profile is the step
700 -> 40 HU at the surface.
"""

from __future__ import annotations

import numpy as np
import pytest

from diffam.core.mesh_ops import signed_volume
from diffam.fit.quality import fit_scores
from tests.diffam.test_outputs import LEVELS, _config, synthetic_ct, synthetic_result


@pytest.fixture(scope="module")
def boxes():
    image = synthetic_ct()
    result = synthetic_result(image, _config())
    return image, result.fit


def _scores(image, fit, vertices=None, initial=None):
    return fit_scores(fit.vertices if vertices is None else vertices, fit.faces, list(LEVELS),
                      fit.appearance_profile, image, initial_centroids=initial)


def test_meshes_on_their_boxes_score_well(boxes):
    image, fit = boxes
    initial = np.stack([v.mean(0) for v in fit.vertices])
    for score in _scores(image, fit, initial=initial):
        assert score.correlation > 0.9 and not score.doubtful
        assert score.in_view == pytest.approx(1.0)
        assert score.overlap == 0.0
        assert score.edge_contrast == pytest.approx(1.0, abs=0.25)  # trilinear blur of the step
        assert score.moved == pytest.approx(0.0, abs=0.02)


def test_moved_is_the_displacement_in_vertebra_sizes(boxes):
    image, fit = boxes
    initial = np.stack([v.mean(0) for v in fit.vertices]) + np.array([3.0, 0.0, 4.0])
    size = abs(signed_volume(fit.vertices[0], fit.faces)) ** (1 / 3)
    for score in _scores(image, fit, initial=initial):
        assert score.moved == pytest.approx(5.0 / size, rel=0.02)


def test_overlap_is_the_part_of_the_surface_inside_the_neighbour(boxes):
    image, fit = boxes
    vertices = fit.vertices.copy()
    vertices[1] = vertices[0] + np.array([0.0, 0.0, 0.5])  # L2 one level off, on L1's box
    scores = _scores(image, fit, vertices)
    # the inner shells of two (nearly) coincident boxes lie inside each other
    assert scores[0].overlap > 0.5 and scores[1].overlap > 0.5
    vertices[1] = fit.vertices[1]  # back on its own box: touching is not overlapping
    assert _scores(image, fit, vertices)[1].overlap == 0.0


def test_in_view_counts_the_band_inside_the_scan(boxes):
    image, fit = boxes
    # move L2 so that the scan's last slice cuts it through its middle (index k = 39.5)
    top = image.index_to_world(np.array([[35.0, 30.0, 39.5]]))[0]
    axis = image.direction[:, 2]
    vertices = fit.vertices.copy()
    centre = vertices[1].mean(0)
    vertices[1] += axis * ((top - centre) @ axis)
    score = _scores(image, fit, vertices)[1]
    assert 0.35 < score.in_view < 0.65
