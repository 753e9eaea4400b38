"""Exact integer winding numbers on closed meshes: the closedness test, the
segment-triangle crossing predicate, and the CPU kernel's carry-over of the
winding number between neighbouring points, against the exact sum."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from diffsd import MeshBVH, pack_meshes, signed_distance, winding_number
from diffsd._cpu_kernels import _shared
from diffsd.geometry import CROSSING_AMBIGUOUS, CROSSING_NONE
from diffsd.naive import naive_unsigned_distance, naive_winding_number
from diffsd.primitives import box, icosphere
from tests.diffsd.meshes import MESHES, query_points


def _one_mesh(parts):
    """Several meshes as one (their components overlap or nest)."""
    packed = pack_meshes([v for v, _ in parts], [f for _, f in parts])
    return packed.vertices, packed.faces


def overlapping_spheres():
    v, f = icosphere(2)
    return _one_mesh([(v, f), (v * 0.8 + torch.tensor([0.7, 0.1, 0.0], dtype=v.dtype), f)])


def nested_spheres():
    v, f = icosphere(2)
    return _one_mesh([(v, f), (v * 0.5, f)])


CLOSED = {
    "sphere": MESHES["sphere"],
    "torus": MESHES["torus"],
    "bumpy": MESHES["bumpy"],
    "box": lambda: box((1.0, 0.7, 1.3)),
    "overlapping": overlapping_spheres,
    "nested": nested_spheres,
}


def _closed_flags(vertices, faces, first=None):
    return MeshBVH(vertices, faces, first).mesh_closed.bool().tolist()


def test_closed_meshes_are_recognised():
    for name, make in CLOSED.items():
        assert _closed_flags(*make()) == [True], name
    assert _closed_flags(*MESHES["open"]()) == [False]
    # The sliver (0, m, 1) uses the edge 0->m that no face uses back.
    assert _closed_flags(*MESHES["degenerate"]()) == [False]
    v, f = icosphere(1)
    flipped = f.clone()
    flipped[3] = flipped[3, [0, 2, 1]]
    assert _closed_flags(v, flipped) == [False]
    packed = pack_meshes([v, MESHES["open"]()[0]], [f, MESHES["open"]()[1]])
    assert _closed_flags(packed.vertices, packed.faces, packed.mesh_faces_first_idx) == [True, False]


def _crossing(a, b, triangle):
    return _shared.segment_triangle_crossing(*a, *b, *[c for v in triangle for c in v])


def test_segment_triangle_crossing_cases():
    triangle = [(0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)]  # normal +z
    assert _crossing((0.2, 0.2, -1.0), (0.2, 0.2, 1.0), triangle) == 1
    assert _crossing((0.2, 0.2, 1.0), (0.2, 0.2, -1.0), triangle) == -1
    assert _crossing((0.2, 0.2, 0.5), (0.2, 0.2, 1.0), triangle) == CROSSING_NONE
    assert _crossing((0.9, 0.9, -1.0), (0.9, 0.9, 1.0), triangle) == CROSSING_NONE
    # Through an edge, a vertex, or ending on the triangle: not decided.
    assert _crossing((0.5, 0.5, -1.0), (0.5, 0.5, 1.0), triangle) == CROSSING_AMBIGUOUS
    assert _crossing((0.0, 0.0, -1.0), (0.0, 0.0, 1.0), triangle) == CROSSING_AMBIGUOUS
    assert _crossing((0.2, 0.2, -1.0), (0.2, 0.2, 0.0), triangle) == CROSSING_AMBIGUOUS
    # Ending on the plane outside the triangle is a clear miss.
    assert _crossing((2.0, 2.0, -1.0), (2.0, 2.0, 0.0), triangle) == CROSSING_NONE
    # A segment in the plane, and a zero-area triangle.
    assert _crossing((-1.0, 0.2, 0.0), (2.0, 0.2, 0.0), triangle) == CROSSING_AMBIGUOUS
    sliver = [(0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (2.0, 0.0, 0.0)]
    assert _crossing((0.5, -1.0, 0.0), (0.5, 1.0, 0.0), sliver) == CROSSING_NONE


def _lattice(vertices, steps):
    """A grid over the enlarged box whose nodes include the mesh's own
    coordinates along axis planes (ambiguous crossings for a box mesh)."""
    lo, hi = vertices.min(0).values, vertices.max(0).values
    axes = [torch.linspace(float(lo[k]) - 0.25, float(hi[k]) + 0.25, steps, dtype=vertices.dtype)
            for k in range(3)]
    axes = [torch.cat([a, lo[k:k + 1], hi[k:k + 1]]) for k, a in enumerate(axes)]
    return torch.cartesian_prod(*axes)


@pytest.mark.parametrize("name", sorted(CLOSED))
def test_carried_winding_number_equals_the_exact_sum(name):
    vertices, faces = CLOSED[name]()
    points = torch.cat([query_points(vertices, 3000, seed=11), _lattice(vertices, 12)])
    exact = naive_winding_number(vertices, faces, points)
    distance, _ = naive_unsigned_distance(vertices, faces, points)
    off_surface = distance > 1e-9
    for mode in ("fast_winding", "exact_winding"):
        ours = winding_number(vertices, faces, points, mode=mode)
        assert torch.equal(ours[off_surface], exact[off_surface].round()), mode
    result = signed_distance(vertices, faces, points)
    assert torch.equal(result.winding_number[off_surface], exact[off_surface].round())
    assert torch.equal(result.distance[off_surface] < 0, exact[off_surface].round() > 0.5)
    if name in ("overlapping", "nested"):
        assert bool((exact.round() == 2).any())  # the case a pseudonormal sign gets wrong


def test_carried_winding_number_float32():
    vertices, faces = CLOSED["bumpy"]()
    points = query_points(vertices, 4000, seed=12)
    exact = naive_winding_number(vertices, faces, points).round()
    distance, _ = naive_unsigned_distance(vertices, faces, points)
    far = distance > 1e-4
    result = signed_distance(vertices.float(), faces, points.float())
    assert torch.equal(result.winding_number[far].double(), exact[far])


def test_carried_winding_number_does_not_depend_on_point_order():
    vertices, faces = CLOSED["box"]()
    points = torch.cat([_lattice(vertices, 15), query_points(vertices, 3000, seed=13)])
    order = torch.randperm(points.shape[0], generator=torch.Generator().manual_seed(0))
    first = signed_distance(vertices, faces, points)
    shuffled = signed_distance(vertices, faces, points[order])
    assert torch.equal(first.winding_number[order], shuffled.winding_number)
    assert torch.equal(first.distance[order], shuffled.distance)


@settings(max_examples=25, deadline=None)
@given(
    rotation=st.lists(st.floats(-math.pi, math.pi), min_size=3, max_size=3),
    offset=st.lists(st.floats(-2.0, 2.0), min_size=3, max_size=3),
    scale=st.floats(0.05, 20.0),
    seed=st.integers(0, 2**16),
)
def test_carried_winding_number_property(rotation, offset, scale, seed):
    """Rotated, scaled, shifted overlapping spheres: every off-surface point's
    winding number equals the exact sum, rounded."""
    vertices, faces = overlapping_spheres()
    a, b, c = rotation
    rz = torch.tensor([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    ry = torch.tensor([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rx = torch.tensor([[1, 0, 0], [0, math.cos(c), -math.sin(c)], [0, math.sin(c), math.cos(c)]])
    matrix = (rz @ ry @ rx).double()
    vertices = scale * vertices @ matrix.T + torch.tensor(offset, dtype=torch.float64)
    points = query_points(vertices, 2500, seed=seed)
    exact = naive_winding_number(vertices, faces, points)
    distance, _ = naive_unsigned_distance(vertices, faces, points)
    off_surface = distance > 1e-9 * scale
    ours = signed_distance(vertices, faces, points).winding_number
    assert torch.equal(ours[off_surface], exact[off_surface].round())


def _random_frames(count, generator):
    """(count, 16) oriented boxes: random rotations, centres and extents."""
    rotation, _ = torch.linalg.qr(torch.randn(count, 3, 3, generator=generator, dtype=torch.float64))
    frames = torch.zeros(count, 16, dtype=torch.float64)
    frames[:, :9] = rotation.reshape(count, 9)
    frames[:, 9:12] = 0.5 * torch.randn(count, 3, generator=generator, dtype=torch.float64)
    frames[:, 12:15] = 0.05 + 0.5 * torch.rand(count, 3, generator=generator, dtype=torch.float64)
    return frames


def _segment_meets_box(a, b, frame):
    """Reference: clip the segment against the box's slabs in its own frame."""
    axes = frame[:9].reshape(3, 3)
    start = axes @ a - frame[9:12]
    end = axes @ b - frame[9:12]
    t_lo, t_hi = 0.0, 1.0
    for axis in range(3):
        half = float(frame[12 + axis])
        s, d = float(start[axis]), float(end[axis] - start[axis])
        if d == 0.0:
            if abs(s) > half:
                return False
            continue
        t0, t1 = sorted(((-half - s) / d, (half - s) / d))
        t_lo, t_hi = max(t_lo, t0), min(t_hi, t1)
    return t_lo <= t_hi


