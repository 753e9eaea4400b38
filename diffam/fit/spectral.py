"""Laplace–Beltrami eigenbasis of a triangle mesh (cotangent Laplacian, lumped mass).

The generalised eigenproblem ``L phi = lambda M phi`` is solved with

* ``L`` the cotangent Laplacian (stiffness matrix): symmetric, positive
  semi-definite, ``L_ij = -(cot a_ij + cot b_ij) / 2`` for an edge ij with
  opposite angles a_ij, b_ij, and ``L_ii = -sum_j L_ij``;
* ``M`` the diagonal *barycentric* lumped mass matrix: each vertex gets one
  third of the area of its incident triangles.

Eigenvalues are in inverse squared length units of the vertices; the
eigenvectors are M-orthonormal (``Phi^T M Phi = I``), so their entries scale
as 1 / length. On the unit sphere the eigenvalues approximate l (l + 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg
import torch


def _as_numpy_mesh(vertices, faces):
    if isinstance(vertices, torch.Tensor):
        vertices = vertices.detach().cpu().numpy()
    if isinstance(faces, torch.Tensor):
        faces = faces.detach().cpu().numpy()
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must have shape (V, 3), got {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"faces must have shape (F, 3), got {f.shape}")
    if f.size and not np.issubdtype(f.dtype, np.integer):
        raise TypeError(f"faces must hold integers, got dtype {f.dtype}")
    f = f.astype(np.int64, copy=False)
    if f.size and (f.min() < 0 or f.max() >= v.shape[0]):
        raise ValueError("faces index vertices out of range")
    if not np.all(np.isfinite(v)):
        raise ValueError("vertices must be finite")
    return v, f


def cotangent_laplacian(vertices, faces, max_cotangent: float = 1e3) -> sp.csr_matrix:
    """Cotangent Laplacian (stiffness) matrix, symmetric positive semi-definite.

    Degenerate triangles are tolerated: the cross-product norm in
    ``cot = (e1 . e2) / |e1 x e2|`` is floored and the cotangents are clamped
    to ``[-max_cotangent, max_cotangent]``.

    Args:
        vertices: (V, 3) array or tensor, any length unit.
        faces: (F, 3) integer array or tensor.
        max_cotangent: clamp of each cotangent (dimensionless, > 0).

    Returns:
        (V, V) scipy.sparse CSR matrix, rows summing to zero (dimensionless).
    """
    if not max_cotangent > 0:
        raise ValueError(f"max_cotangent must be positive, got {max_cotangent}")
    v, f = _as_numpy_mesh(vertices, faces)
    n = v.shape[0]
    rows, cols, vals = [], [], []
    for k in range(3):
        i, j, o = f[:, (k + 1) % 3], f[:, (k + 2) % 3], f[:, k]
        e1, e2 = v[i] - v[o], v[j] - v[o]
        dot = (e1 * e2).sum(1)
        cross = np.linalg.norm(np.cross(e1, e2), axis=1)
        scale = np.maximum((e1 * e1).sum(1), (e2 * e2).sum(1))
        cross = np.maximum(cross, 1e-12 * np.maximum(scale, np.finfo(np.float64).tiny))
        w = 0.5 * np.clip(dot / cross, -max_cotangent, max_cotangent)
        rows += [i, j]
        cols += [j, i]
        vals += [-w, -w]
    rows, cols, vals = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    off = sp.coo_matrix((vals, (rows, cols)), shape=(n, n)).tocsr()
    diag = -np.asarray(off.sum(axis=1)).ravel()
    return (off + sp.diags(diag)).tocsr()


def lumped_mass(vertices, faces, min_relative: float = 1e-8) -> np.ndarray:
    """Barycentric lumped mass: one third of the incident triangle areas per vertex.

    Args:
        vertices: (V, 3) array or tensor.
        faces: (F, 3) integer array or tensor.
        min_relative: floor on each mass relative to the mean mass, so that
            vertices with only degenerate (or no) triangles keep M positive
            definite.

    Returns:
        (V,) float64 masses in squared vertex units.
    """
    v, f = _as_numpy_mesh(vertices, faces)
    area = 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1)
    mass = np.zeros(v.shape[0])
    for k in range(3):
        np.add.at(mass, f[:, k], area / 3.0)
    mean = mass.mean() if mass.size else 0.0
    if not mean > 0:
        raise ValueError("faces: the mesh has zero total area")
    return np.maximum(mass, min_relative * mean)


@dataclass(frozen=True)
class SpectralBasis:
    """Laplace–Beltrami eigenpairs of a mesh.

    Attributes:
        eigenvalues: (k,) ascending, in inverse squared vertex units
            (the first ~0, for the constant eigenvector).
        eigenvectors: (V, k) Phi, M-orthonormal: ``Phi^T diag(mass) Phi = I``.
        mass: (V,) lumped mass (squared vertex units).
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    mass: np.ndarray

    def as_tensors(self, dtype: torch.dtype = torch.float64, device=None):
        """(eigenvalues (k,), eigenvectors (V, k), mass (V,)) as torch tensors."""
        return tuple(
            torch.as_tensor(a, dtype=dtype, device=device)
            for a in (self.eigenvalues, self.eigenvectors, self.mass)
        )


