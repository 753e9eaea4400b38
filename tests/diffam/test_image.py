"""Volume geometry, image reading/writing, resampling and RAS interop."""

from __future__ import annotations

import math
import os

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from diffam.core import atomic
from diffam.core.atomic import atomic_path
from diffam.core.image import label_dtype, read_image, write_image
from diffam.core.volume import (
    ImageReadError,
    Volume,
    lps_to_ras_affine,
    ras_to_lps_affine,
    resample,
    resample_like,
    volume_from_nibabel,
    volume_to_nibabel,
)

C30, S30 = math.cos(math.radians(30)), math.sin(math.radians(30))
# Rotation by 30 degrees about LPS z, then the k axis flipped (det -1).
OBLIQUE_FLIPPED = np.array([[C30, -S30, 0.0], [S30, C30, 0.0], [0.0, 0.0, -1.0]])


def oblique_volume(shape_zyx=(4, 5, 6), dtype=np.float32) -> Volume:
    rng = np.random.default_rng(0)
    return Volume(
        rng.normal(size=shape_zyx).astype(dtype),
        spacing=np.array([0.5, 1.0, 2.0]),
        origin=np.array([10.0, -20.0, 5.0]),
        direction=OBLIQUE_FLIPPED,
    )


# ---------------------------------------------------------------------- geometry
def test_index_to_world_rotated_90_by_hand():
    # i -> +y, j -> -x, k -> +z (90 degrees about z).
    vol = Volume(
        np.zeros((4, 4, 4)), [0.5, 1.0, 2.0], [10.0, -20.0, 5.0], [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    )
    np.testing.assert_allclose(vol.index_to_world([1, 2, 3]), [10 - 2.0, -20 + 0.5, 5 + 6.0])
    np.testing.assert_allclose(vol.world_to_index([8.0, -19.5, 11.0]), [1, 2, 3], atol=1e-12)


def test_index_to_world_oblique_flipped_by_hand():
    vol = oblique_volume()
    ijk = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [-0.5, 4.5, 2.25]])
    expected = []
    for i, j, k in ijk:
        x = 10.0 + C30 * 0.5 * i - S30 * 1.0 * j
        y = -20.0 + S30 * 0.5 * i + C30 * 1.0 * j
        z = 5.0 - 2.0 * k
        expected.append([x, y, z])
    world = vol.index_to_world(ijk)
    np.testing.assert_allclose(world, expected, atol=1e-12)
    np.testing.assert_allclose(vol.world_to_index(world), ijk, atol=1e-12)
    np.testing.assert_allclose(vol.affine_lps @ [1, 2, 3, 1], [*expected[0], 1.0], atol=1e-12)
    assert vol.shape_ijk == (6, 5, 4)


def test_geometry_matches_simpleitk():
    vol = oblique_volume()
    image = vol.to_sitk()
    for ijk in [(0, 0, 0), (1, 2, 3), (5, 4, 0)]:
        np.testing.assert_allclose(
            vol.index_to_world(ijk), image.TransformIndexToPhysicalPoint(ijk), atol=1e-12
        )
    point = (3.0, -17.0, 1.0)
    np.testing.assert_allclose(
        vol.world_to_index(point), image.TransformPhysicalPointToContinuousIndex(point), atol=1e-9
    )
    assert image.GetSize() == vol.shape_ijk
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), vol.array)
    back = Volume.from_sitk(image)
    assert back.same_grid(vol, atol=1e-12)


