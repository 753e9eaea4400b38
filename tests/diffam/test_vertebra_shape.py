"""Procedural vertebrae, the template builder and the shipped template sets."""

from __future__ import annotations

import numpy as np
import pytest

from diffam.authoring import remesh
from diffam.authoring.level_params import level_params
from diffam.authoring.template_builder import BuildOptions, base_mesh, morph_mesh, spine_frames
from diffam.authoring.vertebra_sdf import body_sdf, canal_sdf, vertebra_bounds, vertebra_sdf
from diffam.authoring.vertebra_shape import VertebraParams
from diffam.core.labels import STANDARD_LEVELS, VERSE_IDS
from diffam.core.mesh_ops import genus, signed_volume
from diffam.core.template import load_template


def test_every_level_has_parameters():
    assert len(STANDARD_LEVELS) == 24
    for lv in STANDARD_LEVELS:
        p = level_params(lv)
        assert isinstance(p, VertebraParams)
        assert np.all(np.isfinite(p.as_array()))
    # body size grows caudally (Panjabi 1991, 1992)
    widths = [level_params(lv).body_width for lv in ("C3", "T1", "T6", "T12", "L3", "L5")]
    assert widths == sorted(widths)
    with pytest.raises(KeyError, match="no measurements"):
        level_params("L7")


def test_params_vector_round_trip():
    p = level_params("T7")
    q = VertebraParams.from_array(p.as_array())
    assert q == p
    mid = p.lerp(level_params("T8"), 0.5)
    assert mid.body_width == pytest.approx(0.5 * (p.body_width + level_params("T8").body_width))


@pytest.mark.parametrize("level", ["C1", "C2", "C5", "T6", "L3"])
def test_implicit_is_a_vertebra(level):
    p = level_params(level)
    # body in front of the canal, canal open (outside the solid), body solid
    canal_centre = np.array([[0.0, 0.5 * p.body_depth + 0.5 * p.canal_depth, 0.0]])
    assert canal_sdf(p, canal_centre)[0] < 0
    assert vertebra_sdf(p, canal_centre)[0] > 0
    assert vertebra_sdf(p, np.zeros((1, 3)))[0] < 0
    assert body_sdf(p, np.zeros((1, 3)))[0] < 0
    lo, hi = vertebra_bounds(p)
    v, f = remesh.polygonise(lambda x: vertebra_sdf(p, x), lo, hi, 1.5)
    assert genus(f) == 1
    assert signed_volume(v, f) > 0


def test_morph_keeps_connectivity_and_orientation():
    opts = BuildOptions(spacing=3.5, base_relax=5, final_relax=5)
    p3, p4 = level_params("L3"), level_params("L4")
    v, f = base_mesh(p3, opts)
    w = morph_mesh(v, f, p3, p4, opts)
    assert w.shape == v.shape
    assert not remesh.folded_faces(lambda x: vertebra_sdf(p4, x), w, f).any()
    d = vertebra_sdf(p4, w)
    assert np.abs(d).max() < 0.1  # vertices lie on the target surface


def test_spine_frames_stack_the_levels():
    frames = spine_frames(list(STANDARD_LEVELS))
    z = [frames[lv][1][2] for lv in STANDARD_LEVELS]
    assert all(a > b for a, b in zip(z[:-1], z[1:]))  # cranial above caudal
    assert frames["L5"][1] == pytest.approx(np.zeros(3))
    # centre-to-centre distance = half heights + disc, to within the tilt's effect
    for up, lo in (("L3", "L4"), ("T6", "T7"), ("C4", "C5")):
        dist = np.linalg.norm(frames[up][1] - frames[lo][1])
        pu, pl = level_params(up), level_params(lo)
        expect = 0.25 * (
            pu.body_height_ant + pu.body_height_post + pl.body_height_ant + pl.body_height_post
        )
        assert expect < dist < expect + 15.0
    for rot, _ in frames.values():
        np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)


@pytest.mark.parametrize(
    "name, levels", [("spine", list(STANDARD_LEVELS)), ("lumbar", ["L1", "L2", "L3", "L4", "L5"])]
)
def test_shipped_templates(name, levels):
    tpl = load_template(name)  # validates: closed, manifold, oriented, genus 1, shared faces
    assert tpl.levels == levels
    assert tpl.verse_ids == [VERSE_IDS[lv] for lv in levels]
    assert tpl.shared_connectivity
    n_v = len(tpl.vertebrae[0].vertices)
    assert 2000 <= n_v <= 5000
    cents = tpl.centroids()
    zs = [cents[VERSE_IDS[lv]][2] for lv in levels]
    assert all(a > b for a, b in zip(zs[:-1], zs[1:]))
    for vert in tpl:
        assert genus(vert.faces) == 1
        assert vert.volume() > 0
        q = remesh.triangle_quality(vert.vertices, vert.faces)
        assert q.min() > 0.0 and np.percentile(q, 5) > 0.15
    # neighbouring vertebrae are 10-60 mm apart (body height + disc)
    gaps = [
        np.linalg.norm(cents[VERSE_IDS[a]] - cents[VERSE_IDS[b]])
        for a, b in zip(levels[:-1], levels[1:])
    ]
    assert 10.0 < min(gaps) and max(gaps) < 60.0


def test_lumbar_is_a_subset_of_spine():
    spine, lumbar = load_template("spine"), load_template("lumbar")
    np.testing.assert_array_equal(spine.faces, lumbar.faces)
    for lv in lumbar.levels:
        np.testing.assert_allclose(spine.by_level(lv).vertices, lumbar.by_level(lv).vertices)


@pytest.mark.slow
def test_shipped_lumbar_against_reference_shapes(shared_data):
    """Mean symmetric surface distance (similarity-aligned) of the shipped L1-L5 to the open
    reference surfaces: L2-L5 vs the lumbar mean shapes, L1 vs the L1 reference."""
    from diffam.authoring.template_metrics import measure_template

    res = measure_template(load_template("lumbar"), shared_data / "meshes")
    for lv, r in res.items():
        print(
            f"{lv}: mean {r.mean:.2f} mm, p95 {r.p95:.2f} mm, Hausdorff {r.hausdorff:.1f} mm, scale {r.scale:.3f}"
        )
    assert set(res) == {"L1", "L2", "L3", "L4", "L5"}
    for lv, r in res.items():
        assert r.mean < 2.0, f"{lv}: mean surface distance {r.mean:.2f} mm"


@pytest.mark.slow
def test_regenerated_lumbar_matches_shipped():
    """The shipped files are in sync with the generator (deterministic rebuild)."""
    from diffam.authoring.template_builder import build_template_set

    built = build_template_set(["L1", "L2", "L3", "L4", "L5"], "lumbar")
    shipped = load_template("lumbar")
    np.testing.assert_array_equal(built.faces, shipped.faces)
    for lv in shipped.levels:
        np.testing.assert_allclose(
            built.by_level(lv).vertices, shipped.by_level(lv).vertices, atol=1e-6
        )