def _m_orthonormalise(phi: np.ndarray, mass: np.ndarray) -> np.ndarray:
    """Re-orthonormalise the columns of phi in the M inner product (Cholesky)."""
    gram = phi.T @ (mass[:, None] * phi)
    chol = np.linalg.cholesky(0.5 * (gram + gram.T))
    return scipy.linalg.solve_triangular(chol, phi.T, lower=True).T


def _fix_signs(phi: np.ndarray) -> np.ndarray:
    """Deterministic signs: the entry of largest magnitude of each column is positive."""
    idx = np.argmax(np.abs(phi), axis=0)
    signs = np.sign(phi[idx, np.arange(phi.shape[1])])
    signs[signs == 0] = 1.0
    return phi * signs


def laplace_beltrami_basis(
    vertices,
    faces,
    k: int,
    sigma: float | None = None,
    method: str = "auto",
    max_cotangent: float = 1e3,
) -> SpectralBasis:
    """The k lowest Laplace–Beltrami eigenpairs: ``L phi = lambda M phi``.

    Args:
        vertices: (V, 3) array or tensor (any length unit; eigenvalues come out
            in its inverse square).
        faces: (F, 3) integer array or tensor.
        k: number of eigenpairs, 1 <= k <= V.
        sigma: shift of the shift-invert mode; None picks a slightly negative
            value relative to the mesh's spectrum (so ``L - sigma M`` is
            positive definite).
        method: "sparse" (``eigsh``, shift-invert), "dense" (``scipy.linalg.eigh``)
            or "auto" (dense when k >= V - 1, where eigsh cannot be used).
        max_cotangent: cotangent clamp, see :func:`cotangent_laplacian`.

    Returns:
        :class:`SpectralBasis`, eigenvalues ascending, eigenvectors
        M-orthonormal with deterministic signs.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if method not in ("auto", "sparse", "dense"):
        raise ValueError(f"method must be 'auto', 'sparse' or 'dense', got {method!r}")
    lap = cotangent_laplacian(vertices, faces, max_cotangent=max_cotangent)
    mass = lumped_mass(vertices, faces)
    n = mass.size
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, V={n}], got {k}")
    if method == "auto":
        method = "dense" if k >= n - 1 else "sparse"
    if method == "sparse" and k >= n - 1:
        raise ValueError(f"k={k}: method='sparse' needs k < V - 1 (V={n}); use 'dense'")
    if method == "dense":
        evals, phi = scipy.linalg.eigh(lap.toarray(), np.diag(mass))
        evals, phi = evals[:k], phi[:, :k]
    else:
        if sigma is None:
            # Mean of the diagonal of M^-1 L: the scale of the spectrum.
            sigma = -1e-6 * float(np.mean(lap.diagonal() / mass))
        v0 = np.random.default_rng(0).standard_normal(n)
        evals, phi = scipy.sparse.linalg.eigsh(
            lap, k=k, M=sp.diags(mass).tocsc(), sigma=sigma, which="LM", v0=v0
        )
    order = np.argsort(evals)
    evals, phi = evals[order], phi[:, order]
    phi = _fix_signs(_m_orthonormalise(phi, mass))
    return SpectralBasis(eigenvalues=evals, eigenvectors=phi, mass=mass)


def project_onto_basis(displacement, eigenvectors, mass):
    """Spectral coefficients of a vertex field: ``U = Phi^T M D``.

    Works on NumPy arrays or torch tensors (all three of the same kind).

    Args:
        displacement: (V, C) field D (e.g. C = 3 displacements).
        eigenvectors: (V, k) M-orthonormal Phi.
        mass: (V,) lumped mass.

    Returns:
        (k, C) coefficients U; ``Phi @ U`` is the M-orthogonal projection of
        D onto the span of Phi (exact for k = V).
    """
    if displacement.shape[0] != eigenvectors.shape[0] or mass.shape[0] != eigenvectors.shape[0]:
        raise ValueError(
            f"displacement {tuple(displacement.shape)}, eigenvectors {tuple(eigenvectors.shape)} "
            f"and mass {tuple(mass.shape)} must share the vertex count V"
        )
    return eigenvectors.T @ (mass[:, None] * displacement)


def reconstruct_from_basis(coefficients, eigenvectors):
    """Vertex field from spectral coefficients: ``D = Phi U``, (V, C) from (k, C)."""
    if coefficients.shape[0] != eigenvectors.shape[1]:
        raise ValueError(
            f"coefficients {tuple(coefficients.shape)} must have k={eigenvectors.shape[1]} rows"
        )
    return eigenvectors @ coefficients
