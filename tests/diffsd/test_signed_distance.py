"""Signed distance against brute force and analytic references, on every backend."""

from __future__ import annotations

import pytest
import torch

from diffsd import MeshBVH, pack_meshes, signed_distance, unsigned_distance, winding_number
from diffsd.naive import naive_unsigned_distance, naive_winding_number
from diffsd.primitives import box, box_signed_distance, icosphere
from tests.diffsd.meshes import MESHES, WATERTIGHT, query_points

# The CUDA kernels run under Numba's simulator (set in tests/conftest.py) on
# small inputs; the CPU kernels on the full ones.
BACKENDS = [("cpu", 1500), ("cuda", 60)]


def _diagonal(vertices):
    return float((vertices.max(0).values - vertices.min(0).values).norm())


@pytest.mark.parametrize("backend,count", BACKENDS)
@pytest.mark.parametrize("name", sorted(MESHES))
def test_unsigned_distance_matches_brute_force_float64(name, backend, count):
    vertices, faces = MESHES[name]()
    points = query_points(vertices, count, seed=1)
    result = signed_distance(vertices, faces, points, backend=backend)
    reference, _ = naive_unsigned_distance(vertices, faces, points)
    torch.testing.assert_close(result.distance.abs(), reference, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("name", sorted(MESHES))
def test_unsigned_distance_float32_within_diagonal_tolerance(name):
    vertices, faces = MESHES[name]()
    points = query_points(vertices, 1500, seed=2)
    result = signed_distance(vertices.float(), faces, points.float())
    reference, _ = naive_unsigned_distance(vertices, faces, points)
    error = (result.distance.abs().double() - reference).abs().max()
    assert error <= 1e-5 * _diagonal(vertices)


@pytest.mark.parametrize("backend,count", BACKENDS)
@pytest.mark.parametrize("name", sorted(MESHES))
def test_sign_matches_exact_winding_number_away_from_surface(name, backend, count):
    vertices, faces = MESHES[name]()
    points = query_points(vertices, count, seed=3)
    result = signed_distance(vertices, faces, points, backend=backend)
    exact = naive_winding_number(vertices, faces, points)
    far = result.distance.abs() > 1e-3 * _diagonal(vertices)
    if name not in WATERTIGHT:
        # Through a hole the exact winding number itself is near 1/2.
        far &= (exact - 0.5).abs() > 0.05
    assert far.sum() > count // 3
    inside = exact > 0.5
    assert torch.equal((result.distance[far] < 0), inside[far])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_closest_face_and_barycentrics_are_consistent(dtype):
    vertices, faces = MESHES["bumpy"]()
    vertices = vertices.to(dtype)
    points = query_points(vertices, 1000, seed=4)
    result = signed_distance(vertices, faces, points)
    w = result.barycentric
    assert bool((w >= -1e-6).all()) and torch.allclose(w.sum(1), torch.ones_like(w[:, 0]))
    rebuilt = (w[:, :, None] * vertices[faces[result.closest_face]]).sum(1)
    torch.testing.assert_close(rebuilt, result.closest_point)
    tolerance = 1e-9 if dtype == torch.float64 else 1e-5
    gap = ((points - result.closest_point).norm(dim=1) - result.distance.abs()).abs()
    assert gap.max() <= tolerance * _diagonal(vertices)
    # The named face is at the brute-force distance (ties between faces that
    # share the closest vertex or edge make the index itself ambiguous).
    reference, _ = naive_unsigned_distance(vertices.double(), faces, points.double())
    named = vertices.double()[faces[result.closest_face]]
    to_named = torch.stack([
        naive_unsigned_distance(named[i], torch.tensor([[0, 1, 2]]), points.double()[i:i + 1])[0]
        for i in range(0, points.shape[0], 37)
    ]).flatten()
    torch.testing.assert_close(to_named, reference[::37], rtol=tolerance, atol=tolerance)


def test_analytic_box_signed_distance():
    size = (1.5, 1.0, 0.5)
    vertices, faces = box(size)
    points = query_points(vertices, 2000, seed=5)
    result = signed_distance(vertices, faces, points, exact_sign=True)
    torch.testing.assert_close(result.distance, box_signed_distance(points, size), rtol=0,
                               atol=1e-12)


def test_sphere_distance_approaches_analytic():
    vertices, faces = icosphere(5)
    points = torch.randn(500, 3, dtype=torch.float64) * 1.5
    result = signed_distance(vertices, faces, points)
    analytic = points.norm(dim=1) - 1.0
    # The polyhedron lies inside the unit sphere within its sagitta.
    assert (result.distance - analytic).abs().max() < 2e-3


@pytest.mark.parametrize("backend", ["cpu", "cuda"])
def test_winding_number_modes(backend):
    vertices, faces = MESHES["torus"]()
    points = query_points(vertices, 80, seed=6)
    exact = naive_winding_number(vertices, faces, points)
    ours_exact = winding_number(vertices, faces, points, mode="exact_winding", backend=backend)
    torch.testing.assert_close(ours_exact, exact, rtol=0, atol=1e-10)
    approximate = winding_number(vertices, faces, points, beta=2.0, backend=backend)
    assert (approximate - exact).abs().max() < 0.05
    finer = winding_number(vertices, faces, points, beta=4.0, backend=backend)
    assert (finer - exact).abs().max() <= (approximate - exact).abs().max() + 1e-12


def test_unsigned_distance_is_nonnegative_and_matches_signed():
    vertices, faces = MESHES["sphere"]()
    points = query_points(vertices, 500, seed=7)
    unsigned = unsigned_distance(vertices, faces, points)
    signed = signed_distance(vertices, faces, points)
    assert bool((unsigned.distance >= 0).all())
    torch.testing.assert_close(unsigned.distance, signed.distance.abs())


@pytest.mark.parametrize("backend,count", BACKENDS)
def test_packed_meshes_match_separate_calls(backend, count):
    meshes = [MESHES["sphere"](), MESHES["torus"](), box((0.3, 0.3, 0.3))]
    shifted = [(v + 0.5 * i, f) for i, (v, f) in enumerate(meshes)]
    packed = pack_meshes([v for v, _ in shifted], [f for _, f in shifted])
    generator = torch.Generator().manual_seed(8)
    points = torch.randn(count, 3, generator=generator, dtype=torch.float64)
    point_mesh = torch.randint(0, 3, (count,), generator=generator)
    result = signed_distance(packed.vertices, packed.faces, points, point_mesh=point_mesh,
                             mesh_faces_first_idx=packed.mesh_faces_first_idx, backend=backend)
    for m, (v, f) in enumerate(shifted):
        chosen = point_mesh == m
        alone = signed_distance(v, f, points[chosen], backend=backend)
        torch.testing.assert_close(result.distance[chosen], alone.distance)
        assert torch.equal(result.closest_face[chosen] - packed.mesh_faces_first_idx[m],
                           alone.closest_face)


def test_single_triangle_meshes_in_a_pack():
    triangle = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2]])
    packed = pack_meshes([triangle, triangle + 5], [faces, faces])
    points = torch.tensor([[0.2, 0.2, 1.0], [5.2, 5.2, 4.0]], dtype=torch.float64)
    result = unsigned_distance(packed.vertices, packed.faces, points,
                               point_mesh=torch.tensor([0, 1]),
                               mesh_faces_first_idx=packed.mesh_faces_first_idx)
    torch.testing.assert_close(result.distance, torch.tensor([1.0, 1.0], dtype=torch.float64))


