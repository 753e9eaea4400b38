"""Per-vertebra shape model of DiffAM: affine transform plus spectral deformation.

For vertebra m with (placed) template vertices x_m (V, 3), template
centroid c_m, affine A_m (3, 3), translation t_m (3,) and spectral
coefficients U_m (k, 3)::

    v_m = A_m (x_m + Phi U_m - c_m) + c_m + t_m

One Laplace–Beltrami basis Phi (V, k), computed on the average vertebra, is
shared by all vertebrae, so every template has the same vertex count and
connectivity.

Units: internally every position is divided by ``unit_mm`` (64 mm), so the
translations and spectral displacements are parameters of order one; the
model returns world millimetres (LPS). Phi is re-normalised to be
M-orthonormal in model units (see ``basis_unit_mm``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

UNIT_MM = 64.0


@dataclass(frozen=True)
class InitialTransform:
    """Per-vertebra similarity placing each template: ``x' = scale R x + translation``.

    Attributes:
        rotation: (M, 3, 3) rotation matrices.
        translation: (M, 3) translations in mm.
        scale: (M,) isotropic scale factors (dimensionless, > 0).
    """

    rotation: torch.Tensor
    translation: torch.Tensor
    scale: torch.Tensor

    @classmethod
    def from_centroids(cls, template_centroids, target_centroids, rotation=None, scale=None):
        """Similarity that rotates/scales each template about its centroid and moves it to a target.

        Args:
            template_centroids: (M, 3) template centroids, mm.
            target_centroids: (M, 3) where they should go, mm (e.g. the
                vertebra centroids shipped with a data set).
            rotation: (M, 3, 3) rotations, default identity.
            scale: (M,) scales, default 1.
        """
        c = torch.as_tensor(template_centroids, dtype=torch.float64)
        p = torch.as_tensor(target_centroids, dtype=torch.float64)
        if c.ndim != 2 or c.shape[1] != 3 or p.shape != c.shape:
            raise ValueError(
                f"template_centroids {tuple(c.shape)} and target_centroids {tuple(p.shape)} "
                "must both have shape (M, 3)"
            )
        m = c.shape[0]
        r = (
            torch.eye(3, dtype=torch.float64).expand(m, 3, 3)
            if rotation is None
            else torch.as_tensor(rotation, dtype=torch.float64)
        )
        s = (
            torch.ones(m, dtype=torch.float64)
            if scale is None
            else torch.as_tensor(scale, dtype=torch.float64)
        )
        translation = p - s[:, None] * torch.einsum("mij,mj->mi", r, c)
        return cls(rotation=r, translation=translation, scale=s)

    def apply(self, vertices: torch.Tensor) -> torch.Tensor:
        """Place templates: (M, V, 3) mm -> (M, V, 3) mm."""
        r = self.rotation.to(vertices)
        t = self.translation.to(vertices)
        s = self.scale.to(vertices)
        m = vertices.shape[0]
        if r.shape != (m, 3, 3) or t.shape != (m, 3) or s.shape != (m,):
            raise ValueError(
                f"initial_transform: rotation {tuple(r.shape)}, translation {tuple(t.shape)} "
                f"and scale {tuple(s.shape)} must be (M, 3, 3), (M, 3), (M,) with M={m}"
            )
        if not bool((s > 0).all()):
            raise ValueError("initial_transform: scale must be positive")
        return s[:, None, None] * torch.einsum("mij,mvj->mvi", r, vertices) + t[:, None, :]


def _stack_templates(template_vertices) -> torch.Tensor:
    if isinstance(template_vertices, torch.Tensor):
        if template_vertices.ndim != 3 or template_vertices.shape[-1] != 3:
            raise ValueError(
                "template_vertices must be a list of (V, 3) tensors or one "
                f"(M, V, 3) tensor, got shape {tuple(template_vertices.shape)}"
            )
        return template_vertices
    if not isinstance(template_vertices, Sequence) or len(template_vertices) == 0:
        raise ValueError("template_vertices must be a non-empty list of (V, 3) tensors")
    counts = []
    for i, v in enumerate(template_vertices):
        if not isinstance(v, torch.Tensor):
            raise TypeError(
                f"template_vertices[{i}] must be a torch.Tensor, got {type(v).__name__}"
            )
        if v.ndim != 2 or v.shape[1] != 3:
            raise ValueError(f"template_vertices[{i}] must have shape (V, 3), got {tuple(v.shape)}")
        counts.append(v.shape[0])
    if len(set(counts)) != 1:
        raise ValueError(
            "template_vertices: all vertebrae must have the same vertex count (one shared "
            f"eigenbasis on the average vertebra; remesh them to one connectivity), got {counts}"
        )
    return torch.stack(list(template_vertices))


class SpineShapeModel(torch.nn.Module):
    """Deformable spine: M vertebra meshes sharing connectivity and eigenbasis.

    Args:
        template_vertices: M tensors (V, 3) in mm, or one (M, V, 3) tensor.
        faces: (F, 3) shared faces.
        eigenvectors: (V, k) Phi, M-orthonormal on the average vertebra in
            length unit ``basis_unit_mm`` (e.g.
            :func:`diffam.fit.spectral.laplace_beltrami_basis` of the mean mesh in mm).
        eigenvalues: (k,) matching eigenvalues (in 1 / basis_unit_mm**2).
        unit_mm: the model's unit of length, mm (64).
        basis_unit_mm: length unit in which the basis was computed, mm
            (1.0: computed on a mesh in mm).
        initial_transform: optional :class:`InitialTransform` applied to the
            templates once, at construction.
        dtype: floating dtype of parameters and buffers.

    Parameters (all in model units):
        affine: (M, 3, 3), init identity.
        translation: (M, 3), init 0 (``translation * unit_mm`` mm).
        coefficients: (M, k, 3) spectral coefficients U, init 0.

    Buffers:
        template: (M, V, 3) placed templates in model units.
        centroids: (M, 3) template centroids (vertex means) in model units.
        faces: (F, 3); packed_faces: (M F, 3) offset for the packed vertices.
        eigenvectors: (V, k) Phi in model units; eigenvalues: (k,) in
            1 / unit**2.
    """

    def __init__(
        self,
        template_vertices,
        faces: torch.Tensor,
        eigenvectors: torch.Tensor,
        eigenvalues: torch.Tensor,
        unit_mm: float = UNIT_MM,
        basis_unit_mm: float = 1.0,
        initial_transform: InitialTransform | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        if not unit_mm > 0 or not basis_unit_mm > 0:
            raise ValueError(
                f"unit_mm ({unit_mm}) and basis_unit_mm ({basis_unit_mm}) must be positive"
            )
        templates = _stack_templates(template_vertices).to(torch.float64)
        m, v, _ = templates.shape
        faces = torch.as_tensor(faces)
        if faces.ndim != 2 or faces.shape[1] != 3:
            raise ValueError(f"faces must have shape (F, 3), got {tuple(faces.shape)}")
        faces = faces.to(device=templates.device, dtype=torch.int64)
        if faces.numel() and (faces.min() < 0 or faces.max() >= v):
            raise ValueError(f"faces index vertices out of range [0, {v})")
        phi = torch.as_tensor(eigenvectors).to(templates)
        lam = torch.as_tensor(eigenvalues).to(templates)
        if phi.ndim != 2 or phi.shape[0] != v:
            raise ValueError(f"eigenvectors must have shape (V={v}, k), got {tuple(phi.shape)}")
        k = phi.shape[1]
        if lam.shape != (k,):
            raise ValueError(f"eigenvalues must have shape (k={k},), got {tuple(lam.shape)}")
        if initial_transform is not None:
            templates = initial_transform.apply(templates)
        ratio = float(unit_mm) / float(basis_unit_mm)
        self.unit_mm = float(unit_mm)
        template_units = templates / self.unit_mm
        self.register_buffer("template", template_units.to(dtype))
        self.register_buffer("centroids", template_units.mean(1).to(dtype))
        self.register_buffer("faces", faces)
        offsets = (torch.arange(m, device=faces.device) * v).view(m, 1, 1)
        self.register_buffer("packed_faces", (faces.unsqueeze(0) + offsets).reshape(-1, 3))
        self.register_buffer("eigenvectors", (phi * ratio).to(dtype))
        self.register_buffer("eigenvalues", (lam * ratio**2).to(dtype))
        eye = torch.eye(3, dtype=dtype, device=templates.device)
        self.affine = torch.nn.Parameter(eye.repeat(m, 1, 1))
        self.translation = torch.nn.Parameter(torch.zeros(m, 3, dtype=dtype, device=eye.device))
        self.coefficients = torch.nn.Parameter(torch.zeros(m, k, 3, dtype=dtype, device=eye.device))

    @property
    def num_meshes(self) -> int:
        """M, the number of vertebrae."""
        return self.template.shape[0]

    @property
    def num_vertices(self) -> int:
        """V, the vertex count of each vertebra."""
        return self.template.shape[1]

    def displacement(self) -> torch.Tensor:
        """Spectral displacement Phi U_m of each vertebra, (M, V, 3), model units."""
        return torch.einsum("vk,mkc->mvc", self.eigenvectors, self.coefficients)

    def forward_units(self) -> torch.Tensor:
        """Deformed vertices in model units, (M, V, 3)."""
        x = self.template + self.displacement()
        local = x - self.centroids[:, None, :]
        # x + (A - I)(x - c) + t == A (x - c) + c + t, and exactly x at identity.
        eye = torch.eye(3, dtype=self.affine.dtype, device=self.affine.device)
        return (
            x
            + torch.einsum("mij,mvj->mvi", self.affine - eye, local)
            + self.translation[:, None, :]
        )

    def forward(self) -> torch.Tensor:
        """Deformed vertices in world mm, (M, V, 3) (:meth:`packed` flattens them)."""
        return self.forward_units() * self.unit_mm

    @staticmethod
    def packed(vertices: torch.Tensor) -> torch.Tensor:
        """(M, V, 3) per-mesh vertices -> (M V, 3), matching ``packed_faces``."""
        return vertices.reshape(-1, 3)

    def meshes(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per-vertebra (vertices (V, 3) mm, faces (F, 3)) of the current shape."""
        return [(v, self.faces) for v in self.forward().unbind(0)]

    def param_groups(self) -> list[dict]:
        """Optimiser parameter groups ``[{"name": "affine", ...}, {"name": "spectral", ...}]``.

        "affine" holds ``affine`` and ``translation``, "spectral" the
        coefficients; pass them to :class:`diffam.fit.optim.VectorAdam` and set the
        per-frequency scale on "spectral". The appearance MLP's parameters
        form a third group, in its own Adam.
        """
        return [
            {"name": "affine", "params": [self.affine, self.translation]},
            {"name": "spectral", "params": [self.coefficients]},
        ]
