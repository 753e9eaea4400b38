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

#: Anti-aliasing Gaussian sigma as a fraction of (working - input spacing).
ANTI_ALIAS_FRACTION = 0.5


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
    # Anti-aliasing before downsampling: a Gaussian of sigma
    # ANTI_ALIAS_FRACTION * (working - input spacing) per axis. On a large
    # scan the mean over whole blocks of voxels that fit in a working voxel
    # goes first (a 512 x 512 x 400 scan shrinks eightfold before any filter
    # runs); the Gaussian then adds only the variance the block mean lacks,
    # so that the working grid is as smooth as with the Gaussian alone (the
    # thresholds downstream, the ribs' above all, were set on that).
    sigma = np.maximum(0.0, ANTI_ALIAS_FRACTION * (spacing_mm - volume.spacing))
    # Only along axes the blocks tile exactly: a block mean that drops a
    # remainder voxel at one end would depend on the voxel order (a scan in
    # RAS and the same scan in LPS would give different working grids).
    shrink = [
        f if n % f == 0 else 1
        for f, n in zip((max(1, int(spacing_mm // s)) for s in volume.spacing), volume.shape_ijk)
    ]
    if max(shrink) > 1:
        image = sitk.BinShrink(image, shrink)
        block_variance = (np.array(shrink) ** 2 - 1) * volume.spacing**2 / 12.0
        sigma = np.sqrt(np.maximum(0.0, sigma**2 - block_variance))
    if image.GetPixelID() != sitk.sitkFloat32:
        image = sitk.Cast(image, sitk.sitkFloat32)
    if sigma.max() > 0:
        image = sitk.SmoothingRecursiveGaussian(image, [max(float(s), 1e-3) for s in sigma])
    out = sitk.Resample(
        image, reference, sitk.Transform(), sitk.sitkLinear, OUTSIDE_HU, sitk.sitkFloat32
    )
    return Volume.from_sitk(out, volume.source)


def grid_to_world(grid: Volume, kji: np.ndarray) -> np.ndarray:
    """Continuous ``(k, j, i)`` array coordinates ``(N, 3)`` of a working grid -> LPS mm."""
    return grid.index_to_world(np.asarray(kji, dtype=np.float64)[..., ::-1])
