"""Label maps from closed meshes: the inside test at every voxel centre.

Used by the export (fitted meshes onto the input grid) and by the synthetic
phantoms (true meshes onto the phantom grid), so both share one definition
of "inside".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

import diffsd
from diffam.core.volume import Volume


def _index_box(reference: Volume, vertices: np.ndarray, margin_voxels: int = 1,
               reach_mm: float = 0.0):
    """Inclusive index ranges (i, j, k) of the voxels whose centres may lie in the mesh box
    grown by ``reach_mm`` (world mm) on every side."""
    lo, hi = vertices.min(0) - reach_mm, vertices.max(0) + reach_mm
    corners = np.array(
        [[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
    )
    index = reference.world_to_index(corners)
    start = np.floor(index.min(0)).astype(int) - margin_voxels
    stop = np.ceil(index.max(0)).astype(int) + margin_voxels
    size = np.array(reference.shape_ijk)
    return np.clip(start, 0, size - 1), np.clip(stop, 0, size - 1)


def rasterize_meshes(
    meshes: Sequence[tuple[np.ndarray, np.ndarray]],
    label_values: Sequence[int],
    reference: Volume,
    *,
    device: str | torch.device = "cpu",
    chunk_voxels: int = 2_000_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Label every voxel centre of ``reference`` inside one of the meshes.

    Only voxels inside each mesh's bounding box are tested. Where meshes
    overlap, the voxel goes to the mesh it is deepest inside (most negative
    signed distance).

    Args:
        meshes: (vertices (V, 3) LPS mm, faces (F, 3)) per mesh, closed and
            outward-oriented.
        label_values: one label per mesh (e.g. VerSe ids), > 0.
        reference: the grid to label (its array is not used).
        device: where the signed distances are computed.
        chunk_voxels: voxels per signed-distance call (bounds memory).

    Returns:
        labels (Z, Y, X) int32 (0 = background) and depth (Z, Y, X) float32:
        the signed distance to the winning mesh in mm (inf where background).
    """
    owner, distance = nearest_surface_field(meshes, label_values, reference, reach_mm=0.0,
                                            device=device, chunk_voxels=chunk_voxels)
    inside = distance < 0
    return np.where(inside, owner, 0).astype(np.int32), \
        np.where(inside, distance, np.inf).astype(np.float32)


def nearest_surface_field(
    meshes: Sequence[tuple[np.ndarray, np.ndarray]],
    label_values: Sequence[int],
    reference: Volume,
    *,
    reach_mm: float,
    device: str | torch.device = "cpu",
    chunk_voxels: int = 2_000_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Each voxel's nearest mesh and its signed distance to it (mm), within ``reach_mm``.

    A voxel inside a mesh belongs to the mesh it is deepest inside; outside
    all meshes, to the mesh whose surface is nearest. Voxels beyond each
    mesh's bounding box grown by ``reach_mm`` are not tested (label 0,
    distance inf), so distances up to ``reach_mm`` outside a mesh are exact.

    Returns:
        owner (Z, Y, X) int32 (label value of the nearest mesh, 0 where none
        was tested) and signed distance (Z, Y, X) float32 (mm, negative inside).
    """
    if len(meshes) != len(label_values):
        raise ValueError(f"{len(meshes)} meshes but {len(label_values)} label values")
    z, y, x = reference.array.shape
    owner = np.zeros((z, y, x), dtype=np.int32)
    nearest = np.full((z, y, x), np.inf, dtype=np.float32)
    for (vertices, faces), value in zip(meshes, label_values):
        vertices = np.asarray(vertices, dtype=np.float64)
        start, stop = _index_box(reference, vertices, reach_mm=reach_mm)
        if np.any(stop < start):
            continue
        ii, jj, kk = (np.arange(start[a], stop[a] + 1) for a in range(3))
        grid = np.stack(np.meshgrid(kk, jj, ii, indexing="ij"), -1).reshape(-1, 3)[:, ::-1]
        world = reference.index_to_world(grid.astype(np.float64))
        v = torch.as_tensor(vertices, dtype=torch.float64, device=device)
        f = torch.as_tensor(np.asarray(faces), dtype=torch.int64, device=device)
        bvh = diffsd.MeshBVH(v, f)
        distances = []
        for s in range(0, world.shape[0], chunk_voxels):
            points = torch.as_tensor(
                world[s : s + chunk_voxels], dtype=torch.float64, device=device
            )
            distances.append(
                diffsd.signed_distance(v, f, points, bvh=bvh, refit=False).distance.cpu().numpy()
            )
        distance = np.concatenate(distances).astype(np.float32)
        k, j, i = grid[:, 2], grid[:, 1], grid[:, 0]
        wins = distance < nearest[k, j, i]
        owner[k[wins], j[wins], i[wins]] = int(value)
        nearest[k[wins], j[wins], i[wins]] = distance[wins]
    return owner, nearest
