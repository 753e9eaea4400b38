"""Centroid files and make_centroids.py (issue case 10).

Hypothesis writes VerSe JSON and CSV files with random labels and points:
:func:`read_centroids` returns distinct finite points, one per label, or
raises :class:`CentroidError` (duplicates, empty files, two labels at one
point, bad values); never another exception.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diffam.core.centroids import CentroidError, read_centroids
from diffam.core.labels import verse_to_totalsegmentator
from diffam.core.volume import Volume

ROOT = Path(__file__).resolve().parents[2]
VOLUME = Volume(np.zeros((40, 40, 40), np.int16), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0),
                np.eye(3))


def _json(path: Path, entries) -> Path:
    path.write_text(json.dumps([{"direction": ["L", "P", "S"]}, *entries]))
    return path


def test_duplicate_label_in_verse_json_is_refused(tmp_path):
    path = _json(tmp_path / "c.json", [{"label": 20, "X": 10, "Y": 10, "Z": 10},
                                       {"label": 20, "X": 10, "Y": 10, "Z": 30}])
    with pytest.raises(CentroidError, match="label 20 .L1. appears twice"):
        read_centroids(path, VOLUME)


@pytest.mark.parametrize("name, text", [("c.json", '[{"direction": ["L", "P", "S"]}]'),
                                        ("c.csv", "label,x,y,z\n")])
def test_empty_centroid_file_is_refused(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(CentroidError, match="holds no centroid"):
        read_centroids(path, VOLUME)


def test_two_labels_at_one_point_are_refused(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("label,x,y,z\nL1,10,10,10\nL2,10,10,10.2\n")
    with pytest.raises(CentroidError, match="L1 and L2 are 0.2 mm apart"):
        read_centroids(path, VOLUME)


ENTRY = st.fixed_dictionaries({
    "label": st.one_of(st.integers(-2, 30), st.sampled_from(["L1", "T12", "sacrum", "X9", ""])),
    "X": st.one_of(st.floats(-5, 45), st.just(float("nan")), st.text(max_size=3)),
    "Y": st.floats(-5, 45), "Z": st.floats(-5, 45),
})


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.lists(ENTRY, max_size=6), as_csv=st.booleans())
def test_fuzzed_centroid_file_reads_cleanly_or_is_refused(tmp_path, entries, as_csv):
    if as_csv:
        path = tmp_path / "c.csv"
        rows = [f"{e['label']},{e['X']},{e['Y']},{e['Z']}" for e in entries]
        path.write_text("label,x,y,z\n" + "".join(r + "\n" for r in rows), encoding="utf-8")
    else:
        path = _json(tmp_path / "c.json", entries)
    try:
        centroids = read_centroids(path, VOLUME)
    except CentroidError:
        return
    points = np.stack(list(centroids.values()))
    assert len(centroids) == len(entries) and np.all(np.isfinite(points))
    assert all(VOLUME.contains_world(p) for p in points)


# ---------------------------------------------------------------------- make_centroids.py
def make_centroids(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "make_centroids.py"), *args],
                          cwd=cwd, env=env, capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=300)


def _labels() -> np.ndarray:
    array = np.zeros((40, 20, 20), np.uint8)
    array[4:16, 5:15, 5:15] = 20
    array[22:34, 5:15, 5:15] = 21
    return array


@pytest.mark.slow
def test_make_centroids_refuses_cleanly(tmp_path):
    ct = tmp_path / "ct.nii.gz"
    values = np.random.default_rng(0).integers(-1000, 1500, (20, 20, 20)).astype(np.int16)
    sitk.WriteImage(sitk.GetImageFromArray(values), str(ct))
    ts = tmp_path / "ts.nii.gz"
    organs = verse_to_totalsegmentator(_labels(), unmapped="drop").astype(np.uint8)
    organs[0:3] = 5  # an organ
    sitk.WriteImage(sitk.GetImageFromArray(organs), str(ts))
    existing = tmp_path / "c.csv"
    existing.write_text("keep")
    for args, expected in [
        ([f"labels={ct}", "output=o.csv"], "looks like a CT"),
        ([f"labels={ts}", "output=o.csv"], "convention=totalsegmentator"),
        ([f"labels={ts}", f"output={existing}"], "already exists.*overwrite=true"),
        ([f"labels={ts}", "output=o.txt"], "must end in .csv"),
    ]:
        proc = make_centroids(*args, cwd=tmp_path)
        text = proc.stdout + proc.stderr
        assert proc.returncode == 2, text
        assert "Traceback" not in text
        import re

        assert re.search(expected, text), text
    assert existing.read_text() == "keep"
    proc = make_centroids(f"labels={ts}", "convention=totalsegmentator", "output=o.csv",
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o.csv").read_text().count("\n") == 3  # header, L1, L2


@pytest.mark.parametrize("name, data", [
    ("c.csv", b"label,x,y,z\nL1,\xff\xfe,1,1\n"),
    ("c.json", b'[{"label": 20, "X": "\xff", "Y": 1, "Z": 1}]'),
    ("d.json", b"\xff\xfe["),
])
def test_file_that_is_not_utf8_text_is_refused(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(CentroidError):
        read_centroids(path, VOLUME)
