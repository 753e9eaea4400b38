"""Build the shipped template sets from the procedural vertebra model.

Every level shares one connectivity: a single base mesh is polygonised from the
L3 implicit (:func:`base_mesh`) and then carried to every other level by
:func:`morph_mesh`, which walks the measurements from L3 to the target level in
small steps; at each step a thin-plate-spline warp built on the primitives'
control points moves the vertices along, and tangential relaxation with
projection onto the new zero level set keeps them on the surface and evenly
spread. Finally each vertebra is placed in anatomical position along a spine
curve (:func:`spine_frames`).

Regenerate the shipped files with ``python -m diffam.authoring.template_builder`` (writes
``templates/*.npz``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from diffam.authoring import remesh
from diffam.authoring.level_params import level_params
from diffam.authoring.vertebra_sdf import control_points, vertebra_bounds, vertebra_sdf
from diffam.authoring.vertebra_shape import VertebraParams
from diffam.core.anatomy import DISC_BELOW, SAGITTAL_TILT
from diffam.core.labels import STANDARD_LEVELS, VERSE_IDS
from diffam.core.template import TemplateSet, Vertebra
from diffam.core.template_checks import TemplateError, check_mesh

BASE_LEVEL = "L3"


@dataclass(frozen=True)
class BuildOptions:
    """Meshing options.

    Attributes:
        spacing: Marching-cubes grid spacing of the base mesh, mm (sets the vertex count:
            2.4 mm gives about 3,500 vertices for L3).
        base_relax: Relaxation iterations on the base mesh.
        morph_steps_per_mm: Morph steps per mm of the largest control-point displacement.
        relax_per_step: Relaxation iterations after each morph step.
        final_relax: Relaxation iterations at the target shape.
    """

    spacing: float = 2.4
    base_relax: int = 30
    morph_steps_per_mm: float = 0.5
    relax_per_step: int = 3
    final_relax: int = 40


def base_mesh(
    params: VertebraParams, options: BuildOptions = BuildOptions()
) -> tuple[np.ndarray, np.ndarray]:
    """Polygonise one vertebra implicit into an even, genus-1 mesh (local frame).

    Returns:
        vertices (V, 3) float64 mm and faces (F, 3) int64, outward.

    Raises:
        TemplateError: The polygonised surface is not a closed genus-1 2-manifold.
    """
    lo, hi = vertebra_bounds(params)

    def sdf(x):
        return vertebra_sdf(params, x)

    v, f = remesh.polygonise(sdf, lo, hi, options.spacing)
    check_mesh(v, f, genus=1, what="base mesh")
    v = remesh.relax_on_surface(sdf, v, f, iters=options.base_relax)
    return v, f


def _tps_warp(src: np.ndarray, dst: np.ndarray, pts: np.ndarray) -> np.ndarray:
    from scipy.interpolate import RBFInterpolator

    rbf = RBFInterpolator(src, dst - src, kernel="thin_plate_spline", smoothing=1e-3)
    return pts + rbf(pts)


def folded_faces(v: np.ndarray, f: np.ndarray, params: VertebraParams) -> np.ndarray:
    """Boolean (F,) mask of faces whose normal opposes the implicit's gradient (folds)."""
    return remesh.folded_faces(lambda x: vertebra_sdf(params, x), v, f)


def morph_mesh(
    v: np.ndarray,
    f: np.ndarray,
    p_from: VertebraParams,
    p_to: VertebraParams,
    options: BuildOptions = BuildOptions(),
) -> np.ndarray:
    """Carry a mesh of ``p_from``'s surface onto ``p_to``'s surface, keeping connectivity.

    Args:
        v: (V, 3) vertices on the zero set of ``p_from`` (local frame), mm.
        f: (F, 3) faces.
        p_from, p_to: Source and target measurements.
        options: Step counts.

    Returns:
        (V, 3) vertices on the target surface.
    """
    c0, c1 = control_points(p_from), control_points(p_to)
    span = float(np.abs(c1 - c0).max())
    steps = max(1, int(math.ceil(span * options.morph_steps_per_mm)))
    adj = remesh.vertex_adjacency(f, len(v))
    prev = p_from
    for k in range(1, steps + 1):
        cur = p_from.lerp(p_to, k / steps)
        v = _tps_warp(control_points(prev), control_points(cur), v)

        def sdf(x, cur=cur):
            return vertebra_sdf(cur, x)

        v = remesh.project(sdf, v, iters=2)
        v = remesh.relax_on_surface(sdf, v, f, iters=options.relax_per_step, repair=True)
        prev = cur

    def sdf_to(x):
        return vertebra_sdf(p_to, x)

    v = remesh.relax_on_surface(sdf_to, v, f, iters=options.final_relax, repair=True)
    v, n_bad = remesh.untangle(sdf_to, v, f, adj, max_iter=60)
    if n_bad:
        raise TemplateError(f"{n_bad} faces stay inverted after morphing (shapes too different?)")
    return v


def _morph_with_retries(v, f, p_from, p_to, options: BuildOptions, level: str) -> np.ndarray:
    """:func:`morph_mesh`, retried with finer steps and more relaxation when faces stay inverted."""
    last: Exception | None = None
    for factor in (1, 2, 4):
        opts = replace(
            options,
            morph_steps_per_mm=options.morph_steps_per_mm * factor,
            relax_per_step=options.relax_per_step + factor - 1,
        )
        try:
            return morph_mesh(v, f, p_from, p_to, opts)
        except TemplateError as exc:
            last = exc
    raise TemplateError(f"level {level}: {last}")


