"""Centroids: VerSe JSON, CSV, and centres of mass of label maps."""

from __future__ import annotations

import json

import numpy as np
import pytest

from diffam.core.centroids import (
    CentroidError,
    centroids_from_label_map,
    read_centroids,
    read_centroids_csv,
    read_verse_json,
    write_centroids_csv,
    write_verse_json,
)
from diffam.core.image import read_image
from diffam.core.volume import Volume


def lps_volume() -> Volume:
    """4 x 5 x 6 voxels (i, j, k), spacing (1, 2, 3) mm, origin (10, 20, 30), LPS axes."""
    return Volume(np.zeros((6, 5, 4), np.int16), [1.0, 2.0, 3.0], [10.0, 20.0, 30.0])


def write_json(path, entries):
    path.write_text(json.dumps(entries))
    return path


def test_verse_json_pir_on_lps_volume_by_hand(tmp_path):
    vol = lps_volume()
    # LPS index (i, j, k) = (1, 2, 3). In PIR: X runs posterior = +j -> 2;
    # Y runs inferior = -k -> 5 - 3 = 2; Z runs right = -i -> 3 - 1 = 2.
    # And (i, j, k) = (0, 4, 5) -> X = 4, Y = 0, Z = 3.
    path = write_json(
        tmp_path / "ctd.json",
        [
            {"direction": ["P", "I", "R"]},
            {"label": 20, "X": 2.0, "Y": 2.0, "Z": 2.0},
            {"label": 21, "X": 4.0, "Y": 0.0, "Z": 3.0},
        ],
    )
    centroids = read_verse_json(path, vol)
    assert sorted(centroids) == [20, 21]
    np.testing.assert_allclose(centroids[20], [10 + 1, 20 + 4, 30 + 9])
    np.testing.assert_allclose(centroids[21], [10 + 0, 20 + 8, 30 + 15])
    assert read_centroids(path, vol).keys() == centroids.keys()


def test_verse_json_las_and_direction_override(tmp_path):
    vol = lps_volume()
    # LAS: X = i, Y = 4 - j, Z = k.
    path = write_json(tmp_path / "ctd.json", [{"label": 22, "X": 1.0, "Y": 3.0, "Z": 2.5}])
    with pytest.raises(CentroidError, match="direction"):
        read_verse_json(path, vol)
    centroids = read_verse_json(path, vol, direction=["L", "A", "S"])
    np.testing.assert_allclose(centroids[22], [11.0, 22.0, 37.5])


def test_verse_json_on_pir_volume_is_identity(tmp_path):
    pir = Volume(
        np.zeros((6, 5, 4)),
        [1.5, 1.5, 1.5],
        [78.0, 135.0, -34.2],
        [[0, 0, -1], [1, 0, 0], [0, -1, 0]],
    )
    assert pir.orientation_code() == "PIR"
    path = write_json(
        tmp_path / "ctd.json",
        [{"direction": ["P", "I", "R"]}, {"label": "L3", "X": 1.0, "Y": 2.0, "Z": 3.0}],
    )
    centroids = read_verse_json(path, pir)
    np.testing.assert_allclose(centroids[22], pir.index_to_world([1.0, 2.0, 3.0]))


def test_verse_json_round_trip(tmp_path):
    vol = Volume(
        np.zeros((6, 5, 4)),
        [0.8, 1.0, 2.5],
        [-5.0, 3.0, 100.0],
        [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]],
    )
    centroids = {20: vol.index_to_world([1.0, 2.0, 3.0]), 26: vol.index_to_world([2.5, 0.5, 4.0])}
    for code in (("P", "I", "R"), ("L", "P", "S"), ("R", "A", "I")):
        path = write_verse_json(centroids, vol, tmp_path / f"{''.join(code)}.json", direction=code)
        assert json.loads(path.read_text(encoding="utf-8"))[0] == {"direction": list(code)}
        back = read_verse_json(path, vol)
        for label, xyz in centroids.items():
            np.testing.assert_allclose(back[label], xyz, atol=1e-3)


def test_verse_json_errors(tmp_path):
    vol = lps_volume()
    with pytest.raises(CentroidError, match="does not exist"):
        read_verse_json(tmp_path / "none.json", vol)
    bad = tmp_path / "bad.json"
    bad.write_text("label,x\n", encoding="utf-8")
    with pytest.raises(CentroidError, match="not a JSON"):
        read_verse_json(bad, vol)
    code = write_json(tmp_path / "code.json", [{"direction": ["P", "I", "X"]}])
    with pytest.raises(CentroidError, match="orientation code"):
        read_verse_json(code, vol)
    outside = write_json(
        tmp_path / "out.json",
        [{"direction": ["L", "P", "S"]}, {"label": 19, "X": 1.0, "Y": 2.0, "Z": 40.0}],
    )
    with pytest.raises(CentroidError, match=r"label 19 \(T12\).*outside") as info:
        read_verse_json(outside, vol)
    assert "40.0" in str(info.value)


def test_csv_read_write_and_level_names(tmp_path):
    path = tmp_path / "ctd.csv"
    path.write_text("label,x,y,z\nL1,10.5,22,40\n21,11,23,44.5\nsacrum,12,20,31\n", encoding="utf-8")
    centroids = read_centroids_csv(path, lps_volume())
    assert sorted(centroids) == [20, 21, 26]
    np.testing.assert_allclose(centroids[20], [10.5, 22.0, 40.0])
    out = write_centroids_csv(centroids, tmp_path / "out.csv")
    assert out.read_text(encoding="utf-8").splitlines()[0] == "label,x,y,z"
    back = read_centroids(out)
    for label in centroids:
        np.testing.assert_allclose(back[label], centroids[label], atol=1e-4)
    with pytest.raises(FileExistsError, match="overwrite"):
        write_centroids_csv(centroids, out)


