"""Signed distance of the procedural vertebra (:mod:`diffam.authoring.vertebra_shape`).

:func:`vertebra_sdf` evaluates the smooth union of the primitives in the
vertebra's local frame (mm, negative inside) with a Numba kernel over packed
primitive parameters; :func:`vertebra_sdf_reference` is the plain NumPy
version the tests compare it with.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from diffam.authoring.vertebra_shape import (
    VertebraParams,
    beams,
    body_height,
    orthonormal_frame,
    smooth_max,
    smooth_min,
)


# --------------------------------------------------------------------- implicit
def _superellipse_radius(theta: np.ndarray, a: float, b: float, n: float) -> np.ndarray:
    c = np.abs(np.cos(theta)) / a
    s = np.abs(np.sin(theta)) / b
    return (c**n + s**n) ** (-1.0 / n)


def body_sdf(p: VertebraParams, pts: np.ndarray) -> np.ndarray:
    """Approximate signed distance to the vertebral body (mm), local frame."""
    x, y, z = pts[:, 0], pts[:, 1], pts[:, 2]
    a, b = 0.5 * p.body_width, 0.5 * p.body_depth
    theta = np.arctan2(y, x)
    r = _superellipse_radius(theta, a, b, p.body_exponent)
    # kidney: posterior concavity, strongest at the midline (theta = +90 deg, +y)
    post = np.clip(np.sin(theta), 0.0, 1.0) ** 6
    r = r - p.body_kidney * post
    h = body_height(p, y)
    zr = np.clip(2.0 * z / h, -1.0, 1.0)
    r = r * (1.0 - p.body_waist * (1.0 - zr**2))
    d2 = np.hypot(x, y) - r
    dz = np.abs(z) - 0.5 * h
    e = p.body_edge
    q0, q1 = d2 + e, dz + e
    return np.hypot(np.maximum(q0, 0), np.maximum(q1, 0)) + np.minimum(np.maximum(q0, q1), 0) - e


def canal_sdf(p: VertebraParams, pts: np.ndarray) -> np.ndarray:
    """Signed distance to the (infinite, vertical) vertebral canal, negative inside."""
    b = 0.5 * p.body_depth
    yc = b + 0.5 * p.canal_depth
    x = pts[:, 0]
    y = pts[:, 1] - yc
    # trefoil-like narrowing towards posterior: scale the half-width with y
    w = (
        0.5
        * p.canal_width
        * (1.0 - p.canal_triangle * np.clip(y / (0.5 * p.canal_depth), -1, 1) * 0.5 - 0.0)
    )
    w = np.maximum(w, 2.0)
    theta = np.arctan2(y, x / w)
    # superellipse in normalised coordinates
    n = p.canal_exponent
    c = np.abs(x / w)
    s = np.abs(y / (0.5 * p.canal_depth))
    rho = (c**n + s**n) ** (1.0 / n)
    del theta
    return (rho - 1.0) * np.minimum(w, 0.5 * p.canal_depth)


def _enabled(p: VertebraParams, name: str) -> bool:
    """Whether an optional primitive (dens, uncinate processes) is present at this level."""
    if name.startswith("uncinate"):
        return p.uncinate_height > 0
    if name == "dens":
        return p.dens_height > 0
    return True


def vertebra_sdf(p: VertebraParams, pts: np.ndarray) -> np.ndarray:
    """Approximate signed distance (mm, negative inside) of the vertebra, local frame.

    The body, the posterior-element primitives (smooth union, blend radius
    ``p.blend``) and the subtraction of the canal; compiled (Numba), equal to
    :func:`vertebra_sdf_reference`.

    Args:
        p: Measurements of the vertebra.
        pts: (N, 3) points, local frame (origin at the body centre, LPS axes), mm.

    Returns:
        (N,) float64 signed distance; the zero level set is the vertebra surface.
    """
    from diffam.authoring._vertebra_kernel import vertebra_sdf_kernel

    pts = np.ascontiguousarray(pts, dtype=np.float64).reshape(-1, 3)
    body, bms, canal = _packed(p)
    return vertebra_sdf_kernel(pts, body, bms, canal, float(p.blend))


@functools.lru_cache(maxsize=64)
def _packed(p: VertebraParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat arrays of the primitives for the compiled kernel (cached per parameter set)."""
    return _pack_body(p), _pack_beams(p), _pack_canal(p)


