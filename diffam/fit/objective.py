"""The DiffAM objective: the five losses of METHOD.md section 2, registered by name.

Each loss is a plain function of tensors (tested on cases with known
values) plus a :class:`LossTerm` that evaluates it on one iteration's
:class:`StepSamples`. :data:`LOSS_TERMS` is the registry the fit iterates
over; each name is also a field of :class:`~diffam.core.config.LossWeights`
(weight 0 switches the term off). Adding a loss is one function and one term
here plus its weight field.

All lengths are in model units (64 mm by default), so the published weights
apply unchanged: ``L = L_I + 0.02 L_E + 0.1 L_N + 1.0 L_O + 0.02 L_V``; ``view``
(not in the paper) keeps the vertebrae inside the scan's field of view, and
``gap`` (not in the paper) keeps a disc between neighbouring vertebral bodies;
``tether`` (not in the paper, off by default) holds vertebrae with given
centroids near them along the spine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

import diffsd
from diffam.core.mesh_ops import face_normals
from diffam.fit.field_of_view import view_drift_penalty
from diffam.fit.slice_profile import blurred_prediction
from diffam.fit.tether import tether_loss

if TYPE_CHECKING:
    from diffam.fit.model import SpineFit

#: A point whose winding number about the union of all meshes exceeds this
#: may lie inside two of them (the union's winding number is about 2 there, 1
#: inside one mesh); only those points get the per-mesh distances of L_O.
OVERLAP_CANDIDATE_WINDING = 1.25


# ---------------------------------------------------------------------- the losses
def image_loss(predicted: torch.Tensor, target: torch.Tensor,
               mask: torch.Tensor | None = None) -> torch.Tensor:
    """L_I: mean absolute difference of predicted and observed intensity, (N,) each.

    ``mask`` (N,) bool keeps only the samples that carry image data (inside
    the scan's field of view); the mean is over those (0 when there are none).
    """
    if mask is not None:
        if not bool(mask.any()):
            return predicted.sum() * 0.0
        predicted, target = predicted[mask], target[mask]
    return (predicted - target).abs().mean()


def edge_length_loss(vertices: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """L_E: mean squared edge length.

    Args:
        vertices: (M, V, 3) or (V, 3) vertices, model units.
        edges: (E, 2) vertex index pairs shared by all meshes.
    """
    difference = vertices[..., edges[:, 0], :] - vertices[..., edges[:, 1], :]
    return (difference * difference).sum(-1).mean()


def normal_loss(normals: torch.Tensor, image_gradient: torch.Tensor) -> torch.Tensor:
    """L_N: mean of ``exp(-|n . grad I|)`` over surface points.

    Args:
        normals: (N, 3) unit surface normals at the points.
        image_gradient: (N, 3) gradient of the (normalised) image there, per
            model unit of length.
    """
    return torch.exp(-(normals * image_gradient).sum(-1).abs()).mean()


def overlap_loss(distance: torch.Tensor) -> torch.Tensor:
    """L_O: sum over points and mesh pairs a < b of ``ReLU(-d_a) ReLU(-d_b)``.

    Args:
        distance: (M, N) signed distance of N points to each of M meshes.
    """
    depth = torch.relu(-distance)
    return 0.5 * (depth.sum(0) ** 2 - (depth * depth).sum(0)).sum()


def gap_loss(distance_a: torch.Tensor, distance_b: torch.Tensor, gap: float,
             num_points: int) -> torch.Tensor:
    """L_G: ``sum ReLU(gap - d_a - d_b) / num_points`` over (point, neighbour pair) rows.

    A point between two surfaces ``s`` apart (on the line joining them) has
    ``d_a + d_b = s``, so the term is zero once neighbouring vertebrae are at
    least ``gap`` apart: it keeps a disc between their bodies where
    :func:`overlap_loss` only stops them from interpenetrating.

    Args:
        distance_a, distance_b: (P,) signed distances of the same points to the
            two meshes of each pair (model units).
        gap: the least separation, model units.
        num_points: the points the rows were drawn from (the normaliser, so
            that the value does not depend on how many rows are near a gap).
    """
    if distance_a.numel() == 0:
        return distance_a.sum() * 0.0
    return torch.relu(gap - distance_a - distance_b).sum() / max(int(num_points), 1)


def variance_loss(coefficients: torch.Tensor, eigenvalues: torch.Tensor) -> torch.Tensor:
    """L_V: ``sum_m |Lambda^0.5 (U_m - U_{m+1})|^2`` over neighbouring vertebrae.

    Args:
        coefficients: (M, k, 3) spectral coefficients, ordered along the spine.
        eigenvalues: (k,) Laplace--Beltrami eigenvalues (model units^-2).
    """
    if coefficients.shape[0] < 2:
        return coefficients.new_zeros(())
    difference = coefficients[1:] - coefficients[:-1]
    return (eigenvalues.clamp_min(0)[None, :, None] * difference * difference).sum()


# ---------------------------------------------------------------------- one iteration
@dataclass
class StepSamples:
    """What the losses of one iteration share (computed once by the fit).

    Attributes:
        vertices: (M, V, 3) current vertices, mm.
        packed: (M * V, 3) the same, packed for diffsd.
        points: (N, 3) image sample points, mm.
        union: signed distance of ``points`` to the union of all meshes
            (diffsd result), or None when no term needs it.
        target_sampler: the scan, blurred for this iteration.
        surface_points: (S, 3) points on the surface, or None.
        surface_faces: (S,) packed face index of each surface point, or None.
    """

    vertices: torch.Tensor
    packed: torch.Tensor
    points: torch.Tensor
    union: Any
    target_sampler: Any
    surface_points: torch.Tensor | None = None
    surface_faces: torch.Tensor | None = None


@dataclass(frozen=True)
class LossTerm:
    """A registered loss: how to evaluate it and what it needs computed beforehand."""

    name: str
    evaluate: Callable[[SpineFit, StepSamples], torch.Tensor]
    needs_union_distance: bool = False
    needs_surface_samples: bool = False
    #: False when the term cannot apply under this fit's settings (e.g. L_V without modes).
    applies: Callable[[SpineFit], bool] = lambda fit: True


def _image_term(fit: SpineFit, s: StepSamples) -> torch.Tensor:
    if fit.slice_offsets is None:
        with fit.stage_timer("appearance_mlp"):
            predicted = fit.appearance(s.union.distance / fit.unit)
    else:  # the prediction as the scan's thick slices see it (diffam.fit.slice_profile)
        moved = (s.points[None] + fit.slice_offsets[:, None].to(s.points.dtype)).reshape(-1, 3)
        with fit.stage_timer("signed_distance"):
            distance = diffsd.signed_distance(
                s.packed, fit.union_bvh.faces, moved, bvh=fit.union_bvh, refit=False,
                beta=fit.config.optim.winding_beta,
            ).distance.reshape(2, -1)
        with fit.stage_timer("appearance_mlp"):
            predicted = blurred_prediction(fit.appearance, s.union.distance / fit.unit,
                                           distance / fit.unit)
    with torch.no_grad(), fit.stage_timer("image_lookup"):
        observed = fit.appearance.normalize(s.target_sampler.sample(s.points))
    return image_loss(predicted, observed, fit.in_view(s.points))


def _edge_term(fit: SpineFit, s: StepSamples) -> torch.Tensor:
    return edge_length_loss(s.vertices / fit.unit, fit.edges)


def _normal_term(fit: SpineFit, s: StepSamples) -> torch.Tensor:
    normals = face_normals(s.packed, fit.packed_faces)[s.surface_faces]
    surface = s.surface_points
    keep = fit.in_view(surface)  # no image gradient outside the scan
    if keep is not None and bool(keep.any()):
        surface, normals = surface[keep], normals[keep]
    with fit.stage_timer("image_lookup"):
        _, gradient = s.target_sampler.sample_with_gradient(surface)
    # HU per mm -> normalised intensity per model unit.
    gradient = gradient * (fit.unit / fit.appearance.intensity_scale)
    return normal_loss(normals, gradient)


def _overlap_term(fit: SpineFit, s: StepSamples) -> torch.Tensor:
    """Per-mesh distances only for the points that may lie inside two meshes."""
    m = fit.shape.num_meshes
    candidates = s.points[s.union.winding_number > OVERLAP_CANDIDATE_WINDING]
    if m < 2 or candidates.shape[0] == 0:
        return s.packed.new_zeros(())
    repeated = candidates.repeat(m, 1)
    point_mesh = torch.arange(m, device=fit.device).repeat_interleave(candidates.shape[0])
    with fit.stage_timer("signed_distance"):
        distance = diffsd.signed_distance(
            s.packed, fit.mesh_bvh.faces, repeated, point_mesh=point_mesh,
            bvh=fit.mesh_bvh, beta=fit.config.optim.winding_beta,
        ).distance / fit.unit
    return overlap_loss(distance.reshape(m, -1))


def body_face_mask(mean_shape, faces) -> np.ndarray:
    """(F,) bool: the faces of the vertebral body, those anterior of the mean vertex
    (``mean_shape`` (V, 3) in a frame whose +y is posterior: LPS, or a template's
    local frame). Anterior of it lie the body and the roots of the pedicles; the
    arch, the facet joints and the processes lie behind it."""
    mean_shape = np.asarray(mean_shape, dtype=np.float64)
    face_y = mean_shape[np.asarray(faces)][:, :, 1].mean(1)
    return face_y < mean_shape[:, 1].mean()


def _gap_term(fit: SpineFit, s: StepSamples) -> torch.Tensor:
    """Per-mesh distances only for the samples within ``neighbour_gap_mm`` of a vertebral
    body's surface (:attr:`SpineFit.body_faces`), to the neighbours (one level up and
    down) of that vertebra whose box they lie in. The arches are left out: their facet
    joints are narrower than a disc, and on the lumbar VerSe crops a gap there cost
    Dice."""
    gap_mm = float(fit.config.optim.neighbour_gap_mm)
    m = fit.shape.num_meshes
    union = s.union.distance
    face = s.union.closest_face
    near = ((union.detach().abs() < gap_mm) & fit.body_faces[face % fit.num_faces])
    near = near.nonzero().squeeze(1)
    if m < 2 or near.numel() == 0:
        return s.packed.new_zeros(())
    points = s.points[near]
    nearest = torch.div(face[near], fit.num_faces, rounding_mode="floor")
    vertices = s.vertices.detach()
    box_lo, box_hi = vertices.min(1).values - gap_mm, vertices.max(1).values + gap_mm
    rows, partners = [], []
    for step in (-1, 1):
        partner = nearest + step
        ok = (partner >= 0) & (partner < m)
        clamped = partner.clamp(0, m - 1)
        ok &= ((points >= box_lo[clamped]) & (points <= box_hi[clamped])).all(1)
        rows.append(ok.nonzero().squeeze(1))
        partners.append(partner[ok])
    rows, partners = torch.cat(rows), torch.cat(partners)
    if rows.numel() == 0:
        return s.packed.new_zeros(())
    with fit.stage_timer("signed_distance"):
        partner_distance = diffsd.signed_distance(
            s.packed, fit.mesh_bvh.faces, points[rows], point_mesh=partners,
            bvh=fit.mesh_bvh, beta=fit.config.optim.winding_beta,
        ).distance
    return gap_loss(union[near][rows] / fit.unit, partner_distance / fit.unit,
                    gap_mm / fit.unit, s.points.shape[0])


def _view_term(fit: SpineFit, s: StepSamples) -> torch.Tensor:
    """Keeps each vertebra's centre in the scan (:func:`~diffam.fit.field_of_view.view_drift_penalty`)."""
    return view_drift_penalty(s.vertices.mean(1), fit.scan_view, fit.view_floor, fit.unit)