def test_bounds_corners_orientation_and_contains():
    vol = Volume(np.zeros((3, 4, 5)), [1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    np.testing.assert_allclose(vol.bounds_world, [[-0.5, -1.0, -1.5], [4.5, 7.0, 7.5]])
    assert vol.corners_world(edges=False).max(axis=0).tolist() == [4.0, 6.0, 6.0]
    assert vol.orientation_code() == "LPS"
    assert vol.contains_world([[4.4, 0, 0], [4.6, 0, 0]]).tolist() == [True, False]
    las = Volume(np.zeros((2, 2, 2)), [1, 1, 1], [0, 0, 0], np.diag([1.0, -1.0, 1.0]))
    assert las.orientation_code() == "LAS"
    pir = Volume(np.zeros((2, 2, 2)), [1, 1, 1], [0, 0, 0], [[0, 0, -1], [1, 0, 0], [0, -1, 0]])
    assert pir.orientation_code() == "PIR"
    assert oblique_volume().orientation_code() == "LPI"


def test_with_array_keeps_geometry_and_checks_shape():
    vol = oblique_volume()
    new = vol.with_array(np.ones(vol.array.shape, np.uint8))
    assert new.same_grid(vol, atol=0)
    with pytest.raises(ValueError, match="shape"):
        vol.with_array(np.ones((2, 2, 2)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"array": np.zeros((2, 2))}, "3D"),
        ({"spacing": [1.0, 0.0, 1.0]}, "spacing"),
        ({"origin": [0.0, np.nan, 0.0]}, "origin"),
        ({"direction": np.zeros((3, 3))}, "direction"),
    ],
)
def test_volume_rejects_bad_geometry(kwargs, match):
    args = {"array": np.zeros((2, 2, 2)), "spacing": [1, 1, 1], "origin": [0, 0, 0]}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        Volume(**args)


# ---------------------------------------------------------------------- RAS interop
def test_nibabel_ras_and_simpleitk_give_same_lps_geometry(tmp_path):
    rng = np.random.default_rng(1)
    data_ijk = rng.integers(-1000, 1000, size=(6, 5, 4)).astype(np.int16)
    rot = np.array([[C30, -S30, 0.0], [S30, C30, 0.0], [0.0, 0.0, 1.0]])
    affine_ras = np.eye(4)
    affine_ras[:3, :3] = rot @ np.diag([0.7, 0.8, 2.5])
    affine_ras[:3, 3] = [10.0, 20.0, 30.0]
    path = tmp_path / "ras.nii.gz"
    nib.save(nib.Nifti1Image(data_ijk, affine_ras), path)

    by_sitk = read_image(path)
    by_nib = volume_from_nibabel(nib.load(path))
    np.testing.assert_array_equal(by_sitk.array, by_nib.array)
    np.testing.assert_array_equal(by_sitk.array, data_ijk.transpose(2, 1, 0))
    np.testing.assert_allclose(by_sitk.spacing, by_nib.spacing, atol=1e-5)
    np.testing.assert_allclose(by_sitk.origin, by_nib.origin, atol=1e-4)
    np.testing.assert_allclose(by_sitk.direction, by_nib.direction, atol=1e-5)
    # Hand check: RAS (10, 20, 30) is LPS (-10, -20, 30).
    np.testing.assert_allclose(by_nib.origin, [-10.0, -20.0, 30.0], atol=1e-5)
    ijk = np.array([[1.0, 2.0, 3.0], [5.0, 0.0, 1.5]])
    ras = ijk @ affine_ras[:3, :3].T + affine_ras[:3, 3]
    lps = ras * [-1, -1, 1]
    np.testing.assert_allclose(by_sitk.index_to_world(ijk), lps, atol=1e-4)
    np.testing.assert_allclose(by_nib.index_to_world(ijk), lps, atol=1e-4)
    np.testing.assert_allclose(ras_to_lps_affine(affine_ras), by_nib.affine_lps, atol=1e-5)
    np.testing.assert_allclose(lps_to_ras_affine(by_nib.affine_lps), affine_ras, atol=1e-5)


def test_volume_to_nibabel_round_trip(tmp_path):
    vol = oblique_volume()
    path = tmp_path / "out.nii.gz"
    nib.save(volume_to_nibabel(vol), path)
    back = read_image(path)
    assert back.same_grid(vol, atol=1e-5)
    np.testing.assert_array_equal(back.array, vol.array)


# ---------------------------------------------------------------------- writing
@pytest.mark.parametrize("suffix", [".nii.gz", ".mha", ".nrrd"])
def test_label_map_round_trip_keeps_header(tmp_path, suffix):
    vol = oblique_volume()
    labels = vol.with_array(np.arange(vol.array.size).reshape(vol.array.shape) % 30)
    path = write_image(labels, tmp_path / f"labels{suffix}", label_map=True)
    back = read_image(path)
    assert back.array.dtype == np.uint8
    np.testing.assert_array_equal(back.array, labels.array)
    np.testing.assert_allclose(back.spacing, vol.spacing, atol=1e-6)
    np.testing.assert_allclose(back.origin, vol.origin, atol=1e-5)
    np.testing.assert_allclose(back.direction, vol.direction, atol=1e-6)
    expected_format = {".nii.gz": "nifti", ".mha": "metaimage", ".nrrd": "nrrd"}[suffix]
    assert back.source.format == expected_format and not back.source.is_dicom
    assert [p.name for p in tmp_path.iterdir()] == [f"labels{suffix}"]  # no temp files left


