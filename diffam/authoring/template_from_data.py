"""Build a template set from data: labelled CT masks or surface meshes of several subjects.

Pipeline, per level:

1. **Surfaces.** A label mask becomes a surface by marching cubes
   (:func:`~diffam.authoring.subject_surfaces.surface_from_mask`: scikit-image on the voxel grid, index -> world
   LPS mm through the volume's affine, largest component kept, outward
   orientation, Taubin smoothing); meshes (PLY/STL/OBJ) are read with trimesh.
2. **Common connectivity.** The reference template's mesh of that level (by
   default the shipped ``spine`` set, about 3k vertices, one face array for all
   levels) is aligned to each subject by a similarity ICP
   (:func:`similarity_icp`) and then fitted non-rigidly to the subject's
   surface (:func:`fit_to_surface`): Adam on a low-frequency Laplace-Beltrami
   displacement (:func:`diffam.fit.spectral.laplace_beltrami_basis`) plus a free
   per-vertex displacement, minimising a symmetric squared surface distance
   computed with :mod:`diffsd` (template vertices -> subject mesh, subject
   surface samples -> template mesh), with a Laplacian smoothness and an edge
   length regulariser. Every fitted subject then has the template's vertex
   order: this is the remeshing onto the common connectivity.
3. **Mean shape.** Generalised Procrustes analysis (similarity) of the
   fitted vertex sets; the mean is rescaled to the subjects' mean size and
   rigidly placed on the reference level (so the set keeps anatomical
   position and the reference's local frames).

:func:`build_template_set` runs this for every level and returns a
:class:`~diffam.core.template.TemplateSet` (shared faces, validated);
``scripts/build_template.py`` is the command-line front end.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from scipy.spatial import cKDTree

import diffsd
from diffam.authoring import remesh
from diffam.authoring.subject_surfaces import Mesh
from diffam.authoring.template_metrics import sample_surface, umeyama
from diffam.core.labels import VERSE_IDS
from diffam.core.template import TemplateSet, Vertebra, load_template
from diffam.core.template_checks import TemplateError
from diffam.fit.spectral import laplace_beltrami_basis


# ---------------------------------------------------------------------- alignment
def _apply(sim: tuple[float, np.ndarray, np.ndarray], x: np.ndarray) -> np.ndarray:
    s, r, t = sim
    return s * x @ r.T + t


def _area(v: np.ndarray, f: np.ndarray) -> float:
    return float(0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1).sum())


def similarity_icp(
    src: Mesh,
    dst: Mesh,
    *,
    n_points: int = 3000,
    iters: int = 50,
    scale: bool = True,
    seed: int = 0,
) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (s, R, t) with ``dst ~ s R src + t``: symmetric point-to-point ICP.

    Initialised by matching centroids and surface areas. Both meshes are assumed
    in roughly the same orientation (world LPS); several initial rotations
    (identity and 180-degree flips about each axis) are tried and the one with
    the smallest final residual is kept.
    """
    rng = np.random.default_rng(seed)
    p_src = sample_surface(*src, n_points, rng)
    p_dst = sample_surface(*dst, n_points, rng)
    tree_dst = cKDTree(np.concatenate([p_dst, sample_surface(*dst, 4 * n_points, rng)]))
    s0 = float(np.sqrt(_area(*dst) / _area(*src))) if scale else 1.0
    best, best_err = None, np.inf
    for rot0 in (np.eye(3), np.diag([1.0, -1.0, -1.0]), np.diag([-1.0, 1.0, -1.0]), np.diag([-1.0, -1.0, 1.0])):
        s, rot = s0, rot0
        t = p_dst.mean(0) - s * rot @ p_src.mean(0)
        for _ in range(iters):
            moved = s * p_src @ rot.T + t
            _, j = tree_dst.query(moved)
            _, k = cKDTree(moved).query(p_dst)
            s_n, rot_n, t_n = umeyama(
                np.concatenate([p_src, p_src[k]]), np.concatenate([tree_dst.data[j], p_dst]), scale=scale
            )
            delta = abs(s_n - s) + np.abs(rot_n - rot).max() + np.abs(t_n - t).max()
            s, rot, t = s_n, rot_n, t_n
            if delta < 1e-6:
                break
        moved = s * p_src @ rot.T + t
        err = tree_dst.query(moved)[0].mean() + cKDTree(moved).query(p_dst)[0].mean()
        if err < best_err:
            best, best_err = (s, rot, t), err
        if err < 1.0:  # good enough: skip the other initialisations
            break
    return best


