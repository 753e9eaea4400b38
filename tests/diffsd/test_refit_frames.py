"""A CPU refit keeps the internal nodes' oriented boxes of earlier vertices,
grown by how far the vertices have moved since: the answers must stay those of
a fresh tree and of the brute force."""

from __future__ import annotations

import pytest
import torch

from diffsd import MeshBVH, signed_distance
from diffsd.bvh import BUILDERS, FRAME_SLACK_RATIO
from diffsd.naive import naive_signed_distance
from tests.diffsd.meshes import MESHES, query_points


def _mean_leaf_diagonal(bvh: MeshBVH) -> float:
    n = bvh.num_faces
    return float((bvh.node_box[n - 1:, 3:] - bvh.node_box[n - 1:, :3]).norm(dim=1).mean())


def _near_surface(vertices, faces, count, scale, seed):
    """Points within ``scale`` of random points on the triangles (the thin
    boxes near the surface are the ones a missing allowance would wrongly prune)."""
    generator = torch.Generator().manual_seed(seed)
    tri = vertices[faces]
    face = torch.randint(faces.shape[0], (count,), generator=generator)
    a, b = torch.rand((2, count, 1), generator=generator, dtype=vertices.dtype)
    flip = (a + b) > 1
    a, b = torch.where(flip, 1 - a, a), torch.where(flip, 1 - b, b)
    t = tri[face]
    on = t[:, 0] + a * (t[:, 1] - t[:, 0]) + b * (t[:, 2] - t[:, 0])
    return on + scale * torch.randn(on.shape, generator=generator, dtype=vertices.dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("builder", BUILDERS)
@pytest.mark.parametrize("name", ["bumpy", "torus", "open"])
def test_refits_that_keep_the_oriented_boxes_give_the_brute_force_answers(name, builder, dtype):
    vertices, faces = MESHES[name]()
    vertices = vertices.to(dtype)
    bvh = MeshBVH(vertices, faces, builder=builder)
    diagonal = _mean_leaf_diagonal(bvh)
    generator = torch.Generator().manual_seed(1)
    moved = vertices.clone()
    kept = 0
    for _ in range(4):
        # Each vertex moves by up to a third of the allowance per step, so
        # the boxes are kept for a few steps, then recomputed.
        step = torch.rand(vertices.shape, generator=generator, dtype=dtype) * 2 - 1
        moved = moved + step * (FRAME_SLACK_RATIO * diagonal / 3 / 3 ** 0.5)
        bvh.refit(moved)
        kept += bvh.frame_slack > 0
        points = torch.cat([query_points(moved, 300, seed=2),
                            _near_surface(moved, faces, 300, 0.1 * diagonal, seed=3)])
        got = signed_distance(moved, faces, points, bvh=bvh, refit=False)
        fresh = signed_distance(moved, faces, points, bvh=MeshBVH(moved, faces, builder=builder))
        torch.testing.assert_close(got.distance, fresh.distance, rtol=0, atol=0)
        # (the face may differ where several are equally near: the trees differ)
        exact = naive_signed_distance(moved.double(), faces, points.double())
        torch.testing.assert_close(got.distance.abs().double(), exact.abs(), rtol=0,
                                   atol=1e-5 if dtype == torch.float32 else 1e-12)
        if name != "open":  # the open mesh's sign is its own convention (see its tests)
            assert torch.equal(got.distance < 0, exact < 0)
    assert kept >= 2


def test_a_refit_recomputes_the_oriented_boxes_once_the_vertices_moved_far():
    vertices, faces = MESHES["bumpy"]()
    bvh = MeshBVH(vertices, faces)
    diagonal = _mean_leaf_diagonal(bvh)
    offset = torch.tensor([1.0, 0.0, 0.0], dtype=vertices.dtype)
    bvh.refit(vertices + 0.5 * FRAME_SLACK_RATIO * diagonal * offset)
    assert bvh.frame_slack == pytest.approx(0.5 * FRAME_SLACK_RATIO * diagonal)
    far = vertices * 1.2 + 0.1
    bvh.refit(far)
    assert bvh.frame_slack == 0.0
    fresh = MeshBVH(far, faces)
    for name in ("child_frame", "node_box", "node_center", "node_moment", "node_radius"):
        assert torch.equal(getattr(bvh, name), getattr(fresh, name)), name


def test_kept_boxes_hold_every_moved_triangle():
    """Every internal node's oriented box, grown by ``frame_slack``, holds the
    moved vertices below it; the leaves' boxes are their triangles' own."""
    vertices, faces = MESHES["torus"]()
    bvh = MeshBVH(vertices, faces)
    generator = torch.Generator().manual_seed(4)
    limit = FRAME_SLACK_RATIO * _mean_leaf_diagonal(bvh)
    moved = vertices + (torch.rand(vertices.shape, generator=generator,
                                   dtype=vertices.dtype) * 2 - 1) * (0.9 * limit / 3 ** 0.5)
    bvh.refit(moved)
    assert 0 < bvh.frame_slack <= limit
    n = bvh.num_faces
    frames = bvh.child_frame.reshape(n - 1, 2, 16)
    full = MeshBVH(vertices, faces)
    full._frame_vertices = None  # the same tree, every box recomputed
    fresh = full.refit(moved).child_frame.reshape(n - 1, 2, 16)
    corners = bvh.leaf_vertices.reshape(n, 3, 3)
    for node in range(n - 1):
        for side, child in enumerate((int(bvh.child_left[node]), int(bvh.child_right[node]))):
            frame = frames[node, side]
            if child >= n - 1:
                assert torch.equal(frame, fresh[node, side])
                continue
            first, last = int(bvh.range_first[child]), int(bvh.range_last[child])
            points = corners[first:last + 1].reshape(-1, 3)
            axes = frame[:9].reshape(3, 3)
            along = points @ axes.T - frame[9:12]
            assert bool((along.abs() <= frame[12:15] + bvh.frame_slack + 1e-12).all()), node
