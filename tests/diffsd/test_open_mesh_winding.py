"""Signs on open meshes: the CPU kernel's carry-over of the integer winding
number of the mesh closed by caps over its holes, less the caps' own, and
the refinement of the Barnes--Hut sum near 1/2, against the exact sum."""

from __future__ import annotations

import math

import pytest
import torch

from diffsd import MeshBVH, signed_distance, winding_number
from diffsd._cpu_kernels import _shared
from diffsd.bvh import MAX_CAP_GROUPS
from diffsd.naive import naive_unsigned_distance, naive_winding_number
from diffsd.primitives import icosphere
from diffsd.topology import boundary_edges, closed_meshes
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
    most points take the carried value (the path under test: in fast mode
    it differs from the Barnes--Hut sum), which in exact mode is exact."""
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
        if mode == "exact_winding":
            # Mesh plus caps carried exactly, less the caps' exact sum.
            torch.testing.assert_close(result.winding_number.double(), exact, rtol=0,
                                       atol=100 * torch.finfo(dtype).eps)
        else:
            summed = winding_number(v, faces, p, bvh=bvh, mode=mode)
            carried = (result.winding_number != summed).double().mean()
            assert carried > 0.3


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


def _cap_faces(bvh):
    """The caps' triangles as faces over the mesh's vertices plus one apex
    per group (appended), repeated by multiplicity: built from the index
    arrays alone, independently of the kernels' geometry."""
    num_vertices = int(bvh.faces.max()) + 1
    edge = bvh.boundary_edge.tolist()
    piece_first = bvh.piece_first_edge.tolist()
    group_first = bvh.group_first_piece.tolist()
    faces = []
    for g in range(len(group_first) - 1):
        apex = num_vertices + g
        for piece in range(group_first[g], group_first[g + 1]):
            first, last = piece_first[piece], piece_first[piece + 1]
            s, multiplicity = edge[first][0], edge[first][2]
            faces += [[apex, edge[last - 1][1], s]] * multiplicity
            for e in range(first + 1, last):
                faces += [[s, edge[e][1], edge[e][0]]] * edge[e][2]
    return torch.tensor(faces, dtype=torch.int64).reshape(-1, 3)


def _cap_arrays(bvh, group_range=None):
    first, last = group_range or (0, bvh.cap_group.shape[0])
    return (first, last, bvh.group_first_piece.numpy(), bvh.piece_first_edge.numpy(),
            bvh.cap_edge.numpy(), bvh.cap_piece.numpy(), bvh.cap_group.numpy())


@pytest.mark.parametrize("name", sorted(OPEN))
def test_caps_close_the_mesh_and_their_winding_number_is_exact(name):
    """Mesh plus caps is closed (so mesh + caps winding numbers are integers),
    and the kernels' cap winding number equals the naive sum over the cap
    triangles (exact mode), and nearly so far field, after build and after
    a non-rigid refit."""
    vertices, faces = OPEN[name]()
    bvh = MeshBVH(vertices, faces)
    assert bvh.has_open_mesh
    cap = _cap_faces(bvh)
    moved = vertices * torch.tensor([1.5, 0.7, 1.0], dtype=torch.float64) + 0.2
    for current in (vertices, moved):
        bvh.refit(current)
        apex = bvh.cap_group[:, :3]
        extended = torch.cat([current, apex])
        both = torch.cat([faces, cap])
        assert bool(closed_meshes(both, torch.zeros(1, dtype=torch.int64), extended.shape[0]))
        points = query_points(current, 300, seed=4)
        w_mesh = naive_winding_number(current, faces, points)
        w_cap = naive_winding_number(extended, cap, points)
        torch.testing.assert_close(w_mesh + w_cap, (w_mesh + w_cap).round(), rtol=0, atol=1e-9)
        exact = torch.tensor([_shared.cap_winding_number(*p, *_cap_arrays(bvh), math.inf)
                              for p in points.tolist()], dtype=torch.float64)
        torch.testing.assert_close(exact, w_cap, rtol=0, atol=1e-9)
        fast = torch.tensor([_shared.cap_winding_number(*p, *_cap_arrays(bvh), 2.0)
                             for p in points.tolist()], dtype=torch.float64)
        assert float((fast - w_cap).abs().max()) < 0.02


@pytest.mark.parametrize("name", sorted(OPEN))
def test_cap_balls_hold_their_triangles_and_are_tight(name):
    """Each group's ball (about its centre) holds every corner of the group's
    cap triangles, built independently from the index arrays, and no
    larger ball is used: the crossing count prunes with these balls, and
    the far field is taken beyond beta times their radius."""
    vertices, faces = OPEN[name]()
    bvh = MeshBVH(vertices, faces)
    cap = _cap_faces(bvh)
    groups = bvh.cap_group.shape[0]
    # The cap faces are listed group by group; the apex of group g is vertex V + g.
    group_of_face = torch.repeat_interleave(
        torch.arange(groups), torch.tensor([
            sum(bvh.boundary_edge[bvh.piece_first_edge[piece]:
                                  bvh.piece_first_edge[piece + 1], 2].sum().item()
                for piece in range(bvh.group_first_piece[g], bvh.group_first_piece[g + 1]))
            for g in range(groups)]))
    moved = vertices * torch.tensor([1.5, 0.7, 1.0], dtype=torch.float64) + 0.2
    for current in (vertices, moved):
        bvh.refit(current)
        extended = torch.cat([current, bvh.cap_group[:, :3]])
        corners = extended[cap]  # (T, 3, 3)
        reach = (corners - bvh.cap_group[group_of_face, None, :3]).norm(dim=2).amax(1)
        farthest = torch.zeros(groups, dtype=torch.float64).scatter_reduce(
            0, group_of_face, reach, "amax")
        radius = bvh.cap_group[:, 3]
        assert bool((farthest <= radius).all())
        torch.testing.assert_close(farthest, radius, rtol=1e-8, atol=0)


