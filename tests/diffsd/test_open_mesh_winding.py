"""Signs on open meshes: the CPU kernel's carry-over of the winding number
between neighbouring points (bounded by the boundary's solid angle), and
the refinement of the Barnes--Hut sum near 1/2, against the exact sum."""

from __future__ import annotations

import math

import pytest
import torch

from diffsd import MeshBVH, signed_distance, winding_number
from diffsd.bvh import MAX_BOUNDARY_CLUSTERS
from diffsd._cpu_kernels import _shared
from diffsd.naive import naive_unsigned_distance, naive_winding_number
from diffsd.primitives import icosphere
from diffsd.topology import boundary_edges
from tests.diffsd.meshes import MESHES, query_points


def sphere_with_holes(subdivisions: int = 3):
    """An icosphere with three round holes (two of them large): an open mesh
    whose winding number is near 1/2 across each hole."""
    vertices, faces = icosphere(subdivisions)
    centroid = vertices[faces].mean(1)
    centroid = centroid / centroid.norm(dim=1, keepdim=True)
    keep = torch.ones(faces.shape[0], dtype=torch.bool)
    for direction, radius in (((0.0, 0.0, 1.0), 0.6), ((1.0, 0.0, 0.0), 0.4),
                              ((0.0, -0.6, -0.8), 0.25)):
        keep &= centroid @ torch.tensor(direction, dtype=vertices.dtype) < math.cos(radius)
    return vertices, faces[keep]


OPEN = {"open": MESHES["open"], "holes": sphere_with_holes}


def _points_across_holes(vertices, faces, count, seed):
    """Points spread over the mesh's box, many of them where the winding
    number is near 1/2: in and around the holes' openings."""
    generator = torch.Generator().manual_seed(seed)
    spread = query_points(vertices, count, seed=seed)
    # Between the sphere's centre and the surface, along random directions:
    # the lines through a hole cross w = 1/2.
    direction = torch.randn(count, 3, generator=generator, dtype=torch.float64)
    direction = direction / direction.norm(dim=1, keepdim=True)
    radius = 0.6 + 0.6 * torch.rand(count, 1, generator=generator, dtype=torch.float64)
    return torch.cat([spread, direction * radius])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", sorted(OPEN))
def test_open_mesh_signs_equal_the_exact_winding_number(name, dtype):
    """No wrong sign, near-ambiguous points included, in both sign modes;
    most points take the carried value (the path under test)."""
    vertices, faces = OPEN[name]()
    points = _points_across_holes(vertices, faces, 3000, seed=21)
    exact = naive_winding_number(vertices, faces, points)
    distance, _ = naive_unsigned_distance(vertices, faces, points)
    decided = ((exact - 0.5).abs() > 1e-6) & (distance > 1e-6)
    near_half = decided & ((exact - 0.5).abs() < 0.05)
    assert near_half.sum() > 20  # the ambiguous region is sampled
    v, p = vertices.to(dtype), points.to(dtype)
    bvh = MeshBVH(v, faces)
    for mode in ("fast_winding", "exact_winding"):
        result = signed_distance(v, faces, p, bvh=bvh, sign_mode=mode)
        assert torch.equal((result.distance < 0)[decided], (exact > 0.5)[decided]), mode
        summed = winding_number(v, faces, p, bvh=bvh, mode=mode)
        carried = (result.winding_number != summed).double().mean()
        assert carried > 0.3, mode


@pytest.mark.parametrize("name", sorted(OPEN))
def test_cuda_open_mesh_signs_equal_the_exact_winding_number(name):
    """The CUDA kernel (simulator, few points) refines the sum near 1/2 too."""
    vertices, faces = OPEN[name]()
    generator = torch.Generator().manual_seed(3)
    direction = torch.randn(40, 3, generator=generator, dtype=torch.float64)
    points = direction / direction.norm(dim=1, keepdim=True) * 0.9
    exact = naive_winding_number(vertices, faces, points)
    result = signed_distance(vertices, faces, points, backend="cuda")
    decided = (exact - 0.5).abs() > 1e-6
    assert torch.equal((result.distance < 0)[decided], (exact > 0.5)[decided])