# ---------------------------------------------------------------------- non-rigid fit
@dataclass
class FitOptions:
    """Options of :func:`fit_to_surface`.

    Attributes:
        steps: Adam iterations.
        lr: Adam step, mm per step for the free displacement (spectral coefficients
            use the same step on a basis normalised to unit RMS).
        modes: Laplace-Beltrami modes of the smooth displacement.
        samples: Subject surface points per step (subject -> template term).
        smooth_weight: Weight of the Laplacian (of the free displacement) term.
        edge_weight: Weight of the relative edge-length change term.
        free_from: Fraction of the steps after which the free per-vertex
            displacement is switched on (before: spectral only).
        icp_points: Points per surface of the similarity ICP.
        seed: Random seed.
    """

    steps: int = 300
    lr: float = 0.1
    modes: int = 80
    samples: int = 4000
    smooth_weight: float = 2.0
    edge_weight: float = 0.5
    free_from: float = 0.4
    icp_points: int = 3000
    seed: int = 0


@dataclass
class FitResult:
    """A reference mesh fitted to one subject.

    Attributes:
        vertices: (V, 3) fitted vertices in the subject's world coordinates
            (the reference's vertex order and faces).
        similarity: (s, R, t) of the initial alignment reference -> subject.
        residual: Mean symmetric vertex/sample distance at the end, mm.
    """

    vertices: np.ndarray
    similarity: tuple[float, np.ndarray, np.ndarray]
    residual: float


def _uniform_laplacian(f: np.ndarray, n: int) -> torch.Tensor:
    adj = remesh.vertex_adjacency(f, n)
    deg = np.asarray(adj.sum(1)).ravel()
    lap = (sp.eye(n) - sp.diags(1.0 / np.maximum(deg, 1)) @ adj).tocoo()
    idx = torch.from_numpy(np.vstack([lap.row, lap.col]).astype(np.int64))
    return torch.sparse_coo_tensor(idx, torch.from_numpy(lap.data.astype(np.float32)), (n, n), check_invariants=False).coalesce()