def test_half_angle_sums_equal_the_sums_of_atan2():
    """The running sum by the tangent addition formula (the caps' exact sums)
    against math.atan2 term by term and math.fsum: long runs past several
    turns, both signs, terms beyond 90 degrees (non-positive denominators),
    tiny and huge magnitudes; the compiled function agrees with the Python one."""
    from diffsd import geometry

    generator = torch.Generator().manual_seed(11)
    for length in (1, 2, 7, 60, 400):
        for bias in (-1.0, 0.0, 1.0):
            angle = (torch.rand(length, generator=generator, dtype=torch.float64) - 0.5
                     + 0.5 * bias) * 2.9  # in (-pi, pi], mostly one sign with a bias
            scale = torch.exp(torch.randn(length, generator=generator, dtype=torch.float64) * 20)
            det = (scale * torch.sin(angle)).tolist()
            denominator = (scale * torch.cos(angle)).tolist()
            expected = math.fsum(math.atan2(y, x) for y, x in zip(det, denominator))
            for add in (geometry.add_half_angle, _shared.add_half_angle):
                tangent, whole = 0.0, 0.0
                for y, x in zip(det, denominator):
                    tangent, whole = add(tangent, whole, y, x)
                assert abs(tangent) < 1.0
                assert abs(whole + math.atan(tangent) - expected) < 1e-13 * (1 + length)


@pytest.mark.parametrize("name", sorted(OPEN))
def test_crossings_of_mesh_and_caps_give_the_integer_change(name):
    """Along a segment, the counted crossings of mesh and caps equal the
    change of the (integer) winding number of mesh plus caps."""
    vertices, faces = OPEN[name]()
    bvh = MeshBVH(vertices, faces)
    cap = _cap_faces(bvh)
    extended = torch.cat([vertices, bvh.cap_group[:, :3]])
    generator = torch.Generator().manual_seed(5)
    start = _points_across_holes(vertices, faces, 200, seed=6)
    end = start + 0.4 * torch.randn(start.shape, generator=generator, dtype=torch.float64)

    def integer(points):
        total = (naive_winding_number(vertices, faces, points)
                 + naive_winding_number(extended, cap, points))
        return total.round().long().tolist()

    root = int(bvh.mesh_root[0])
    stack = torch.empty(96, dtype=torch.int64).numpy()
    checked = crossing_caps = 0
    for a, b, na, nb in zip(start.tolist(), end.tolist(), integer(start), integer(end)):
        change, ok = _shared.segment_winding_change(
            *a, *b, root, bvh.num_faces - 1, bvh.child_left.numpy(), bvh.child_right.numpy(),
            bvh.child_frame.numpy(), bvh.leaf_vertices.numpy(), 1e-12, stack)
        cap_change, cap_ok = _shared.cap_winding_change(*a, *b, *_cap_arrays(bvh))
        if not (ok and cap_ok):
            continue
        assert nb - na == change + cap_change
        checked += 1
        crossing_caps += cap_change != 0
    assert checked > 150 and crossing_caps > 10


def test_boundary_edges_follow_the_faces():
    vertices, faces = OPEN["holes"]()
    edges, first = boundary_edges(faces, torch.zeros(1, dtype=torch.int64), vertices.shape[0])
    # Every boundary edge is used by exactly one face, in its direction.
    directed = set(map(tuple, torch.cat([faces[:, [0, 1]], faces[:, [1, 2]],
                                         faces[:, [2, 0]]]).tolist()))
    for start, end, multiplicity in edges.tolist():
        assert multiplicity == 1 and (start, end) in directed and (end, start) not in directed
    assert first.tolist() == [0, edges.shape[0]]


def test_closed_meshes_have_no_caps():
    closed = MeshBVH(*icosphere(2))
    assert not closed.has_open_mesh
    assert closed.cap_group.shape[0] == 0
    assert closed.mesh_group_first.tolist() == [0, 0]


def test_many_small_holes_keep_the_group_count_and_the_signs():
    """100 faces that share no vertex removed: 100 three-edge loops, more
    than the cap groups allowed per mesh, so groups span loops; signs stay
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
    assert 0 < bvh.cap_group.shape[0] <= MAX_CAP_GROUPS
    points = _points_across_holes(vertices, faces, 1000, seed=8)
    exact = naive_winding_number(vertices, faces, points)
    decided = (exact - 0.5).abs() > 1e-6
    result = signed_distance(vertices, faces, points, bvh=bvh)
    assert torch.equal((result.distance < 0)[decided], (exact > 0.5)[decided])