def test_csv_errors(tmp_path):
    no_header = tmp_path / "a.csv"
    no_header.write_text("20,1,2,3\n", encoding="utf-8")
    with pytest.raises(CentroidError, match="header"):
        read_centroids_csv(no_header)
    bad_label = tmp_path / "b.csv"
    bad_label.write_text("label,x,y,z\nL9,1,2,3\n", encoding="utf-8")
    with pytest.raises(CentroidError, match="line 2"):
        read_centroids_csv(bad_label)
    outside = tmp_path / "c.csv"
    outside.write_text("label,x,y,z\nL2,0,0,0\n", encoding="utf-8")
    with pytest.raises(CentroidError, match=r"label 21 \(L2\) at LPS \[0\.0, 0\.0, 0\.0\]"):
        read_centroids_csv(outside, lps_volume())
    with pytest.raises(CentroidError, match="unknown centroid format"):
        read_centroids(tmp_path / "c.txt")


def test_centroids_from_label_map_by_hand():
    vol = lps_volume()
    labels = np.zeros(vol.array.shape, np.uint8)
    labels[1:3, 2, 0:2] = 20  # k in {1, 2}, j = 2, i in {0, 1}: index centre (0.5, 2, 1.5)
    labels[5, 4, 3] = 7
    labels[0, 0, 0] = 27  # not a VerSe vertebra id: ignored
    centroids = centroids_from_label_map(vol.with_array(labels))
    assert sorted(centroids) == [7, 20]
    np.testing.assert_allclose(centroids[20], [10.5, 24.0, 34.5])
    np.testing.assert_allclose(centroids[7], [13.0, 28.0, 45.0])
    ts = np.zeros(vol.array.shape, np.uint8)
    ts[1:3, 2, 0:2] = 31  # TotalSegmentator L1
    ts[0, 0, 0] = 5  # liver: ignored
    ts_centroids = centroids_from_label_map(vol.with_array(ts), convention="totalsegmentator")
    assert list(ts_centroids) == [20]
    np.testing.assert_allclose(ts_centroids[20], centroids[20])
    assert centroids_from_label_map(vol) == {}
    with pytest.raises(ValueError, match="convention"):
        centroids_from_label_map(vol, convention="nnunet")


# ---------------------------------------------------------------------- real data
def check_plausible(centroids, vol, spacing_range=(12.0, 45.0)):
    assert centroids
    assert np.all(vol.contains_world(np.stack(list(centroids.values()))))
    ids = sorted(centroids)
    for upper, lower in zip(ids, ids[1:]):
        if lower - upper != 1:
            continue
        # Head is +z in LPS: the vertebra with the smaller id lies higher.
        assert centroids[upper][2] > centroids[lower][2], (upper, lower)
        gap = np.linalg.norm(centroids[upper] - centroids[lower])
        assert spacing_range[0] < gap < spacing_range[1], (upper, lower, gap)


@pytest.mark.shared_data
def test_real_chest_totalsegmentator_centroids(shared_data):
    vol = read_image(shared_data / "ct" / "chest_t1_l2" / "labels_totalsegmentator.nii.gz")
    centroids = centroids_from_label_map(vol, convention="totalsegmentator")
    # TotalSegmentator ids 29 (L3, cut) ... 46 (C5, partial) -> VerSe 22 ... 5.
    assert set(range(7, 22)) <= set(centroids) <= set(range(5, 23))
    check_plausible({k: v for k, v in centroids.items() if 7 <= k <= 21}, vol)


@pytest.mark.shared_data
def test_real_l3_crop_centroids_and_json_round_trip(shared_data, tmp_path):
    vol = read_image(shared_data / "ct" / "l3_crop" / "labels_verse.nii.gz")
    centroids = centroids_from_label_map(vol)
    assert sorted(centroids) == [21, 22, 23]
    check_plausible(centroids, vol, spacing_range=(15.0, 50.0))
    # L3 is complete: its centroid lies well inside the crop.
    assert np.all(vol.contains_world(centroids[22], margin_voxels=-5))
    path = write_verse_json(centroids, vol, tmp_path / "ctd.json")
    back = read_verse_json(path, vol)
    for label in centroids:
        np.testing.assert_allclose(back[label], centroids[label], atol=1e-2)
    # The crop is PIR: the VerSe coordinates are its own voxel indices.
    entries = json.loads(path.read_text(encoding="utf-8"))[1:]
    l3 = next(e for e in entries if e["label"] == 22)
    np.testing.assert_allclose(
        [l3["X"], l3["Y"], l3["Z"]], vol.world_to_index(centroids[22]), atol=1e-3
    )


@pytest.mark.shared_data
def test_real_dicom_labels_centroids_on_dicom_series(shared_data):
    ct = read_image(shared_data / "ct" / "dicom_t11_t12")
    labels = read_image(
        shared_data / "ct" / "dicom_t11_t12_labels" / "labels_totalsegmentator.nii.gz"
    )
    centroids = centroids_from_label_map(labels, convention="totalsegmentator")
    assert {18, 19} <= set(centroids)  # T11, T12
    assert np.all(ct.contains_world(np.stack([centroids[18], centroids[19]])))
    assert centroids[18][2] > centroids[19][2]  # T11 above T12
    # Vertebral bodies are bone: the CT at the centroids is well above soft tissue.
    for label in (18, 19):
        i, j, k = np.rint(ct.world_to_index(centroids[label])).astype(int)
        assert ct.array[k, j, i] > 100, label
