"""Degenerate triangles, tiny and far-translated meshes, far points, extreme
coordinates and mixed dtypes, against float64 brute force and finite
differences, on both builders and (on small inputs, in the simulator) CUDA."""

from __future__ import annotations

import functools
import math
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import diffsd
from diffsd import MeshBVH, signed_distance, unsigned_distance
from diffsd.naive import naive_signed_distance, naive_unsigned_distance
from diffsd.primitives import icosphere

DTYPES = [torch.float32, torch.float64]
BUILDERS = ["sah", "lbvh"]
BACKENDS = [("cpu", 600), ("cuda", 40)]


def _distance(vertices, faces, points, builder, backend):
    bvh = MeshBVH(vertices, faces, builder=builder, backend=backend)
    return unsigned_distance(vertices, faces, points, bvh=bvh, backend=backend)


def _degenerate_triangles():
    """A collinear triangle, slivers of heights 1e-5 and 1e-3, a repeated vertex."""
    vertices = torch.tensor([
        [0.2, 0.0, 0.0], [0.4, 0.0, 0.0], [0.6, 0.0, 0.0],
        [0.0, 1.0, 0.0], [1.0, 1.0 + 1e-5, 0.0], [0.5, 1.0, 0.0],
        [0.0, 2.0, 0.0], [1.0, 2.0, 1e-3], [0.5, 2.0, 0.0],
        [0.0, 3.0, 0.0], [1.0, 3.0, 1.0],
    ], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 10]])
    return vertices, faces


