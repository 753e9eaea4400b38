"""Clinical outputs read back: labels.seg.nrrd (3D Slicer), statistics.json/.csv, label surfaces.

The run's result is the synthetic two-vertebra result of ``test_outputs``
(no fit runs); files are read back with independent readers: ``pynrrd``
and ``slicerio`` (the readers Slicer users script with), SimpleITK and
trimesh.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

from diffam.core.image import read_image
from diffam.export.colortables import level_color
from diffam.export.label_surfaces import label_surface
from diffam.export.statistics import COLUMNS
from diffam.export.writers import write_outputs
from tests.diffam.test_outputs import (
    FLIPPED,
    LEVELS,
    OBLIQUE,
    VERSE,
    _config,
    synthetic_ct,
    synthetic_result,
)


@pytest.mark.parametrize("convention", ["verse", "totalsegmentator"])
@pytest.mark.parametrize("direction", [np.eye(3), OBLIQUE, FLIPPED],
                         ids=["LPS", "oblique", "flipped"])
def test_seg_nrrd_reads_back_with_names_colours_and_the_labels_voxels(
        tmp_path, convention, direction):
    nrrd = pytest.importorskip("nrrd")
    image = synthetic_ct(direction)
    config = _config(labels=convention, qc_images=False, fit_score=False)
    written = write_outputs(synthetic_result(image, config), image, tmp_path, config)
    labels = read_image(written["labels"])

    data, header = nrrd.read(str(written["seg_nrrd"]))  # (i, j, k) order
    assert header["space"] == "left-posterior-superior"
    np.testing.assert_array_equal(data.transpose(2, 1, 0), labels.array)
    np.testing.assert_allclose(header["space directions"],
                               (labels.direction * labels.spacing).T, atol=1e-5)
    np.testing.assert_allclose(header["space origin"], labels.origin, atol=1e-5)
    names = [header[f"Segment{n}_Name"] for n in range(len(LEVELS))]
    expected = [f"vertebrae_{lv}" for lv in LEVELS] if convention == "totalsegmentator" \
        else list(LEVELS)
    assert names == expected
    for n, verse in enumerate(VERSE):
        colour = [float(c) for c in header[f"Segment{n}_Color"].split()]
        np.testing.assert_allclose(colour, np.array(level_color(verse)) / 255, atol=1e-5)
        value = int(header[f"Segment{n}_LabelValue"])
        kji = np.argwhere(labels.array == value)
        extent = [int(x) for x in header[f"Segment{n}_Extent"].split()]
        assert extent == [int(v) for pair in zip(kji.min(0)[::-1], kji.max(0)[::-1])
                          for v in pair]
        assert header[f"Segment{n}_Layer"] == "0"
        assert "TerminologyEntry:" in header[f"Segment{n}_Tags"]
        assert f"^{LEVELS[n]} vertebra~" in header[f"Segment{n}_Tags"]
    assert header["Segmentation_MasterRepresentation"] == "Binary labelmap"

    # SimpleITK (another NRRD reader) gives the label map's geometry
    itk = sitk.ReadImage(str(written["seg_nrrd"]))
    np.testing.assert_allclose(itk.GetOrigin(), labels.origin, atol=1e-4)
    np.testing.assert_allclose(np.reshape(itk.GetDirection(), (3, 3)), labels.direction,
                               atol=1e-5)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(itk), labels.array)


def test_seg_nrrd_reads_in_slicerio(tmp_path):
    slicerio = pytest.importorskip("slicerio")
    image = synthetic_ct()
    config = _config(qc_images=False, fit_score=False)
    written = write_outputs(synthetic_result(image, config), image, tmp_path, config)
    segmentation = slicerio.read_segmentation(str(written["seg_nrrd"]))
    segments = segmentation["segments"]
    assert [s["name"] for s in segments] == list(LEVELS)
    assert [s["labelValue"] for s in segments] == list(VERSE)
    for segment, verse in zip(segments, VERSE):
        np.testing.assert_allclose(segment["color"], np.array(level_color(verse)) / 255,
                                   atol=1e-5)
    assert segments[0]["terminology"]["type"] == ["SCT", "66794005", "L1 vertebra"]
    assert segments[0]["terminology"]["category"] == ["SCT", "123037004", "Anatomical Structure"]
    np.testing.assert_allclose(segmentation["ijkToLPS"], image.affine_lps, atol=1e-6)
    assert segments[0]["extent"] == [20, 49, 15, 44, 6, 17]  # i0 i1 j0 j1 k0 k1 of L1's box
    labels = read_image(written["labels"])
    np.testing.assert_array_equal(np.asarray(segmentation["voxels"]).transpose(2, 1, 0),
                                  labels.array)


def test_statistics_files_and_report(tmp_path):
    image = synthetic_ct()
    config = _config(qc_images=False, fit_score=False)
    written = write_outputs(synthetic_result(image, config), image, tmp_path, config)
    rows = json.loads(written["statistics_json"].read_text())["vertebrae"]
    assert [r["level"] for r in rows] == list(LEVELS)
    voxel_ml = float(np.prod(image.spacing)) / 1000
    for row in rows:
        assert row["voxels"] == 12 * 30 * 30 and row["volume_ml"] == pytest.approx(
            12 * 30 * 30 * voxel_ml)
        assert row["hu_mean_vertebra"] == pytest.approx(700.0)
        assert row["cut_by_border"] is False
    with open(written["statistics_csv"], newline="") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0]) == list(COLUMNS)
    assert [r["level"] for r in table] == list(LEVELS)
    assert float(table[0]["hu_median_vertebra"]) == pytest.approx(700.0)
    report = json.loads(written["report"].read_text())
    assert report["statistics"][0]["level"] == "L1"
    assert "## Measurements" in written["report_md"].read_text()


@pytest.mark.parametrize("direction", [np.eye(3), FLIPPED], ids=["LPS", "flipped"])
def test_label_surfaces_are_watertight_with_the_mask_volume(tmp_path, direction):
    trimesh = pytest.importorskip("trimesh")
    image = synthetic_ct(direction)
    config = _config(qc_images=False, fit_score=False, label_surfaces=True)
    written = write_outputs(synthetic_result(image, config), image, tmp_path, config)
    labels = read_image(written["labels"])
    for level, verse in zip(LEVELS, VERSE):
        mesh = trimesh.load(written[f"surface_{level}"], force="mesh")
        assert written[f"surface_{level}"].name == f"{level}.stl"
        assert mesh.is_watertight and mesh.volume > 0
        mask = labels.array == verse
        mask_mm3 = mask.sum() * float(np.prod(labels.spacing))
        assert mesh.volume == pytest.approx(mask_mm3, rel=0.05)
        # world LPS mm: the surface's centre is the mask's centre
        centre = labels.index_to_world(np.argwhere(mask).mean(0)[::-1])
        np.testing.assert_allclose(mesh.center_mass, centre, atol=0.5)


def test_label_surface_of_a_sphere_matches_its_volume():
    trimesh = pytest.importorskip("trimesh")
    from diffam.core.volume import Volume

    k, j, i = np.mgrid[:60, :70, :80]
    spacing = np.array([0.7, 0.8, 1.5])
    r2 = ((i - 40) * 0.7) ** 2 + ((j - 35) * 0.8) ** 2 + ((k - 30) * 1.5) ** 2
    mask = r2 <= 15.0**2
    volume = Volume(mask.astype(np.uint8), spacing, (10.0, -5.0, 3.0), OBLIQUE)
    vertices, faces = label_surface(mask, volume)
    mesh = trimesh.Trimesh(vertices, faces)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.volume == pytest.approx(4 / 3 * np.pi * 15.0**3, rel=0.03)
    assert mesh.volume == pytest.approx(mask.sum() * np.prod(spacing), rel=0.03)