def fit_to_surface(
    reference: Mesh,
    subject: Mesh,
    options: FitOptions | None = None,
    *,
    basis: np.ndarray | None = None,
) -> FitResult:
    """Fit the reference mesh (connectivity kept) to a subject's surface.

    Args:
        reference: (vertices, faces) of the reference level (e.g. the shipped template's).
        subject: (vertices, faces) of the subject's surface, world mm.
        options: :class:`FitOptions`.
        basis: Optional (V, K) displacement basis on the reference (default:
            ``options.modes`` Laplace-Beltrami eigenvectors of the reference).

    Returns:
        :class:`FitResult`.
    """
    opt = options or FitOptions()
    v_ref, f = np.asarray(reference[0], np.float64), np.asarray(reference[1], np.int64)
    v_sub, f_sub = np.asarray(subject[0], np.float64), np.asarray(subject[1], np.int64)
    sim = similarity_icp((v_ref, f), (v_sub, f_sub), n_points=opt.icp_points, seed=opt.seed)
    x0 = _apply(sim, v_ref)
    n = len(x0)
    if basis is None:
        basis = laplace_beltrami_basis(v_ref, f, k=min(opt.modes, n - 2)).eigenvectors
    phi = np.asarray(basis, dtype=np.float64)
    phi = phi / np.sqrt((phi**2).mean(0, keepdims=True))  # unit RMS per mode

    dt = torch.float32
    x0_t = torch.tensor(x0, dtype=dt)
    f_t = torch.tensor(f, dtype=torch.int64)
    phi_t = torch.tensor(phi, dtype=dt)
    vs_t = torch.tensor(v_sub, dtype=dt)
    fs_t = torch.tensor(f_sub, dtype=torch.int64)
    lap = _uniform_laplacian(f, n)
    edges = np.unique(np.sort(f[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1), axis=0)
    e_t = torch.tensor(edges, dtype=torch.int64)
    len0 = (x0_t[e_t[:, 0]] - x0_t[e_t[:, 1]]).norm(dim=1)

    coef = torch.zeros((phi.shape[1], 3), dtype=dt, requires_grad=True)
    free = torch.zeros((n, 3), dtype=dt, requires_grad=True)
    optim = torch.optim.Adam([{"params": [coef], "lr": opt.lr / np.sqrt(phi.shape[1])},
                              {"params": [free], "lr": opt.lr}])
    bvh_sub = diffsd.MeshBVH(vs_t, fs_t)
    bvh_tpl = diffsd.MeshBVH(x0_t, f_t)
    rng = np.random.default_rng(opt.seed)
    start_free = int(opt.free_from * opt.steps)
    resid = float("nan")
    for step in range(opt.steps):
        optim.zero_grad()
        use_free = step >= start_free
        disp = phi_t @ coef + (free if use_free else 0.0)
        x = x0_t + disp
        d1 = diffsd.unsigned_distance(vs_t, fs_t, x, bvh=bvh_sub, refit=False).distance
        pts = torch.tensor(sample_surface(v_sub, f_sub, opt.samples, rng), dtype=dt)
        d2 = diffsd.unsigned_distance(x, f_t, pts, bvh=bvh_tpl).distance
        loss = d1.square().mean() + d2.square().mean()
        if use_free:
            lf = torch.sparse.mm(lap, free)
            loss = loss + opt.smooth_weight * lf.square().sum(1).mean() * 10.0
        ln = (x[e_t[:, 0]] - x[e_t[:, 1]]).norm(dim=1)
        loss = loss + opt.edge_weight * ((ln - len0) / len0).square().mean() * 10.0
        loss.backward()
        optim.step()
        resid = 0.5 * float(d1.detach().mean() + d2.detach().mean())
    with torch.no_grad():
        x = (x0_t + phi_t @ coef + free).double().numpy()
    return FitResult(vertices=x, similarity=sim, residual=resid)


# ---------------------------------------------------------------------- mean shape
def generalized_procrustes(
    shapes: Sequence[np.ndarray], iters: int = 20, tol: float = 1e-7
) -> tuple[np.ndarray, list[tuple[float, np.ndarray, np.ndarray]]]:
    """Generalised Procrustes analysis (similarity) of corresponding vertex sets.

    Args:
        shapes: (V, 3) arrays with the same vertex order.

    Returns:
        mean (V, 3) (centred at the origin, scaled to the shapes' mean centroid size)
        and, per shape, the similarity (s, R, t) mapping it onto the mean.
    """
    shapes = [np.asarray(s, dtype=np.float64) for s in shapes]
    sizes = [np.sqrt(((s - s.mean(0)) ** 2).sum(1).mean()) for s in shapes]
    target_size = float(np.mean(sizes))
    mean = shapes[0] - shapes[0].mean(0)
    mean *= target_size / np.sqrt((mean**2).sum(1).mean())
    sims = []
    for _ in range(iters):
        sims = [umeyama(s, mean, scale=True) for s in shapes]
        new = np.mean([_apply(sim, s) for sim, s in zip(sims, shapes)], axis=0)
        new -= new.mean(0)
        new *= target_size / np.sqrt((new**2).sum(1).mean())
        change = np.abs(new - mean).max()
        mean = new
        if change < tol * target_size:
            break
    sims = [umeyama(s, mean, scale=True) for s in shapes]
    return mean, sims


@dataclass
class LevelModel:
    """Result of :func:`build_level`.

    Attributes:
        level: Level name.
        mean: (V, 3) mean shape, rigidly placed on the reference level.
        faces: (F, 3) the reference's faces.
        fits: Per-subject :class:`FitResult`.
        to_mean: Per-subject similarity mapping the subject's world coordinates
            (its fitted vertices) onto :attr:`mean`.
    """

    level: str
    mean: np.ndarray
    faces: np.ndarray
    fits: list[FitResult]
    to_mean: list[tuple[float, np.ndarray, np.ndarray]] = field(default_factory=list)

    def map_points(self, subject: int, points: np.ndarray) -> np.ndarray:
        """Carry points of one subject (world mm, e.g. landmarks) onto the mean shape.

        Each point is attached to its closest point on the subject's fitted mesh
        (face and barycentric coordinates: the correspondence is the shared
        connectivity); the same barycentric point on the mean, plus the offset
        from the surface carried by the subject's Procrustes similarity.
        """
        pts = np.atleast_2d(np.asarray(points, dtype=np.float64))
        fit = self.fits[subject].vertices
        res = diffsd.unsigned_distance(
            torch.tensor(fit), torch.tensor(self.faces), torch.tensor(pts)
        )
        face = res.closest_face.numpy()
        bary = res.barycentric.numpy()
        on_fit = (bary[:, :, None] * fit[self.faces[face]]).sum(1)
        on_mean = (bary[:, :, None] * self.mean[self.faces[face]]).sum(1)
        s, r, _ = self.to_mean[subject]
        return on_mean + s * (pts - on_fit) @ r.T


def build_level(
    level: str,
    reference: Mesh,
    subjects: Sequence[Mesh],
    options: FitOptions | None = None,
    *,
    verbose: bool = False,
) -> LevelModel:
    """Fit the reference level to every subject and average (see the module docstring)."""
    if not subjects:
        raise ValueError(f"level {level}: no subject surfaces")
    opt = options or FitOptions()
    v_ref, f = np.asarray(reference[0], np.float64), np.asarray(reference[1], np.int64)
    basis = laplace_beltrami_basis(v_ref, f, k=min(opt.modes, len(v_ref) - 2)).eigenvectors
    fits = []
    for i, sub in enumerate(subjects):
        fit = fit_to_surface((v_ref, f), sub, opt, basis=basis)
        if verbose:
            print(f"  {level} subject {i + 1}/{len(subjects)}: residual {fit.residual:.2f} mm", flush=True)
        fits.append(fit)
    mean, sims = generalized_procrustes([ft.vertices for ft in fits])
    # Rigid placement of the mean on the reference level (keeps its size).
    s, r, t = umeyama(mean, v_ref, scale=False)
    mean = _apply((s, r, t), mean)
    to_mean = [(si * 1.0, r @ ri, r @ ti + t) for si, ri, ti in sims]
    return LevelModel(level=level, mean=mean, faces=f.copy(), fits=fits, to_mean=to_mean)


def build_template_set(
    subjects: Mapping[str, Sequence[Mesh]],
    *,
    reference: str | Path | TemplateSet = "spine",
    name: str = "from_data",
    options: FitOptions | None = None,
    eigenmodes: int = 0,
    description: str = "",
    verbose: bool = False,
) -> tuple[TemplateSet, dict[str, LevelModel]]:
    """A template set from subject surfaces, one mean shape per level.

    Args:
        subjects: level name -> list of (vertices, faces) surfaces, world LPS mm.
        reference: Template set (name, path or object) whose level meshes give the
            common connectivity; it must have one shared face array.
        name: Name of the new set.
        options: :class:`FitOptions`.
        eigenmodes: Store this many Laplace-Beltrami eigenpairs of the mean local
            shape in the set (0: none).
        description: Free text for the set.
        verbose: Print progress.

    Returns:
        The validated :class:`TemplateSet` (levels in cranio-caudal order) and
        level -> :class:`LevelModel`.

    Raises:
        TemplateError: The reference lacks a level or shared connectivity, or the
            result fails validation.
    """
    ref = reference if isinstance(reference, TemplateSet) else load_template(reference)
    _ = ref.faces  # shared connectivity required
    order = [lv for lv in VERSE_IDS if lv in subjects]
    unknown = set(subjects) - set(order)
    if unknown:
        raise TemplateError(f"unknown level names {sorted(unknown)}")
    models: dict[str, LevelModel] = {}
    verts = []
    for lv in order:
        try:
            rv = ref.by_level(lv)
        except KeyError as exc:
            raise TemplateError(f"reference template {ref.name!r} has no level {lv}") from exc
        if verbose:
            print(f"{lv}: {len(subjects[lv])} subject(s)", flush=True)
        model = build_level(lv, (rv.vertices, rv.faces), subjects[lv], options, verbose=verbose)
        models[lv] = model
        verts.append(Vertebra(lv, rv.verse_id, model.mean, rv.faces.copy(),
                              None if rv.frame is None else rv.frame.copy()))
    counts = ", ".join(f"{lv}: {len(subjects[lv])}" for lv in order)
    tpl = TemplateSet(
        name=name,
        vertebrae=verts,
        description=description or f"mean shapes built from data ({counts} subjects)",
        source=(
            f"diffam.authoring.template_from_data: connectivity of template {ref.name!r} fitted to each "
            "subject with diffsd, similarity Procrustes mean"
        ),
    )
    if eigenmodes > 0:
        shape = tpl.mean_local_shape() if all(v.frame is not None for v in verts) else verts[0].vertices
        eb = laplace_beltrami_basis(shape, tpl.faces, k=eigenmodes)
        tpl.eigenvalues, tpl.eigenvectors = eb.eigenvalues, eb.eigenvectors
        tpl.eigenbasis_info = {"computed_on": "mean_local_shape", "units": "1/mm^2"}
    tpl.validate()
    return tpl, models
