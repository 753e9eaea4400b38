"""Smoothed, watertight surfaces of a label map, one per vertebra, in world LPS mm.

For 3D printing and simulation (``export.label_surfaces`` ->
``surfaces/<level>.stl``): marching cubes on the vertebra's mask, lightly
blurred (Gaussian of ``smoothing_mm``) and padded so that every surface is
closed, then mapped from voxel indices to world LPS mm through the scan's
spacing, direction and origin, with outward normals.
"""

from __future__ import annotations

import numpy as np

from diffam.core.volume import Volume


def label_surface(mask: np.ndarray, volume: Volume, *, smoothing_mm: float = 0.5
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Closed surface of a binary mask.

    Args:
        mask: bool ``(Z, Y, X)`` on ``volume``'s grid.
        volume: gives the geometry (spacing, direction, origin).
        smoothing_mm: standard deviation (mm) of the Gaussian blur before the
            0.5 iso-surface; 0 keeps the voxel staircase.

    Returns:
        ``(vertices (N, 3) float64 LPS mm, faces (M, 3) int64)``, outward
        winding; empty arrays for an empty mask.
    """
    from scipy import ndimage
    from skimage.measure import marching_cubes

    if not mask.any():
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    pad = 2 + int(np.ceil(3 * smoothing_mm / volume.spacing.min()))
    box = ndimage.find_objects(mask.astype(np.uint8))[0]
    crop = np.pad(mask[box].astype(np.float32), pad)
    if smoothing_mm > 0:
        crop = ndimage.gaussian_filter(crop, smoothing_mm / volume.spacing[::-1])
    verts_kji, faces, _, _ = marching_cubes(crop, level=0.5)
    offset = np.array([s.start for s in box]) - pad
    vertices = volume.index_to_world((verts_kji + offset)[:, ::-1])
    faces = faces.astype(np.int64)
    if _signed_volume(vertices, faces) < 0:
        faces = faces[:, ::-1].copy()
    return vertices, faces


def _signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    a, b, c = (vertices[faces[:, n]] for n in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)