# --------------------------------------------------------------------- placement
def _rot_x(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def spine_frames(levels: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Rotation (3, 3) and body centre (3,) of every level in world LPS mm.

    The column is stacked upwards from the lowest level, whose body centre is the
    origin: from one body centre to the next go half the body height, the disc
    (:data:`~diffam.core.anatomy.DISC_BELOW`) and half the next body height, along the
    vertebrae's axes, each vertebra tilted in the sagittal plane by
    :data:`~diffam.core.anatomy.SAGITTAL_TILT` (positive: superior end towards anterior,
    -y). C1 is moved forward so that its anterior arch lies in front of the dens of C2.

    Args:
        levels: Level names, any order.

    Returns:
        level -> (R, c) with world = R @ local + c.
    """
    order = sorted(levels, key=lambda lv: VERSE_IDS[lv], reverse=True)  # caudal first
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    centre = np.zeros(3)
    for i, lv in enumerate(order):
        p = level_params(lv)
        rot = _rot_x(SAGITTAL_TILT[lv])
        if i > 0:
            below = order[i - 1]
            pb = level_params(below)
            rot_b, c_b = out[below]
            half_b = 0.25 * (pb.body_height_ant + pb.body_height_post)
            half = 0.25 * (p.body_height_ant + p.body_height_post)
            mid_rot = _rot_x(0.5 * (SAGITTAL_TILT[lv] + SAGITTAL_TILT[below]))
            centre = (
                c_b
                + rot_b @ np.array([0.0, 0.0, half_b])
                + mid_rot @ np.array([0.0, 0.0, DISC_BELOW[lv]])
                + rot @ np.array([0.0, 0.0, half])
            )
            if pb.dens_height > 0:
                # the anterior arch of C1 sits in front of the dens: shift along the axis' y
                y_dens = -0.1 * pb.body_depth - pb.dens_radius - 1.0
                centre = centre + rot_b @ np.array([0.0, y_dens - 0.5 * p.body_depth, 0.0])
        out[lv] = (rot, centre.copy())
    return out


def build_template_set(
    levels: list[str], name: str, options: BuildOptions = BuildOptions(), verbose: bool = False
) -> TemplateSet:
    """Generate a template set for ``levels`` from the measurement tables.

    Args:
        levels: Level names (cranio-caudal order is used in the result).
        name: Name of the set.
        options: Meshing options.
        verbose: Print progress.

    Returns:
        A validated :class:`TemplateSet` with shared connectivity.
    """
    levels = sorted(levels, key=lambda lv: VERSE_IDS[lv])
    p_base = level_params(BASE_LEVEL)
    v0, f = base_mesh(p_base, options)
    if verbose:
        print(f"base mesh {BASE_LEVEL}: {len(v0)} vertices, {len(f)} faces")
    frames = spine_frames(levels)
    local: dict[str, np.ndarray] = {}
    # walk outward from the base level through every level in between, so that each
    # morph starts from the neighbouring level's mesh
    ids = [VERSE_IDS[lv] for lv in levels]
    base_id = VERSE_IDS[BASE_LEVEL]
    for direction in (-1, 1):
        cur_v, cur_p = v0, p_base
        far = min(ids) if direction < 0 else max(ids)
        seq = [
            lv
            for lv in STANDARD_LEVELS
            if (VERSE_IDS[lv] - base_id) * direction >= 0
            and abs(VERSE_IDS[lv] - base_id) <= abs(far - base_id)
        ]
        seq.sort(key=lambda lv: abs(VERSE_IDS[lv] - base_id))
        for lv in seq:
            p = level_params(lv)
            cur_v = _morph_with_retries(cur_v, f, cur_p, p, options, lv) if lv != BASE_LEVEL else v0
            cur_p = p
            bad = folded_faces(cur_v, f, p)
            if bad.any():
                raise TemplateError(f"level {lv}: {int(bad.sum())} folded faces after morphing")
            local[lv] = cur_v
            if verbose and lv in levels:
                q = remesh.triangle_quality(cur_v, f)
                print(f"{lv}: min quality {q.min():.3f}, 1% {np.percentile(q, 1):.3f}")
    vertebrae = []
    for lv in levels:
        rot, c = frames[lv]
        frame = np.eye(4)
        frame[:3, :3], frame[:3, 3] = rot, c
        vertebrae.append(Vertebra(lv, VERSE_IDS[lv], local[lv] @ rot.T + c, f.copy(), frame))
    tpl = TemplateSet(
        name=name,
        vertebrae=vertebrae,
        description=(
            f"Procedural vertebrae {levels[0]}-{levels[-1]} from published measurements, "
            "one shared connectivity, in anatomical position (LPS mm)."
        ),
        source="diffam.authoring.template_builder (measurements: diffam.core.anatomy)",
    )
    tpl.validate()
    return tpl


def write_shipped_templates(folder: Path, *, overwrite: bool = False,
                            verbose: bool = False) -> list[Path]:
    """Regenerate the shipped sets ``spine.npz`` (C1-L5) and ``lumbar.npz`` (L1-L5) in ``folder``.

    Refuses to replace existing files unless ``overwrite``.
    """
    targets = [Path(folder) / "spine.npz", Path(folder) / "lumbar.npz"]
    existing = [str(p) for p in targets if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{', '.join(existing)} exist: pass overwrite=true to replace them")
    spine = build_template_set(list(STANDARD_LEVELS), "spine", verbose=verbose)
    lumbar = spine.subset([f"L{i}" for i in range(1, 6)])
    lumbar.name = "lumbar"
    lumbar.description = spine.description.replace("C1-L5", "L1-L5")
    return [spine.save(targets[0]), lumbar.save(targets[1])]
