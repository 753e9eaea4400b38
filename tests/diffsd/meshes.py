"""Test meshes covering the cases the operator must handle."""

from __future__ import annotations

import torch

from diffsd.primitives import box, icosphere, torus


def bumpy_sphere(subdivisions: int = 3):
    """Non-convex, watertight: a sphere with deep radial bumps."""
    v, f = icosphere(subdivisions)
    radius = 1.0 + 0.35 * torch.sin(3 * v[:, 0]) * torch.sin(3 * v[:, 1]) * torch.sin(3 * v[:, 2] + 1)
    return v * radius[:, None], f


def open_sphere():
    """Non-watertight: an icosphere with a cap of faces removed."""
    v, f = icosphere(2)
    centroid_z = v[f].mean(1)[:, 2]
    return v, f[centroid_z < 0.8]


def box_with_degenerate_faces():
    """A closed box plus zero-area faces: a repeated vertex and a collinear sliver."""
    v, f = box((1.0, 0.7, 1.3))
    midpoint = ((v[0] + v[1]) / 2)[None]
    v = torch.cat([v, midpoint])
    m = v.shape[0] - 1
    extra = torch.tensor([[0, 0, 1], [0, m, 1], [m, m, m]])
    return v, torch.cat([f, extra])


MESHES = {
    "sphere": lambda: icosphere(2),
    "torus": lambda: torus(1.0, 0.35, 24, 12),
    "bumpy": lambda: bumpy_sphere(3),
    "open": open_sphere,
    "degenerate": box_with_degenerate_faces,
}
WATERTIGHT = {"sphere", "torus", "bumpy", "degenerate"}


def query_points(vertices: torch.Tensor, count: int, seed: int = 0) -> torch.Tensor:
    """Points uniform in the enlarged bounding box plus points near the surface."""
    generator = torch.Generator().manual_seed(seed)
    lo, hi = vertices.min(0).values, vertices.max(0).values
    center, half = (lo + hi) / 2, (hi - lo) / 2 * 1.3
    uniform = center + half * (2 * torch.rand(count // 2, 3, generator=generator, dtype=vertices.dtype) - 1)
    pick = torch.randint(0, vertices.shape[0], (count - count // 2,), generator=generator)
    near = vertices[pick] + 0.05 * torch.randn(count - count // 2, 3, generator=generator,
                                               dtype=vertices.dtype)
    return torch.cat([uniform, near])
