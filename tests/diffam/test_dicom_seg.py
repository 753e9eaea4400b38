"""DICOM input: label map header equal to the series', and the DICOM SEG round trip.

Uses the real series ``../shared/data/ct/dicom_t11_t12`` (anonymised: its
SOP Instance, Study and Series UIDs are empty in the data sets, as often in
shared data) with a label map on its grid (TotalSegmentator's T11/T12
resampled onto it, plus a synthetic box), and a small synthetic *oblique*
series written here with SimpleITK. No segmentation runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from diffam.core.config import SegmentationConfig
from diffam.core.image import read_image
from diffam.core.labels import totalsegmentator_to_verse
from diffam.core.volume import Volume, resample_like
from diffam.export.colortables import label_entries
from diffam.export.files import DICOM_SEG_FILE
from diffam.export.writers import write_outputs
from tests.diffam.phantom_spine import rotation
from tests.diffam.test_outputs import _assert_same_header, synthetic_result

highdicom = pytest.importorskip(
    "highdicom",
    reason="DICOM SEG needs the optional extra: pip install -e '.[dicom]' (highdicom, pydicom)",
)
from diffam.export.dicom_seg import (  # noqa: E402
    DicomSegError,
    read_dicom_seg,
    read_source_datasets,
    write_dicom_seg,
)

SERIES = Path("ct/dicom_t11_t12")
SERIES_LABELS = Path("ct/dicom_t11_t12_labels/labels_totalsegmentator.nii.gz")


@pytest.fixture(scope="module")
def real_series(shared_data) -> tuple[Volume, Volume]:
    """The real series and a label map on its grid: VerSe T11 (18), T12 (19) and a box (20)."""
    image = read_image(shared_data / SERIES)
    ts = read_image(shared_data / SERIES_LABELS)
    labels = totalsegmentator_to_verse(resample_like(ts, image).array)
    labels[2:6, 100:140, 300:360] = 20  # a synthetic 'L1' box touching a few slices only
    return image, image.with_array(labels)


def _masks_equal(back: dict[str, np.ndarray], labels: np.ndarray, convention="verse"):
    entries = {e.name: e.value for e in label_entries(convention)}
    present = {int(v) for v in np.unique(labels) if v}
    assert {entries[name] for name in back} == present
    for name, mask in back.items():
        assert mask.shape == labels.shape
        np.testing.assert_array_equal(mask, labels == entries[name], err_msg=name)


def test_real_series_seg_round_trip(real_series, tmp_path):
    image, labels = real_series
    assert image.source.is_dicom and len(image.source.dicom_files) == image.array.shape[0]
    assert {18, 19, 20} <= set(np.unique(labels.array).tolist())
    info = write_dicom_seg(
        labels, image.source.dicom_files, label_entries("verse"), tmp_path / "seg.dcm"
    )
    assert info.segments == {1: "T11", 2: "T12", 3: "L1"}
    # The shared series is anonymised: the references were repaired, and said so.
    assert "SOPInstanceUID" in info.repaired
    _masks_equal(read_dicom_seg(info.path, image.source.dicom_files), labels.array)

    import pydicom

    seg = pydicom.dcmread(str(info.path))
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    # Every frame references an instance of the series (by its real SOP Instance UID).
    sources, _ = read_source_datasets(image.source.dicom_files)
    uids = {str(ds.SOPInstanceUID) for ds in sources}
    assert {str(ds.file_meta.MediaStorageSOPInstanceUID) for ds in sources} == uids
    referenced = {
        str(item.ReferencedSOPInstanceUID)
        for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    }
    assert referenced == uids
    assert seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["T11", "T12", "L1"]
    coded = seg.SegmentSequence[1].SegmentedPropertyTypeCodeSequence[0]
    assert (coded.CodeValue, coded.CodingSchemeDesignator) == ("23215003", "SCT")  # T12 vertebra


def test_real_series_seg_geometry_matches_the_series(real_series, tmp_path):
    """The SEG's frames lie where the label map's slices lie (read through its own geometry)."""
    image, labels = real_series
    info = write_dicom_seg(
        labels, image.source.dicom_files, label_entries("verse"), tmp_path / "seg.dcm"
    )
    import pydicom

    seg = pydicom.dcmread(str(info.path))
    shared = seg.SharedFunctionalGroupsSequence[0]
    spacing = [float(s) for s in shared.PixelMeasuresSequence[0].PixelSpacing]
    np.testing.assert_allclose(spacing[::-1], image.spacing[:2], atol=1e-6)
    orientation = [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient]
    np.testing.assert_allclose(orientation[:3], image.direction[:, 0], atol=1e-6)
    np.testing.assert_allclose(orientation[3:], image.direction[:, 1], atol=1e-6)
    positions = {
        tuple(np.round([float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient], 3))
        for f in seg.PerFrameFunctionalGroupsSequence
    }
    occupied = [k for k in range(labels.array.shape[0]) if labels.array[k].any()]
    expected = {tuple(np.round(image.index_to_world(np.array([0.0, 0.0, k])), 3)) for k in occupied}
    assert positions == expected


def test_real_series_through_write_outputs(real_series, tmp_path):
    """The run's writer: labels.nii.gz with the series' header, labels_seg.dcm, report entry."""
    image, labels = real_series
    config = SegmentationConfig(template="lumbar", device="cpu")
    config.export.qc_images = False
    config.export.fit_score = False
    result = synthetic_result(image, config)  # fitted meshes are not used for the SEG
    result.labels = labels
    written = write_outputs(result, image, tmp_path, config, inputs={"scan": str(SERIES)})
    assert written["dicom_seg"] == tmp_path / DICOM_SEG_FILE
    _assert_same_header(read_image(written["labels"]), image)
    _masks_equal(read_dicom_seg(written["dicom_seg"], image.source.dicom_files), labels.array)
    report = json.loads(written["report"].read_text(encoding="utf-8"))
    assert report["dicom_seg"]["file"] == DICOM_SEG_FILE
    assert set(report["dicom_seg"]["segments"].values()) == {"T11", "T12", "L1"}
    assert any("DICOM series lacks" in w for w in report["warnings"])


def test_totalsegmentator_ids_in_the_seg(real_series, tmp_path):
    from diffam.core.labels import verse_to_totalsegmentator

    image, labels = real_series
    ts = image.with_array(verse_to_totalsegmentator(labels.array))
    info = write_dicom_seg(
        ts, image.source.dicom_files, label_entries("totalsegmentator"), tmp_path / "seg.dcm"
    )
    assert sorted(info.segments.values()) == ["L1", "T11", "T12"]
    _masks_equal(read_dicom_seg(info.path, image.source.dicom_files), ts.array, "totalsegmentator")


def test_seg_refuses_a_label_map_of_another_grid(real_series, tmp_path):
    image, labels = real_series
    moved = Volume(labels.array, labels.spacing, labels.origin + [0.0, 0.0, 2.0], labels.direction)
    with pytest.raises(DicomSegError, match="not the grid of this series"):
        write_dicom_seg(moved, image.source.dicom_files, label_entries(), tmp_path / "seg.dcm")
    with pytest.raises(DicomSegError, match="slices"):
        shorter = Volume(labels.array[:-1], labels.spacing, labels.origin, labels.direction)
        write_dicom_seg(shorter, image.source.dicom_files, label_entries(), tmp_path / "seg.dcm")
    assert not (tmp_path / "seg.dcm").exists()


# ---------------------------------------------------------------------- oblique series
def write_oblique_series(
    folder: Path,
    direction: np.ndarray,
    spacing=(1.2, 1.0, 2.5),
    origin=(-20.0, 15.0, 100.0),
    shape_zyx=(36, 60, 70),
) -> Volume:
    """A synthetic CT series with oblique slices (one DICOM file per slice), SimpleITK-written."""
    from tests.diffam.test_outputs import synthetic_ct

    volume = synthetic_ct(direction, spacing, origin, shape_zyx)
    image = volume.to_sitk()
    folder.mkdir(parents=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    study = "1.2.826.0.1.3680043.8.498.1"
    series = "1.2.826.0.1.3680043.8.498.2"
    frame = "1.2.826.0.1.3680043.8.498.3"
    d = volume.direction
    orientation = "\\".join(f"{v:.10f}" for v in (*d[:, 0], *d[:, 1]))
    for k in range(image.GetDepth()):
        slice_image = image[:, :, k]
        position = volume.index_to_world(np.array([0.0, 0.0, float(k)]))
        tags = {
            "0008|0016": "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
            "0008|0018": f"1.2.826.0.1.3680043.8.498.10.{k + 1}",
            "0008|0060": "CT",
            "0010|0020": "PHANTOM",
            "0020|000d": study,
            "0020|000e": series,
            "0020|0052": frame,
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:.6f}" for v in position),
            "0020|0037": orientation,
            "0028|0030": f"{volume.spacing[1]:.6f}\\{volume.spacing[0]:.6f}",
            "0018|0050": f"{volume.spacing[2]:.6f}",
            "0028|1052": "0",
            "0028|1053": "1",
        }
        for tag, value in tags.items():
            slice_image.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(slice_image)
    return volume


def test_oblique_series_header_and_seg_round_trip(tmp_path):
    direction = rotation((15.0, -10.0, 25.0))
    truth = write_oblique_series(tmp_path / "series", direction)
    image = read_image(tmp_path / "series")
    assert image.source.is_dicom
    _assert_same_header(image, truth)  # the reader keeps the oblique geometry
    config = SegmentationConfig(template="lumbar", device="cpu")
    config.export.qc_images = False
    result = synthetic_result(image, config)
    written = write_outputs(result, image, tmp_path / "out", config)
    labels = read_image(written["labels"])
    _assert_same_header(labels, image)
    np.testing.assert_array_equal(labels.array, result.labels.array)
    back = read_dicom_seg(written["dicom_seg"], image.source.dicom_files)
    _masks_equal(back, result.labels.array)
    report = json.loads(written["report"].read_text(encoding="utf-8"))
    assert report["dicom_seg"]["repaired_source_attributes"] == []
    assert report["image"]["orientation"] == image.orientation_code()


def test_no_seg_for_non_dicom_input_and_when_switched_off(tmp_path):
    from tests.diffam.test_outputs import synthetic_ct

    image = synthetic_ct()
    config = SegmentationConfig(template="lumbar", device="cpu")
    config.export.qc_images = False
    config.export.fit_score = False
    written = write_outputs(synthetic_result(image, config), image, tmp_path / "a", config)
    assert "dicom_seg" not in written
    truth_dir = tmp_path / "series"
    write_oblique_series(truth_dir, np.eye(3))
    series = read_image(truth_dir)
    config.export.dicom_seg = False
    written = write_outputs(synthetic_result(series, config), series, tmp_path / "b", config)
    assert "dicom_seg" not in written and not (tmp_path / "b" / DICOM_SEG_FILE).exists()
