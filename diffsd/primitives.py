"""Closed triangle meshes of analytic shapes: for tests, examples and benchmarks.

All meshes are consistently oriented with outward normals.
"""

from __future__ import annotations

import math

import torch


def icosphere(subdivisions: int = 3, radius: float = 1.0, dtype=torch.float64):
    """Geodesic sphere: 20 * 4**subdivisions faces (1,280 at 3, 20,480 at 5).

    Returns:
        vertices (V, 3), faces (F, 3) int64.
    """
    t = (1.0 + math.sqrt(5.0)) / 2.0
    vertices = [(-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t),
                (0, -1, -t), (0, 1, -t), (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1)]
    faces = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4),
             (11, 10, 2), (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8),
             (3, 8, 9), (4, 9, 5), (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1)]
    v = torch.tensor(vertices, dtype=torch.float64)
    f = torch.tensor(faces, dtype=torch.int64)
    for _ in range(subdivisions):
        edges = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
        edges_sorted = torch.sort(edges, dim=1).values
        unique, inverse = torch.unique(edges_sorted, dim=0, return_inverse=True)
        midpoints = (v[unique[:, 0]] + v[unique[:, 1]]) / 2
        mid_index = inverse + v.shape[0]
        v = torch.cat([v, midpoints])
        nf = f.shape[0]
        a, b, c = f[:, 0], f[:, 1], f[:, 2]
        ab, bc, ca = mid_index[:nf], mid_index[nf:2 * nf], mid_index[2 * nf:]
        f = torch.cat([torch.stack(x, 1) for x in
                       ((a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca))])
    v = v / v.norm(dim=1, keepdim=True) * radius
    return v.to(dtype), f


def torus(major_radius: float = 1.0, minor_radius: float = 0.35, major_segments: int = 64,
          minor_segments: int = 32, dtype=torch.float64):
    """Torus around the z axis (genus 1): 2 * major * minor faces."""
    u = torch.arange(major_segments, dtype=torch.float64) * (2 * math.pi / major_segments)
    w = torch.arange(minor_segments, dtype=torch.float64) * (2 * math.pi / minor_segments)
    uu, ww = torch.meshgrid(u, w, indexing="ij")
    ring = major_radius + minor_radius * torch.cos(ww)
    v = torch.stack([ring * torch.cos(uu), ring * torch.sin(uu), minor_radius * torch.sin(ww)], -1)
    i = torch.arange(major_segments)[:, None]
    j = torch.arange(minor_segments)[None, :]
    i1 = (i + 1) % major_segments
    j1 = (j + 1) % minor_segments

    def idx(a, b):
        return (a * minor_segments + b).expand(major_segments, minor_segments)

    q0, q1, q2, q3 = idx(i, j), idx(i1, j), idx(i1, j1), idx(i, j1)
    f = torch.cat([torch.stack([q0, q1, q2], -1).reshape(-1, 3),
                   torch.stack([q0, q2, q3], -1).reshape(-1, 3)])
    return v.reshape(-1, 3).to(dtype), f


def box(size=(1.0, 1.0, 1.0), dtype=torch.float64):
    """Axis-aligned box centred at the origin: 8 vertices, 12 faces."""
    sx, sy, sz = (s / 2 for s in size)
    v = torch.tensor([[x, y, z] for x in (-sx, sx) for y in (-sy, sy) for z in (-sz, sz)],
                     dtype=torch.float64)
    f = torch.tensor([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                      [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    return v.to(dtype), f


def box_signed_distance(points: torch.Tensor, size) -> torch.Tensor:
    """Analytic signed distance to an axis-aligned box centred at the origin."""
    half = torch.as_tensor(size, dtype=points.dtype, device=points.device) / 2
    q = points.abs() - half
    outside = q.clamp_min(0).norm(dim=-1)
    inside = q.max(dim=-1).values.clamp_max(0)
    return outside + inside