def test_refit_matches_rebuild_after_deformation():
    vertices, faces = MESHES["bumpy"]()
    bvh = MeshBVH(vertices, faces)
    moved = vertices * torch.tensor([1.3, 0.8, 1.0], dtype=torch.float64) + 0.1 * torch.sin(
        5 * vertices)
    points = query_points(moved, 1000, seed=9)
    refitted = signed_distance(moved, faces, points, bvh=bvh)
    rebuilt = signed_distance(moved, faces, points)
    torch.testing.assert_close(refitted.distance, rebuilt.distance)


@pytest.mark.parametrize("backend", ["cpu", "cuda"])
def test_empty_point_set(backend):
    vertices, faces = MESHES["sphere"]()
    result = signed_distance(vertices, faces, torch.zeros(0, 3, dtype=torch.float64),
                             backend=backend)
    assert result.distance.shape == (0,) and result.closest_face.shape == (0,)
    assert result.barycentric.shape == (0, 3) and result.closest_point.shape == (0, 3)


@pytest.mark.parametrize("builder", ["sah", "lbvh"])
def test_cuda_backend_bvh_matches_cpu_bvh(builder):
    vertices, faces = MESHES["bumpy"]()
    cpu = MeshBVH(vertices, faces, backend="cpu", builder=builder)
    cuda = MeshBVH(vertices, faces, backend="cuda", builder=builder)
    for name in ("leaf_face", "child_left", "child_right", "mesh_root"):
        assert torch.equal(getattr(cpu, name), getattr(cuda, name)), name
    for name in ("node_box", "node_center", "node_normal", "node_radius"):
        a, b = getattr(cpu, name), getattr(cuda, name)
        used = torch.cat([cpu.bottom_up, torch.arange(cpu.num_faces - 1, 2 * cpu.num_faces - 1)])
        torch.testing.assert_close(a[used], b[used], msg=name)
    torch.testing.assert_close(cpu.child_frame, cuda.child_frame)


