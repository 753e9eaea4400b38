"""The scan's extra blur along its slice axis, applied to the predicted image.

A CT with slices thicker than its pixels sees a surface crossing the slices
(an endplate) through a wide profile: each slice averages its thickness, and
interpolation between slice centres adds a triangle of the slice spacing.
Two endplates with a thin disc between them merge into one bright band. The
appearance model predicts an image from the signed distance alone, sharp in
every direction, so a fit against such a scan cannot put the disc inside the
band and slides the bodies along the spine until its disc lies beside it (the
chest CT's 2.5 mm slices: T1-T10 2-4 mm too high). Blurring the prediction
with the scan's own excess blur along the slice axis compares like with like.

The excess is modelled as a slice box of width ``s`` followed by linear
interpolation between slice centres (variance ``s**2 / 12 + s**2 / 6 =
s**2 / 4``) minus the same for the finest in-plane spacing, and the Gaussian
of that variance is integrated by three-point Gauss-Hermite quadrature.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

#: Three-point Gauss-Hermite quadrature of a unit Gaussian: offsets (in sigma) and weights.
QUADRATURE_OFFSETS = (-math.sqrt(3.0), math.sqrt(3.0))
QUADRATURE_WEIGHTS = (1.0 / 6.0, 1.0 / 6.0)
CENTRE_WEIGHT = 2.0 / 3.0

#: Excess blur below this (mm) is not modelled: the scan counts as isotropic.
MIN_SIGMA_MM = 0.05


@dataclass(frozen=True)
class SliceBlur:
    """Extra blur of the scan along one world direction.

    Attributes:
        axis: (3,) unit LPS direction of the slice axis (the coarsest index axis).
        sigma_mm: standard deviation of the Gaussian, mm.
    """

    axis: np.ndarray
    sigma_mm: float

    def offsets_mm(self) -> np.ndarray:
        """(2, 3) LPS mm offsets of the two outer quadrature points."""
        return np.array([o * self.sigma_mm * self.axis for o in QUADRATURE_OFFSETS])


def slice_blur(spacing_mm, direction, scale: float) -> SliceBlur | None:
    """The excess blur of a scan with ``spacing_mm`` (i, j, k) along its coarsest axis.

    Args:
        spacing_mm: (3,) voxel size, mm, ITK index order.
        direction: (3, 3) LPS direction matrix, columns the index axes.
        scale: multiplies the modelled sigma (0: off).

    Returns:
        The :class:`SliceBlur`, or None for an (almost) isotropic scan or ``scale`` 0.
    """
    spacing = np.asarray(spacing_mm, dtype=np.float64).reshape(3)
    coarse = int(np.argmax(spacing))
    fine = float(np.min(np.delete(spacing, coarse)))
    sigma = float(scale) * math.sqrt(max(spacing[coarse] ** 2 - fine ** 2, 0.0) / 4.0)
    if sigma < MIN_SIGMA_MM:
        return None
    axis = np.asarray(direction, dtype=np.float64).reshape(3, 3)[:, coarse]
    return SliceBlur(axis / np.linalg.norm(axis), sigma)


def blurred_prediction(predict, centre_distance: torch.Tensor, offset_distances: torch.Tensor
                       ) -> torch.Tensor:
    """The quadrature of ``predict`` (signed distance -> intensity) along the slice axis.

    Args:
        predict: maps signed distances (N,) to predicted intensities (N,).
        centre_distance: (N,) signed distance at the samples.
        offset_distances: (2, N) signed distance at the samples moved by
            :meth:`SliceBlur.offsets_mm`.
    """
    n = centre_distance.shape[0]
    values = predict(torch.cat([centre_distance, offset_distances.reshape(-1)]))
    out = CENTRE_WEIGHT * values[:n]
    for index, weight in enumerate(QUADRATURE_WEIGHTS):
        out = out + weight * values[(index + 1) * n:(index + 2) * n]
    return out
