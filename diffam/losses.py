"""The five DiffAM losses (METHOD.md section 2), each a plain function of tensors.

All lengths are in model units (64 mm by default), so the published weights
apply unchanged: ``L = L_I + 0.02 L_E + 0.1 L_N + 1.0 L_O + 0.02 L_V``.
"""

from __future__ import annotations

import torch


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


def overlap_loss(own_distance: torch.Tensor, other_distance: torch.Tensor) -> torch.Tensor:
    """L_O: sum over points and mesh pairs of ``ReLU(-d_a) ReLU(-d_b)``.

    Args:
        own_distance: (N,) signed distance of each point to mesh a.
        other_distance: (N, K) signed distance of the same points to K other
            meshes b (e.g. the neighbours of a); pairs with a == b must not
            be included.
    """
    return (torch.relu(-own_distance)[:, None] * torch.relu(-other_distance)).sum()


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