@pytest.mark.parametrize("backend,count", BACKENDS)
@pytest.mark.parametrize("builder", BUILDERS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_collinear_triangle_closest_point(dtype, builder, backend, count):
    """The reported case: float32 gave 0.200157 (the edges' 0.199604 is
    exact) because the zero-area test was sized for float64 rounding."""
    vertices = torch.tensor([[0.2, 0.0, 0.0], [0.4, 0.0, 0.0], [0.6, 0.0, 0.0]], dtype=dtype)
    faces = torch.tensor([[0, 1, 2]])
    point = torch.tensor([[0.59200177, -0.11019401, -0.16643064]], dtype=dtype)
    ours = _distance(vertices, faces, point, builder, backend).distance
    reference, _ = naive_unsigned_distance(vertices.double(), faces, point.double())
    assert abs(float(ours[0]) - float(reference[0])) <= 4 * torch.finfo(dtype).eps


@pytest.mark.parametrize("backend,count", BACKENDS)
@pytest.mark.parametrize("builder", BUILDERS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_degenerate_and_sliver_triangles_match_brute_force(dtype, builder, backend, count):
    vertices, faces = _degenerate_triangles()
    generator = torch.Generator().manual_seed(5)
    points = torch.rand(count, 3, generator=generator, dtype=torch.float64) * 1.6 - 0.3
    points[:, 1] *= 3.0
    vertices, points = vertices.to(dtype), points.to(dtype)
    ours = _distance(vertices, faces, points, builder, backend).distance.double()
    reference, _ = naive_unsigned_distance(vertices.double(), faces, points.double())
    tolerance = 8 * torch.finfo(dtype).eps * reference.clamp_min(1.0)
    assert bool(((ours - reference).abs() <= tolerance).all()), (ours - reference).abs().max()


def _finite_difference_gradient(vertices, faces, point):
    """(3,) central differences of the float64 brute-force signed distance at point (3,)."""
    vertices, point = vertices.double(), point.double()
    distance = float(naive_unsigned_distance(vertices, faces, point[None])[0][0])
    step = 1e-4 * distance
    columns = []
    for axis in range(3):
        offset = torch.zeros(3, dtype=torch.float64)
        offset[axis] = step
        pair = torch.stack([point + offset, point - offset])
        plus, minus = naive_signed_distance(vertices, faces, pair)
        columns.append((plus - minus) / (2 * step))
    return torch.stack(columns)


@pytest.mark.parametrize("backend", ["cpu", "cuda"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale,offset", [(1e-4, 0.0), (1.0, 1e4)])
def test_gradient_near_tiny_and_far_translated_meshes(scale, offset, dtype, backend):
    """Off the surface by 2 % of the radius the gradient is the direction from
    the closest point; it was the face normal (4.2 degrees off on the 1e-4
    sphere in float32) within 1e3 ulps of max(|v|, 1) of the surface, an
    absolute length (1.2 units at a 1e4 offset in float32)."""
    sphere, faces = icosphere(3)
    vertices = (sphere * scale + offset).to(dtype)
    point = (sphere[0] * scale * 1.02 + offset).to(dtype)[None].requires_grad_(True)
    signed_distance(vertices, faces, point, backend=backend).distance.sum().backward()
    expected = _finite_difference_gradient(vertices, faces, point.detach()[0])
    cosine = torch.nn.functional.cosine_similarity(point.grad[0].double(), expected, dim=0)
    assert float(cosine) > math.cos(1e-3), (point.grad, expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradient_on_the_surface_of_a_far_translated_mesh_is_the_normal(dtype):
    """Exactly on a face (up to the barycentrics' rounding) the direction is
    rounding noise and the face normal is used, also far from the origin."""
    sphere, faces = icosphere(2)
    vertices = (sphere + 1e4).to(dtype)
    triangle = vertices[faces[7]].double()
    point = triangle.mean(0).to(dtype)[None].requires_grad_(True)
    result = signed_distance(vertices, faces, point)
    result.distance.sum().backward()
    normal = torch.linalg.cross(triangle[1] - triangle[0], triangle[2] - triangle[0], dim=0)
    if int(result.closest_face[0]) == 7:
        cosine = torch.nn.functional.cosine_similarity(point.grad[0].double(), normal, dim=0)
        assert float(cosine) > 1 - 1e-6


def _best_time(function, repeats=3):
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def test_one_far_point_does_not_slow_the_others():
    """The pruning margin was global (64 ulps of the largest coordinate of
    any point): one point at 1e5 among 100k made the call 64x slower here.
    Per point, the others' answers and time stay as they were."""
    vertices, faces = icosphere(4, dtype=torch.float32)
    generator = torch.Generator().manual_seed(0)
    points = torch.rand(20000, 3, generator=generator) * 3 - 1.5
    with_far = torch.cat([points, torch.tensor([[1e5, 0.0, 0.0]])])
    bvh = MeshBVH(vertices, faces)

    def run(query):
        return signed_distance(vertices, faces, query, bvh=bvh, refit=False)

    alone, together = run(points), run(with_far)
    for name in ("distance", "closest_face", "barycentric", "winding_number"):
        assert torch.equal(getattr(alone, name), getattr(together, name)[:-1]), name
    assert abs(float(together.distance[-1]) - (1e5 - 1.0)) < 1.0
    base = _best_time(lambda: run(points))
    assert _best_time(lambda: run(with_far)) < 3 * base


@pytest.mark.parametrize("backend", ["cpu", "cuda"])
def test_float32_points_at_1e20_have_finite_distances(backend):
    """Squared distances overflowed float32 (inf distances, no error); the
    kernels now work in float64."""
    vertices, faces = icosphere(1, dtype=torch.float32)
    points = torch.tensor([[1e20, 0.0, 0.0], [0.0, -3e20, 1e20]], dtype=torch.float32,
                          requires_grad=True)
    result = signed_distance(vertices, faces, points, backend=backend)
    expected = points.detach().double().norm(dim=1)
    torch.testing.assert_close(result.distance.double(), expected, rtol=1e-6, atol=0)
    result.distance.sum().backward()
    torch.testing.assert_close(points.grad.double(),
                               points.detach().double() / expected[:, None], rtol=0, atol=1e-6)


def test_coordinates_beyond_what_float64_holds_are_refused():
    vertices, faces = icosphere(1)
    with pytest.raises(ValueError, match="points has coordinates up to 1e\\+101"):
        signed_distance(vertices, faces, torch.tensor([[1e101, 0.0, 0.0]], dtype=torch.float64))
    with pytest.raises(ValueError, match="vertices has coordinates up to 2e\\+18"):
        signed_distance((vertices * 2e18).float(), faces, torch.zeros(1, 3))


def test_bvh_of_another_dtype_is_refused_without_refit():
    """A float64 BVH queried with float32 vertices and points returned float64
    when refit=False (refit checked the dtype); now the dtype is always checked."""
    vertices, faces = icosphere(1)
    bvh = MeshBVH(vertices, faces)
    with pytest.raises(TypeError, match="bvh was built from torch.float64 vertices"):
        signed_distance(vertices.float(), faces, torch.zeros(4, 3), bvh=bvh, refit=False)
    with pytest.raises(TypeError, match="points are torch.float32"):
        bvh.query(torch.zeros(4, 3), torch.zeros(0, dtype=torch.int64), closest=True,
                  winding=False, beta=2.0)


def test_primitives_are_an_attribute_of_the_package():
    """The README's ``import diffsd; diffsd.primitives.icosphere(4)`` raised AttributeError."""
    code = "import diffsd; print(diffsd.primitives.icosphere(1)[1].shape[0])"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout
    assert output.strip() == "80"


def test_sign_modes():
    vertices, faces = icosphere(2)
    points = torch.randn(200, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    exact = signed_distance(vertices, faces, points, sign_mode="exact_winding")
    torch.testing.assert_close(exact.distance, naive_signed_distance(vertices, faces, points))
    legacy = signed_distance(vertices, faces, points, exact_sign=True)
    assert torch.equal(legacy.distance, exact.distance)
    fast = signed_distance(vertices, faces, points, sign_mode="fast_winding", beta=1.25)
    assert torch.equal(fast.distance, exact.distance)  # a closed mesh: exact integers
    assert diffsd.SIGN_MODES == ("fast_winding", "exact_winding")
    with pytest.raises(ValueError, match="sign mode must be one of"):
        signed_distance(vertices, faces, points, sign_mode="parity")
    with pytest.raises(ValueError, match="opening ratio"):
        signed_distance(vertices, faces, points, beta=0.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_backward_matches_the_cpu_backward(dtype):
    """Both backends' backward kernels share one scalar routine; the CUDA
    one's vertex scatter is torch's. Off and on the surface (face centroids)
    of a small, far-translated mesh."""
    sphere, faces = icosphere(1)
    vertices = (sphere * 1e-3 + 1e3).to(dtype)
    generator = torch.Generator().manual_seed(4)
    off = sphere[::2] * (1 + 0.05 * torch.randn(sphere[::2].shape[0], 1, generator=generator,
                                                  dtype=torch.float64))
    points = torch.cat([off * 1e-3 + 1e3, vertices[faces[:6]].double().mean(1)]).to(dtype)
    weights = torch.rand(points.shape[0], generator=generator, dtype=torch.float64).to(dtype)
    gradients = []
    for backend in ("cpu", "cuda"):
        v = vertices.clone().requires_grad_(True)
        p = points.clone().requires_grad_(True)
        result = signed_distance(v, faces, p, backend=backend)
        ((result.distance * weights).sum() + result.closest_point.sum()).backward()
        gradients.append((p.grad, v.grad))
    # The centroids, rounded to the dtype at 1e3, sit up to an ulp of 1e3 off
    # their face's plane: their directions come from offsets of ~1e-13 in
    # float64, where the two vertex scatters' summation orders show.
    tolerance = 1e-6 if dtype == torch.float64 else 1e-5
    for cpu, cuda in zip(*gradients):
        torch.testing.assert_close(cuda, cpu, rtol=0, atol=tolerance)


@functools.cache
def _brute_force_kernel():
    """Compiled once: every point's nearest triangle over every leaf, by the
    kernels' own float64 point-triangle routine, the lowest leaf winning ties
    as in the tree search."""
    import numba

    from diffsd import _cpu_kernels

    leaf_distance_squared = _cpu_kernels._shared.leaf_distance_squared

    @numba.njit
    def brute_force(points, leaf_vertices, out_d2, out_leaf):
        for i in range(points.shape[0]):
            px, py, pz = float(points[i, 0]), float(points[i, 1]), float(points[i, 2])
            best, best_leaf = np.inf, -1
            for leaf in range(leaf_vertices.shape[0]):
                d2 = leaf_distance_squared(px, py, pz, leaf, leaf_vertices)[0]
                if d2 < best:
                    best, best_leaf = d2, leaf
            out_d2[i] = best
            out_leaf[i] = best_leaf

    return brute_force


def _brute_force_closest_leaf(points, leaf_vertices):
    """(P,) squared distance and (P,) leaf of every point's nearest triangle."""
    d2 = np.empty(points.shape[0])
    leaf = np.empty(points.shape[0], np.int64)
    _brute_force_kernel()(points, leaf_vertices, d2, leaf)
    return d2, leaf


@pytest.mark.parametrize("builder", BUILDERS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale,offset", [(1.0, 0.0), (1e-4, 0.0), (1.0, 1e4), (1e-3, -3e3)])
def test_closest_triangle_is_the_brute_force_one_exactly(scale, offset, dtype, builder):
    """The tree search prunes by box distances evaluated in the points' dtype
    (float32 for a float32 tree); its answer must still be the nearest
    triangle exactly: the same leaf (the lowest among equals) and the same
    distance as a search over every triangle, near tiny and far-translated
    meshes, on the surface (vertices, edge midpoints: ties), far from it and
    beyond float32's squares' range."""
    from tests.diffsd.meshes import bumpy_sphere, query_points

    sphere, faces = bumpy_sphere(3)
    vertices = (sphere * scale + offset).to(dtype)
    near = query_points(sphere, 1200, seed=6)
    on_surface = torch.cat([sphere[::7], (sphere[faces[::9, 0]] + sphere[faces[::9, 1]]) / 2])
    far = 1e3 * torch.nn.functional.normalize(near[:40], dim=1)
    # Beyond BOX_FLOAT32_LIMIT the box distances are taken in float64: in
    # float32 their squares would overflow and prune every box.
    huge = torch.tensor([[1e20, 0.0, 0.0], [0.0, -3e20, 1e20], [3e38, -3e38, 1e30],
                         [2e18, 2e18, -2e18], [-9e17, 5e17, 1.0]], dtype=torch.float64)
    points = torch.cat([(torch.cat([near, on_surface, far]) * scale + offset), huge]).to(dtype)
    bvh = MeshBVH(vertices, faces, builder=builder)
    result = unsigned_distance(vertices, faces, points, bvh=bvh)
    d2, leaf = _brute_force_closest_leaf(points.numpy(), bvh.leaf_vertices.numpy())
    assert torch.equal(result.closest_face, bvh.leaf_face[torch.from_numpy(leaf)])
    assert torch.equal(result.distance, torch.from_numpy(np.sqrt(d2)).to(dtype))
