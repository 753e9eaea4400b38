"""Templates built from data: mask surfaces, Procrustes mean, and the mean L1 of ten subjects."""

from __future__ import annotations

import numpy as np
import pytest

from diffam.authoring import template_from_data as tfd
from diffam.authoring.subject_surfaces import load_landmarks, load_mesh, surface_from_mask
from diffam.authoring.template_metrics import compare_surfaces, load_reference
from diffam.core.mesh_ops import genus, signed_volume
from diffam.core.template import TemplateSet


def _torus_mask(shape=(40, 50, 60), r_major=14.0, r_minor=5.0):
    k, j, i = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
    c = [(n - 1) / 2 for n in shape]
    x, y, z = i - c[2], j - c[1], k - c[0]
    return (np.hypot(x, y) - r_major) ** 2 + z**2 <= r_minor**2


def test_surface_from_mask_world_coordinates_and_topology():
    mask = _torus_mask()
    affine = np.eye(4)
    affine[:3, :3] = np.diag([-0.8, 0.9, 1.5])  # a flipped axis: orientation must still be outward
    affine[:3, 3] = [10.0, -20.0, 30.0]
    v, f = surface_from_mask(mask, affine, smooth_iterations=5)
    assert genus(f) == 1
    assert signed_volume(v, f) > 0
    # centre of the torus: index centre mapped through the affine
    centre_ijk = np.array([(60 - 1) / 2, (50 - 1) / 2, (40 - 1) / 2])
    expected = affine[:3, :3] @ centre_ijk + affine[:3, 3]
    assert np.allclose(v.mean(0), expected, atol=0.5)
    vox = abs(np.linalg.det(affine[:3, :3]))
    assert signed_volume(v, f) == pytest.approx(mask.sum() * vox, rel=0.1)


def test_generalized_procrustes_recovers_shape():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(200, 3)) * [10, 5, 2]
    shapes = []
    for s in (0.9, 1.0, 1.2):
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        q *= np.sign(np.linalg.det(q))
        shapes.append(s * base @ q.T + rng.normal(size=3) * 20)
    mean, sims = tfd.generalized_procrustes(shapes)
    s, r, t = tfd.umeyama(base, mean)
    assert np.abs(s * base @ r.T + t - mean).max() < 1e-6
    for sim, shp in zip(sims, shapes):
        assert np.abs(tfd._apply(sim, shp) - mean).max() < 1e-6


@pytest.fixture(scope="module")
def l1_model(shared_data):
    folder = shared_data / "meshes" / "l1_subjects"
    paths = sorted(folder.glob("sub-*_segment_20.ply"))
    if len(paths) != 10:
        pytest.skip(f"expected ten L1 subjects in {folder}, found {len(paths)}")
    subjects = [load_mesh(p) for p in paths]
    landmarks = [load_landmarks(p.with_suffix(".json")) for p in paths]
    tpl, models = tfd.build_template_set({"L1": subjects}, options=tfd.FitOptions(steps=200))
    return folder, tpl, models["L1"], landmarks


@pytest.mark.slow
def test_mean_l1_from_ten_subjects(l1_model, tmp_path):
    folder, tpl, model, landmarks = l1_model
    # a valid, saveable set with the reference's connectivity
    path = tpl.save(tmp_path / "l1.npz")
    back = TemplateSet.load(path)
    assert back.levels == ["L1"] and np.array_equal(back.faces, model.faces)
    assert max(f.residual for f in model.fits) < 0.5  # each subject fitted closely

    v_ref, f_ref = load_reference(folder / "ref_20.ply")
    dist = compare_surfaces(model.mean, model.faces, v_ref, f_ref)
    print(f"mean L1 vs ref_20: mean {dist.mean:.2f} mm, p95 {dist.p95:.2f} mm, scale {dist.scale:.3f}")
    assert dist.mean < 1.5

    ids = sorted(landmarks[0])
    per_subject = np.array(
        [model.map_points(i, np.array([lm[k] for k in ids])) for i, lm in enumerate(landmarks)]
    )  # (subjects, landmarks, 3) on the mean shape
    mapped = per_subject.mean(axis=0)
    # The correspondence: each subject's landmarks, carried onto the mean through
    # the shared connectivity, land within 3 mm of where the others' land
    # (2.6 mm measured; a plain Procrustes of the landmarks alone spreads 3.3 mm).
    spread = np.linalg.norm(per_subject - mapped, axis=2)
    print("landmark spread on the mean (mm):", dict(zip(ids, spread.mean(0).round(2))),
          f"mean {spread.mean():.2f}")
    assert spread.mean() < 3.0

    ref_lm = load_landmarks(folder / "ref_20.json")
    ref = np.array([ref_lm[k] for k in ids])
    moved = dist.scale * mapped @ dist.rotation.T + dist.translation
    err = np.linalg.norm(moved - ref, axis=1)
    print("landmark errors against ref_20 (mm):", dict(zip(ids, err.round(2))), f"mean {err.mean():.2f}")
    # Against ref_20's own landmarks, E and F (superior articular processes) are
    # 8 mm off whatever the correspondence: ref_20 places them wider apart than
    # nine of the ten subjects do (E-F over A-D: 0.62 against 0.34-0.52), so
    # even the plain Procrustes average of the subjects' landmarks misses them.
    # The other eight meet 3 mm; the overall mean is ~3.5 mm.
    ef_over_ad = [np.linalg.norm(lm["E"] - lm["F"]) / np.linalg.norm(lm["A"] - lm["D"])
                  for lm in landmarks]
    ref_ratio = np.linalg.norm(ref_lm["E"] - ref_lm["F"]) / np.linalg.norm(ref_lm["A"] - ref_lm["D"])
    assert ref_ratio > np.median(ef_over_ad) + 0.1
    others = [n for n, k in enumerate(ids) if k not in ("E", "F")]
    assert err[others].mean() < 3.0
    assert err.mean() < 4.0