def test_segment_frame_overlap_matches_slab_clipping():
    """The separating-axis test of segments against oriented boxes (the
    crossing count's pruning) agrees with plain slab clipping, and grown
    by the margin it never drops a segment that touches the box."""
    generator = torch.Generator().manual_seed(5)
    count = 3000
    frames = _random_frames(count, generator)
    # Centres are stored along the box's axes: rotate them back to world.
    centre = torch.einsum("kij,ki->kj", frames[:, :9].reshape(-1, 3, 3), frames[:, 9:12])
    ends = centre[:, None] + 0.5 * torch.randn(count, 2, 3, generator=generator,
                                               dtype=torch.float64)
    table = frames.numpy()
    agree = meets = 0
    for k in range(count):
        a, b = ends[k, 0], ends[k, 1]
        expected = _segment_meets_box(a, b, frames[k])
        got = _shared.segment_frame_overlap(*a.tolist(), *b.tolist(), table, k, 0, 0.0)
        grown = _shared.segment_frame_overlap(*a.tolist(), *b.tolist(), table, k, 0, 1e-9)
        agree += got == expected
        meets += expected
        assert grown or not expected, k
    assert agree >= count - 3  # only cases within rounding of touching may differ
    assert 0.2 * count < meets < 0.8 * count  # both outcomes well represented
