"""The scan's field of view during the fit: which points carry image data.

Points outside the scan carry no information. The fit therefore

* leaves samples outside the box of voxel centres out of the image and
  normal losses (they would otherwise be fitted to the padding value), and
* keeps each vertebra from running off into the region without data: the
  depth of its centre inside the field of view may not fall below the
  smaller of its initial depth and ``view_margin_mm``
  (:func:`view_drift_penalty`).

Depth is the signed distance (mm) of a point to the faces of the box of
voxel centres, positive inside, computed in index space and scaled by the
spacing (exact for axis-aligned grids, a close bound for oblique ones).
"""

from __future__ import annotations

import numpy as np
import torch


class FieldOfView:
    """The box of voxel centres of a grid, for in-view tests and depths of world points.

    Args:
        world_to_index: (4, 4) LPS mm -> continuous index (i, j, k).
        shape_ijk: voxels along i, j, k.
        spacing: (3,) mm along i, j, k.
        device: where the tests run.
    """

    def __init__(self, world_to_index, shape_ijk, spacing, device="cpu"):
        self.matrix = torch.as_tensor(np.asarray(world_to_index, dtype=np.float64),
                                      device=device)
        self.size = torch.as_tensor(np.asarray(shape_ijk, dtype=np.float64), device=device)
        self.spacing = torch.as_tensor(np.asarray(spacing, dtype=np.float64), device=device)

    @classmethod
    def of_volume(cls, volume, device="cpu") -> FieldOfView:
        """The field of view of a :class:`diffam.core.image.Volume`."""
        return cls(volume.world_to_index_affine, volume.shape_ijk, volume.spacing, device)

    @classmethod
    def of_sampler(cls, sampler) -> FieldOfView:
        """The field of view of a :class:`diffam.fit.interpolation.VolumeSampler`."""
        nz, ny, nx = sampler.volume.shape
        return cls(sampler.world_to_index.cpu().numpy(), (nx, ny, nz), sampler.spacing,
                   sampler.device)

    def depth(self, points: torch.Tensor) -> torch.Tensor:
        """(N,) signed distance (mm) of (N, 3) LPS mm points to the box faces, > 0 inside."""
        m = self.matrix.to(points.dtype)
        index = points @ m[:3, :3].T + m[:3, 3]
        size, spacing = self.size.to(points.dtype), self.spacing.to(points.dtype)
        to_low = index * spacing
        to_high = (size - 1.0 - index) * spacing
        return torch.minimum(to_low, to_high).min(dim=-1).values

    def outside_along_axes(self, points: torch.Tensor) -> torch.Tensor:
        """(N, 3) bool: the points lie beyond a face of the box across index axis i, j, k."""
        m = self.matrix.to(points.dtype)
        index = points.detach() @ m[:3, :3].T + m[:3, 3]
        size = self.size.to(points.dtype)
        return (index < -1e-6) | (index > size - 1.0 + 1e-6)

    def inside(self, points: torch.Tensor, margin_mm: float = 0.0) -> torch.Tensor:
        """(N,) bool: the points lie inside the box of voxel centres (shrunk by ``margin_mm``)."""
        return self.depth(points.detach()) >= margin_mm - 1e-6


def view_drift_penalty(centres: torch.Tensor, fov: FieldOfView, floor_mm: torch.Tensor,
                       unit_mm: float) -> torch.Tensor:
    """Sum over vertebrae of ``ReLU(floor - depth(centre))^2`` in model units.

    Args:
        centres: (M, 3) current vertebra centres, mm (differentiable).
        fov: the scan's field of view.
        floor_mm: (M,) the least depth allowed per vertebra, mm.
        unit_mm: the model unit of length.
    """
    shortfall = torch.relu(floor_mm.to(centres) - fov.depth(centres)) / unit_mm
    return (shortfall * shortfall).sum()