def test_label_dtype_choice():
    assert label_dtype(np.array([0, 255])) == np.uint8
    assert label_dtype(np.array([0, 300])) == np.uint16
    assert label_dtype(np.array([-1, 300])) == np.int16
    assert label_dtype(np.array([0.0, 3.0])) == np.uint8
    with pytest.raises(ValueError, match="non-integer"):
        label_dtype(np.array([0.5]))


def test_write_refuses_existing_file_and_overwrites_on_request(tmp_path):
    vol = oblique_volume()
    path = write_image(vol, tmp_path / "ct.nii.gz")
    with pytest.raises(FileExistsError, match="overwrite=true"):
        write_image(vol, path)
    write_image(vol.with_array(vol.array * 2), path, overwrite=True)
    np.testing.assert_allclose(read_image(path).array, vol.array * 2)


def test_write_checks_folder(tmp_path, monkeypatch):
    vol = oblique_volume()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_image(vol, tmp_path / "missing" / "ct.nii.gz")
    real_access = os.access
    monkeypatch.setattr(
        atomic.os,
        "access",
        lambda p, mode: False if str(p) == str(tmp_path) else real_access(p, mode),
    )
    with pytest.raises(PermissionError, match="not writable"):
        write_image(vol, tmp_path / "ct.nii.gz")
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"\.mha"):
        write_image(vol, tmp_path / "ct.mhd")


def test_atomic_path_cleans_up_on_failure(tmp_path):
    target = tmp_path / "out.nii.gz"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.endswith(".nii.gz") and tmp != target
        tmp.write_text("partial", encoding="utf-8")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_text("done", encoding="utf-8")
    assert target.read_text(encoding="utf-8") == "done"
    assert list(tmp_path.iterdir()) == [target]


# ---------------------------------------------------------------------- bad inputs
def test_read_missing_text_and_empty(tmp_path):
    with pytest.raises(ImageReadError, match="does not exist"):
        read_image(tmp_path / "nope.nii.gz")
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n", encoding="utf-8")
    with pytest.raises(ImageReadError, match="notes.txt is not a readable image"):
        read_image(text)
    fake = tmp_path / "fake.nii.gz"
    fake.write_text("not an image either\n", encoding="utf-8")
    with pytest.raises(ImageReadError, match="fake.nii.gz"):
        read_image(fake)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ImageReadError, match="empty"):
        read_image(empty)
    with pytest.raises(ImageReadError, match="no DICOM series"):
        read_image(tmp_path)  # holds files, none DICOM


def test_read_rejects_2d_4d_and_vector_images(tmp_path):
    two_d = tmp_path / "slice.nii.gz"
    sitk.WriteImage(sitk.Image(8, 8, sitk.sitkInt16), str(two_d))
    with pytest.raises(ImageReadError, match="2D"):
        read_image(two_d)
    four_d = tmp_path / "series.nii.gz"
    sitk.WriteImage(sitk.Image([4, 4, 4, 3], sitk.sitkInt16), str(four_d))
    with pytest.raises(ImageReadError, match="4 dimensions"):
        read_image(four_d)
    vector = tmp_path / "rgb.mha"
    sitk.WriteImage(sitk.Image([4, 4, 4], sitk.sitkVectorFloat32, 3), str(vector))
    with pytest.raises(ImageReadError, match="components"):
        read_image(vector)
    one_slice = tmp_path / "one.nii.gz"
    sitk.WriteImage(sitk.Image([4, 4, 1], sitk.sitkInt16), str(one_slice))
    with pytest.raises(ImageReadError, match="single slice"):
        read_image(one_slice)


