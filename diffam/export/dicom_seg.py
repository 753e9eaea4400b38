"""DICOM SEG output: the label map as a DICOM Segmentation referencing the input series.

Written when the input was a DICOM series, so that PACS viewers, OHIF and
3D Slicer (QuantitativeReporting) show the vertebrae over the original
images. One segment per vertebra, labelled by level (``L1``) and coded with
its SNOMED CT concept; the segment colours are those of
:mod:`diffam.export.colortables`.

Needs the optional extra ``dicom`` (``pip install -e ".[dicom]"``: highdicom
and pydicom); :func:`available` says whether it is installed.

Anonymised series often lack SOP Class/Instance UIDs in the data set (they
survive in the file meta header) or Study/Series Instance UIDs. Those are
repaired in memory before referencing: instance UIDs from the file meta,
missing study/series UIDs as deterministic UIDs derived from the instances,
and the repair is reported, since a viewer then cannot match the SEG to the
series by its study/series UID (it still can by the instance UIDs).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from diffam.core.atomic import atomic_path, check_writable
from diffam.core.volume import Volume
from diffam.export.colortables import LabelEntry

log = logging.getLogger(__name__)

#: Position tolerance (mm) between the label map's slices and the series' files.
POSITION_TOLERANCE_MM = 0.05


class DicomSegError(ValueError):
    """A DICOM SEG cannot be written or read; the message says why."""


@dataclass
class DicomSegInfo:
    """What :func:`write_dicom_seg` wrote (for the run report)."""

    path: Path
    segments: dict[int, str]
    series_instance_uid: str
    repaired: list[str] = field(default_factory=list)


def available() -> bool:
    """Whether highdicom and pydicom are installed (the ``dicom`` extra)."""
    try:
        import highdicom  # noqa: F401
        import pydicom  # noqa: F401
    except ImportError:
        return False
    return True


def _require():
    if not available():
        raise DicomSegError(
            'writing DICOM SEG needs highdicom: pip install -e ".[dicom]" '
            "(or set export.dicom_seg=false)"
        )


def read_source_datasets(files: Sequence[Path]) -> tuple[list, list[str]]:
    """The series' data sets (no pixel data), with missing UIDs repaired.

    Returns:
        (datasets in the given order, names of the attributes repaired).
    """
    import pydicom
    from pydicom.uid import generate_uid

    datasets = [pydicom.dcmread(str(f), stop_before_pixels=True) for f in files]
    repaired: set[str] = set()
    for ds in datasets:
        meta = getattr(ds, "file_meta", None)
        for attribute, meta_attribute in (
            ("SOPInstanceUID", "MediaStorageSOPInstanceUID"),
            ("SOPClassUID", "MediaStorageSOPClassUID"),
        ):
            if not str(ds.get(attribute, "") or "").strip():
                value = str(getattr(meta, meta_attribute, "") or "").strip() if meta else ""
                if not value:
                    raise DicomSegError(
                        f"{getattr(ds, 'filename', '?')} has no {attribute} (neither in the data "
                        "set nor in the file meta header): it cannot be referenced by a DICOM SEG"
                    )
                setattr(ds, attribute, value)
                repaired.add(attribute)
    instances = [str(ds.SOPInstanceUID) for ds in datasets]
    for attribute in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        values = {str(ds.get(attribute, "") or "").strip() for ds in datasets}
        values.discard("")
        if len(values) > 1:
            raise DicomSegError(f"the series' files disagree on {attribute}: {sorted(values)}")
        if not values:
            uid = generate_uid(entropy_srcs=[attribute, *instances])
            for ds in datasets:
                setattr(ds, attribute, uid)
            repaired.add(attribute)
        else:
            (value,) = values
            for ds in datasets:
                setattr(ds, attribute, value)
    return datasets, sorted(repaired)


def _check_geometry(labels: Volume, datasets: list) -> None:
    """The label map's slice k must be file k of the series (same position and orientation)."""
    if len(datasets) != labels.array.shape[0]:
        raise DicomSegError(
            f"the label map has {labels.array.shape[0]} slices but the DICOM series "
            f"{len(datasets)} files: the SEG can only reference the series it was computed on"
        )
    rows, columns = labels.array.shape[1:]
    corners = labels.index_to_world(np.array([[0.0, 0.0, k] for k in range(len(datasets))]))
    for k, ds in enumerate(datasets):
        if (int(ds.Rows), int(ds.Columns)) != (rows, columns):
            raise DicomSegError(
                f"slice {k} of the series is {ds.Rows} x {ds.Columns}, the label "
                f"map's slices {rows} x {columns}"
            )
        position = np.array([float(x) for x in ds.ImagePositionPatient])
        if np.abs(position - corners[k]).max() > POSITION_TOLERANCE_MM:
            raise DicomSegError(
                f"slice {k} of the series lies at {position.tolist()} mm but the label map's "
                f"slice {k} at {corners[k].round(3).tolist()} mm: not the grid of this series"
            )


