"""Write a run's output folder: label map, tables, DICOM SEG, meshes, centroids, reports, QC.

Every file is written atomically, and an existing output is refused unless
``overwrite`` is set, so neither an interrupted run nor a second run can
destroy a previous result. ``report.json`` is written last: its presence
marks a finished run.

An output folder holds::

    labels.nii.gz          label map on the input grid (export.format: nii.gz, nii, mha,
                           nrrd, or auto = the input's format)
    labels.ctbl            3D Slicer colour table (names and colours of the levels)
    labels_itksnap.txt     ITK-SNAP label description file
    labels_seg.dcm         DICOM SEG referencing the input series (DICOM input only)
    masks/<level>.nii.gz   one mask per vertebra (export.per_vertebra_masks)
    meshes/<level>.ply     fitted surfaces, world LPS mm, template vertex order
    centroids.json/.csv    the initial centroids used
    qc/sagittal.png, qc/coronal.png, qc/losses.png
    report.json, report.md
"""

from __future__ import annotations

import json
import logging
import platform
from dataclasses import asdict
from pathlib import Path

import numpy as np

from diffam.atomic import atomic_path, check_writable
from diffam.centroids import write_centroids_csv, write_verse_json
from diffam.config import SegmentationConfig
from diffam.image import Volume, write_image
from diffam.labels import VERSE_TO_TOTALSEGMENTATOR, level_name
from diffam.segment import SegmentationResult

log = logging.getLogger(__name__)

LABELS_STEM = "labels"
LABELS_FILE = "labels.nii.gz"
REPORT_FILE = "report.json"
REPORT_MD_FILE = "report.md"
SLICER_TABLE_FILE = "labels.ctbl"
ITKSNAP_TABLE_FILE = "labels_itksnap.txt"
DICOM_SEG_FILE = "labels_seg.dcm"
QC_DIR = "qc"
QC_FILES = ("sagittal.png", "coronal.png", "losses.png")
#: Label map formats (``export.format``), besides ``auto``.
LABEL_FORMATS = ("nii.gz", "nii", "mha", "nrrd")


# ---------------------------------------------------------------------- names
def label_format(export_format: str, image: Volume | None = None) -> str:
    """The label map's file suffix (without dot) for ``export.format``.

    ``auto`` follows the input: ``.nii``/``.nii.gz``, ``.mha`` for MetaImage
    (``.mhd`` too: a two-file format cannot be written atomically), ``.nrrd``
    for NRRD; NIfTI (``nii.gz``) for DICOM input, the phantom and other formats.
    """
    export_format = str(export_format).lower().lstrip(".")
    if export_format in LABEL_FORMATS:
        return export_format
    if export_format != "auto":
        raise ValueError(
            f"export.format must be auto or one of {', '.join(LABEL_FORMATS)}, "
            f"got {export_format!r}"
        )
    source = image.source if image is not None else None
    if source is None:
        return "nii.gz"
    if source.format == "nifti":
        return "nii" if str(source.path).lower().endswith(".nii") else "nii.gz"
    return {"metaimage": "mha", "nrrd": "nrrd"}.get(source.format, "nii.gz")


def labels_path(output_dir: Path, fmt: str = "nii.gz") -> Path:
    return Path(output_dir) / f"{LABELS_STEM}.{fmt}"


def _existing_labels(output_dir: Path) -> list[Path]:
    return [
        labels_path(output_dir, f) for f in LABEL_FORMATS if labels_path(output_dir, f).exists()
    ]


def output_files(output_dir: Path, fmt: str | None = None) -> list[Path]:
    """The main files a finished run leaves (used to skip finished scans in batch mode).

    Args:
        output_dir: the run's folder.
        fmt: the label map's format; None: whichever ``labels.*`` exists
            (``labels.nii.gz`` when none does).
    """
    output_dir = Path(output_dir)
    if fmt is None:
        existing = _existing_labels(output_dir)
        labels = existing[0] if existing else output_dir / LABELS_FILE
    else:
        labels = labels_path(output_dir, fmt)
    return [labels, output_dir / REPORT_FILE]


def _all_output_names(output_dir: Path) -> list[Path]:
    output_dir = Path(output_dir)
    names = [labels_path(output_dir, f) for f in LABEL_FORMATS]
    names += [
        output_dir / n
        for n in (
            REPORT_FILE,
            REPORT_MD_FILE,
            SLICER_TABLE_FILE,
            ITKSNAP_TABLE_FILE,
            DICOM_SEG_FILE,
        )
    ]
    names += [output_dir / QC_DIR / n for n in QC_FILES]
    names += [output_dir / "centroids.json", output_dir / "centroids.csv"]
    for folder in ("meshes", "masks"):  # any earlier mesh or mask would stop the writing
        if (output_dir / folder).is_dir():
            names += sorted(p for p in (output_dir / folder).iterdir() if p.is_file())
    return names


