"""Reading and writing CT volumes and label maps (NIfTI, MHA/MHD, NRRD, DICOM series).

Everything goes through SimpleITK; the result is a :class:`~diffam.core.volume.Volume`
in LPS millimetres with its geometry kept exactly.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from diffam.core.atomic import atomic_path, check_writable, full_suffix
from diffam.core.image_checks import check_file, check_geometry
from diffam.core.volume import ImageReadError, ImageSource, Volume

#: Suffixes of the image files the package reads, longest first (so ``.nii.gz``
#: is recognised before ``.nii``).
IMAGE_SUFFIXES = (".nii.gz", ".img.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr", ".nia",
                  ".hdr", ".dcm")
#: Suffixes that :func:`write_image` accepts (MHD and NHDR write two files,
#: which cannot be renamed into place atomically).
WRITE_SUFFIXES = (".nii", ".nii.gz", ".mha", ".nrrd")


def image_stem(path: str | os.PathLike, strip: tuple[str, ...] | list[str] = ()) -> str:
    """A file name without its image suffix and without the first of ``strip`` it ends with.

    ``a/sub-01_seg.nii.gz`` with ``strip=("_seg",)`` -> ``sub-01``; a folder (DICOM
    series) keeps its name; an unknown suffix is cut at the last dot.
    """
    name = Path(str(path).rstrip("/\\")).name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    else:
        if not Path(path).is_dir():
            name = Path(name).stem
    for suffix in strip:
        if suffix and name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


# ---------------------------------------------------------------------- reading
def _format_of(path: Path, io_name: str = "") -> str:
    suffix = full_suffix(path).lower()
    if suffix in (".nii", ".nii.gz"):
        return "nifti"
    if suffix in (".mha", ".mhd"):
        return "metaimage"
    if suffix in (".nrrd", ".nhdr"):
        return "nrrd"
    if "GDCM" in io_name or "DCMTK" in io_name:
        return "dicom"
    return io_name or suffix.lstrip(".") or "unknown"


def _check_image(image: sitk.Image, where: str) -> None:
    dim = image.GetDimension()
    if dim == 2:
        raise ImageReadError(
            f"{where} is a 2D image of size {image.GetSize()}; diffam needs a 3D CT volume "
            "(for DICOM, give the folder holding the whole series, not one slice)"
        )
    if dim != 3:
        raise ImageReadError(
            f"{where} has {dim} dimensions (size {image.GetSize()}); diffam needs one 3D "
            "volume: extract a single 3D frame first"
        )
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ImageReadError(
            f"{where} has {image.GetNumberOfComponentsPerPixel()} components per voxel (vector or "
            "RGB image); diffam needs a scalar CT volume: extract one component first"
        )
    if min(image.GetSize()) < 2:
        raise ImageReadError(
            f"{where} has size {image.GetSize()}, a single slice; diffam needs a 3D volume "
            "with at least 2 voxels along every axis"
        )


def _series_description(files) -> str:
    text = _dicom_tag(files[0], "0008|103e") if files else ""
    return f" {text!r}" if text else ""


def _choose_series(folder: Path, files_per_series: dict, series_uid: str | None) -> str:
    """The series to read: ``series_uid`` when given, else the only one (several: refused)."""
    listing = "; ".join(f"{uid or '(no uid)'}: {len(files)} files{_series_description(files)}"
                        for uid, files in files_per_series.items())
    if series_uid:
        if series_uid not in files_per_series:
            raise ImageReadError(
                f"series_uid={series_uid} is not in {folder}; the series there are: {listing}")
        return series_uid
    if len(files_per_series) > 1:
        raise ImageReadError(
            f"{folder} holds {len(files_per_series)} DICOM series ({listing}); choose one with "
            "series_uid=<SeriesInstanceUID>, or move each series to its own folder")
    return next(iter(files_per_series))


def _read_dicom_folder(folder: Path, series_uid: str | None = None) -> Volume:
    reader = sitk.ImageSeriesReader()
    try:
        series = reader.GetGDCMSeriesIDs(str(folder))
    except RuntimeError as err:  # pragma: no cover - GDCM internal failure
        raise ImageReadError(f"cannot scan folder {folder} for DICOM series: {err}") from err
    if not series:
        if not any(folder.iterdir()):
            raise ImageReadError(
                f"folder {folder} is empty; give a NIfTI/MHA/NRRD file or a folder holding one "
                "DICOM series"
            )
        raise ImageReadError(
            f"no DICOM series found in folder {folder}; give a folder of DICOM slices, or the "
            "image file itself (.nii.gz, .mha, .nrrd)"
        )
    files_per_series = {uid: reader.GetGDCMSeriesFileNames(str(folder), uid) for uid in series}
    uid = _choose_series(folder, files_per_series, series_uid)
    files = files_per_series[uid]
    _check_slice_positions(folder, files)
    reader.SetFileNames(files)
    try:
        image = reader.Execute()
    except RuntimeError as err:
        raise ImageReadError(
            f"cannot read DICOM series {uid or '(no uid)'} in {folder} ({len(files)} files): {err}"
        ) from err
    _check_image(image, f"DICOM series in {folder}")
    check_geometry(image.GetSpacing(), image.GetDirection(), f"DICOM series in {folder}")
    if not uid:  # GDCM returns an empty id when it groups files without the tag
        uid = _dicom_tag(files[0], "0020|000e")
    source = ImageSource(
        path=folder,
        format="dicom",
        is_dicom=True,
        series_uid=uid or None,
        dicom_files=tuple(Path(f) for f in files),
    )
    return Volume.from_sitk(image, source)


def _check_slice_positions(folder: Path, files, tolerance: float = 0.2) -> None:
    """Refuse a series whose slices are not evenly spaced (a missing or repeated slice).

    ITK would read it with the averaged spacing, misplacing every slice after
    the gap; the fix is to complete the series (or resample it outside diffam).
    """
    if len(files) < 3:
        return
    reader = sitk.ImageFileReader()
    positions, normal = [], None
    for name in files:
        reader.SetFileName(str(name))
        try:
            reader.ReadImageInformation()
            position = [float(v) for v in reader.GetMetaData("0020|0032").split("\\")]
            if normal is None:
                cosines = [float(v) for v in reader.GetMetaData("0020|0037").split("\\")]
                normal = np.cross(cosines[:3], cosines[3:6])
        except (RuntimeError, ValueError):
            return  # no usable position tags: nothing to check against
        positions.append(np.dot(normal, position))
    gaps = np.diff(np.sort(np.asarray(positions)))
    step = float(np.median(gaps))
    bad = np.flatnonzero(np.abs(gaps - step) > tolerance * max(step, 1e-6))
    if step <= 1e-6 or len(bad):
        where = (f"slice positions repeat (median gap {step:.3f} mm)" if step <= 1e-6 else
                 f"the gap after slice {int(bad[0]) + 1} of {len(files)} is "
                 f"{gaps[bad[0]]:.2f} mm where the others are {step:.2f} mm")
        raise ImageReadError(
            f"DICOM series in {folder} is not evenly spaced: {where} (a missing or repeated "
            "slice); reading it would misplace the slices. Complete the series, or resample "
            "it to an even grid (e.g. convert it to NIfTI with dcm2niix) and give that file")


def _dicom_tag(path: str, tag: str) -> str:
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return ""
    return reader.GetMetaData(tag).strip() if reader.HasMetaDataKey(tag) else ""


def read_image(path: str | os.PathLike, *, series_uid: str | None = None) -> Volume:
    """Read a 3D CT volume (or label map) with its geometry.

    Supported: NIfTI (``.nii``, ``.nii.gz``), MetaImage (``.mha``, ``.mhd``),
    NRRD (``.nrrd``, ``.nhdr``), other single-file formats SimpleITK reads,
    and a folder holding a DICOM series (if it holds several, ``series_uid``
    names the one to read; slices are sorted by position and a series with a
    missing or unevenly spaced slice is refused).

    Args:
        path: image file or DICOM folder.
        series_uid: SeriesInstanceUID to read from a DICOM folder holding several.

    Returns:
        The volume with its :class:`ImageSource` in ``volume.source``; the array
        keeps the file's voxel type (e.g. int16 HU, uint8 labels).

    Raises:
        ImageReadError: missing path, empty folder, unreadable file, or an image
            that is not a 3D scalar volume.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(
            f"image path {path} does not exist; check the path (and the working folder)"
        )
    if path.is_dir():
        return _read_dicom_folder(path, series_uid)
    check_file(path)  # truncated/damaged data, zero NIfTI spacing: refused before reading
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        image = reader.Execute()
    except RuntimeError as err:
        first_line = str(err).strip().splitlines()[-1] if str(err).strip() else ""
        raise ImageReadError(
            f"{path} is not a readable image ({first_line}); give a NIfTI (.nii/.nii.gz), "
            "MHA/MHD, NRRD file or a DICOM folder"
        ) from err
    _check_image(image, str(path))
    check_geometry(image.GetSpacing(), image.GetDirection(), str(path))
    io_name = reader.GetImageIO()
    fmt = _format_of(path, io_name)
    is_dicom = fmt == "dicom"
    source = ImageSource(
        path=path,
        format=fmt,
        is_dicom=is_dicom,
        series_uid=(_dicom_tag(str(path), "0020|000e") or None) if is_dicom else None,
        dicom_files=(path,) if is_dicom else (),
    )
    return Volume.from_sitk(image, source)


