"""Subject surfaces for template building: meshes from labelled masks or from mesh files.

Every surface comes out closed, outward-oriented and in world LPS millimetres
(:data:`Mesh`: ``(V, 3)`` vertices, ``(F, 3)`` faces), one connected component.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from diffam.authoring import remesh
from diffam.core.labels import VERSE_IDS
from diffam.core.mesh_ops import largest_component, signed_volume

#: A triangle mesh: (V, 3) float vertices, (F, 3) int faces.
Mesh = tuple[np.ndarray, np.ndarray]


def taubin_smooth(
    v: np.ndarray, f: np.ndarray, iterations: int = 10, lam: float = 0.5, mu: float = -0.53
) -> np.ndarray:
    """Taubin (lambda|mu) smoothing with the uniform Laplacian; shrinks far less than Laplacian.

    Args:
        v, f: Mesh, (V, 3) and (F, 3).
        iterations: Number of lambda/mu pairs.
        lam, mu: Positive and negative step sizes (``mu < -lam``).

    Returns:
        (V, 3) smoothed vertices.
    """
    adj = remesh.vertex_adjacency(f, len(v))
    deg = np.asarray(adj.sum(1)).ravel()
    w = sp.diags(1.0 / np.maximum(deg, 1)) @ adj
    v = np.asarray(v, dtype=np.float64).copy()
    for _ in range(iterations):
        v = v + lam * (w @ v - v)
        v = v + mu * (w @ v - v)
    return v


def surface_from_mask(
    mask: np.ndarray,
    affine_lps: np.ndarray,
    *,
    smooth_iterations: int = 10,
) -> Mesh:
    """Outward-oriented surface of a binary mask in world LPS mm.

    Args:
        mask: Boolean array ``(Z, Y, X)`` = ``array[k, j, i]`` (the
            :class:`diffam.core.volume.Volume` layout).
        affine_lps: (4, 4) index ``(i, j, k, 1)`` -> LPS mm
            (:attr:`diffam.core.volume.Volume.affine_lps`).
        smooth_iterations: Taubin smoothing iterations (0: none).

    Returns:
        vertices (V, 3) float64 mm and faces (F, 3) int64: the largest connected
        component of the 0.5 iso-surface, faces counter-clockwise seen from outside.

    Raises:
        ValueError: The mask is empty.
    """
    from skimage.measure import marching_cubes

    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise ValueError("the mask is empty")
    # Crop to the mask with a one-voxel margin of background so the surface is closed.
    nz = np.argwhere(mask)
    lo = nz.min(0)
    hi = nz.max(0) + 1
    crop = np.zeros(tuple(hi - lo + 2), dtype=np.float32)
    crop[1:-1, 1:-1, 1:-1] = mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    verts, faces, _, _ = marching_cubes(crop, level=0.5)
    kji = verts + lo[None, :] - 1.0
    ijk = kji[:, ::-1]
    a = np.asarray(affine_lps, dtype=np.float64)
    v = ijk @ a[:3, :3].T + a[:3, 3]
    f = faces.astype(np.int64)
    v, f = largest_component(v, f)
    if signed_volume(v, f) < 0:
        f = f[:, ::-1].copy()
    if smooth_iterations > 0:
        v = taubin_smooth(v, f, smooth_iterations)
    return v, f


def surfaces_from_label_map(
    path: str | Path,
    *,
    convention: str = "verse",
    levels: Sequence[str] | None = None,
    smooth_iterations: int = 10,
    min_voxels: int = 200,
) -> dict[str, Mesh]:
    """One surface per vertebra of a label map (VerSe or TotalSegmentator ids).

    Args:
        path: Label image readable by :func:`diffam.core.image.read_image`.
        convention: ``"verse"`` or ``"totalsegmentator"``.
        levels: Levels to extract (default: every regular level present).
        smooth_iterations: Taubin smoothing iterations.
        min_voxels: Labels with fewer voxels are skipped (fragments at the field-of-view edge).

    Returns:
        level name -> (vertices, faces) in world LPS mm.
    """
    from diffam.core.image import read_image
    from diffam.core.labels import totalsegmentator_to_verse

    vol = read_image(path)
    lab = np.asarray(vol.array).astype(np.int64)
    if convention == "totalsegmentator":
        lab = totalsegmentator_to_verse(lab).astype(np.int64)
    elif convention != "verse":
        raise ValueError(f"convention must be 'verse' or 'totalsegmentator', got {convention!r}")
    wanted = list(levels) if levels is not None else [lv for lv in VERSE_IDS]
    counts = np.bincount(lab.ravel())
    out: dict[str, Mesh] = {}
    for lv in wanted:
        vid = VERSE_IDS[lv]
        if vid < len(counts) and counts[vid] >= min_voxels:
            out[lv] = surface_from_mask(
                lab == vid, vol.affine_lps, smooth_iterations=smooth_iterations
            )
    return out


def load_mesh(path: str | Path) -> Mesh:
    """Read a surface mesh (PLY/STL/OBJ through trimesh), world LPS mm assumed.

    Returns the largest component, outward oriented.
    """
    import trimesh

    m = trimesh.load(str(path), force="mesh", process=True)
    v = np.asarray(m.vertices, dtype=np.float64)
    f = np.asarray(m.faces, dtype=np.int64)
    v, f = largest_component(v, f)
    if signed_volume(v, f) < 0:
        f = f[:, ::-1].copy()
    return v, f


def load_landmarks(path: str | Path) -> dict[str, np.ndarray]:
    """Landmarks of a JSON list ``[{"id": "A", "coordinates": [x, y, z]}, ...]`` -> id -> (3,)."""
    with open(path, encoding="utf-8") as fh:
        items = json.load(fh)
    return {str(it["id"]): np.asarray(it["coordinates"], dtype=np.float64) for it in items}
