"""The axial tether: each fitted vertebra stays near its given centroid along the spine.

Given centroids (a VerSe centroid file, a label map's centres) are good to a
millimetre or two along the spine; the localiser's are not. On the chest CT
(2.5 mm slices, thin thoracic discs) the bodies of T4-T7 slide 2-3 mm
superior in most fits (docs/ACCURACY.md, "The chest CT from body centres").
The tether is a dead-zone prior against that: no cost while the vertebra's
centre of the given kind lies within ``free_mm`` of its centroid along the
spine's local axis, quadratic beyond (``losses.tether``).

The centre is the one the centroid names, measured on the fitted mesh itself,
so that a vertebra whose shape differs from the template's is not held off its
bone: the volume centroid of the whole solid for whole-vertebra centroids, of
the solid anterior of the body plane (:func:`diffam.fit.objective.body_face_mask`)
for body centres. Only its axial coordinate is needed, and that is a surface
integral (divergence theorem) over the tracked faces alone: with the field
``F = (x.u)^2 / 2 u`` (divergence ``x.u``) and ``G = (x.u) u`` (divergence 1),
the flux through a cut whose normal is orthogonal to ``u`` vanishes, so the
body's open patch of faces gives its volume and axial moment without a cap.
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
        faces: (F', 3) long, the faces whose enclosed solid's centroid is tracked
            (all faces, or the body's).
        offsets_mm: (M,) placed centre minus the tracked centroid at the start,
            along the axis, mm: what the template's centre of the given kind and
            the tracked centroid differ by (faces straddling the body plane, the
            body centre's own definition).
        free_mm: the dead zone along the axis, mm.
    """

    targets: torch.Tensor
    axes: torch.Tensor
    active: torch.Tensor
    faces: torch.Tensor
    offsets_mm: torch.Tensor
    free_mm: float

    def axial_offsets_mm(self, vertices: torch.Tensor) -> torch.Tensor:
        """(M,) signed offset along the axis of each tracked centre from its target, mm."""
        targets = self.targets.to(vertices.dtype)
        centre = axial_volume_centroid(vertices, self.faces, self.axes.to(vertices.dtype), targets)
        return centre + self.offsets_mm.to(vertices.dtype)


def axial_volume_centroid(vertices: torch.Tensor, faces: torch.Tensor, axes: torch.Tensor,
                          origins: torch.Tensor) -> torch.Tensor:
    """(M,) coordinate along ``axes`` (M, 3), from ``origins`` (M, 3), of the volume
    centroid of the solid that ``faces`` (F, 3) of meshes ``vertices`` (M, V, 3) enclose,
    in the vertices' units.

    Exact for a closed mesh (either orientation); for an open patch, the solid it
    cuts off with a cap whose normals are orthogonal to the axis. A cap tilted by
    ``t`` radians adds about ``t * s^2`` times its area over the volume, ``s`` the
    cap's distance from the origin along the axis: the origins must lie near the
    solids (a world origin 300 mm away made a 1 degree tilt cost centimetres).
    """
    along = torch.einsum("mvc,mc->mv", vertices - origins[:, None, :], axes)
    s = along[:, faces]  # (M, F, 3)
    corners = vertices[:, faces]  # (M, F, 3, 3)
    area_normal = 0.5 * torch.linalg.cross(corners[:, :, 1] - corners[:, :, 0],
                                           corners[:, :, 2] - corners[:, :, 0])
    flux = torch.einsum("mfc,mc->mf", area_normal, axes)
    # The integrals of s and s^2 / 2 over a triangle, s linear: exact vertex formulas.
    volume = (flux * s.sum(2) / 3.0).sum(1)
    pairs = s[..., 0] * s[..., 1] + s[..., 1] * s[..., 2] + s[..., 2] * s[..., 0]
    moment = (flux * ((s * s).sum(2) + pairs) / 12.0).sum(1)
    return moment / volume


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


def build_tether(placed_vertices: np.ndarray, faces: np.ndarray, placed_centres: np.ndarray,
                 targets: np.ndarray, axes: np.ndarray, active, free_mm: float,
                 device: torch.device) -> AxialTether:
    """The tether of vertebrae placed as ``placed_vertices`` (M, V, 3) mm.

    Args:
        faces: (F', 3) the tracked faces (see :class:`AxialTether`).
        placed_centres: (M, 3) where the placement put each template centre of
            the centroids' kind, mm.
        targets: (M, 3) the centroids, mm.
        axes: (M, 3) unit axis of the spine at each (the tangents of the centroid curve).
        active: (M,) which vertebrae are tethered.
    """
    targets64 = torch.as_tensor(np.asarray(targets, np.float64))
    axes64 = torch.as_tensor(np.asarray(axes, np.float64))
    faces = torch.as_tensor(np.asarray(faces, np.int64))
    tracked = axial_volume_centroid(torch.as_tensor(np.asarray(placed_vertices, np.float64)),
                                    faces, axes64, targets64)
    placed = torch.as_tensor(np.asarray(placed_centres, np.float64))
    offsets = ((placed - targets64) * axes64).sum(1) - tracked

    def on_device(tensor):
        return tensor.to(device=device, dtype=torch.float32)

    return AxialTether(on_device(targets64), on_device(axes64),
                       torch.as_tensor(np.asarray(active, bool), device=device),
                       faces.to(device), on_device(offsets), float(free_mm))
