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


def test_gap_loss_is_the_shortfall_of_the_separation():
    a = torch.tensor([0.5, 1.0, 0.0])
    b = torch.tensor([0.5, 2.0, 3.0])
    # separations 1, 3, 3 against a gap of 2: only the first falls short, by 1
    assert float(L.gap_loss(a, b, 2.0, num_points=4)) == 1.0 / 4
    assert float(L.gap_loss(a[:0], b[:0], 2.0, num_points=4)) == 0.0


def _two_boxes_fit(separation_mm: float, gap_mm: float, unit_mm: float = 64.0):
    """Two 20 mm cubes one above the other, ``separation_mm`` apart, as the gap term sees them."""
    import contextlib
    from types import SimpleNamespace

    import trimesh

    import diffsd

    box = trimesh.creation.box(extents=(20.0, 20.0, 20.0))
    faces = torch.as_tensor(box.faces, dtype=torch.int64)
    lower = torch.as_tensor(box.vertices, dtype=torch.float64)
    upper = lower + torch.tensor([0.0, 0.0, 20.0 + separation_mm], dtype=torch.float64)
    vertices = torch.stack([lower, upper]).requires_grad_(True)
    packed = vertices.reshape(-1, 3)
    packed_faces = torch.cat([faces, faces + lower.shape[0]])
    mesh_bvh = diffsd.MeshBVH(packed.detach(), packed_faces,
                              torch.arange(2) * faces.shape[0])
    fit = SimpleNamespace(
        config=SimpleNamespace(optim=SimpleNamespace(neighbour_gap_mm=gap_mm, winding_beta=1.25)),
        shape=SimpleNamespace(num_meshes=2), num_faces=faces.shape[0], unit=unit_mm,
        mesh_bvh=mesh_bvh, stage_timer=lambda name: contextlib.nullcontext(),
        body_faces=torch.ones(faces.shape[0], dtype=torch.bool))  # every face counts
    # points in the space between the boxes, over their shared footprint
    generator = torch.Generator().manual_seed(0)
    points = torch.rand(400, 3, generator=generator, dtype=torch.float64)
    points[:, :2] = (points[:, :2] - 0.5) * 18.0
    points[:, 2] = 10.0 + 0.05 * separation_mm + 0.9 * separation_mm * points[:, 2]
    union = diffsd.signed_distance(packed, packed_faces, points)
    samples = L.StepSamples(vertices=vertices, packed=packed, points=points, union=union,
                            target_sampler=None)
    return fit, samples, vertices


def test_gap_term_matches_the_analytic_shortfall_between_two_boxes():
    unit = 64.0
    for separation, gap in ((1.0, 3.0), (2.0, 3.0), (4.0, 3.0)):
        fit, samples, _ = _two_boxes_fit(separation, gap, unit)
        # every point lies between the faces, so d_lower + d_upper = separation exactly
        near = samples.union.distance.abs() < gap
        expected = max(gap - separation, 0.0) / unit * float(near.sum()) / 400
        assert math.isclose(float(L._gap_term(fit, samples).detach()), expected, rel_tol=1e-6,
                            abs_tol=1e-12)


def test_gap_term_pushes_close_neighbours_apart():
    fit, samples, vertices = _two_boxes_fit(1.0, 3.0)
    L._gap_term(fit, samples).backward()
    # descending the gradient moves the upper box up and the lower box down
    assert float(vertices.grad[1, :, 2].sum()) < 0
    assert float(vertices.grad[0, :, 2].sum()) > 0


def test_body_face_mask_keeps_the_anterior_faces():
    import numpy as np
    import trimesh

    # a 10 mm cube in front (-y) of a 10 x 30 x 10 mm bar behind it, as one vertex list
    front = trimesh.creation.box(extents=(10.0, 10.0, 10.0))
    back = trimesh.creation.box(extents=(10.0, 30.0, 10.0))
    back.vertices += [0.0, 25.0, 0.0]
    vertices = np.concatenate([front.vertices, back.vertices])
    faces = np.concatenate([front.faces, back.faces + len(front.vertices)])
    mask = L.body_face_mask(vertices, faces)
    face_y = vertices[faces][:, :, 1].mean(1)
    assert mask[:len(front.faces)].all()  # the whole front cube is anterior of the mean
    assert not mask[len(front.faces):][face_y[len(front.faces):] > 10.0].any()