def _tether_term(fit: SpineFit, s: StepSamples) -> torch.Tensor:
    """Holds each vertebra with a given centroid near it along the spine
    (:mod:`diffam.fit.tether`)."""
    tether = fit.tether
    return tether_loss(tether.axial_offsets_mm(s.vertices), tether.active, tether.free_mm,
                       fit.unit)


def _variance_term(fit: SpineFit, s: StepSamples) -> torch.Tensor:
    return variance_loss(fit.shape.coefficients, fit.shape.eigenvalues)


#: Every loss of the objective, by the name of its weight in LossWeights. The
#: weighted sum runs in this order (float addition is not associative, and a
#: fixed order keeps seeded runs repeatable across versions).
LOSS_TERMS: dict[str, LossTerm] = {
    term.name: term
    for term in (
        LossTerm("overlap", _overlap_term, needs_union_distance=True),
        LossTerm("image", _image_term, needs_union_distance=True),
        LossTerm("edge", _edge_term),
        LossTerm("normal", _normal_term, needs_surface_samples=True),
        LossTerm("view", _view_term),
        LossTerm("variance", _variance_term, applies=lambda fit: fit.config.shape.spectral),
        LossTerm("gap", _gap_term, needs_union_distance=True,
                 applies=lambda fit: fit.config.optim.neighbour_gap_mm > 0),
        LossTerm("tether", _tether_term, applies=lambda fit: fit.tether is not None),
    )
}
