"""Refine the procedural vertebra's measurements against a reference surface.

Used offline to produce :data:`diffam.authoring.level_params.LUMBAR_FIT`: the parameters of
:class:`~diffam.authoring.vertebra_shape.VertebraParams` and a similarity pose are fitted
by non-linear least squares so that the model's implicit approximates the
reference's signed distance in a band around both surfaces. The literature
values act as a Gaussian prior (measured quantities tightly, primitive sizes
loosely), so the fit refines rather than replaces the measurements, and the
overall scale of the reference (a free similarity scale) does not leak into
the parameters.

Only the fitted parameter values are kept; the reference meshes are not stored.

Run ``python -m diffam.authoring.template_fit --meshes ../shared/data/meshes`` to print
the table.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from diffam.authoring import remesh
from diffam.authoring.level_params import level_params
from diffam.authoring.template_metrics import (
    REFERENCES,
    compare_surfaces,
    load_reference,
    sample_surface,
)
from diffam.authoring.vertebra_sdf import vertebra_bounds, vertebra_sdf
from diffam.authoring.vertebra_shape import VertebraParams
from diffam.core.anatomy import MEASURED

#: Parameters that are not fitted (absent at lumbar levels, or purely numerical).
FIXED = ("dens_height", "dens_radius", "uncinate_height", "spinous_bifid", "canal_exponent")
ANGLES = (
    "pedicle_angle",
    "lamina_slope",
    "spinous_angle",
    "transverse_angle",
    "transverse_rise",
    "facet_angle",
)


def _prior_sigma(name: str, value: float, measured: bool) -> float:
    if name in ANGLES:
        return 8.0 if measured else 15.0
    if name in ("body_exponent", "canal_triangle", "body_waist"):
        return {"body_exponent": 0.6, "canal_triangle": 0.3, "body_waist": 0.05}[name]
    rel = 0.08 if measured else 0.3
    return max(rel * abs(value), 1.0 if measured else 2.0)


def _mesh(p: VertebraParams, spacing: float = 1.5):
    lo, hi = vertebra_bounds(p)
    return remesh.polygonise(lambda x: vertebra_sdf(p, x), lo, hi, spacing)


def fit_level(
    level: str,
    v_ref: np.ndarray,
    f_ref: np.ndarray,
    *,
    rounds: int = 1,
    n_points: int = 2000,
    band: float = 1.5,
    prior_weight: float = 10.0,
    max_nfev: int = 20,
    seed: int = 0,
    verbose: bool = False,
) -> tuple[dict[str, float], float]:
    """Fit the parameters of one level to a reference surface (LPS, mm).

    Args:
        level: Level name (its literature values are the start and the prior).
        v_ref, f_ref: Reference mesh.
        rounds: Outer rounds (each re-meshes the model to sample its surface).
        n_points: Points sampled on each surface per round.
        band: Offset (mm) of the band samples along the normals.
        prior_weight: Weight of the literature prior against the data residuals (one
            standard deviation of one parameter costs as much as ``prior_weight**2``
            data points off by 1 mm).
        max_nfev: Evaluations of the least-squares solver per round.
        seed: Random seed.
        verbose: Print progress.

    Returns:
        The fitted parameters that differ from the literature values (rounded to
        0.1), and the final mean symmetric surface distance (mm, similarity aligned).
    """
    rng = np.random.default_rng(seed)
    p0 = level_params(level, fitted=False)
    names = [f.name for f in fields(VertebraParams) if f.name not in FIXED]
    x_lit = np.array([getattr(p0, n) for n in names])
    measured = set(MEASURED[level])
    sig = np.array([_prior_sigma(n, v, n in measured) for n, v in zip(names, x_lit)])
    # bounds: measured quantities within +-15 % (angles +-10 deg) of the literature,
    # primitive sizes within a factor 0.5-2 (angles +-30 deg)
    is_m = np.isin(names, list(measured))
    is_a = np.isin(names, ANGLES)
    lo_b = np.where(is_m, 0.85 * x_lit, np.maximum(0.5 * x_lit, 0.5))
    hi_b = np.where(is_m, 1.15 * x_lit, np.maximum(2.0 * x_lit, 4.0))
    lo_b = np.where(is_a, x_lit - np.where(is_m, 10.0, 30.0), lo_b)
    hi_b = np.where(is_a, x_lit + np.where(is_m, 10.0, 30.0), hi_b)
    for i, n in enumerate(names):  # signed offsets
        if n in ("pedicle_z", "lamina_z", "transverse_z"):
            lo_b[i], hi_b[i] = x_lit[i] - 10.0, x_lit[i] + 10.0
    lo_b = np.minimum(lo_b, x_lit - 1e-6)
    hi_b = np.maximum(hi_b, x_lit + 1e-6)

    def params_of(x):
        d = p0.to_dict()
        d.update(dict(zip(names, x)))
        return VertebraParams(**d)

    # initial similarity: reference -> model local frame, from an ICP of the literature model
    vm, fm = _mesh(p0)
    al = compare_surfaces(vm, fm, v_ref, f_ref, n_points=4000)
    # ref ~ s R model + t  =>  model = R^T (ref - t) / s
    rot0 = al.rotation.T
    pose0 = np.concatenate(
        [
            Rotation.from_matrix(rot0).as_rotvec(),
            -rot0 @ al.translation / al.scale,
            [np.log(1.0 / al.scale)],
        ]
    )
    x = np.concatenate([x_lit, pose0])
    ref_tree = cKDTree(sample_surface(v_ref, f_ref, 200000, rng))
    # reference normals for signing distances of model points
    fn = remesh.face_normals(v_ref, f_ref)
    cen = v_ref[f_ref].mean(axis=1)
    cen_tree = cKDTree(cen)

    def ref_signed_distance(pts):
        d, _ = ref_tree.query(pts)
        _, j = cen_tree.query(pts)
        sgn = np.sign(((pts - cen[j]) * fn[j]).sum(axis=1))
        return d * np.where(sgn == 0, 1.0, sgn)

    score = np.inf
    for rnd in range(rounds):
        # samples: reference surface and band (in reference coordinates, signed distance known)
        ps = sample_surface(v_ref, f_ref, n_points, rng)
        _, j = cen_tree.query(ps)
        nr = fn[j]
        ref_pts = np.concatenate([ps, ps + band * nr, ps - band * nr])
        ref_d = np.concatenate(
            [np.zeros(n_points), np.full(n_points, band), np.full(n_points, -band)]
        )
        # model surface samples (model frame), their reference distance computed per evaluation
        pm = params_of(x[: len(names)])
        vm, fm = _mesh(pm)
        mod_pts = sample_surface(vm, fm, n_points, rng)

        def residuals(z, ref_pts=ref_pts, ref_d=ref_d, mod_pts=mod_pts):
            p = params_of(z[: len(names)])
            rot = Rotation.from_rotvec(z[len(names) : len(names) + 3]).as_matrix()
            t = z[len(names) + 3 : len(names) + 6]
            s = np.exp(z[-1])
            q = s * ref_pts @ rot.T + t  # reference samples in the model frame
            r1 = vertebra_sdf(p, q) - s * ref_d
            # model samples moved onto the current zero set (one Newton step), to the reference frame
            d_m, g_m = remesh.sdf_gradient(lambda y: vertebra_sdf(p, y), mod_pts)
            ym = mod_pts - (d_m / np.maximum((g_m**2).sum(1), 1e-6))[:, None] * g_m
            back = ((ym - t) / s) @ rot
            r2 = s * ref_signed_distance(back)
            prior = (z[: len(names)] - x_lit) / sig
            return np.concatenate([r1, r2, prior_weight * prior])

        x_lo = np.concatenate([lo_b, x[len(names) :] - [0.5, 0.5, 0.5, 15, 15, 15, 0.5]])
        x_hi = np.concatenate([hi_b, x[len(names) :] + [0.5, 0.5, 0.5, 15, 15, 15, 0.5]])
        res = least_squares(
            residuals,
            np.clip(x, x_lo + 1e-9, x_hi - 1e-9),
            bounds=(x_lo, x_hi),
            loss="soft_l1",
            f_scale=1.5,
            max_nfev=max_nfev,
            x_scale="jac",
        )
        x = res.x
        pm = params_of(x[: len(names)])
        vm, fm = _mesh(pm)
        score = compare_surfaces(vm, fm, v_ref, f_ref, n_points=8000).mean
        if verbose:
            print(f"{level} round {rnd}: cost {res.cost:.1f}, mean surface distance {score:.2f} mm")
    fitted = {
        n: round(float(v), 1)
        for n, v, v0 in zip(names, x[: len(names)], x_lit)
        if abs(v - v0) >= 0.05
    }
    return fitted, score


def main() -> None:  # pragma: no cover - offline tool
    ap = argparse.ArgumentParser(description="fit lumbar parameters to reference surfaces")
    ap.add_argument("--meshes", type=Path, required=True, help="the shared data 'meshes' folder")
    ap.add_argument("--levels", nargs="*", default=list(REFERENCES))
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    out = {}
    for lv in args.levels:
        rel, axes = REFERENCES[lv]
        v, f = load_reference(args.meshes / rel, axes)
        out[lv], score = fit_level(lv, v, f, rounds=args.rounds, verbose=True)
        print(f'    "{lv}": {out[lv]!r},  # mean surface distance {score:.2f} mm', flush=True)


if __name__ == "__main__":  # pragma: no cover
    main()
