"""Analytic backward pass: gradcheck, translation identity, points on the surface."""

from __future__ import annotations

import pytest
import torch

from diffsd import MeshBVH, pack_meshes, signed_distance, unsigned_distance
from diffsd.primitives import icosphere
from tests.diffsd.meshes import MESHES, bumpy_sphere, query_points


def _off_surface_points(vertices, faces, count, seed):
    """Points whose closest feature is well defined (away from the surface and medial axis)."""
    points = query_points(vertices, 4 * count, seed=seed)
    distance = signed_distance(vertices, faces, points).distance.abs()
    keep = (distance > 0.02) & (distance < 0.3)
    return points[keep][:count]


@pytest.mark.parametrize("name", ["sphere", "torus", "bumpy"])
def test_gradcheck_points_and_vertices(name):
    vertices, faces = MESHES[name]()
    points = _off_surface_points(vertices, faces, 24, seed=11)
    vertices = vertices.clone().requires_grad_(True)
    points = points.clone().requires_grad_(True)

    def distance(v, p):
        return signed_distance(v, faces, p).distance

    assert torch.autograd.gradcheck(distance, (vertices, points), eps=1e-7, atol=1e-5)


def test_gradcheck_unsigned_and_packed():
    meshes = [MESHES["sphere"](), bumpy_sphere(2)]
    packed = pack_meshes([meshes[0][0], meshes[1][0] + 3.0], [meshes[0][1], meshes[1][1]])
    generator = torch.Generator().manual_seed(3)
    points = torch.cat([1.3 * torch.nn.functional.normalize(torch.randn(10, 3, generator=generator,
                                                                        dtype=torch.float64)),
                        3.0 + 1.4 * torch.nn.functional.normalize(
                            torch.randn(10, 3, generator=generator, dtype=torch.float64))])
    point_mesh = torch.repeat_interleave(torch.arange(2), 10)
    vertices = packed.vertices.clone().requires_grad_(True)
    points.requires_grad_(True)

    def distance(v, p):
        return unsigned_distance(v, packed.faces, p, point_mesh=point_mesh,
                                 mesh_faces_first_idx=packed.mesh_faces_first_idx).distance

    assert torch.autograd.gradcheck(distance, (vertices, points), eps=1e-7, atol=1e-5)


def test_translation_identity():
    vertices, faces = MESHES["bumpy"]()
    points = query_points(vertices, 500, seed=12).requires_grad_(True)
    vertices = vertices.clone().requires_grad_(True)
    weights = torch.rand(points.shape[0], dtype=torch.float64)
    (signed_distance(vertices, faces, points).distance * weights).sum().backward()
    total = points.grad.sum(0) + vertices.grad.sum(0)
    assert total.abs().max() < 1e-10


def test_gradient_is_unit_outward_direction():
    vertices, faces = icosphere(4)
    points = (torch.nn.functional.normalize(torch.randn(200, 3, dtype=torch.float64))
              * torch.rand(200, 1, dtype=torch.float64).mul(1.6).add(0.2)).requires_grad_(True)
    signed_distance(vertices, faces, points).distance.sum().backward()
    torch.testing.assert_close(points.grad.norm(dim=1), torch.ones(200, dtype=torch.float64))
    radial = (points.grad * torch.nn.functional.normalize(points.detach())).sum(1)
    assert radial.min() > 0.98


def test_finite_gradients_on_surface_edges_and_vertices():
    vertices, faces = MESHES["torus"]()
    tri = vertices[faces[:20]]
    on_vertices = vertices[:20]
    on_edges = (tri[:, 0] + tri[:, 1]) / 2
    on_faces = tri.mean(1)
    points = torch.cat([on_vertices, on_edges, on_faces]).clone().requires_grad_(True)
    vertices = vertices.clone().requires_grad_(True)
    result = signed_distance(vertices, faces, points)
    assert result.distance.abs().max() < 1e-12
    result.distance.sum().backward()
    assert bool(torch.isfinite(points.grad).all()) and bool(torch.isfinite(vertices.grad).all())
    torch.testing.assert_close(points.grad.norm(dim=1), torch.ones(60, dtype=torch.float64))


def test_gradients_with_reused_bvh_and_float32():
    vertices, faces = MESHES["sphere"]()
    vertices = vertices.float()
    bvh = MeshBVH(vertices, faces)
    parameter = torch.zeros_like(vertices, requires_grad=True)
    optimizer = torch.optim.Adam([parameter], lr=0.01)
    points = query_points(vertices, 300, seed=13)
    target = points.norm(dim=1) - 0.8
    losses = []
    for _ in range(15):
        optimizer.zero_grad()
        distance = signed_distance(vertices + parameter, faces, points, bvh=bvh).distance
        loss = ((distance - target) ** 2).mean()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("backend", ["cpu", "cuda"])
def test_closest_point_gradient_to_vertices_holds_barycentrics_fixed(backend):
    """closest_point = sum_i w_i v_i with the barycentrics fixed: its vertex
    gradient, alone and together with the distance's, against autograd
    through that formula (the CPU computes the points' gradient and its
    scatter to the vertices in one kernel, CUDA in a kernel and torch)."""
    vertices, faces = MESHES["bumpy"]()
    points = _off_surface_points(vertices, faces, 40, seed=13)
    vertices = vertices.clone().requires_grad_(True)
    weights = torch.randn(points.shape[0], 3, dtype=torch.float64,
                          generator=torch.Generator().manual_seed(4))
    for with_distance in (False, True):
        result = signed_distance(vertices, faces, points, backend=backend)
        loss = (result.closest_point * weights).sum()
        if with_distance:
            loss = loss + result.distance.sum()
        (ours,) = torch.autograd.grad(loss, vertices)
        w = result.barycentric.detach()
        rebuilt = (w[:, :, None] * vertices[faces[result.closest_face]]).sum(1)
        reference_loss = (rebuilt * weights).sum()
        if with_distance:
            reference_loss = reference_loss + (
                torch.where(result.distance.detach() < 0, -1.0, 1.0)
                * (points - rebuilt).norm(dim=1)).sum()
        (reference,) = torch.autograd.grad(reference_loss, vertices)
        torch.testing.assert_close(ours, reference, rtol=1e-9, atol=1e-12)
