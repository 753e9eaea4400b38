"""Template set format: round trip, loader, validation errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from diffam.core.labels import STANDARD_LEVELS, VERSE_IDS
from diffam.core.mesh_ops import genus
from diffam.core.template import TemplateSet, Vertebra, available_templates, load_template
from diffam.core.template_checks import TemplateError, check_mesh


def torus(
    R: float = 20.0, r: float = 7.0, n: int = 24, m: int = 12
) -> tuple[np.ndarray, np.ndarray]:
    """A closed, outward, genus-1 torus around z (stand-in vertebra with a foramen)."""
    u = np.linspace(0, 2 * np.pi, n, endpoint=False)
    w = np.linspace(0, 2 * np.pi, m, endpoint=False)
    uu, ww = np.meshgrid(u, w, indexing="ij")
    v = np.stack(
        [(R + r * np.cos(ww)) * np.cos(uu), (R + r * np.cos(ww)) * np.sin(uu), r * np.sin(ww)], -1
    )
    idx = np.arange(n * m).reshape(n, m)
    a, b = idx, np.roll(idx, -1, 0)
    c, d = np.roll(b, -1, 1), np.roll(a, -1, 1)
    faces = np.concatenate(
        [np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)]
    )
    return v.reshape(-1, 3), faces.astype(np.int64)


def small_set(levels=("L1", "L2", "L3")) -> TemplateSet:
    v, f = torus()
    verts = [Vertebra(lv, VERSE_IDS[lv], v + [0, 0, -40.0 * i], f) for i, lv in enumerate(levels)]
    return TemplateSet(name="toy", vertebrae=verts, description="tori", source="test")


def test_torus_fixture_is_valid():
    v, f = torus()
    check_mesh(v, f, genus=1)
    assert genus(f) == 1


def test_round_trip(tmp_path):
    tpl = small_set()
    tpl.eigenvalues = np.arange(4, dtype=float)
    tpl.eigenvectors = np.random.default_rng(0).normal(size=(len(tpl.vertebrae[0].vertices), 4))
    tpl.eigenbasis_info = {"laplacian": "cotangent"}
    path = tpl.save(tmp_path / "toy")
    assert path.suffix == ".npz"
    back = load_template(path)
    assert (
        back.name == "toy" and back.levels == ["L1", "L2", "L3"] and back.verse_ids == [20, 21, 22]
    )
    assert back.units == "mm" and back.axes == "LPS" and back.source == "test"
    assert back.shared_connectivity
    for a, b in zip(tpl, back):
        np.testing.assert_array_equal(a.vertices, b.vertices)
        np.testing.assert_array_equal(a.faces, b.faces)
        assert b.vertices.dtype == np.float64 and b.faces.dtype == np.int64
    np.testing.assert_array_equal(back.eigenvectors, tpl.eigenvectors)
    assert back.eigenbasis_info == {"laplacian": "cotangent"}
    meta = json.loads(str(np.load(path)["metadata"][()]))
    assert meta["format_version"] == 1 and meta["levels"] == ["L1", "L2", "L3"]


def test_access_helpers():
    tpl = small_set()
    assert tpl.by_level("L2").verse_id == 21
    assert tpl.by_level(22).level == "L3"
    with pytest.raises(KeyError):
        tpl.by_level("T4")
    cents = tpl.centroids()
    assert set(cents) == {20, 21, 22}
    np.testing.assert_allclose(cents[21], [0, 0, -40.0], atol=1e-9)
    sub = tpl.subset(["L3", "L1"])
    assert sub.levels == ["L1", "L3"]
    assert tpl.stacked_vertices().shape == (3, len(tpl.vertebrae[0].vertices), 3)
    assert tpl.faces.shape[1] == 3


def test_per_level_faces_round_trip(tmp_path):
    tpl = small_set()
    v, f = torus(n=20, m=10)
    tpl.vertebrae[1] = Vertebra("L2", 21, v, f)
    assert not tpl.shared_connectivity
    with pytest.raises(TemplateError, match="share one connectivity"):
        tpl.validate()
    tpl.validate(require_shared_connectivity=False)
    path = tpl.save(tmp_path / "mixed.npz")
    back = TemplateSet.load(path, validate=False)
    assert len(back.by_level("L2").vertices) == len(v)


def _write(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_malformed_files(tmp_path):
    good = small_set().save(tmp_path / "good.npz")
    arrays = dict(np.load(good))
    with pytest.raises(TemplateError, match="not a readable"):
        (tmp_path / "junk.npz").write_bytes(b"not a zip")
        load_template(tmp_path / "junk.npz")
    with pytest.raises(TemplateError, match="metadata"):
        load_template(
            _write(tmp_path / "nometa.npz", **{k: v for k, v in arrays.items() if k != "metadata"})
        )
    with pytest.raises(TemplateError, match="not valid JSON"):
        load_template(_write(tmp_path / "badjson.npz", **{**arrays, "metadata": np.array("{oops")}))
    with pytest.raises(TemplateError, match="missing array 'vertices_L2'"):
        load_template(
            _write(
                tmp_path / "novert.npz", **{k: v for k, v in arrays.items() if k != "vertices_L2"}
            )
        )
    meta = json.loads(str(arrays["metadata"][()]))
    with pytest.raises(TemplateError, match="format_version"):
        bad = {**meta, "format_version": 99}
        load_template(
            _write(tmp_path / "v99.npz", **{**arrays, "metadata": np.array(json.dumps(bad))})
        )
    with pytest.raises(TemplateError, match="unknown level name"):
        bad = {**meta, "levels": ["L1", "X9", "L3"]}
        arr = {
            **arrays,
            "metadata": np.array(json.dumps(bad)),
            "vertices_X9": arrays["vertices_L2"],
        }
        load_template(_write(tmp_path / "lvl.npz", **arr))
    with pytest.raises(TemplateError, match="VerSe id"):
        bad = {**meta, "verse_ids": [20, 21, 5]}
        load_template(
            _write(tmp_path / "ids.npz", **{**arrays, "metadata": np.array(json.dumps(bad))})
        )
    with pytest.raises(TemplateError, match=r"\(V, 3\)"):
        load_template(
            _write(
                tmp_path / "shape.npz", **{**arrays, "vertices_L1": arrays["vertices_L1"][:, :2]}
            )
        )
    with pytest.raises(FileNotFoundError):
        load_template(tmp_path / "absent.npz")
    with pytest.raises(FileNotFoundError, match="built-in"):
        load_template("no_such_template_name")


def test_mesh_errors():
    v, f = torus()
    with pytest.raises(TemplateError, match="not closed"):
        check_mesh(v, f[1:])
    with pytest.raises(TemplateError, match="negative"):
        check_mesh(v, f[:, ::-1])
    with pytest.raises(TemplateError, match="orientation"):
        g = f.copy()
        g[0] = g[0, ::-1]
        check_mesh(v, g)
    with pytest.raises(TemplateError, match="genus 1, expected 0"):
        check_mesh(v, f, genus=0)
    with pytest.raises(TemplateError, match="out of range"):
        check_mesh(v, np.where(f == 0, len(v), f))
    with pytest.raises(TemplateError, match="degenerate"):
        g = f.copy()
        g[0, 1] = g[0, 0]
        check_mesh(v, g)
    with pytest.raises(TemplateError, match="finite"):
        w = v.copy()
        w[0, 0] = np.nan
        check_mesh(w, f)
    # two tori: 2 components
    v2 = np.concatenate([v, v + 100.0])
    f2 = np.concatenate([f, f + len(v)])
    with pytest.raises(TemplateError, match="2 connected components"):
        check_mesh(v2, f2)
    # two tori glued at one vertex: closed and edge-manifold, but a non-manifold vertex
    second = np.where(f == 0, 0, f + len(v) - 1)
    f3 = np.concatenate([f, second])
    v3 = np.concatenate([v, (v + [2 * 27.0, 0, 0])[1:]])
    with pytest.raises(TemplateError, match="non-manifold vertices"):
        check_mesh(v3, f3, genus=None)


def test_set_level_errors():
    tpl = small_set()
    tpl.vertebrae[1].level = "L9"
    with pytest.raises(TemplateError, match="unknown level name 'L9'"):
        tpl.validate()
    tpl = small_set(("L1", "L1"))
    with pytest.raises(TemplateError, match="twice"):
        tpl.validate()
    tpl = small_set()
    tpl.units = "cm"
    with pytest.raises(TemplateError, match="units"):
        tpl.validate()


def test_level_tables():
    assert len(STANDARD_LEVELS) == 24
    assert [VERSE_IDS[lv] for lv in STANDARD_LEVELS] == list(range(1, 25))


def test_builtin_lumbar_loads():
    assert "lumbar" in available_templates()
    tpl = load_template("lumbar")
    assert tpl.levels == ["L1", "L2", "L3", "L4", "L5"]
    assert tpl.shared_connectivity


def test_frames_round_trip_and_mean_shape(tmp_path):
    tpl = small_set()
    for i, v in enumerate(tpl.vertebrae):
        fr = np.eye(4)
        fr[:3, 3] = [0.0, 0.0, -40.0 * i]
        v.frame = fr
    back = load_template(tpl.save(tmp_path / "framed.npz"))
    np.testing.assert_allclose(back.by_level("L2").frame, tpl.by_level("L2").frame)
    # the tori are translated copies: the mean local shape is the torus itself
    np.testing.assert_allclose(back.mean_local_shape(), torus()[0], atol=1e-9)
    bad = small_set()
    bad.vertebrae[0].frame = np.diag([1.0, 1.0, -1.0, 1.0])
    with pytest.raises(TemplateError, match="proper rotation"):
        bad.validate()
    with pytest.raises(TemplateError, match="no local frame"):
        small_set().vertebrae[0].local_vertices()