def _pack_body(p: VertebraParams) -> np.ndarray:
    return np.array(
        [
            0.5 * p.body_width,
            0.5 * p.body_depth,
            p.body_exponent,
            p.body_kidney,
            p.body_waist,
            p.body_edge,
            p.body_height_ant,
            p.body_height_post,
            p.body_depth,
        ]
    )


def _pack_canal(p: VertebraParams) -> np.ndarray:
    return np.array(
        [0.5 * p.body_depth, p.canal_depth, p.canal_width, p.canal_triangle, p.canal_exponent]
    )


def _pack_beams(p: VertebraParams) -> np.ndarray:
    rows = []
    for name, bm in beams(p).items():
        if not _enabled(p, name):
            continue
        a = np.asarray(bm.a, float)
        axis = np.asarray(bm.b, float) - a
        e1, e2, e3 = orthonormal_frame(axis, np.asarray(bm.up, float))
        lo, hi = bm.box()
        rows.append(
            np.concatenate(
                [
                    a,
                    e1,
                    e2,
                    e3,
                    [max(float(np.linalg.norm(axis)), 1e-6), bm.w0, bm.h0, bm.w1, bm.h1, bm.r],
                    lo,
                    hi,
                ]
            )
        )
    return np.array(rows).reshape(-1, 24)


def vertebra_sdf_reference(p: VertebraParams, pts: np.ndarray) -> np.ndarray:
    """NumPy reference of :func:`vertebra_sdf` (slower; used by the tests)."""
    pts = np.asarray(pts, dtype=np.float64)
    k = p.blend
    d = body_sdf(p, pts)
    posterior = None
    for name, beam in beams(p).items():
        if not _enabled(p, name):
            continue
        dp = beam.sdf(pts)
        posterior = dp if posterior is None else smooth_min(posterior, dp, k)
    d = smooth_min(d, posterior, k)
    return smooth_max(d, -canal_sdf(p, pts), 0.5 * k)


def vertebra_bounds(p: VertebraParams, margin: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned bounds (lo, hi) of the vertebra in its local frame, mm (with a margin)."""
    pts = [
        np.array(
            [
                [
                    -0.5 * p.body_width,
                    -0.5 * p.body_depth,
                    -0.5 * max(p.body_height_ant, p.body_height_post),
                ],
                [
                    0.5 * p.body_width,
                    0.5 * p.body_depth,
                    0.5 * max(p.body_height_ant, p.body_height_post),
                ],
            ]
        )
    ]
    for name, beam in beams(p).items():
        if not _enabled(p, name):
            continue
        c = beam.corners()
        pad = max(beam.w0, beam.h0, beam.w1, beam.h1)
        pts.append(c - pad)
        pts.append(c + pad)
    allp = np.concatenate(pts)
    return allp.min(axis=0) - margin, allp.max(axis=0) + margin


def control_points(p: VertebraParams) -> np.ndarray:
    """(M, 3) labelled points of the primitives, in the same order for every level.

    Used as landmarks of a smooth space warp that carries a mesh from one level's
    shape to another's.
    """
    a, b = 0.5 * p.body_width, 0.5 * p.body_depth
    ha, hp = 0.5 * p.body_height_ant, 0.5 * p.body_height_post
    ring = []
    for ang in np.linspace(0, 2 * np.pi, 12, endpoint=False):
        r = _superellipse_radius(np.array([ang]), a, b, p.body_exponent)[0]
        post = max(math.sin(ang), 0.0) ** 6
        r -= p.body_kidney * post
        x, y = r * math.cos(ang), r * math.sin(ang)
        hz = float(body_height(p, np.array([y]))[0]) * 0.5
        ring += [(x, y, hz), (x, y, -hz), (x, y, 0.0)]
    ring += [(0, 0, ha), (0, 0, -hp), (0, 0, 0)]
    yc = b + 0.5 * p.canal_depth
    canal = [
        (0.5 * p.canal_width * math.cos(t), yc + 0.5 * p.canal_depth * math.sin(t), z)
        for t in np.linspace(0, 2 * np.pi, 8, endpoint=False)
        for z in (-hp, hp)
    ]
    pts = [np.array(ring, float), np.array(canal, float)]
    for beam in beams(p).values():
        pts.append(beam.corners())
    return np.concatenate(pts)
