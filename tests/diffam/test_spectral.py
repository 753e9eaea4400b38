"""Tests of diffam.fit.spectral: cotangent Laplacian, mass, eigenbasis, projection."""

import numpy as np
import pytest
import torch

from diffam.core.mesh_ops import face_areas
from diffam.fit.spectral import (
    cotangent_laplacian,
    laplace_beltrami_basis,
    lumped_mass,
    project_onto_basis,
    reconstruct_from_basis,
)
from diffsd.primitives import icosphere, torus


def _assert_m_orthonormal(basis, atol=1e-8):
    phi, m = basis.eigenvectors, basis.mass
    np.testing.assert_allclose(phi.T @ (m[:, None] * phi), np.eye(phi.shape[1]), atol=atol)


def test_laplacian_symmetric_psd_rows_sum_zero():
    v, f = icosphere(2)
    lap = cotangent_laplacian(v, f)
    assert abs(lap - lap.T).max() < 1e-12
    np.testing.assert_allclose(np.asarray(lap.sum(1)).ravel(), 0.0, atol=1e-10)
    assert np.linalg.eigvalsh(lap.toarray()).min() > -1e-10
    area = face_areas(v, f).sum().item()
    assert lumped_mass(v, f).sum() == pytest.approx(area, rel=1e-12)


def test_sphere_eigenvalues_l_l_plus_1():
    v, f = icosphere(3)
    basis = laplace_beltrami_basis(v, f, 16)
    expected = np.array([0] + [2] * 3 + [6] * 5 + [12] * 7, dtype=float)
    assert abs(basis.eigenvalues[0]) < 1e-8
    np.testing.assert_allclose(basis.eigenvalues[1:], expected[1:], rtol=0.03)
    assert np.all(np.diff(basis.eigenvalues) >= -1e-9)
    _assert_m_orthonormal(basis)
    # First eigenvector is constant.
    phi0 = basis.eigenvectors[:, 0]
    np.testing.assert_allclose(phi0, phi0.mean(), rtol=1e-6)


def test_torus_m_orthonormal():
    v, f = torus(major_segments=32, minor_segments=16)
    basis = laplace_beltrami_basis(v, f, 30)
    _assert_m_orthonormal(basis)
    assert abs(basis.eigenvalues[0]) < 1e-8 and basis.eigenvalues[1] > 1e-3


def test_full_basis_reconstruction_exact():
    v, f = icosphere(1)  # 42 vertices
    n = v.shape[0]
    basis = laplace_beltrami_basis(v, f, n)
    assert basis.eigenvectors.shape == (n, n)
    _assert_m_orthonormal(basis)
    d = np.random.default_rng(0).standard_normal((n, 3))
    u = project_onto_basis(d, basis.eigenvectors, basis.mass)
    np.testing.assert_allclose(reconstruct_from_basis(u, basis.eigenvectors), d, atol=1e-9)
    # Torch tensors work the same way.
    lam, phi, mass = basis.as_tensors()
    dt = torch.from_numpy(d)
    assert torch.allclose(
        reconstruct_from_basis(project_onto_basis(dt, phi, mass), phi), dt, atol=1e-9
    )


def test_sparse_and_dense_agree_and_scale():
    v, f = icosphere(2)
    sparse = laplace_beltrami_basis(v, f, 10, method="sparse")
    dense = laplace_beltrami_basis(v, f, 10, method="dense")
    np.testing.assert_allclose(sparse.eigenvalues, dense.eigenvalues, atol=1e-8)
    # Eigenvalues scale as 1 / length**2.
    scaled = laplace_beltrami_basis(v * 64.0, f, 10)
    np.testing.assert_allclose(scaled.eigenvalues[1:] * 64.0**2, sparse.eigenvalues[1:], rtol=1e-6)


def test_degenerate_triangles_are_tolerated():
    v, f = icosphere(2)
    v = v.clone()
    # Collapse one edge onto a point: zero-area triangles, infinite cotangents.
    a, b = int(f[0, 0]), int(f[0, 1])
    v[b] = v[a]
    basis = laplace_beltrami_basis(v, f, 10)
    assert np.all(np.isfinite(basis.eigenvalues)) and np.all(np.isfinite(basis.eigenvectors))
    _assert_m_orthonormal(basis, atol=1e-6)
    assert abs(basis.eigenvalues[0]) < 1e-6


def test_bad_input():
    v, f = icosphere(0)
    with pytest.raises(ValueError, match="k"):
        laplace_beltrami_basis(v, f, 0)
    with pytest.raises(ValueError, match="k"):
        laplace_beltrami_basis(v, f, 13)
    with pytest.raises(ValueError, match="method"):
        laplace_beltrami_basis(v, f, 3, method="qr")
    with pytest.raises(ValueError, match="vertices"):
        laplace_beltrami_basis(v[:, :2], f, 3)
    with pytest.raises(ValueError, match="faces"):
        laplace_beltrami_basis(v, f + 100, 3)