@pytest.mark.parametrize("name", sorted(OPEN))
def test_winding_number_drift_is_within_the_boundary_bound(name):
    """Between two points the exact winding number changes by the counted
    crossings plus a drift that :func:`boundary_winding_bound` bounds."""
    vertices, faces = OPEN[name]()
    bvh = MeshBVH(vertices, faces)
    generator = torch.Generator().manual_seed(5)
    start = query_points(vertices, 400, seed=6)
    end = start + 0.3 * torch.randn(start.shape, generator=generator, dtype=torch.float64)
    w_start = naive_winding_number(vertices, faces, start)
    w_end = naive_winding_number(vertices, faces, end)
    root = int(bvh.mesh_root[0])
    first, last = (int(x) for x in bvh.mesh_cluster_first[:2])
    assert last > first
    stack = torch.empty(96, dtype=torch.int64).numpy()
    checked = 0
    for a, b, wa, wb in zip(start.tolist(), end.tolist(), w_start.tolist(), w_end.tolist()):
        bound = _shared.boundary_winding_bound(*a, *b, first, last, bvh.boundary_sphere.numpy(),
                                               math.inf)
        change, ok = _shared.segment_winding_change(
            *a, *b, root, bvh.num_faces - 1, bvh.child_left.numpy(), bvh.child_right.numpy(),
            bvh.child_frame.numpy(), bvh.leaf_vertices.numpy(), 1e-12, stack)
        if not ok or not math.isfinite(bound):
            continue
        drift = abs(wb - wa - change)
        assert drift <= bound + 1e-9
        checked += 1
    assert checked > 100


def test_boundary_edges_and_clusters():
    vertices, faces = OPEN["holes"]()
    edges, first = boundary_edges(faces, torch.zeros(1, dtype=torch.int64), vertices.shape[0])
    # Every boundary edge is used by exactly one face, in its direction.
    directed = set(map(tuple, torch.cat([faces[:, [0, 1]], faces[:, [1, 2]],
                                         faces[:, [2, 0]]]).tolist()))
    for start, end, multiplicity in edges.tolist():
        assert multiplicity == 1 and (start, end) in directed and (end, start) not in directed
    assert first.tolist() == [0, edges.shape[0]]
    bvh = MeshBVH(vertices, faces)
    moved = vertices * torch.tensor([1.5, 0.7, 1.0], dtype=torch.float64) + 0.2
    for current in (vertices, moved):
        sphere = bvh.boundary_sphere
        cluster_of = torch.repeat_interleave(torch.arange(sphere.shape[0]),
                                             torch.diff(bvh.cluster_first_edge))
        for end in range(2):
            ends = current[bvh.boundary_edge[:, end]]
            gap = (ends - sphere[cluster_of, :3]).norm(dim=1) - sphere[cluster_of, 3]
            assert bool((gap <= 1e-12).all())
        lengths = (current[bvh.boundary_edge[:, 1]] - current[bvh.boundary_edge[:, 0]]).norm(dim=1)
        totals = torch.zeros(sphere.shape[0], dtype=torch.float64).index_add_(0, cluster_of,
                                                                             lengths)
        torch.testing.assert_close(sphere[:, 4], totals, rtol=1e-9, atol=0)
        # Clusters follow the loops, so each is a connected chain: any two of
        # its points are closer than its length.
        assert bool((sphere[:, 3] <= sphere[:, 4]).all())
        bvh.refit(moved)
    closed = MeshBVH(*icosphere(2))
    assert closed.boundary_sphere.shape[0] == 0
    assert closed.mesh_cluster_first.tolist() == [0, 0]


def test_many_small_holes_keep_the_cluster_count_and_the_signs():
    """100 faces that share no vertex removed: 100 three-edge loops, more
    than the clusters allowed per mesh, so clusters span loops; signs stay
    exact."""
    vertices, faces = icosphere(3)
    keep = torch.ones(faces.shape[0], dtype=torch.bool)
    taken = set()
    for index, face in enumerate(faces.tolist()):
        if len(taken) < 300 and not taken.intersection(face):
            taken.update(face)
            keep[index] = False
    faces = faces[keep]
    bvh = MeshBVH(vertices, faces)
    assert bvh.boundary_edge.shape[0] == 300
    assert 0 < bvh.boundary_sphere.shape[0] <= MAX_BOUNDARY_CLUSTERS
    points = _points_across_holes(vertices, faces, 1000, seed=8)
    exact = naive_winding_number(vertices, faces, points)
    decided = (exact - 0.5).abs() > 1e-6
    result = signed_distance(vertices, faces, points, bvh=bvh)
    assert torch.equal((result.distance < 0)[decided], (exact > 0.5)[decided])
