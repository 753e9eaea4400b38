"""Compare template vertebrae with reference surfaces: similarity alignment and surface distance.

The reference meshes are only *read* (e.g. ``../shared/data/meshes``), never
stored in the project. Distances are symmetric: points sampled uniformly on each
surface, distance to the other surface, pooled over both directions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

#: Axis conventions of reference files -> a (3, 3) matrix M with lps = M @ file.
AXES_TO_LPS: dict[str, np.ndarray] = {
    # +x anterior, +z superior (right-handed, so +y left): lumbar_mean (Clouthier et al.)
    "x_anterior_z_superior": np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),
    # already LPS (+y posterior, +z superior, +x left): l1_subjects/ref_20.ply
    "LPS": np.eye(3),
}


def load_reference(path: str | Path, axes: str = "LPS") -> tuple[np.ndarray, np.ndarray]:
    """Read a reference surface (STL/PLY through trimesh) and rotate it into LPS.

    Args:
        path: Mesh file.
        axes: Key of :data:`AXES_TO_LPS` describing the file's axes.

    Returns:
        vertices (V, 3) float64 mm (LPS) and faces (F, 3) int64.
    """
    import trimesh

    m = trimesh.load(str(path), force="mesh", process=False)
    v = np.asarray(m.vertices, dtype=np.float64) @ AXES_TO_LPS[axes].T
    return v, np.asarray(m.faces, dtype=np.int64)


def sample_surface(v: np.ndarray, f: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3) points uniformly distributed (by area) on a triangle mesh."""
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    idx = rng.choice(len(f), size=n, p=area / area.sum())
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    return (1 - s)[:, None] * a[idx] + (s * (1 - r2))[:, None] * b[idx] + (s * r2)[:, None] * c[idx]


def umeyama(
    src: np.ndarray, dst: np.ndarray, scale: bool = True
) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity (s, R, t) with ``dst ~ s * R @ src + t`` (Umeyama 1991)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    u, d, vt = np.linalg.svd(cov)
    sgn = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sgn[-1] = -1
    rot = u @ np.diag(sgn) @ vt
    s = float((d * sgn).sum() / (xs**2).sum(1).mean()) if scale else 1.0
    return s, rot, mu_d - s * rot @ mu_s


@dataclass
class SurfaceDistance:
    """Result of :func:`compare_surfaces` (all distances in mm, in the reference's scale).

    Attributes:
        mean: Mean symmetric surface distance.
        p95: 95th percentile of the pooled symmetric distances.
        hausdorff: Maximum of the pooled distances.
        scale: Scale applied to the template by the similarity alignment.
        rotation: (3, 3) rotation of the alignment.
        translation: (3,) translation of the alignment.
    """

    mean: float
    p95: float
    hausdorff: float
    scale: float
    rotation: np.ndarray
    translation: np.ndarray


def _dense_tree(v, f, rng, spacing=0.25):
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1).sum()
    n = int(min(max(area / spacing**2, 20000), 600000))
    pts = sample_surface(v, f, n, rng)
    return cKDTree(np.concatenate([pts, v])), pts


def compare_surfaces(
    v_tpl: np.ndarray,
    f_tpl: np.ndarray,
    v_ref: np.ndarray,
    f_ref: np.ndarray,
    *,
    n_points: int = 20000,
    scale: bool = True,
    iters: int = 60,
    icp_points: int = 4000,
    seed: int = 0,
) -> SurfaceDistance:
    """Align a template surface to a reference by similarity ICP, then measure distances.

    Initialisation: centroids matched, identity rotation (both surfaces in LPS),
    scale from the ratio of surface areas. ICP uses correspondences in both
    directions (template -> reference and reference -> template).

    Args:
        v_tpl, f_tpl: Template mesh (moved), mm.
        v_ref, f_ref: Reference mesh (fixed), mm.
        n_points: Points sampled on each surface for the measurement.
        scale: Allow a scale in the alignment (similarity) or not (rigid).
        iters: Maximum ICP iterations.
        icp_points: Points per surface used by the ICP (a subset of the sampled points).
        seed: Random seed of the sampling.

    Returns:
        :class:`SurfaceDistance`, distances measured after the alignment.
    """
    rng = np.random.default_rng(seed)
    tree_ref, _ = _dense_tree(v_ref, f_ref, rng)
    p_tpl = sample_surface(v_tpl, f_tpl, n_points, rng)
    p_ref = sample_surface(v_ref, f_ref, n_points, rng)

    def area(v, f):
        return (
            0.5
            * np.linalg.norm(
                np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1
            ).sum()
        )

    s = float(np.sqrt(area(v_ref, f_ref) / area(v_tpl, f_tpl))) if scale else 1.0
    rot = np.eye(3)
    t = p_ref.mean(0) - s * p_tpl.mean(0)
    q_tpl, q_ref = p_tpl[:icp_points], p_ref[:icp_points]
    for _ in range(iters):
        moved = s * q_tpl @ rot.T + t
        _, j = tree_ref.query(moved)
        dst1 = tree_ref.data[j]
        _, k = cKDTree(moved).query(q_ref)
        src = np.concatenate([q_tpl, q_tpl[k]])
        dst = np.concatenate([dst1, q_ref])
        s_new, rot_new, t_new = umeyama(src, dst, scale=scale)
        delta = abs(s_new - s) + np.abs(rot_new - rot).max() + np.abs(t_new - t).max()
        s, rot, t = s_new, rot_new, t_new
        if delta < 1e-5:
            break
    v_moved = s * v_tpl @ rot.T + t
    tree_tpl, _ = _dense_tree(v_moved, f_tpl, rng)
    d1, _ = tree_ref.query(s * p_tpl @ rot.T + t)
    d2, _ = tree_tpl.query(p_ref)
    d = np.concatenate([d1, d2])
    return SurfaceDistance(float(d.mean()), float(np.percentile(d, 95)), float(d.max()), s, rot, t)


#: The reference surfaces of ``../shared/data/meshes`` used to measure the shipped lumbar levels.
REFERENCES: dict[str, tuple[str, str]] = {
    "L1": ("l1_subjects/ref_20.ply", "LPS"),
    "L2": ("lumbar_mean/mean_L2.stl", "x_anterior_z_superior"),
    "L3": ("lumbar_mean/mean_L3.stl", "x_anterior_z_superior"),
    "L4": ("lumbar_mean/mean_L4.stl", "x_anterior_z_superior"),
    "L5": ("lumbar_mean/mean_L5.stl", "x_anterior_z_superior"),
}


def measure_template(
    template, meshes_dir: str | Path, levels=None, **kwargs
) -> dict[str, SurfaceDistance]:
    """Surface distance of each lumbar level of a template set to the shared reference meshes.

    Args:
        template: A :class:`diffam.core.template.TemplateSet`.
        meshes_dir: The ``meshes`` folder of the shared data.
        levels: Levels to measure (default: those of :data:`REFERENCES` in the set).
        **kwargs: Passed to :func:`compare_surfaces`.

    Returns:
        level -> :class:`SurfaceDistance`.
    """
    meshes_dir = Path(meshes_dir)
    levels = levels or [lv for lv in REFERENCES if lv in template.levels]
    out = {}
    for lv in levels:
        rel, axes = REFERENCES[lv]
        v_ref, f_ref = load_reference(meshes_dir / rel, axes)
        vert = template.by_level(lv)
        out[lv] = compare_surfaces(vert.vertices, vert.faces, v_ref, f_ref, **kwargs)
    return out
