"""Tree builders: both give a valid tree of the same layout and the same answers."""

from __future__ import annotations

import numba
import pytest
import torch

from diffsd import MeshBVH, pack_meshes, signed_distance
from diffsd._sah_build import SAH_MAX_DEPTH
from diffsd.bvh import BUILDERS
from diffsd.geometry import TRAVERSAL_STACK_SIZE
from diffsd.primitives import box, icosphere, torus
from tests.diffsd.meshes import MESHES, bumpy_sphere, query_points


def _packed_with_single_triangles():
    """Five meshes of 1280, 1, 12, 1 and 2 triangles (one-triangle meshes are leaves)."""
    triangle = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=torch.float64)
    one = torch.tensor([[0, 1, 2]])
    two = torch.tensor([[0, 1, 2], [0, 2, 1]])
    sphere = MESHES["sphere"]()
    cube = box((0.5, 0.5, 0.5))
    meshes = [sphere, (triangle + 3, one), (cube[0] - 2, cube[1]), (triangle - 4, one),
              (triangle * 2, two)]
    packed = pack_meshes([v for v, _ in meshes], [f for _, f in meshes])
    return packed.vertices, packed.faces, packed.mesh_faces_first_idx


def _check_tree(bvh: MeshBVH, first_idx: torch.Tensor) -> None:
    """Every node below a mesh root once, parents and leaf ranges consistent."""
    n = bvh.num_faces
    num_internal = n - 1
    assert torch.equal(torch.sort(bvh.leaf_face).values, torch.arange(n))
    left, right = bvh.child_left.tolist(), bvh.child_right.tolist()
    first, last = bvh.range_first.tolist(), bvh.range_last.tolist()
    parent = bvh.parent.tolist()
    seen = [0] * (2 * n - 1)
    ends = first_idx.tolist()[1:] + [n]
    for m, root in enumerate(bvh.mesh_root.tolist()):
        assert parent[root] == -1
        stack = [root]
        while stack:
            node = stack.pop()
            seen[node] += 1
            if node >= num_internal:
                continue
            for child in (left[node], right[node]):
                assert parent[child] == node
                stack.append(child)

            def span(child):
                if child >= num_internal:
                    return child - num_internal, child - num_internal
                return first[child], last[child]

            (a, b), (c, d) = span(left[node]), span(right[node])
            assert (a, d) == (first[node], last[node]) and b + 1 == c, node
        # A mesh root spans exactly its own faces, in tree order.
        lo, hi = (root - num_internal,) * 2 if root >= num_internal else (first[root], last[root])
        faces_below = bvh.leaf_face[lo:hi + 1]
        assert (lo, hi) == (int(first_idx[m]), ends[m] - 1)
        assert bool(((faces_below >= first_idx[m]) & (faces_below < ends[m])).all())
    # Nodes above the mesh roots join the meshes; every node is used once.
    roots = set(bvh.mesh_root.tolist())
    stack = [0] if n > 1 and len(ends) > 1 else []
    while stack:
        node = stack.pop()
        if node in roots:
            continue
        seen[node] += 1
        stack += [left[node], right[node]]
    assert seen == [1] * (2 * n - 1)


@pytest.mark.parametrize("builder", BUILDERS)
@pytest.mark.parametrize("name", ["sphere", "torus", "bumpy", "degenerate", "open", "packed"])
def test_tree_is_valid(builder, name):
    if name == "packed":
        vertices, faces, first_idx = _packed_with_single_triangles()
    else:
        vertices, faces = MESHES[name]()
        first_idx = torch.zeros(1, dtype=torch.int64)
    bvh = MeshBVH(vertices, faces, mesh_faces_first_idx=first_idx, builder=builder)
    _check_tree(bvh, first_idx)


