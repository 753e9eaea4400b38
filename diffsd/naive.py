"""Brute-force O(P F) references in plain torch, for tests and benchmarks.

Independent of the BVH code and of :mod:`diffsd.geometry`: the closest point
is found by projecting onto the triangle's plane and its three edges with
torch tensor algebra, the winding number by summing every triangle's exact
solid angle. Points are processed in chunks so memory stays bounded.
"""

from __future__ import annotations

import math

import torch


def _segment_distance2(points, a, b):
    """(P, F) squared distances from points (P, 1, 3) to segments a-b (1, F, 3)."""
    edge = b - a
    t = ((points - a) * edge).sum(-1) / (edge * edge).sum(-1).clamp_min(1e-300)
    t = t.clamp(0, 1)
    closest = a + t[..., None] * edge
    return ((points - closest) ** 2).sum(-1)


def _triangle_distance2(points, v0, v1, v2):
    """(P, F) squared point-triangle distances."""
    e0 = v1 - v0
    e1 = v2 - v0
    normal = torch.linalg.cross(e0, e1, dim=-1)
    normal_len2 = (normal * normal).sum(-1)
    rel = points - v0
    # Barycentrics of the projection onto the plane (Cramer's rule).
    d00 = (e0 * e0).sum(-1)
    d01 = (e0 * e1).sum(-1)
    d11 = (e1 * e1).sum(-1)
    d20 = (rel * e0).sum(-1)
    d21 = (rel * e1).sum(-1)
    denominator = d00 * d11 - d01 * d01
    ok = denominator > 1e-12 * d00 * d11
    safe = torch.where(ok, denominator, torch.ones_like(denominator))
    v = (d11 * d20 - d01 * d21) / safe
    w = (d00 * d21 - d01 * d20) / safe
    inside = ok & (v >= 0) & (w >= 0) & (v + w <= 1)
    plane2 = (rel * normal).sum(-1) ** 2 / normal_len2.clamp_min(1e-300)
    edges = torch.minimum(
        torch.minimum(_segment_distance2(points, v0, v1), _segment_distance2(points, v1, v2)),
        _segment_distance2(points, v2, v0),
    )
    return torch.where(inside, plane2, edges)


def _solid_angles(points, v0, v1, v2):
    a = v0 - points
    b = v1 - points
    c = v2 - points
    la, lb, lc = a.norm(dim=-1), b.norm(dim=-1), c.norm(dim=-1)
    det = (a * torch.linalg.cross(b, c, dim=-1)).sum(-1)
    den = la * lb * lc + (a * b).sum(-1) * lc + (a * c).sum(-1) * lb + (b * c).sum(-1) * la
    return 2 * torch.atan2(det, den)


def naive_unsigned_distance(vertices, faces, points, chunk: int = 2048):
    """(P,) distance and (P,) closest face by testing every face."""
    tri = vertices[faces]  # (F, 3, 3)
    v0, v1, v2 = (tri[None, :, k] for k in range(3))
    distances, closest = [], []
    for start in range(0, points.shape[0], chunk):
        d2 = _triangle_distance2(points[start:start + chunk, None], v0, v1, v2)
        best, face = d2.min(dim=1)
        distances.append(best.clamp_min(0).sqrt())
        closest.append(face)
    if not distances:
        return points.new_zeros(0), torch.zeros(0, dtype=torch.int64)
    return torch.cat(distances), torch.cat(closest)


def naive_winding_number(vertices, faces, points, chunk: int = 2048):
    """(P,) exact generalised winding number, summing every triangle."""
    tri = vertices[faces]
    v0, v1, v2 = (tri[None, :, k] for k in range(3))
    out = [
        _solid_angles(points[s:s + chunk, None], v0, v1, v2).sum(1) / (4 * math.pi)
        for s in range(0, points.shape[0], chunk)
    ]
    return torch.cat(out) if out else points.new_zeros(0)


def naive_signed_distance(vertices, faces, points, chunk: int = 2048):
    """(P,) signed distance (negative inside) by brute force."""
    distance, _ = naive_unsigned_distance(vertices, faces, points, chunk)
    inside = naive_winding_number(vertices, faces, points, chunk) > 0.5
    return torch.where(inside, -distance, distance)


def naive_signed_distance_all_pairs(vertices, faces, points):
    """(P,) signed distance materialising the full (P, F) matrices at once.

    The parallel naive method of the DiffSD report: O(P F) memory. Used by
    the benchmark to show where it runs out of memory.
    """
    return naive_signed_distance(vertices, faces, points, chunk=max(1, points.shape[0]))