# ---------------------------------------------------------------------- writing
def label_dtype(array: np.ndarray) -> np.dtype:
    """Smallest integer type for a label map: uint8, uint16, int16 or int32.

    Raises:
        ValueError: the array holds non-integer values.
    """
    array = np.asarray(array)
    if array.size == 0:
        return np.dtype(np.uint8)
    if array.dtype.kind == "f" and not np.all(np.mod(array, 1) == 0):
        raise ValueError(
            "label map holds non-integer values; round it (or pass label_map=False to write "
            "an intensity image)"
        )
    lo, hi = int(array.min()), int(array.max())
    if lo >= 0 and hi < 256:
        return np.dtype(np.uint8)
    if lo >= 0 and hi < 65536:
        return np.dtype(np.uint16)
    if lo >= -32768 and hi < 32768:
        return np.dtype(np.int16)
    return np.dtype(np.int32)


def write_image(
    volume: Volume,
    path: str | os.PathLike,
    *,
    label_map: bool = False,
    overwrite: bool = False,
    compress: bool = True,
) -> Path:
    """Write ``volume`` atomically with its exact geometry.

    Args:
        volume: the volume to write.
        path: output file; ``.nii.gz``, ``.nii``, ``.mha`` or ``.nrrd``.
        label_map: cast to the smallest integer type that holds the labels
            (uint8 when the maximum is below 256, else uint16 or int16) instead
            of keeping the array's type.
        overwrite: replace an existing file.
        compress: compress the voxel data where the format allows.

    Returns:
        The written path.

    Raises:
        ValueError: unsupported suffix or non-integer labels.
        FileExistsError: the file exists and ``overwrite`` is false.
        FileNotFoundError, PermissionError: the folder is missing or not writable.
    """
    path = Path(path)
    suffix = full_suffix(path).lower()
    if suffix not in WRITE_SUFFIXES:
        hint = (
            " (.mhd/.nhdr write two files; use .mha or .nrrd)"
            if suffix in (".mhd", ".nhdr")
            else ""
        )
        raise ValueError(
            f"cannot write {path}: unsupported suffix {suffix!r}{hint}; use one of "
            f"{', '.join(WRITE_SUFFIXES)}"
        )
    check_writable(path, overwrite=overwrite)
    array = volume.array
    if label_map:
        array = array.astype(label_dtype(array))
    elif array.dtype == np.bool_:
        array = array.astype(np.uint8)
    elif array.dtype == np.float16:
        array = array.astype(np.float32)
    image = volume.with_array(array).to_sitk()
    with atomic_path(path, overwrite=overwrite) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=compress)
    return path