def check_output_dir(output_dir: Path, overwrite: bool) -> None:
    """Refuse to start a run whose results would replace an existing one.

    Creates the folder, checks that it is writable and that none of the files
    a run writes exists (unless ``overwrite``), before any work is done.

    Raises:
        FileExistsError: a result exists and ``overwrite`` is false.
        PermissionError, NotADirectoryError, FileNotFoundError: the folder
            cannot be created or written (one-line message naming it).
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise NotADirectoryError(
            f"output_dir={output_dir} is a file, not a folder; choose another output_dir"
        )
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PermissionError(
            f"cannot create output folder {output_dir} "
            f"({error.strerror or error}); choose another output_dir"
        ) from None
    for path in _all_output_names(output_dir):
        if path.exists() and not overwrite:
            raise FileExistsError(
                f"{path} exists from an earlier run; pass overwrite=true to replace the results "
                "(or resume=true to continue a stopped run), or choose another output_dir"
            )
    check_writable(output_dir / REPORT_FILE, overwrite=True)


# ---------------------------------------------------------------------- pieces
def write_mesh(vertices: np.ndarray, faces: np.ndarray, path: Path, overwrite: bool) -> None:
    """PLY or STL (by suffix) in world LPS mm, vertex order of the template.

    PLY keeps the vertex order (vertices correspond across scans); STL stores
    triangles only, so readers rebuild the vertices (same positions, their own order).
    """
    import trimesh

    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    with atomic_path(path, overwrite=overwrite) as temporary:
        mesh.export(temporary, file_type=path.suffix.lstrip("."))


def exported_id(verse_id: int, config: SegmentationConfig) -> int:
    """Value of a vertebra (by VerSe id) in the exported label map; 0 if it has none."""
    if config.export.labels == "totalsegmentator":
        return VERSE_TO_TOTALSEGMENTATOR.get(int(verse_id), 0)
    return int(verse_id)


_exported_id = exported_id  # earlier name


def _label_entries(config: SegmentationConfig):
    from diffam.colortables import label_entries

    return label_entries(config.export.labels)


def _want_dicom_seg(setting, image: Volume) -> bool | None:
    """True: write it, and fail if impossible; None: write it if possible; False: no."""
    text = str(setting).strip().lower()
    if text in ("false", "0", "no", "off"):
        return False
    if image.source is None or not image.source.is_dicom or len(image.source.dicom_files) < 2:
        if text in ("true", "1", "yes", "on"):
            log.info("export.dicom_seg=true but the input is not a DICOM series: no DICOM SEG")
        return False
    if text in ("true", "1", "yes", "on"):
        return True
    if text == "auto":
        return None
    raise ValueError(f"export.dicom_seg must be auto, true or false, got {setting!r}")


# ---------------------------------------------------------------------- main
def write_outputs(
    result: SegmentationResult,
    image: Volume,
    output_dir: Path,
    config: SegmentationConfig,
    *,
    overwrite: bool = False,
    inputs: dict | None = None,
) -> dict[str, Path]:
    """Write everything a user opens after a run.

    Files that only help (tables, DICOM SEG in ``auto`` mode, fit scores, QC
    pictures) never make the run fail: a failure is logged and listed in the
    report's ``warnings``.

    Returns:
        name -> path of every file written.
    """
    import diffam

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    export = config.export
    fmt = label_format(export.format, image)
    fit = result.fit
    warnings: list[str] = []
    written: dict[str, Path] = {}
    written["labels"] = write_image(
        result.labels, labels_path(output_dir, fmt), label_map=True, overwrite=overwrite
    )
    entries = _label_entries(config)
    if export.color_tables:
        from diffam.colortables import write_itksnap_labels, write_slicer_ctbl

        written["slicer_table"] = write_slicer_ctbl(
            entries, output_dir / SLICER_TABLE_FILE, overwrite=overwrite
        )
        written["itksnap_table"] = write_itksnap_labels(
            entries, output_dir / ITKSNAP_TABLE_FILE, overwrite=overwrite
        )
    if export.per_vertebra_masks:
        mask_dir = output_dir / "masks"
        mask_dir.mkdir(exist_ok=True)
        for verse_id, level in zip(fit.verse_ids, fit.levels):
            mask = (result.labels.array == exported_id(verse_id, config)).astype(np.uint8)
            written[f"mask_{level}"] = write_image(
                result.labels.with_array(mask),
                mask_dir / f"{level}.{fmt}",
                label_map=True,
                overwrite=overwrite,
            )
    if export.meshes:
        mesh_dir = output_dir / "meshes"
        mesh_dir.mkdir(exist_ok=True)
        for level, vertices in zip(fit.levels, fit.vertices):
            path = mesh_dir / f"{level}.{export.mesh_format}"
            write_mesh(vertices, fit.faces, path, overwrite)
            written[f"mesh_{level}"] = path
    dicom_seg_info = None
    want_seg = _want_dicom_seg(export.dicom_seg, image)
    if want_seg is not False:
        from diffam import dicom_seg

        try:
            if not dicom_seg.available():
                raise dicom_seg.DicomSegError(
                    'no DICOM SEG written: highdicom is not installed (pip install -e ".[dicom]")'
                )
            dicom_seg_info = dicom_seg.write_dicom_seg(
                result.labels,
                image.source.dicom_files,
                entries,
                output_dir / DICOM_SEG_FILE,
                overwrite=overwrite,
                software_version=diffam.__version__,
            )
            written["dicom_seg"] = dicom_seg_info.path
        except (dicom_seg.DicomSegError, OSError) as error:
            if want_seg:
                raise
            log.warning("%s", error)
            warnings.append(str(error))
    written["centroids_json"] = output_dir / "centroids.json"
    # Each file holds the kind it is read as by default (centroids_kind=auto):
    # the JSON body centres, the CSV whole-vertebra centres, both of the initial placement.
    json_centroids = getattr(result, "body_centroids", None) or result.centroids
    csv_centroids = getattr(result, "vertebra_centroids", None) or result.centroids
    write_verse_json(json_centroids, image, written["centroids_json"], overwrite=overwrite)
    written["centroids_csv"] = output_dir / "centroids.csv"
    write_centroids_csv(csv_centroids, written["centroids_csv"], overwrite=overwrite)

    scores = None
    if export.fit_score and fit.appearance_profile is not None and len(fit.levels):
        try:
            from diffam.fit_score import fit_scores

            scores = fit_scores(
                fit.vertices,
                fit.faces,
                fit.levels,
                fit.appearance_profile,
                image,
                min_correlation=export.fit_score_min_correlation,
            )
            for score in scores:
                if score.doubtful and not np.isfinite(score.correlation):
                    log.warning(
                        "%s looks doubtful: too few points near its surface lie in the "
                        "image to score it",
                        score.level,
                    )
                elif score.doubtful:
                    log.warning(
                        "%s looks doubtful: the fitted surface explains the scan poorly "
                        "(correlation %.2f < %.2f, residual %.0f HU); check it in qc/ "
                        "and in a viewer",
                        score.level,
                        score.correlation,
                        export.fit_score_min_correlation,
                        score.residual_hu,
                    )
        except Exception as error:  # noqa: BLE001 - a report extra must not lose the run
            log.warning("fit score not computed: %s", error)
            warnings.append(f"fit score not computed: {error}")
    if export.qc_images:
        written.update(_write_qc(result, image, output_dir, entries, overwrite, warnings))

    if dicom_seg_info is not None and dicom_seg_info.repaired:
        warnings.append(
            "the DICOM series lacks "
            + ", ".join(dicom_seg_info.repaired)
            + "; the DICOM SEG references repaired values"
        )
    report = build_report(result, image, config, inputs or {}, scores=scores)
    report["label_file_format"] = fmt
    report["warnings"] = warnings
    if dicom_seg_info is not None:
        report["dicom_seg"] = {
            "file": dicom_seg_info.path.name,
            "series_instance_uid": dicom_seg_info.series_instance_uid,
            "segments": dicom_seg_info.segments,
            "repaired_source_attributes": dicom_seg_info.repaired,
        }
    written["report_md"] = output_dir / REPORT_MD_FILE
    written["report"] = output_dir / REPORT_FILE
    report["files"] = {
        name: str(path.relative_to(output_dir)) if path.is_relative_to(output_dir) else str(path)
        for name, path in written.items()
    }
    from diffam.report_md import write_markdown_report

    write_markdown_report(report, written["report_md"], overwrite=overwrite)
    with atomic_path(written["report"], overwrite=overwrite) as temporary:
        temporary.write_text(json.dumps(report, indent=2, default=_json_default), encoding="utf-8")
    return written


def _write_qc(
    result: SegmentationResult,
    image: Volume,
    output_dir: Path,
    entries,
    overwrite: bool,
    warnings: list[str],
) -> dict[str, Path]:
    from diffam.qc import write_loss_png, write_plane_png

    written: dict[str, Path] = {}
    qc_dir = output_dir / QC_DIR
    title = Path(str(image.source.path)).name if image.source is not None else ""
    try:
        qc_dir.mkdir(exist_ok=True)
        if len(result.fit.levels):
            for view in ("sagittal", "coronal"):
                written[f"qc_{view}"] = write_plane_png(
                    image,
                    result.labels,
                    result.fit.vertices,
                    entries,
                    view,
                    qc_dir / f"{view}.png",
                    overwrite=overwrite,
                    title=title,
                )
        path = write_loss_png(
            result.fit.history,
            qc_dir / "losses.png",
            overwrite=overwrite,
            title=f"Losses over the iterations {title}".strip(),
        )
        if path is not None:
            written["qc_losses"] = path
    except Exception as error:  # noqa: BLE001 - pictures must not lose the run
        log.warning("QC pictures not written: %s", error)
        warnings.append(f"QC pictures not written: {error}")
    return written


def _label_statistics(labels: Volume, values: list[int]) -> dict[int, tuple[int, np.ndarray]]:
    """Voxel count and world centroid (LPS mm; None when empty) of each label value."""
    from scipy import ndimage

    array = labels.array
    counts = np.bincount(array.reshape(-1).astype(np.int64), minlength=max(values, default=0) + 1)
    present = [v for v in values if v > 0 and counts[v] > 0]
    centres = (
        ndimage.center_of_mass(np.ones(array.shape, np.uint8), array, present) if present else []
    )
    out = {v: (int(counts[v]) if v > 0 else 0, None) for v in values}
    for value, zyx in zip(present, centres):
        out[value] = (int(counts[value]), labels.index_to_world(np.array(zyx[::-1])))
    return out


def build_report(
    result: SegmentationResult, image: Volume, config: SegmentationConfig, inputs: dict, scores=None
) -> dict:
    """A JSON-ready summary of the run (``scores``: :func:`diffam.fit_score.fit_scores`)."""
    import diffam

    voxel_ml = float(np.prod(image.spacing)) / 1000.0
    fit = result.fit
    values = [exported_id(v, config) for v in fit.verse_ids]
    statistics = _label_statistics(result.labels, values)
    by_level = {s.level: s for s in scores} if scores else {}
    vertebrae = []
    for verse_id, level, value in zip(fit.verse_ids, fit.levels, values):
        count, centre = statistics[value]
        entry = {
            "level": level,
            "verse_id": verse_id,
            "label_value": value,
            "volume_ml": count * voxel_ml,
            "initial_centroid_mm": result.centroids.get(verse_id),
            "label_centroid_mm": centre,
        }
        score = by_level.get(level)
        if score is not None:
            entry.update(
                {
                    "fit_residual_hu": score.as_dict()["residual_hu"],
                    "fit_correlation": score.as_dict()["correlation"],
                    "fit_score_points": score.points,
                    "doubtful": score.doubtful,
                }
            )
        vertebrae.append(entry)
    final = fit.history[-1] if fit.history else {}
    return {
        "inputs": inputs,
        "image": {
            "shape_ijk": list(image.shape_ijk),
            "spacing_mm": image.spacing,
            "origin_mm": image.origin,
            "direction": image.direction,
            "orientation": image.orientation_code(),
        },
        "centroids_source": result.centroid_source,
        "completed": result.completed,
        "iterations": fit.completed_iterations,
        "iterations_configured": config.optim.iterations,
        "timings_s": result.timings,
        "final_losses": final,
        "label_convention": config.export.labels,
        "vertebrae": vertebrae,
        "levels_found": [level_name(v) for v in fit.verse_ids],
        "doubtful_levels": [v["level"] for v in vertebrae if v.get("doubtful")],
        "fit_score_min_correlation": config.export.fit_score_min_correlation if scores else None,
        "appearance_profile": None
        if fit.appearance_profile is None
        else {
            "distance_mm": np.round(fit.appearance_profile[0], 3),
            "predicted_hu": np.round(fit.appearance_profile[1], 1),
        },
        "config": asdict(config),
        "versions": _versions(diffam.__version__),
    }


def _versions(own: str) -> dict[str, str]:
    import numba
    import SimpleITK
    import torch

    versions = {
        "diffam": own,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numba": numba.__version__,
        "SimpleITK": SimpleITK.Version_VersionString(),
    }
    try:
        import highdicom

        versions["highdicom"] = highdicom.__version__
    except ImportError:
        pass
    return versions


def _json_default(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