# ---------------------------------------------------------------------- resampling
def test_resample_keeps_origin_direction_and_linear_values():
    shape = (8, 10, 12)
    vol = oblique_volume(shape, dtype=np.float64)
    k, j, i = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    world = vol.index_to_world(np.stack([i, j, k], -1).reshape(-1, 3))
    ramp = (world @ np.array([0.3, -0.2, 0.1])).reshape(shape)
    vol = vol.with_array(ramp)
    out = resample(vol, 1.0)
    assert out.shape_ijk == (6, 10, 16)
    np.testing.assert_allclose(out.origin, vol.origin)
    np.testing.assert_allclose(out.direction, vol.direction)
    np.testing.assert_allclose(out.spacing, [1.0, 1.0, 1.0])
    # Interior voxels (inside the input's voxel-centre box) are exact for a ramp.
    kk, jj, ii = np.meshgrid(*[np.arange(n) for n in out.array.shape], indexing="ij")
    pts = out.index_to_world(np.stack([ii, jj, kk], -1).reshape(-1, 3))
    src = vol.world_to_index(pts)
    inside = np.all((src >= 0) & (src <= np.array(vol.shape_ijk) - 1), axis=1)
    np.testing.assert_allclose(
        out.array.reshape(-1)[inside], (pts @ np.array([0.3, -0.2, 0.1]))[inside], atol=1e-4
    )
    labels = resample(
        vol.with_array((ramp > 0).astype(np.uint8)), [1.0, 2.0, 1.0], interpolator="nearest"
    )
    assert labels.array.dtype == np.uint8
    with pytest.raises(ValueError, match="interpolator"):
        resample(vol, 1.0, interpolator="cubic")


def test_resample_like_onto_flipped_grid_is_a_flip():
    lps = Volume(np.arange(24, dtype=np.uint8).reshape(2, 3, 4), [1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    # Same voxels, j axis flipped: origin at the last row.
    las = Volume(
        np.zeros((2, 3, 4), np.uint8), [1.0, 2.0, 3.0], [0.0, 4.0, 0.0], np.diag([1.0, -1.0, 1.0])
    )
    out = resample_like(lps, las)
    assert out.same_grid(las)
    np.testing.assert_array_equal(out.array, lps.array[:, ::-1, :])


# ---------------------------------------------------------------------- real data
@pytest.mark.shared_data
def test_read_dicom_series(shared_data):
    folder = shared_data / "ct" / "dicom_t11_t12"
    vol = read_image(folder)
    assert vol.array.shape == (20, 512, 512)
    np.testing.assert_allclose(vol.spacing, [0.9765625, 0.9765625, 2.0])
    assert vol.source.is_dicom and vol.source.format == "dicom"
    assert len(vol.source.dicom_files) == 20
    assert {p.parent for p in vol.source.dicom_files} == {folder}
    # Files are in slice order: each file's position is the centre of slice k.
    reader = sitk.ImageFileReader()
    for k in (0, 7, 19):
        reader.SetFileName(str(vol.source.dicom_files[k]))
        reader.ReadImageInformation()
        ipp = [float(v) for v in reader.GetMetaData("0020|0032").split("\\")]
        np.testing.assert_allclose(vol.index_to_world([0, 0, k]), ipp, atol=1e-3)
    assert -1100 < vol.array.min() and vol.array.max() > 500  # HU with bone


@pytest.mark.shared_data
def test_dicom_labels_resample_onto_series_grid(shared_data):
    ct = read_image(shared_data / "ct" / "dicom_t11_t12")
    labels = read_image(
        shared_data / "ct" / "dicom_t11_t12_labels" / "labels_totalsegmentator.nii.gz"
    )
    assert labels.orientation_code() == "LAS" and ct.orientation_code() == "LPS"
    on_ct = resample_like(labels, ct)
    assert on_ct.same_grid(ct)
    np.testing.assert_array_equal(on_ct.array, labels.array[:, ::-1, :])


@pytest.mark.shared_data
@pytest.mark.parametrize(
    "name", ["chest_t1_l2/labels_totalsegmentator.nii.gz", "l3_crop/ct.nii.gz"]
)
def test_real_nifti_sitk_and_nibabel_agree(shared_data, name):
    path = shared_data / "ct" / name
    by_sitk = read_image(path)
    by_nib = volume_from_nibabel(nib.load(path))
    assert by_sitk.source.format == "nifti"
    assert by_sitk.array.shape == by_nib.array.shape
    np.testing.assert_allclose(by_sitk.affine_lps, by_nib.affine_lps, atol=1e-3)
    expected = {"chest_t1_l2/labels_totalsegmentator.nii.gz": "LAS", "l3_crop/ct.nii.gz": "PIR"}[
        name
    ]
    assert by_sitk.orientation_code() == expected