def _property_type(verse_id: int, name: str):
    from pydicom.sr.codedict import codes

    key = {"sacrum": "Sacrum"}.get(name, f"{name}Vertebra")
    try:
        return getattr(codes.SCT, key)
    except AttributeError:  # L6, T13: no own concept
        return codes.SCT.Vertebra


def _cielab(rgb: tuple[int, int, int]):
    from highdicom.color import CIELabColor
    from skimage.color import rgb2lab

    lab = rgb2lab(np.array(rgb, dtype=float).reshape(1, 1, 3) / 255.0)[0, 0]
    return CIELabColor(
        float(np.clip(lab[0], 0, 100)),
        float(np.clip(lab[1], -127, 128)),
        float(np.clip(lab[2], -127, 128)),
    )


def write_dicom_seg(
    labels: Volume,
    source_files: Sequence[Path],
    entries: Sequence[LabelEntry],
    path: Path,
    *,
    overwrite: bool = False,
    software_version: str = "",
    series_description: str = "diffam vertebrae",
) -> DicomSegInfo:
    """Write ``labels`` (on the series' own grid) as a DICOM SEG referencing ``source_files``.

    Args:
        labels: integer label map with the geometry of the series
            (``labels.array[k]`` is file ``source_files[k]``).
        source_files: the series' files in slice order (``ImageSource.dicom_files``).
        entries: value -> name/colour of every label that may occur; values
            present in ``labels`` but not here are refused.
        path: output ``.dcm`` file.
        overwrite: replace an existing file.

    Returns:
        :class:`DicomSegInfo` (segment number -> level name, UIDs, repairs).
    """
    _require()
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    path = Path(path)
    check_writable(path, overwrite=overwrite)
    datasets, repaired = read_source_datasets(source_files)
    _check_geometry(labels, datasets)
    by_value = {e.value: e for e in entries}
    present = sorted(int(v) for v in np.unique(labels.array) if v != 0)
    unknown = [v for v in present if v not in by_value]
    if unknown:
        raise DicomSegError(f"label values {unknown} have no name in the label table")
    if not present:
        raise DicomSegError("the label map is empty: no vertebra to write as a DICOM SEG")
    # Segment numbers 1..N in the order of the label values.
    segment_map = np.zeros(int(labels.array.max()) + 1, dtype=np.uint16)
    descriptions = []
    algorithm = hd.AlgorithmIdentificationSequence(
        name="diffam", family=codes.cid7162.DeformableModels, version=software_version or "0"
    )
    for number, value in enumerate(present, 1):
        segment_map[value] = number
        entry = by_value[value]
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=entry.name,
                segmented_property_category=codes.cid7150.AnatomicalStructure,
                segmented_property_type=_property_type(entry.verse_id, entry.name),
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm,
                tracking_id=f"{entry.name} (label {value})",
                tracking_uid=generate_uid(),
                display_color=_cielab(entry.rgb),
            )
        )
    pixel_array = segment_map[labels.array.astype(np.int64)]
    seg = hd.seg.Segmentation(
        source_images=datasets,
        pixel_array=pixel_array,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(),
        series_number=9901,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="diffam",
        manufacturer_model_name="diffam",
        software_versions=software_version or "0",
        device_serial_number="0",
        series_description=series_description,
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        omit_empty_frames=True,
    )
    with atomic_path(path, overwrite=overwrite) as temporary:
        seg.save_as(str(temporary))
    if repaired:
        log.warning(
            "the DICOM series lacks %s; repaired in the SEG's references (see diffam.export.dicom_seg)",
            ", ".join(repaired),
        )
    return DicomSegInfo(
        path,
        {n: by_value[v].name for n, v in enumerate(present, 1)},
        str(seg.SeriesInstanceUID),
        repaired,
    )


def read_dicom_seg(path: Path, source_files: Sequence[Path]) -> dict[str, np.ndarray]:
    """Read a DICOM SEG back as one boolean mask per segment on the series' grid.

    Args:
        path: the SEG file.
        source_files: the referenced series' files in slice order.

    Returns:
        segment label (e.g. ``'L1'``) -> ``(Z, Y, X)`` bool mask, ``mask[k]``
        on file ``source_files[k]``.
    """
    _require()
    import highdicom as hd

    seg = hd.seg.segread(str(path))
    datasets, _ = read_source_datasets(source_files)
    uids = [str(ds.SOPInstanceUID) for ds in datasets]
    numbers = list(seg.segment_numbers)
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids,
        segment_numbers=numbers,
        combine_segments=False,
        assert_missing_frames_are_empty=True,
    )
    return {
        seg.get_segment_description(n).segment_label: pixels[..., i].astype(bool)
        for i, n in enumerate(numbers)
    }
