"""The axial tether: each fitted vertebra stays near its given centroid along the spine.

Given centroids (a VerSe centroid file, a label map's centres) are good to a
millimetre or two along the spine; the localiser's are not. On the chest CT
(2.5 mm slices, thin thoracic discs) the bodies of T4-T7 slide 2-3 mm
superior in most fits (docs/ACCURACY.md, "The chest CT from body centres").
The tether is a dead-zone prior against that: no cost while the vertebra's
centre of the given kind lies within ``free_mm`` of its centroid along the
spine's local axis, quadratic beyond (``losses.tether``, off by default).

The centre of the given kind is tracked without re-integrating the solid every
iteration: the placed template centre (the point put on the centroid) moves
with the mean of a fixed set of the mesh's vertices: the body's, for
either kind of centroid (the body is what slides, and the mean of all vertices
moves when the processes deform).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class AxialTether:
    """What the tether loss needs, on the fit's device.

    Attributes:
        targets: (M, 3) centroid each vertebra is held to, mm.
        axes: (M, 3) unit cranio-caudal axis of the spine at each vertebra.
        active: (M,) bool: vertebrae with a given centroid (not guards, not
            moved by the pipeline).
        vertex_weights: (V,) weights (summing to 1) of the tracked vertex mean.
        offsets: (M, 3) placed centre minus the tracked vertex mean at the
            start, mm.
        free_mm: the dead zone along the axis, mm.
    """

    targets: torch.Tensor
    axes: torch.Tensor
    active: torch.Tensor
    vertex_weights: torch.Tensor
    offsets: torch.Tensor
    free_mm: float

    def axial_offsets_mm(self, vertices: torch.Tensor) -> torch.Tensor:
        """(M,) signed offset along the axis of each tracked centre from its target, mm."""
        centre = torch.einsum("v,mvc->mc", self.vertex_weights.to(vertices.dtype), vertices)
        centre = centre + self.offsets.to(vertices.dtype)
        return ((centre - self.targets.to(vertices.dtype)) * self.axes.to(vertices.dtype)).sum(1)


def tether_loss(axial_mm: torch.Tensor, active: torch.Tensor, free_mm: float,
                unit_mm: float) -> torch.Tensor:
    """Mean over active vertebrae of ``(ReLU(|a| - free) / unit)^2``, model units.

    Args:
        axial_mm: (M,) offsets along the spine from the given centroids, mm.
        active: (M,) bool, the vertebrae that are tethered.
        free_mm: no cost within this distance, mm.
        unit_mm: the model unit (lengths of the objective are in it).
    """
    if not bool(active.any()):
        return axial_mm.sum() * 0.0
    excess = torch.relu(axial_mm[active].abs() - free_mm) / unit_mm
    return (excess * excess).mean()


def build_tether(placed_vertices: np.ndarray, placed_centres: np.ndarray, targets: np.ndarray,
                 axes: np.ndarray, active, vertex_mask: np.ndarray, free_mm: float,
                 device: torch.device) -> AxialTether:
    """The tether of vertebrae placed as ``placed_vertices`` (M, V, 3) mm.

    Args:
        placed_centres: (M, 3) where the placement put each template centre of
            the centroids' kind, mm.
        targets: (M, 3) the centroids, mm.
        axes: (M, 3) unit axis of the spine at each (the tangents of the centroid curve).
        active: (M,) which vertebrae are tethered.
        vertex_mask: (V,) bool, the vertices whose mean tracks the centre.
    """
    placed_vertices = np.asarray(placed_vertices, np.float64)
    mask = np.asarray(vertex_mask, bool)
    weights = mask / max(mask.sum(), 1)
    offsets = np.asarray(placed_centres, np.float64) - np.einsum("v,mvc->mc", weights,
                                                                placed_vertices)

    def tensor(array):
        return torch.as_tensor(np.asarray(array), dtype=torch.float32, device=device)

    return AxialTether(tensor(targets), tensor(axes),
                       torch.as_tensor(np.asarray(active, bool), device=device),
                       tensor(weights), tensor(offsets), float(free_mm))
