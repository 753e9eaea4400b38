"""Mesh utilities for building templates: polygonise an implicit, relax, project.

All functions work on NumPy arrays: vertices (V, 3) float64 in mm, faces (F, 3)
int64 with outward (counter-clockwise) orientation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from diffam.core.mesh_ops import largest_component, signed_volume, vertex_normals

Sdf = Callable[[np.ndarray], np.ndarray]


def polygonise(
    sdf: Sdf, lo: np.ndarray, hi: np.ndarray, spacing: float
) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes of the zero level set of ``sdf`` in the box [lo, hi].

    Keeps the largest connected component and orients faces outward.

    Args:
        sdf: Maps (N, 3) points (mm) to (N,) signed distances (negative inside).
        lo, hi: (3,) corners of the sampling box, mm.
        spacing: Grid spacing, mm.

    Returns:
        vertices (V, 3) float64 mm and faces (F, 3) int64.
    """
    from skimage.measure import marching_cubes

    axes = [np.arange(lo[i], hi[i] + spacing, spacing) for i in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    vol = sdf(grid).reshape(len(axes[0]), len(axes[1]), len(axes[2]))
    verts, faces, _, _ = marching_cubes(vol, level=0.0, spacing=(spacing,) * 3)
    verts = verts + np.asarray(lo, float)
    faces = faces.astype(np.int64)
    verts, faces = largest_component(verts, faces)
    if signed_volume(verts, faces) < 0:
        faces = faces[:, ::-1].copy()
    return verts.astype(np.float64), faces


def compact(v: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop vertices not referenced by any face and renumber."""
    used = np.unique(f)
    remap = -np.ones(len(v), dtype=np.int64)
    remap[used] = np.arange(len(used))
    return v[used], remap[f]


def vertex_adjacency(f: np.ndarray, n: int) -> sp.csr_matrix:
    """Symmetric (n, n) 0/1 vertex adjacency of a triangle mesh."""
    e = f[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    a = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n)).tocsr()
    a = a + a.T
    a.data[:] = 1.0
    return a


def face_normals(v: np.ndarray, f: np.ndarray, normalise: bool = True) -> np.ndarray:
    """(F, 3) face normals (area-weighted when ``normalise`` is False)."""
    n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    if normalise:
        n = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-15)
    return n


def sdf_gradient(sdf: Sdf, p: np.ndarray, h: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Value (N,) and central-difference gradient (N, 3) of ``sdf`` at ``p``."""
    n = len(p)
    offs = np.concatenate([p] + [p + s * h * np.eye(3)[i] for i in range(3) for s in (1, -1)])
    vals = sdf(offs)
    d0 = vals[:n]
    g = np.stack(
        [
            (vals[n * (1 + 2 * i) : n * (2 + 2 * i)] - vals[n * (2 + 2 * i) : n * (3 + 2 * i)])
            / (2 * h)
            for i in range(3)
        ],
        axis=1,
    )
    return d0, g


def project(sdf: Sdf, v: np.ndarray, iters: int = 3, max_step: float = 2.0) -> np.ndarray:
    """Move points onto the zero level set of ``sdf`` by Newton steps along the gradient."""
    v = v.copy()
    for _ in range(iters):
        d, g = sdf_gradient(sdf, v)
        g2 = np.maximum((g * g).sum(axis=1), 1e-6)
        step = -(d / g2)[:, None] * g
        ln = np.linalg.norm(step, axis=1, keepdims=True)
        step *= np.minimum(1.0, max_step / np.maximum(ln, 1e-12))
        v += step
    return v


def tangential_relax(
    v: np.ndarray,
    f: np.ndarray,
    adj: sp.csr_matrix,
    weight: float = 0.5,
    area_weighted: bool = True,
    normals: np.ndarray | None = None,
    max_step: float | None = 0.3,
) -> np.ndarray:
    """One step of tangential smoothing: move vertices towards the (area-weighted) centroid
    of their neighbours, within the tangent plane, evening out triangle sizes.

    Args:
        v: (V, 3) vertices.
        f: (F, 3) faces.
        adj: Vertex adjacency (:func:`vertex_adjacency`).
        weight: Fraction of the way to the centroid.
        area_weighted: Weight neighbours by their one-ring area (equalises triangle
            areas) instead of uniformly (equalises shapes).
        normals: (V, 3) unit surface normals (e.g. the implicit's gradient); default:
            the mesh's vertex normals.
        max_step: Limit of a move as a fraction of the vertex's shortest edge.
    """
    n = len(v)
    if area_weighted:
        # weight neighbour j by the area of its one-ring (Botsch-Kobbelt-style equalisation)
        fa = 0.5 * np.linalg.norm(face_normals(v, f, normalise=False), axis=1)
        va = np.zeros(n)
        for i in range(3):
            np.add.at(va, f[:, i], fa)
        w = adj.multiply(va[None, :]).tocsr()
    else:
        w = adj
    s = np.asarray(w.sum(axis=1)).ravel()
    c = (w @ v) / s[:, None]
    lap = c - v
    nrm = vertex_normals(v, f) if normals is None else normals
    lap -= (lap * nrm).sum(axis=1, keepdims=True) * nrm
    step = weight * lap
    if max_step is not None:
        coo = adj.tocoo()
        el = np.linalg.norm(v[coo.row] - v[coo.col], axis=1)
        shortest = np.full(n, np.inf)
        np.minimum.at(shortest, coo.row, el)
        ln = np.linalg.norm(step, axis=1)
        step *= np.minimum(1.0, max_step * shortest / np.maximum(ln, 1e-12))[:, None]
    return v + step


def relax_on_surface(
    sdf: Sdf,
    v: np.ndarray,
    f: np.ndarray,
    iters: int = 20,
    weight: float = 0.5,
    repair: bool = False,
) -> np.ndarray:
    """Alternate tangential relaxation (tangent planes from the implicit's gradient,
    area- and shape-equalising steps in turn) and projection onto the zero set of ``sdf``.

    With ``repair``, inverted faces are repaired at the end (:func:`untangle`).
    """
    adj = vertex_adjacency(f, len(v))
    for it in range(iters):
        _, g = sdf_gradient(sdf, v)
        g /= np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
        v = tangential_relax(v, f, adj, weight, area_weighted=it % 2 == 0, normals=g)
        v = project(sdf, v, iters=2)
    if repair:
        v, _ = untangle(sdf, v, f, adj)
    return v


def triangle_quality(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    """(F,) quality 4*sqrt(3)*area / sum of squared edges (1 = equilateral, 0 = degenerate)."""
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    s = ((b - a) ** 2).sum(1) + ((c - b) ** 2).sum(1) + ((a - c) ** 2).sum(1)
    return 4.0 * np.sqrt(3.0) * area / np.maximum(s, 1e-15)


def folded_faces(sdf: Sdf, v: np.ndarray, f: np.ndarray) -> np.ndarray:
    """(F,) mask of inverted faces: the face normal points against the mean of the unit
    gradients of ``sdf`` at its three vertices (the surface normals there)."""
    _, g = sdf_gradient(sdf, v)
    g = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
    return (face_normals(v, f) * g[f].sum(axis=1)).sum(axis=1) <= 0.0


def untangle(
    sdf: Sdf, v: np.ndarray, f: np.ndarray, adj: sp.csr_matrix, max_iter: int = 30, rings: int = 2
) -> tuple[np.ndarray, int]:
    """Repair inverted faces by smoothing their neighbourhood and projecting back.

    Vertices of inverted faces and ``rings`` rings around them are moved towards
    their neighbours' centroid (full Laplacian, which unfolds) and projected onto
    the zero set, until no face is inverted or ``max_iter`` rounds have run; faces
    still inverted then are smoothed without projection (a fallback that leaves a
    few vertices slightly off the surface).

    Returns:
        The repaired vertices and the number of faces still inverted.
    """
    v = v.copy()
    deg = np.asarray(adj.sum(axis=1)).ravel()
    bad = folded_faces(sdf, v, f)
    for it in range(max_iter):
        if not bad.any():
            return v, 0
        sel = np.zeros(len(v), bool)
        sel[f[bad].ravel()] = True
        for _ in range(rings + it // 5):  # widen the repaired patch when it resists
            sel = sel | (adj @ sel.astype(float) > 0)
        idx = np.flatnonzero(sel)
        for _ in range(3):
            c = (adj @ v) / deg[:, None]
            v[idx] = 0.5 * v[idx] + 0.5 * c[idx]
        v[idx] = project(sdf, v[idx], iters=3)
        bad = folded_faces(sdf, v, f)
    # fallback: smooth the remaining patches without projecting them back (they then
    # leave the surface by a fraction of an edge, but no face stays inverted)
    for _ in range(max_iter):
        if not bad.any():
            break
        sel = np.zeros(len(v), bool)
        sel[f[bad].ravel()] = True
        sel = sel | (adj @ sel.astype(float) > 0)
        idx = np.flatnonzero(sel)
        c = (adj @ v) / deg[:, None]
        v[idx] = 0.5 * v[idx] + 0.5 * c[idx]
        bad = folded_faces(sdf, v, f)
    return v, int(bad.sum())
