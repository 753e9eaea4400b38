"""Reading refuses damaged files and impossible geometry (issue cases 4, 6, 7).

Truncated or damaged gzip streams, header-only NIfTI files, zero spacing,
non-orthonormal direction matrices, DICOM folders with several series or a
missing slice. A hypothesis fuzz of NIfTI header fields checks that
:func:`read_image` either returns a volume with a valid geometry or raises
:class:`ImageReadError` (never another exception, never a silent zero-filled
volume).
"""

from __future__ import annotations

import gzip
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diffam.core.image import read_image
from diffam.core.volume import ImageReadError


def _volume(shape=(12, 10, 8), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1000, 2000, shape).astype(np.int16)


def _write(path: Path, array=None, spacing=(1.0, 1.0, 1.0), direction=None) -> Path:
    image = sitk.GetImageFromArray(_volume() if array is None else array)
    image.SetSpacing(spacing)
    if direction is not None:
        image.SetDirection(direction)
    sitk.WriteImage(image, str(path), useCompression=path.suffix in (".gz", ".mha", ".nrrd"))
    return path


# ---------------------------------------------------------------------- case 4: truncation
@pytest.mark.parametrize("name", ["ct.nii.gz", "ct.nii", "ct.mha", "ct.nrrd"])
def test_truncated_file_is_refused(tmp_path, name):
    path = _write(tmp_path / name, _volume((40, 30, 20)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="truncated|damaged"):
        read_image(path)


def test_uncompressed_mha_and_nrrd_truncated(tmp_path):
    for name in ("ct.mha", "ct.nrrd"):
        path = tmp_path / name
        sitk.WriteImage(sitk.GetImageFromArray(_volume((40, 30, 20))), str(path),
                        useCompression=False)
        path.write_bytes(path.read_bytes()[:-1000])
        with pytest.raises(ImageReadError, match="truncated"):
            read_image(path)


def _header_only(size=(1024, 1024, 1000)) -> bytes:
    header = bytearray(352)
    struct.pack_into("<i", header, 0, 348)
    struct.pack_into("<8h", header, 40, 3, *size, 1, 1, 1, 1)
    struct.pack_into("<2h", header, 70, 4, 16)  # int16
    struct.pack_into("<8f", header, 76, 1, 1, 1, 1, 0, 0, 0, 0)
    struct.pack_into("<f", header, 108, 352.0)
    header[344:348] = b"n+1\0"
    return bytes(header)


@pytest.mark.parametrize("compressed", [False, True])
def test_header_only_nifti_is_refused_at_once(tmp_path, compressed):
    path = tmp_path / ("big.nii.gz" if compressed else "big.nii")
    data = _header_only()
    path.write_bytes(gzip.compress(data) if compressed else data)
    start = time.perf_counter()
    with pytest.raises(ImageReadError, match=r"truncated.*2,097,152,352 bytes"):
        read_image(path)
    assert time.perf_counter() - start < 5  # nothing of 2 GB was allocated


def test_intact_files_still_read(tmp_path):
    for name in ("a.nii.gz", "a.nii", "a.mha", "a.nrrd"):
        volume = read_image(_write(tmp_path / name))
        assert np.array_equal(volume.array, _volume())


# ---------------------------------------------------------------------- case 6: geometry
@pytest.mark.parametrize("name", ["ct.nii", "ct.nii.gz"])
def test_zero_spacing_in_nifti_is_refused(tmp_path, name):
    raw = tmp_path / "ct.nii"
    _write(raw)
    data = bytearray(raw.read_bytes())
    struct.pack_into("<f", data, 76 + 4 * 2, 0.0)  # pixdim[2]
    path = tmp_path / name
    path.write_bytes(gzip.compress(bytes(data)) if name.endswith(".gz") else bytes(data))
    with pytest.raises(ImageReadError, match=r"spacing.*zero"):
        read_image(path)


SHEARED = (1.0, 0.3, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@pytest.mark.parametrize("name", ["ct.mha", "ct.nrrd"])
def test_non_orthonormal_direction_is_refused(tmp_path, name):
    path = tmp_path / name
    image = sitk.GetImageFromArray(_volume())
    try:
        image.SetDirection(SHEARED)
    except RuntimeError:
        pytest.skip("this SimpleITK refuses to set a non-orthonormal direction")
    sitk.WriteImage(image, str(path))
    with pytest.raises(ImageReadError, match="not orthonormal"):
        read_image(path)


def test_rotated_direction_is_accepted(tmp_path):
    angle = 0.3
    rotation = (np.cos(angle), -np.sin(angle), 0, np.sin(angle), np.cos(angle), 0, 0, 0, 1)
    volume = read_image(_write(tmp_path / "ct.mha", direction=rotation))
    assert np.allclose(np.asarray(volume.direction).reshape(3, 3), np.reshape(rotation, (3, 3)))


# ---------------------------------------------------------------------- fuzz of NIfTI headers
FIELDS = {  # name: (offset, struct format, strategy)
    "dim": (40, "<8h", st.tuples(st.integers(-2, 8), *[st.integers(-3, 40)] * 7)),
    "datatype": (70, "<h", st.sampled_from([0, 2, 4, 8, 16, 64, 512, 768, 1234])),
    "bitpix": (72, "<h", st.sampled_from([0, 8, 16, 32, 64, -16, 7])),
    "pixdim": (76, "<8f", st.tuples(*[st.floats(width=32, allow_nan=True,
                                                allow_infinity=True)] * 8)),
    "vox_offset": (108, "<f", st.floats(width=32, allow_nan=True, allow_infinity=True)),
    "qform_code": (252, "<h", st.integers(-1, 5)),
    "sform_code": (254, "<h", st.integers(-1, 5)),
    "srow": (280, "<12f", st.tuples(*[st.floats(-1e3, 1e3, width=32)] * 12)),
}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(changes=st.dictionaries(st.sampled_from(sorted(FIELDS)),
                               st.just(None), min_size=1, max_size=3), data=st.data())
def test_fuzzed_nifti_header_reads_validly_or_is_refused(tmp_path, changes, data):
    source = tmp_path / "base.nii"
    if not source.exists():
        _write(source)
    raw = bytearray(source.read_bytes())
    for name in changes:
        offset, fmt, strategy = FIELDS[name]
        value = data.draw(strategy, label=name)
        struct.pack_into(fmt, raw, offset, *(value if isinstance(value, tuple) else (value,)))
    path = tmp_path / "fuzzed.nii"
    path.write_bytes(bytes(raw))
    try:
        volume = read_image(path)
    except ImageReadError:
        return
    assert np.all(np.asarray(volume.spacing) > 0)
    matrix = np.asarray(volume.direction, dtype=float).reshape(3, 3)
    assert np.allclose(matrix.T @ matrix, np.eye(3), atol=1e-3)
    assert volume.array.size == np.prod(volume.shape_ijk)


# ---------------------------------------------------------------------- case 7: DICOM
def _series(folder: Path, series: str, slices: list[int], description: str = "") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in slices:
        image = sitk.GetImageFromArray(_volume((1, 16, 16), seed=k)[0])
        tags = {
            "0008|0016": "1.2.840.10008.5.1.4.1.1.2", "0008|0060": "CT",
            "0008|0018": f"{series}.{k + 1}", "0020|000d": "1.2.826.0.1.3680043.8.498.1",
            "0020|000e": series, "0020|0013": str(k + 1),
            "0020|0032": f"0\\0\\{2.5 * k:.3f}", "0020|0037": "1\\0\\0\\0\\1\\0",
            "0028|0030": "1\\1", "0018|0050": "2.5", "0008|103e": description,
        }
        for tag, value in tags.items():
            image.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{series[-4:]}_{k:03d}.dcm"))
        writer.Execute(image)


SERIES_A, SERIES_B = "1.2.826.0.1.3680043.8.498.2001", "1.2.826.0.1.3680043.8.498.2002"


def test_folder_with_two_series_is_refused_and_series_uid_chooses(tmp_path):
    _series(tmp_path / "dcm", SERIES_A, list(range(6)), "bone")
    _series(tmp_path / "dcm", SERIES_B, list(range(9)), "soft tissue")
    with pytest.raises(ImageReadError, match=r"2 DICOM series.*series_uid=") as error:
        read_image(tmp_path / "dcm")
    assert SERIES_A in str(error.value) and "'soft tissue'" in str(error.value)
    volume = read_image(tmp_path / "dcm", series_uid=SERIES_A)
    assert volume.shape_ijk[2] == 6 and volume.source.series_uid == SERIES_A
    with pytest.raises(ImageReadError, match="series_uid=1.2.3 is not in"):
        read_image(tmp_path / "dcm", series_uid="1.2.3")


def test_series_with_a_missing_slice_is_refused(tmp_path):
    _series(tmp_path / "dcm", SERIES_A, [0, 1, 2, 4, 5, 6])
    with pytest.raises(ImageReadError, match=r"not evenly spaced.*5.00 mm.*2.50 mm"):
        read_image(tmp_path / "dcm")
    _series(tmp_path / "full", SERIES_A, list(range(6)))
    assert np.allclose(read_image(tmp_path / "full").spacing[2], 2.5)


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2000), suffix=st.sampled_from([".nii", ".nii.gz", ".mha",
                                                              ".nrrd"]),
       gzipped=st.booleans())
def test_random_bytes_are_refused_cleanly(tmp_path, data, suffix, gzipped):
    path = tmp_path / f"noise{suffix}"
    path.write_bytes(gzip.compress(data) if gzipped else data)
    try:
        volume = read_image(path)
    except ImageReadError:
        return
    assert volume.array.size == np.prod(volume.shape_ijk)  # pragma: no cover - unlikely


def test_truncated_mha_header_fields_are_fuzzed_safely(tmp_path):
    path = _write(tmp_path / "ct.mha", _volume((20, 20, 20)))
    text = path.read_bytes()
    for cut in range(0, 400, 7):  # cut inside the header and the first voxels
        (tmp_path / "cut.mha").write_bytes(text[:cut])
        with pytest.raises(ImageReadError):
            read_image(tmp_path / "cut.mha")