@pytest.mark.parametrize("name", ["bumpy", "degenerate", "open", "packed"])
def test_builders_give_the_same_distances_and_signs(name):
    if name == "packed":
        vertices, faces, first_idx = _packed_with_single_triangles()
        points = query_points(vertices, 1500, seed=3)
        point_mesh = torch.randint(0, first_idx.shape[0], (1500,),
                                   generator=torch.Generator().manual_seed(4))
    else:
        vertices, faces = MESHES[name]()
        first_idx, point_mesh = None, None
        points = query_points(vertices, 1500, seed=3)
    # Exact signs: on the open mesh the Barnes--Hut approximation (and so,
    # near w = 1/2, the sign) depends on the tree.
    results = [signed_distance(vertices, faces, points, point_mesh=point_mesh,
                               mesh_faces_first_idx=first_idx, sign_mode="exact_winding",
                               bvh=MeshBVH(vertices, faces, mesh_faces_first_idx=first_idx,
                                           builder=builder))
               for builder in BUILDERS]
    sah, lbvh = results
    torch.testing.assert_close(sah.distance, lbvh.distance, rtol=0, atol=1e-12)
    # The faces may differ only where both are equally near.
    differ = sah.closest_face != lbvh.closest_face
    torch.testing.assert_close((sah.closest_point - points).norm(dim=1)[differ],
                               (lbvh.closest_point - points).norm(dim=1)[differ])


def _sah_cost(bvh: MeshBVH) -> float:
    """Sum over internal nodes of box half-area times triangle count (the heuristic's cost)."""
    lo, hi = bvh.node_box[:bvh.num_faces - 1, :3], bvh.node_box[:bvh.num_faces - 1, 3:]
    extent = hi - lo
    half_area = (extent[:, 0] * extent[:, 1] + extent[:, 1] * extent[:, 2]
                 + extent[:, 2] * extent[:, 0])
    count = (bvh.range_last - bvh.range_first + 1).to(half_area.dtype)
    return float((half_area * count).sum())


@pytest.mark.parametrize("mesh", [lambda: icosphere(5), lambda: torus(1.0, 0.35, 256, 64),
                                  lambda: bumpy_sphere(5)], ids=["sphere", "torus", "bumpy"])
def test_sah_tree_costs_less_than_the_morton_tree(mesh):
    """On the benchmark's meshes (20k-33k faces) the heuristic's own cost
    is 1.5-5.5 % lower and the tree 4-5 levels shallower; the queries, which
    prune by oriented boxes, gain more (10-24 %, benchmarks/bench_sdf.py)."""
    vertices, faces = mesh()
    sah = MeshBVH(vertices, faces, builder="sah")
    lbvh = MeshBVH(vertices, faces, builder="lbvh")
    assert _sah_cost(sah) < 0.99 * _sah_cost(lbvh)
    assert sah.max_depth <= lbvh.max_depth - 4


def test_sah_build_does_not_depend_on_the_thread_count():
    """Subtrees are built in parallel: ids and order must still be the same."""
    vertices, faces = bumpy_sphere(5)
    trees = []
    before = numba.get_num_threads()
    try:
        for threads in (1, numba.config.NUMBA_NUM_THREADS):
            numba.set_num_threads(threads)
            trees.append(MeshBVH(vertices, faces))
    finally:
        numba.set_num_threads(before)
    for name in ("leaf_face", "child_left", "child_right", "parent", "range_first",
                 "range_last"):
        assert torch.equal(getattr(trees[0], name), getattr(trees[1], name)), name


def test_sah_depth_stays_bounded_on_coincident_and_nested_triangles():
    # 4,000 copies of one triangle: no plane separates them.
    triangle = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=torch.float64)
    copies = torch.arange(3 * 4000).reshape(-1, 3)
    bvh = MeshBVH(triangle.repeat(4000, 1), copies)
    assert bvh.max_depth <= 13
    # Triangles shrinking geometrically towards a point: each SAH split may
    # peel off one, until the depth cap switches to median splits.
    scale = 0.7 ** torch.arange(3000, dtype=torch.float64)
    nested = (triangle[None] * scale[:, None, None]).reshape(-1, 3)
    bvh = MeshBVH(nested, copies[:3000])
    assert bvh.max_depth <= SAH_MAX_DEPTH + 13 < TRAVERSAL_STACK_SIZE
    points = query_points(nested, 200, seed=5)
    result = signed_distance(nested, copies[:3000], points, bvh=bvh)
    from diffsd.naive import naive_unsigned_distance

    torch.testing.assert_close(result.distance.abs(),
                               naive_unsigned_distance(nested, copies[:3000], points)[0])


def test_unknown_builder_is_rejected():
    vertices, faces = MESHES["sphere"]()
    with pytest.raises(ValueError, match="builder must be one of 'sah', 'lbvh', got 'kd'"):
        MeshBVH(vertices, faces, builder="kd")


