"""Each DiffAM loss on a case with a known value."""

from __future__ import annotations

import math

import torch

from diffam.fit import objective as L


def test_image_loss_is_mean_absolute_difference():
    assert float(L.image_loss(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([1.0, 0.0, 5.0]))) == 1.0


def test_edge_length_loss_on_unit_triangle():
    vertices = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
    edges = torch.tensor([[0, 1], [1, 2], [0, 2]])
    assert math.isclose(float(L.edge_length_loss(vertices, edges)), (1 + 2 + 1) / 3, rel_tol=1e-6)
    stacked = torch.stack([vertices, 2 * vertices])  # (M, V, 3)
    assert math.isclose(float(L.edge_length_loss(stacked, edges)), (4 / 3 + 16 / 3) / 2, rel_tol=1e-6)


def test_normal_loss_aligned_and_orthogonal():
    normals = torch.tensor([[0.0, 0, 1], [1.0, 0, 0]])
    gradient = torch.tensor([[0.0, 0, -2.0], [0.0, 3.0, 0]])
    expected = (math.exp(-2.0) + 1.0) / 2
    assert math.isclose(float(L.normal_loss(normals, gradient)), expected, rel_tol=1e-6)


def test_overlap_loss_counts_only_points_inside_both():
    distance = torch.tensor([[-1.0, -2.0, 0.5, -1.0], [-3.0, 1.0, -1.0, -0.5]])  # (M, N)
    assert float(L.overlap_loss(distance)) == 1.0 * 3.0 + 1.0 * 0.5


def test_overlap_loss_sums_every_pair_of_meshes():
    distance = torch.tensor([[-1.0], [-2.0], [-3.0]])  # one point inside three meshes
    assert float(L.overlap_loss(distance)) == 1 * 2 + 1 * 3 + 2 * 3


def test_every_loss_term_has_a_weight_and_the_weights_have_terms():
    import dataclasses

    from diffam.core.config import LossWeights

    assert set(L.LOSS_TERMS) == {f.name for f in dataclasses.fields(LossWeights)}


def test_variance_loss_weights_differences_by_eigenvalues():
    coefficients = torch.zeros(3, 2, 3)
    coefficients[1, 1, 0] = 1.0  # differs from both neighbours in mode 1
    eigenvalues = torch.tensor([0.0, 4.0])
    assert float(L.variance_loss(coefficients, eigenvalues)) == 2 * 4.0
    assert float(L.variance_loss(coefficients[:1], eigenvalues)) == 0.0