def test_morton_ordered_queries_match_unordered(monkeypatch):
    import diffsd.bvh

    meshes = [MESHES["sphere"](), MESHES["torus"]()]
    packed = pack_meshes([meshes[0][0], meshes[1][0] + 0.5], [meshes[0][1], meshes[1][1]])
    generator = torch.Generator().manual_seed(21)
    points = torch.randn(5000, 3, generator=generator, dtype=torch.float64)
    point_mesh = torch.randint(0, 2, (5000,), generator=generator)

    def run():
        return signed_distance(packed.vertices, packed.faces, points, point_mesh=point_mesh,
                               mesh_faces_first_idx=packed.mesh_faces_first_idx)

    ordered = run()
    monkeypatch.setattr(diffsd.bvh, "SORT_POINTS_ABOVE", 10**9)
    unordered = run()
    for a, b in zip(ordered, unordered):
        assert torch.equal(a, b)


@pytest.mark.parametrize("count", [0, 1, 1000, 70000])
def test_radix_order_is_a_stable_argsort(count):
    import numpy as np

    from diffsd import _cpu_kernels

    keys = np.random.default_rng(count).integers(0, 1 << 30, count)
    keys[: count // 2] = keys[: count // 2] % 50  # many ties
    assert np.array_equal(_cpu_kernels.radix_order(keys), np.argsort(keys, kind="stable"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_point_morton_order_sorts_by_the_morton_code_of_the_point_box(dtype):
    import numpy as np

    from diffsd import _cpu_kernels
    from diffsd.geometry import morton_code_30

    points = torch.randn(3000, 3, generator=torch.Generator().manual_seed(5), dtype=dtype)
    points[:, 2] = 0.25  # a flat axis: no extent to normalise by
    order = _cpu_kernels.point_morton_order(points.numpy())
    assert np.array_equal(np.sort(order), np.arange(3000))
    values = points.double().numpy()
    lo, hi = values.min(0), values.max(0)
    scale = np.where(hi > lo, 1.0 / np.where(hi > lo, hi - lo, 1.0), 0.0)
    keys = [morton_code_30(*((values[i] - lo) * scale)) for i in order]
    assert all(a <= b for a, b in zip(keys, keys[1:]))


@pytest.mark.parametrize("num_threads", [1, 2, 3])
def test_vertex_gradient_scatter_in_parts_matches_serial(num_threads):
    import numpy as np

    from diffsd import _cpu_kernels

    vertices, faces = MESHES["sphere"]()
    generator = torch.Generator().manual_seed(9)
    count = 4 * vertices.shape[0]  # enough points for three private copies
    face = torch.randint(0, faces.shape[0], (count,), generator=generator)
    barycentric = torch.rand(count, 3, generator=generator, dtype=torch.float64)
    grad_point = torch.randn(count, 3, generator=generator, dtype=torch.float64)
    grad_closest = torch.randn(count, 3, generator=generator, dtype=torch.float64)
    corners = faces[face].reshape(-1)

    def reference(gradient):  # (P, 3) gradient reaching each point's closest point
        return torch.zeros_like(vertices).index_add_(
            0, corners, (barycentric[:, :, None] * gradient[:, None, :]).reshape(-1, 3))

    for closest, expected in ((grad_closest, reference(grad_closest - grad_point)),
                              (grad_closest[:0], reference(-grad_point))):
        grad_vertices = np.zeros((vertices.shape[0], 3))
        unused = np.zeros((count, 3))  # points, distances and vertices: grad_point is given
        _cpu_kernels.point_and_vertex_gradients(
            unused, barycentric.numpy(), np.zeros(count), np.zeros(0), 0.0, unused, faces.numpy(),
            face.numpy(), grad_point.numpy(), closest.numpy(), grad_vertices, num_threads)
        torch.testing.assert_close(torch.from_numpy(grad_vertices), expected)


def test_closest_leaf_does_not_depend_on_the_search_hint():
    """On the CPU each answer seeds the next point's search (``hint_leaf``).
    Ties (points off a shared edge or corner, where several triangles are
    equally near) must still go to the same face whatever the hint, so a
    point's answer never depends on the other points of the call."""
    import numpy as np

    from diffsd import _cpu_kernels

    vertices, faces = box((1.0, 1.0, 1.0))
    bvh = MeshBVH(vertices, faces)
    tree = [t.numpy() for t in (bvh.child_left, bvh.child_right, bvh.child_frame,
                                bvh.leaf_vertices)]
    root, num_internal, num_leaves = int(bvh.mesh_root[0]), faces.shape[0] - 1, faces.shape[0]
    stack = np.empty(_cpu_kernels.STACK_SIZE, np.int64)
    stack_distance = np.empty(_cpu_kernels.STACK_SIZE, np.float64)
    margin = bvh.relative_margin * max(bvh.mesh_magnitude(), 0.8)
    directions = [(x, y, z) for x in (-1, 0, 1) for y in (-1, 0, 1) for z in (-1, 0, 1)
                  if (x, y, z) != (0, 0, 0)]
    ties = 0
    for direction in directions:
        p = 0.8 * np.array(direction, dtype=np.float64)
        answers = {_cpu_kernels._closest_leaf_query(p[0], p[1], p[2], *p, root, num_internal, *tree,
                                                    margin, hint, stack, stack_distance)[:2]
                   for hint in range(-1, num_leaves)}
        assert len(answers) == 1, (direction, answers)
        d2 = [_cpu_kernels._shared.leaf_distance_squared(p[0], p[1], p[2], leaf, tree[3])[0]
              for leaf in range(num_leaves)]
        ties += d2.count(min(d2)) > 1
    assert ties >= 12  # every edge and corner direction is a tie


def _frame_parts(bvh):
    """Axes (K, 3, 3), centres (K, 3) and half extents (K, 3) of every child's oriented box."""
    frames = bvh.child_frame.reshape(-1, 16)
    return frames[:, :9].reshape(-1, 3, 3), frames[:, 9:12], frames[:, 12:15]


def _vertices_below(bvh, child):
    """(L, 9) triangle coordinates of every leaf below ``child`` (a node id)."""
    num_internal = bvh.num_faces - 1
    if child >= num_internal:
        return bvh.leaf_vertices[child - num_internal][None]
    return bvh.leaf_vertices[int(bvh.range_first[child]):int(bvh.range_last[child]) + 1]


@pytest.mark.parametrize("backend", ["cpu", "cuda"])
@pytest.mark.parametrize("name", ["bumpy", "degenerate", "open"])
def test_oriented_boxes_are_orthonormal_and_hold_their_triangles(name, backend):
    """Every child's oriented box (the closest-triangle search prunes by
    them) has orthonormal axes and holds each vertex below it, also after a
    refit to a non-rigid deformation."""
    vertices, faces = MESHES[name]()
    bvh = MeshBVH(vertices, faces, backend=backend)
    moved = vertices * torch.tensor([1.3, 0.8, 1.0], dtype=torch.float64) + 0.1 * torch.sin(
        5 * vertices)
    for _ in range(2):
        axes, centre, half = _frame_parts(bvh)
        eye = torch.eye(3, dtype=axes.dtype).expand_as(axes)
        torch.testing.assert_close(axes @ axes.transpose(1, 2), eye, atol=1e-12, rtol=0)
        children = torch.stack([bvh.child_left, bvh.child_right], 1).flatten()
        oriented = 0
        for k, child in enumerate(children.tolist()):
            corners = _vertices_below(bvh, child).reshape(-1, 3)
            along = corners @ axes[k].T - centre[k]
            assert bool((along.abs() <= half[k] + 1e-12).all()), (name, child)
            # Tight: each extent is reached by some vertex.
            torch.testing.assert_close(along.abs().max(0).values, half[k], atol=1e-12, rtol=0)
            oriented += not torch.equal(axes[k], eye[k])
        assert oriented > len(children) // 2  # most boxes follow the surface
        bvh.refit(moved)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("offset", [0.0, 1000.0])
def test_oriented_box_pruning_matches_axis_aligned_pruning(dtype, offset):
    """The search prunes by oriented boxes, less a rounding margin; its
    answers must be those of the search over plain axis-aligned boxes
    (written into the same frames), also far from the origin in float32."""
    vertices, faces = MESHES["bumpy"]()
    vertices = (vertices + offset).to(dtype)
    points = query_points(vertices, 3000, seed=9)
    bvh = MeshBVH(vertices, faces)
    oriented = unsigned_distance(vertices, faces, points, bvh=bvh, refit=False)
    boxes = bvh.node_box[torch.stack([bvh.child_left, bvh.child_right], 1)]
    frames = bvh.child_frame.view(-1, 2, 16)
    frames[:, :, :9] = torch.eye(3, dtype=dtype).flatten()
    frames[:, :, 9:12] = 0.5 * (boxes[:, :, :3] + boxes[:, :, 3:])
    frames[:, :, 12:15] = 0.5 * (boxes[:, :, 3:] - boxes[:, :, :3])
    axis_aligned = unsigned_distance(vertices, faces, points, bvh=bvh, refit=False)
    assert torch.equal(oriented.distance, axis_aligned.distance)
    assert torch.equal(oriented.closest_face, axis_aligned.closest_face)


@pytest.mark.parametrize("count", [0, 1, 7, 100])
def test_claimed_tasks_are_each_run_once(count):
    """Workers of a parallel loop that claim tasks as they go
    (``_cpu_kernels._claim_task``) run every task exactly once, however
    many workers there are."""
    import numba
    import numpy as np

    from diffsd._cpu_kernels import _claim_task

    @numba.njit(parallel=True)
    def run(num_tasks, num_workers, runs, next_task):
        for _worker in numba.prange(num_workers):
            task = _claim_task(next_task)
            while task < num_tasks:
                runs[task] += 1
                task = _claim_task(next_task)

    for num_workers in (1, 2, 5):
        runs = np.zeros(count, np.int64)
        next_task = np.zeros(1, np.int64)
        run(count, num_workers, runs, next_task)
        assert np.all(runs == 1)
        assert next_task[0] == count + num_workers  # each worker's last claim found none


@pytest.mark.parametrize("name", ["torus", "open"])
def test_query_does_not_depend_on_how_workers_share_the_tasks(name, monkeypatch):
    """The query kernels' workers claim tasks of points as they go: one
    worker, one per thread or more workers than tasks give the same
    results, bit for bit (each task starts without the previous one's
    search hint and recent points)."""
    from diffsd import _cpu_kernels

    vertices, faces = MESHES[name]()
    points = query_points(vertices, 5000, seed=3)  # 10 tasks
    bvh = MeshBVH(vertices, faces)
    kernels = {kernel: getattr(_cpu_kernels, kernel) for kernel in ("query", "query_open")}

    def run(num_workers):
        for kernel, original in kernels.items():
            monkeypatch.setattr(_cpu_kernels, kernel,
                                lambda *args, original=original: original(*args[:-1], num_workers))
        return signed_distance(vertices, faces, points, bvh=bvh, refit=False)

    expected = run(1)
    for num_workers in (2, 3, 64):
        for a, b in zip(run(num_workers), expected):
            assert torch.equal(a, b), num_workers


def test_a_query_of_one_task_runs_on_one_thread(monkeypatch):
    """A query of at most ``POINTS_PER_TASK`` points is one task: it runs on
    the calling thread alone (no thread woken and waited for), and the
    thread count is restored after it; larger queries use every thread."""
    import numba

    from diffsd import _cpu_kernels

    if numba.get_num_threads() < 2:
        pytest.skip("needs two Numba threads")
    vertices, faces = MESHES["torus"]()
    bvh = MeshBVH(vertices, faces)
    seen = []
    original = _cpu_kernels.query

    def spy(*args):
        seen.append((numba.get_num_threads(), args[-1]))
        return original(*args)

    monkeypatch.setattr(_cpu_kernels, "query", spy)
    threads = numba.get_num_threads()
    for count in (1, _cpu_kernels.POINTS_PER_TASK, _cpu_kernels.POINTS_PER_TASK + 1):
        signed_distance(vertices, faces, query_points(vertices, count), bvh=bvh, refit=False)
    assert seen == [(1, 1), (1, 1), (threads, threads)]
    assert numba.get_num_threads() == threads
