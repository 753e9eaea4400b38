"""The region of the scan the fit works in: a crop around the spine, resampled.

Fitting needs only the neighbourhood of the template; cropping first keeps
blurred copies and gradients small, and resampling to the processing
spacing (1 mm isotropic, as in the paper) makes the blur schedule and the
sample noise mean the same on every scan.
"""

from __future__ import annotations

import numpy as np

from diffam.core.volume import Volume, resample
from diffam.fit.interpolation import VolumeSampler

#: Spacings closer than this (mm) count as the same grid.
SPACING_TOLERANCE_MM = 1e-3


def crop_to_world_box(volume: Volume, lo_mm: np.ndarray, hi_mm: np.ndarray) -> Volume:
    """The sub-volume whose voxels cover the world box [lo, hi] (LPS mm), clipped to the image.

    Raises:
        ValueError: the box does not overlap the image.
    """
    corners = np.array([[x, y, z] for x in (lo_mm[0], hi_mm[0]) for y in (lo_mm[1], hi_mm[1])
                        for z in (lo_mm[2], hi_mm[2])])
    index = volume.world_to_index(corners)
    size = np.array(volume.shape_ijk)
    start = np.clip(np.floor(index.min(0)).astype(int), 0, size - 1)
    stop = np.clip(np.ceil(index.max(0)).astype(int), 0, size - 1)
    if np.any(index.max(0) < 0) or np.any(index.min(0) > size - 1):
        raise ValueError("the region of the spine template lies outside the scan: check the "
                         "centroids (world LPS mm) against the image's extent")
    array = volume.array[start[2]:stop[2] + 1, start[1]:stop[1] + 1, start[0]:stop[0] + 1]
    origin = volume.index_to_world(start[None].astype(np.float64))[0]
    return Volume(np.ascontiguousarray(array), volume.spacing.copy(), origin,
                  volume.direction.copy(), volume.source)


def processing_volume(volume: Volume, lo_mm: np.ndarray, hi_mm: np.ndarray,
                      spacing_mm: float) -> Volume:
    """Crop to the box and resample to ``spacing_mm`` (0: keep the scan's spacing)."""
    cropped = crop_to_world_box(volume, lo_mm, hi_mm)
    if spacing_mm and spacing_mm > 0:
        fill = float(np.median(cropped.array))
        cropped = resample(cropped, spacing_mm, interpolator="linear", default_value=fill)
    return cropped


def fit_samplers(volume: Volume, lo_mm: np.ndarray, hi_mm: np.ndarray, optim, device):
    """The scan as the fit samples it: the crop at ``optim.processing_spacing_mm``, and
    the same crop at ``optim.fine_spacing_mm`` for the unblurred end of the fit, but
    no finer than the scan's own finest spacing (a finer grid adds no information);
    None when that option is 0 or the result is not finer than the processing grid.

    Both are :class:`diffam.fit.interpolation.VolumeSampler` on ``device``, padded
    with the crop's median (the value of soft tissue, not of air).
    """
    roi = processing_volume(volume, lo_mm, hi_mm, optim.processing_spacing_mm)
    options = {"outside_value": float(np.median(roi.array)),
               "sigma_step_mm": optim.blur_step_mm, "device": device}
    sampler = VolumeSampler.from_volume(roi, **options)
    fine = max(float(optim.fine_spacing_mm), float(np.min(volume.spacing)))
    if optim.fine_spacing_mm <= 0 or fine >= float(np.min(roi.spacing)) - SPACING_TOLERANCE_MM:
        return sampler, None
    return sampler, VolumeSampler.from_volume(processing_volume(volume, lo_mm, hi_mm, fine),
                                              **options)
