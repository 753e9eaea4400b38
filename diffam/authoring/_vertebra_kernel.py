"""Compiled evaluation of the procedural vertebra's implicit (see :mod:`diffam.authoring.vertebra_shape`).

The same formulas as the NumPy reference in :mod:`diffam.authoring.vertebra_shape`, fused into
one Numba loop over points (templates are built from tens of thousands of
evaluations of this function). Inputs are flat float64 arrays prepared by
:func:`diffam.authoring.vertebra_shape.vertebra_sdf`.
"""

from __future__ import annotations

import math

import numba
import numpy as np

#: Columns of a packed beam: a (3), e1 (3), e2 (3), e3 (3), length, w0, h0, w1, h1, r,
#: then its bounding box lo (3), hi (3).
BEAM_COLS = 24


@numba.njit(cache=True, inline="always")
def _smin(a, b, k):
    if k <= 0.0:
        return min(a, b)
    h = min(max(0.5 + 0.5 * (b - a) / k, 0.0), 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


@numba.njit(cache=True, inline="always")
def _round_box2(p, q, hx, hy, r):
    r = min(r, min(hx, hy) * 0.999)
    dx = abs(p) - hx + r
    dy = abs(q) - hy + r
    return math.hypot(max(dx, 0.0), max(dy, 0.0)) + min(max(dx, dy), 0.0) - r


@numba.njit(cache=True, inline="always")
def _beam(px, py, pz, bm):
    dx = px - bm[0]
    dy = py - bm[1]
    dz = pz - bm[2]
    s = dx * bm[3] + dy * bm[4] + dz * bm[5]
    u = dx * bm[6] + dy * bm[7] + dz * bm[8]
    v = dx * bm[9] + dy * bm[10] + dz * bm[11]
    length = bm[12]
    t = min(max(s / length, 0.0), 1.0)
    hw = bm[13] + (bm[15] - bm[13]) * t
    hh = bm[14] + (bm[16] - bm[14]) * t
    r = min(bm[17], min(hw, hh) * 0.95)
    d2 = _round_box2(u, v, hw, hh, r)
    q0 = d2 + r
    q1 = max(-s, s - length)
    return math.hypot(max(q0, 0.0), max(q1, 0.0)) + min(max(q0, q1), 0.0) - r


@numba.njit(cache=True, inline="always")
def _body(x, y, z, bp):
    a, b, n, kidney, waist, edge, ha, hp, depth = (
        bp[0],
        bp[1],
        bp[2],
        bp[3],
        bp[4],
        bp[5],
        bp[6],
        bp[7],
        bp[8],
    )
    rho = math.hypot(x, y)
    if rho > 1e-12:
        cos_t = x / rho
        sin_t = y / rho
    else:  # atan2(0, 0) = 0
        cos_t = 1.0
        sin_t = 0.0
    c = abs(cos_t) / a
    s_ = abs(sin_t) / b
    r = (c**n + s_**n) ** (-1.0 / n)
    sp = min(max(sin_t, 0.0), 1.0)
    sp3 = sp * sp * sp
    post = sp3 * sp3
    r = r - kidney * post
    h = 0.5 * (ha + hp) + (hp - ha) * (y / depth)
    zr = min(max(2.0 * z / h, -1.0), 1.0)
    r = r * (1.0 - waist * (1.0 - zr * zr))
    d2 = rho - r
    dz = abs(z) - 0.5 * h
    q0 = d2 + edge
    q1 = dz + edge
    return math.hypot(max(q0, 0.0), max(q1, 0.0)) + min(max(q0, q1), 0.0) - edge


@numba.njit(cache=True, inline="always")
def _canal(x, y, cp):
    half_body, cd, cw, tri, n = cp[0], cp[1], cp[2], cp[3], cp[4]
    yy = y - (half_body + 0.5 * cd)
    w = 0.5 * cw * (1.0 - tri * min(max(yy / (0.5 * cd), -1.0), 1.0) * 0.5)
    w = max(w, 2.0)
    c = abs(x / w)
    s_ = abs(yy / (0.5 * cd))
    rho = (c**n + s_**n) ** (1.0 / n)
    return (rho - 1.0) * min(w, 0.5 * cd)


@numba.njit(cache=True, parallel=True)
def vertebra_sdf_kernel(pts, body, beams, canal, k):  # pragma: no cover - compiled
    """Signed distance of every point; see :func:`diffam.authoring.vertebra_shape.vertebra_sdf`."""
    n = pts.shape[0]
    out = np.empty(n)
    nb = beams.shape[0]
    for i in numba.prange(n):
        x, y, z = pts[i, 0], pts[i, 1], pts[i, 2]
        post = 0.0
        for j in range(nb):
            bm = beams[j]
            if j > 0:
                # exact culling: beyond the box by more than the running union + blend,
                # the smooth union leaves the union unchanged
                ox = max(max(bm[18] - x, x - bm[21]), 0.0)
                oy = max(max(bm[19] - y, y - bm[22]), 0.0)
                oz = max(max(bm[20] - z, z - bm[23]), 0.0)
                lb2 = ox * ox + oy * oy + oz * oz
                lim = post + k
                if lb2 > 0.0 and lim < 0.0:
                    continue
                if lb2 > 0.0 and lb2 >= lim * lim:
                    continue
                post = _smin(post, _beam(x, y, z, bm), k)
            else:
                post = _beam(x, y, z, bm)
        d = _body(x, y, z, body)
        if nb > 0:
            d = _smin(d, post, k)
        d = -_smin(-d, _canal(x, y, canal), 0.5 * k)
        out[i] = d
    return out