@pytest.mark.parametrize("count", [2, 3, 10, 257])
def test_median_split_halves_the_faces_by_centroid(count):
    """The depth cap's fallback: a quickselect on one centroid coordinate."""
    import numpy as np

    from diffsd import _sah_build

    generator = np.random.default_rng(count)
    rows = generator.random((count + 4, 9))
    rows[2:count + 2, 0] = generator.integers(0, 5, count)  # many equal values
    order = np.arange(count + 4)
    before = rows.copy()
    split = _sah_build._median_split(rows, order, 2, count + 1, 0)
    assert split == 2 + count // 2 - 1
    assert rows[2:split + 1, 0].max() <= rows[split + 1:count + 2, 0].min()
    np.testing.assert_array_equal(rows, before[order])  # rows moved with their faces
    assert list(order[:2]) == [0, 1] and list(order[-2:]) == [count + 2, count + 3]


def test_refit_does_not_depend_on_how_workers_share_the_nodes(monkeypatch):
    """The refit's oriented boxes are computed by workers that claim tasks
    of nodes as they go: any number of workers gives the same tree."""
    vertices, faces = bumpy_sphere(4)
    moved = vertices * 1.1 + 0.05 * vertices.roll(1, dims=1)
    trees = []
    for num_workers in (1, 2, 64):
        monkeypatch.setattr(numba, "get_num_threads", lambda num_workers=num_workers: num_workers)
        trees.append(MeshBVH(vertices, faces).refit(moved))
    for tree in trees[1:]:
        for name in ("child_frame", "node_box", "node_center", "node_moment", "node_radius"):
            assert torch.equal(getattr(tree, name), getattr(trees[0], name)), name


def test_refit_to_the_vertices_of_the_last_refit_does_nothing(monkeypatch):
    """A fit refits at every term of a step: a refit to the values of the
    last refit is skipped, one to vertices moved in place (the same tensor,
    as an optimiser leaves it) is not, and the answers stay the brute force's."""
    from diffsd import _cpu_kernels
    from diffsd.naive import naive_signed_distance

    vertices, faces = MESHES["torus"]()
    bvh = MeshBVH(vertices, faces)
    calls = []
    original = _cpu_kernels.refit
    monkeypatch.setattr(_cpu_kernels, "refit", lambda *args: calls.append(1) or original(*args))
    moving = vertices.clone()
    bvh.refit(moving)
    bvh.refit(moving.clone())
    assert calls == []
    moving.mul_(1.1).add_(0.01)  # in place, as torch.optim moves parameters
    bvh.refit(moving)
    assert calls == [1]
    bvh.refit(moving)
    assert calls == [1]
    monkeypatch.setattr(_cpu_kernels, "refit", original)
    reference = MeshBVH(vertices, faces).refit(moving * 1.0)
    monkeypatch.setattr(_cpu_kernels, "refit", lambda *args: calls.append(1) or original(*args))
    for name in ("leaf_vertices", "child_frame", "node_box", "node_center", "node_moment",
                 "node_radius"):
        assert torch.equal(getattr(bvh, name), getattr(reference, name)), name
    points = query_points(moving, 500)
    got = signed_distance(moving, faces, points, bvh=bvh)
    torch.testing.assert_close(got.distance, naive_signed_distance(moving, faces, points),
                               rtol=0, atol=1e-12)
    assert calls == [1]


@pytest.mark.parametrize("builder", BUILDERS)
def test_oriented_boxes_project_each_vertex_below_them_once(builder):
    """The refit's lists of the vertices below each internal node (projected
    for its oriented box) against the faces' own: every distinct vertex once,
    and none for nodes over more than ``ORIENTED_MAX_LEAVES`` triangles."""
    from diffsd.traversal import ORIENTED_MAX_LEAVES

    vertices, faces = bumpy_sphere(4)
    bvh = MeshBVH(vertices, faces, builder=builder)
    first, listed = bvh.frame_vertex_first.tolist(), bvh.frame_vertex.tolist()
    big = 0
    for node in range(bvh.num_faces - 1):
        low, high = int(bvh.range_first[node]), int(bvh.range_last[node])
        own = listed[first[node]:first[node + 1]]
        assert len(own) == len(set(own))
        if high - low + 1 > ORIENTED_MAX_LEAVES:
            assert own == []
            big += 1
        else:
            below = faces[bvh.leaf_face[low:high + 1]].unique().tolist()
            assert sorted(own) == below
    assert big > 0
