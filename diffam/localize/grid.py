"""Resample a scan onto an axis-aligned LPS working grid for spine localisation.

The localisation steps work on a grid whose index axes are the LPS world axes
(``array[k, j, i]`` = (S, P, L)), isotropic, so that "axial slice",
"anterior" (``-j``) and distances in voxels are simple.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from diffam.core.volume import Volume

#: Value outside the scan (air in HU).
OUTSIDE_HU = -1024.0


def to_working_grid(volume: Volume, spacing_mm: float = 2.0) -> Volume:
    """Resample ``volume`` (HU) onto an LPS-aligned isotropic grid covering it.

    Args:
        volume: CT volume in HU, any orientation.
        spacing_mm: voxel size of the working grid in mm.

    Returns:
        A float32 :class:`Volume` with identity direction and ``spacing_mm``
        spacing; outside the input is :data:`OUTSIDE_HU`.
    """
    lo, hi = volume.bounds_world
    size = np.maximum(1, np.round((hi - lo) / spacing_mm)).astype(int)
    reference = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    reference.SetSpacing([float(spacing_mm)] * 3)
    reference.SetOrigin([float(x) for x in lo + spacing_mm / 2])
    reference.SetDirection(np.eye(3).ravel().tolist())
    image = volume.to_sitk()
    # Anti-aliasing before downsampling: first the mean over whole blocks of
    # voxels that fit in the working voxel (cheap on a large scan: a 512 x
    # 512 x 400 scan shrinks eightfold before any filter runs), then a
    # Gaussian for the rest of the way.
    shrink = [max(1, int(spacing_mm // s)) for s in volume.spacing]
    if max(shrink) > 1:
        image = sitk.BinShrink(image, shrink)
    if image.GetPixelID() != sitk.sitkFloat32:
        image = sitk.Cast(image, sitk.sitkFloat32)
    sigma = [max(0.0, 0.5 * (spacing_mm - s)) for s in image.GetSpacing()]
    if max(sigma) > 0:
        image = sitk.SmoothingRecursiveGaussian(image, [max(s, 1e-3) for s in sigma])
    out = sitk.Resample(
        image, reference, sitk.Transform(), sitk.sitkLinear, OUTSIDE_HU, sitk.sitkFloat32
    )
    return Volume.from_sitk(out, volume.source)


def grid_to_world(grid: Volume, kji: np.ndarray) -> np.ndarray:
    """Continuous ``(k, j, i)`` array coordinates ``(N, 3)`` of a working grid -> LPS mm."""
    return grid.index_to_world(np.asarray(kji, dtype=np.float64)[..., ::-1])
