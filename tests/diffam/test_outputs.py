"""Every output of a run read back: label map header, colour tables, meshes, reports, QC.

A :class:`SegmentationResult` is built by hand (a synthetic label map and
box meshes on the input's grid), so no fit runs here; the outputs are then
read back with independent readers (SimpleITK, nibabel, trimesh, PIL).
"""

from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from diffam.core.config import SegmentationConfig
from diffam.core.image import read_image, write_image
from diffam.core.labels import LEVEL_NAMES, VERSE_TO_TOTALSEGMENTATOR
from diffam.core.volume import Volume
from diffam.export.colortables import (
    label_entries,
    level_color,
    read_itksnap_labels,
    read_slicer_ctbl,
)
from diffam.export.files import check_output_dir, label_format, output_files
from diffam.export.qc import plane_images
from diffam.export.writers import write_outputs
from diffam.fit.model import FitResult
from diffam.fit.pipeline import SegmentationResult
from tests.diffam.phantom_spine import rotation

LEVELS = ("L1", "L2")
VERSE = (20, 21)


def _box_mesh(center: np.ndarray, half: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import trimesh

    box = trimesh.creation.box(extents=2 * half)
    box = box.subdivide().subdivide()
    return np.asarray(box.vertices) + center, np.asarray(box.faces)


def synthetic_ct(
    direction=None, spacing=(0.9, 1.1, 2.0), origin=(-40.0, -30.0, -60.0), shape_zyx=(40, 60, 70)
) -> Volume:
    """Soft tissue (40 HU) with two bright boxes (vertebral bodies, 700 HU) stacked along k."""
    direction = np.eye(3) if direction is None else direction
    array = np.full(shape_zyx, 40, dtype=np.int16)
    array[6:18, 15:45, 20:50] = 700
    array[22:34, 15:45, 20:50] = 700
    return Volume(array, spacing, origin, direction)


def synthetic_result(image: Volume, config: SegmentationConfig) -> SegmentationResult:
    """Labels = the two boxes; meshes = boxes around them in world mm."""
    from diffam.core.labels import exported_id

    labels = np.zeros(image.array.shape, np.uint8)
    boxes = [
        (slice(6, 18), slice(15, 45), slice(20, 50)),
        (slice(22, 34), slice(15, 45), slice(20, 50)),
    ]
    vertices, faces = [], None
    for verse, (kz, jy, ix) in zip(VERSE, boxes):
        labels[kz, jy, ix] = exported_id(verse, config.export.labels)
        lo = np.array([ix.start, jy.start, kz.start]) - 0.5
        hi = np.array([ix.stop, jy.stop, kz.stop]) - 0.5
        corners = image.index_to_world(np.array([lo, hi]))
        center = corners.mean(0)
        v, faces = _box_mesh(np.zeros(3), (hi - lo) * image.spacing / 2)
        # Box axes along the image axes: rotate into world by the direction.
        vertices.append(v @ image.direction.T + center)
    vertices = np.stack(vertices)
    distance = np.linspace(-20, 20, 81)
    profile = np.where(distance < 0, 700.0, 40.0)
    history = [
        {
            "iteration": i,
            "total": 1.0 / i,
            "image": 0.8 / i,
            "edge": 0.01,
            "normal": 0.1 / i,
            "overlap": 0.0,
            "blur_mm": max(0.0, 2.0 - 0.2 * i),
            "alpha": 1.0,
        }
        for i in range(1, 21)
    ]
    fit = FitResult(
        vertices=vertices,
        faces=faces,
        verse_ids=list(VERSE),
        levels=list(LEVELS),
        history=history,
        appearance_profile=np.stack([distance, profile]),
        completed_iterations=20,
    )
    centroids = {v: vertices[i].mean(0) for i, v in enumerate(VERSE)}
    return SegmentationResult(
        image.with_array(labels), fit, centroids, "given", True, {"total": 1.0}
    )


def _config(**export) -> SegmentationConfig:
    config = SegmentationConfig(template="lumbar", device="cpu")
    config.optim.iterations = 20
    for key, value in export.items():
        setattr(config.export, key, value)
    return config


def _assert_same_header(written: Volume, reference: Volume) -> None:
    assert written.array.shape == reference.array.shape
    np.testing.assert_allclose(written.spacing, reference.spacing, atol=1e-5)
    np.testing.assert_allclose(written.origin, reference.origin, atol=1e-4)
    np.testing.assert_allclose(written.direction, reference.direction, atol=1e-6)


# ---------------------------------------------------------------------- label map header
OBLIQUE = rotation((12.0, -20.0, 33.0))
FLIPPED = np.diag([-1.0, 1.0, -1.0]) @ rotation((0.0, 0.0, 90.0))  # axes permuted and flipped


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha", ".nrrd"])
@pytest.mark.parametrize(
    "direction", [np.eye(3), OBLIQUE, FLIPPED], ids=["LPS", "oblique", "flipped"]
)
def test_label_map_header_equals_input(tmp_path, suffix, direction):
    source = tmp_path / f"ct{suffix}"
    write_image(synthetic_ct(direction), source)
    image = read_image(source)
    config = _config(format="auto", qc_images=False, fit_score=False)
    result = synthetic_result(image, config)
    written = write_outputs(result, image, tmp_path / "out", config)
    assert written["labels"].name == f"labels{suffix}"  # auto: the input's own format
    labels = read_image(written["labels"])
    _assert_same_header(labels, image)
    np.testing.assert_array_equal(labels.array, result.labels.array)
    assert labels.array.dtype == np.uint8
    if suffix.startswith(".nii"):  # the NIfTI header itself: sform and qform as the input's
        a, b = nib.load(str(source)), nib.load(str(written["labels"]))
        np.testing.assert_allclose(b.get_sform(), a.get_sform(), atol=1e-4)
        np.testing.assert_allclose(b.get_qform(), a.get_qform(), atol=1e-4)
        assert int(b.header["sform_code"]) > 0 and int(b.header["qform_code"]) > 0


def test_lps_ras_pair_gives_the_same_labels_in_world(tmp_path):
    """The same anatomy stored LPS-ordered and RAS-ordered: labels agree at every world point."""
    lps = synthetic_ct(np.eye(3), spacing=(1.0, 1.0, 2.0))
    # Reverse i and j: index axes now point to R and A; same voxels in world space.
    flip = np.diag([-1.0, -1.0, 1.0])
    far_corner = lps.index_to_world(np.array([lps.shape_ijk[0] - 1, lps.shape_ijk[1] - 1, 0]))
    ras = Volume(
        lps.array[:, ::-1, ::-1].copy(),
        lps.spacing,
        [far_corner[0], far_corner[1], lps.origin[2]],
        flip,
    )
    assert ras.orientation_code() == "RAS"
    outputs = {}
    for name, volume in (("lps", lps), ("ras", ras)):
        write_image(volume, tmp_path / f"{name}.nii.gz")
        image = read_image(tmp_path / f"{name}.nii.gz")
        config = _config(qc_images=False, fit_score=False)
        written = write_outputs(synthetic_result(image, config), image, tmp_path / name, config)
        outputs[name] = read_image(written["labels"])
        _assert_same_header(outputs[name], image)
    # nibabel sees the RAS one with a positive-diagonal affine, the LPS one flipped.
    assert np.all(np.diag(nib.load(str(tmp_path / "ras" / "labels.nii.gz")).affine)[:2] > 0)
    assert np.all(np.diag(nib.load(str(tmp_path / "lps" / "labels.nii.gz")).affine)[:2] < 0)
    rng = np.random.default_rng(0)
    points = rng.uniform(lps.bounds_world[0] + 2, lps.bounds_world[1] - 2, size=(500, 3))

    def at(volume, xyz):
        ijk = np.round(volume.world_to_index(xyz)).astype(int)
        return volume.array[ijk[:, 2], ijk[:, 1], ijk[:, 0]]

    assert (at(outputs["lps"], points) > 0).any()
    np.testing.assert_array_equal(at(outputs["lps"], points), at(outputs["ras"], points))


def test_label_format_option():
    image = synthetic_ct()
    assert label_format("nii.gz", image) == "nii.gz"
    assert label_format("mha", image) == "mha"
    assert label_format("auto", image) == "nii.gz"  # made in memory: NIfTI
    with pytest.raises(ValueError, match="export.format"):
        label_format("png", image)


def test_per_vertebra_masks_and_totalsegmentator_ids(tmp_path):
    image = synthetic_ct(OBLIQUE)
    config = _config(
        labels="totalsegmentator",
        per_vertebra_masks=True,
        format="mha",
        qc_images=False,
        fit_score=False,
    )
    result = synthetic_result(image, config)
    written = write_outputs(result, image, tmp_path, config)
    labels = read_image(written["labels"])
    assert sorted(np.unique(labels.array)) == [0] + sorted(
        VERSE_TO_TOTALSEGMENTATOR[v] for v in VERSE
    )
    for verse, level in zip(VERSE, LEVELS):
        mask = read_image(tmp_path / "masks" / f"{level}.mha")
        _assert_same_header(mask, image)
        np.testing.assert_array_equal(mask.array, labels.array == VERSE_TO_TOTALSEGMENTATOR[verse])
    table = read_slicer_ctbl(written["slicer_table"])
    assert table[VERSE_TO_TOTALSEGMENTATOR[20]][0] == "L1"


# ---------------------------------------------------------------------- tables
@pytest.mark.parametrize("convention", ["verse", "totalsegmentator"])
def test_color_tables_parse_and_name_the_levels(tmp_path, convention):
    image = synthetic_ct()
    config = _config(labels=convention, qc_images=False, fit_score=False)
    written = write_outputs(synthetic_result(image, config), image, tmp_path, config)
    slicer = read_slicer_ctbl(written["slicer_table"])
    itksnap = read_itksnap_labels(written["itksnap_table"])
    entries = label_entries(convention)
    assert slicer[0][0] == "background" and slicer[0][1][3] == 0
    assert itksnap[0][0] == "Clear Label"
    assert set(slicer) == set(itksnap) == {0} | {e.value for e in entries}
    for entry in entries:
        assert slicer[entry.value] == (entry.name, (*entry.rgb, 255))
        assert itksnap[entry.value] == (entry.name, entry.rgb, 1.0, True)
    # The values in the label map have the right names.
    labels = read_image(written["labels"]).array
    names = {slicer[int(v)][0] for v in np.unique(labels) if v}
    assert names == set(LEVELS)
    # Slicer's header says how many values follow; adjacent levels differ in colour.
    text = written["slicer_table"].read_text(encoding="utf-8").splitlines()
    assert text[0].startswith("# Color table file") and text[1] == f"# {len(entries) + 1} values"
    for a, b in zip(sorted(LEVEL_NAMES)[:-1], sorted(LEVEL_NAMES)[1:]):
        assert level_color(a) != level_color(b)


def test_itksnap_file_has_the_documented_header(tmp_path):
    image = synthetic_ct()
    config = _config(qc_images=False, fit_score=False)
    written = write_outputs(synthetic_result(image, config), image, tmp_path, config)
    text = written["itksnap_table"].read_text(encoding="utf-8")
    assert "# ITK-SnAP Label Description File" in text
    assert "# IDX   -R-  -G-  -B-  -A--  VIS MSH  LABEL" in text


# ---------------------------------------------------------------------- meshes
@pytest.mark.parametrize("mesh_format", ["ply", "stl"])
def test_meshes_load_with_the_template_vertex_count(tmp_path, mesh_format):
    import trimesh

    from diffam.core.template import load_template

    template = load_template("lumbar")
    image = synthetic_ct()
    config = _config(mesh_format=mesh_format, qc_images=False, fit_score=False)
    result = synthetic_result(image, config)
    # Replace the boxes by the template's own L1/L2 placed on them.
    chosen = template.subset(list(LEVELS))
    vertices = np.stack(
        [
            v.vertices - v.vertices.mean(0) + result.fit.vertices[i].mean(0)
            for i, v in enumerate(chosen.vertebrae)
        ]
    )
    result.fit.vertices, result.fit.faces = vertices, np.asarray(chosen.faces)
    write_outputs(result, image, tmp_path, config)
    count = chosen.vertebrae[0].vertices.shape[0]
    for i, level in enumerate(LEVELS):
        path = tmp_path / "meshes" / f"{level}.{mesh_format}"
        if mesh_format == "ply":  # vertex order kept: vertices correspond to the template's
            mesh = trimesh.load(path, process=False)
            assert mesh.vertices.shape == (count, 3)
            np.testing.assert_allclose(mesh.vertices, vertices[i], atol=1e-4)
            np.testing.assert_array_equal(mesh.faces, chosen.faces)
        else:  # STL is a triangle soup: the merged vertices are the template's, in some order
            mesh = trimesh.load(path, process=True)
            assert mesh.vertices.shape == (count, 3)
            assert len(mesh.faces) == len(chosen.faces)
            np.testing.assert_allclose(
                np.sort(mesh.vertices, axis=0), np.sort(vertices[i], axis=0), atol=1e-3
            )


# ---------------------------------------------------------------------- reports and QC
def test_reports_fit_score_and_qc_pictures(tmp_path):
    from PIL import Image

    image = synthetic_ct(OBLIQUE)
    config = _config()
    result = synthetic_result(image, config)
    written = write_outputs(result, image, tmp_path, config, inputs={"scan": "synthetic"})
    report = json.loads(written["report"].read_text(encoding="utf-8"))
    assert report["completed"] is True and report["label_convention"] == "verse"
    assert report["label_file_format"] == "nii.gz"
    voxel_ml = np.prod(image.spacing) / 1000
    for entry, verse in zip(report["vertebrae"], VERSE):
        assert entry["volume_ml"] == pytest.approx((result.labels.array == verse).sum() * voxel_ml)
        # The meshes sit exactly on bright boxes and the profile is a step: a small residual.
        assert entry["fit_residual_hu"] is not None and entry["fit_score_points"] > 1000
        assert entry["doubtful"] is False
        assert entry["fit_correlation"] > 0.9
        np.testing.assert_allclose(
            entry["label_centroid_mm"], result.fit.vertices[VERSE.index(verse)].mean(0), atol=1.0
        )
    for name in (
        "slicer_table",
        "itksnap_table",
        "qc_sagittal",
        "qc_coronal",
        "qc_losses",
        "report_md",
        "labels",
    ):
        assert (tmp_path / report["files"][name]).is_file()
    markdown = written["report_md"].read_text(encoding="utf-8")
    assert "| L1 | 20 |" in markdown and "![sagittal](qc/sagittal.png)" in markdown
    for name in ("qc_sagittal", "qc_coronal", "qc_losses", "qc_curved_sagittal",
                 "qc_curved_coronal", "qc_vertebrae"):
        assert (tmp_path / report["files"][name]).is_file()
        with Image.open(written[name]) as picture:
            assert picture.format == "PNG" and min(picture.size) > 200
            pixels = np.asarray(picture.convert("RGB")).astype(int)
        assert pixels.std() > 10  # not a blank picture


def test_doubtful_vertebra_is_flagged(tmp_path):
    image = synthetic_ct()
    config = _config(qc_images=False)
    result = synthetic_result(image, config)
    result.fit.vertices[1] += np.array([6.0, 6.0, 6.0])  # L2 slid 10 mm off its body
    written = write_outputs(result, image, tmp_path, config)
    report = json.loads(written["report"].read_text(encoding="utf-8"))
    flags = {v["level"]: v["doubtful"] for v in report["vertebrae"]}
    assert flags == {"L1": False, "L2": True}
    assert report["doubtful_levels"] == ["L2"]
    assert "Check these vertebrae:** L2" in written["report_md"].read_text(encoding="utf-8")


def test_qc_planes_cut_through_the_spine():
    """The sagittal and coronal planes pass through the labelled vertebrae, not beside them."""
    image = synthetic_ct(OBLIQUE)
    result = synthetic_result(image, _config())
    for view in ("sagittal", "coronal"):
        plane = plane_images(image, result.labels, result.fit.vertices, view)
        assert set(np.unique(plane["labels"])) == {0, *VERSE}
        assert plane["ct"].max() > 500  # the bright boxes are in the picture


def test_stopped_run_is_reported(tmp_path):
    image = synthetic_ct()
    config = _config(qc_images=False, fit_score=False)
    result = synthetic_result(image, config)
    result.completed = False
    written = write_outputs(result, image, tmp_path, config)
    assert json.loads(written["report"].read_text(encoding="utf-8"))["completed"] is False
    assert "resume=true" in written["report_md"].read_text(encoding="utf-8")


# ---------------------------------------------------------------------- refusing to overwrite
def test_existing_results_are_refused_unless_overwrite(tmp_path):
    image = synthetic_ct()
    config = _config(qc_images=False, fit_score=False, format="mha")
    write_outputs(synthetic_result(image, config), image, tmp_path, config)
    assert [p.name for p in output_files(tmp_path)] == ["labels.mha", "report.json"]
    with pytest.raises(FileExistsError, match="overwrite=true"):
        check_output_dir(tmp_path, overwrite=False)
    check_output_dir(tmp_path, overwrite=True)
    with pytest.raises(FileExistsError):
        write_outputs(synthetic_result(image, config), image, tmp_path, config)
    write_outputs(synthetic_result(image, config), image, tmp_path, config, overwrite=True)
    # Any earlier output counts, not only the label map: the run must not fail after the fit.
    other = tmp_path / "other"
    (other / "meshes").mkdir(parents=True)
    (other / "meshes" / "L1.ply").write_text("earlier", encoding="utf-8")
    with pytest.raises(FileExistsError, match="L1.ply"):
        check_output_dir(other, overwrite=False)


def test_output_dir_that_is_a_file_or_not_writable(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x", encoding="utf-8")
    with pytest.raises(NotADirectoryError, match="is a file"):
        check_output_dir(afile, overwrite=False)
    with pytest.raises(PermissionError, match="cannot create output folder"):
        check_output_dir(afile / "sub", overwrite=False)
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(PermissionError):
            check_output_dir(locked / "out", overwrite=False)


def test_sitk_reads_what_nibabel_reads(tmp_path):
    """Cross-check of one written label map with a second reader (nibabel, RAS)."""
    image = synthetic_ct(OBLIQUE)
    config = _config(qc_images=False, fit_score=False)
    written = write_outputs(synthetic_result(image, config), image, tmp_path, config)
    from diffam.core.volume import volume_from_nibabel

    other = volume_from_nibabel(nib.load(str(written["labels"])))
    _assert_same_header(other, image)
    assert sitk.ReadImage(str(written["labels"])).GetPixelID() == sitk.sitkUInt8
