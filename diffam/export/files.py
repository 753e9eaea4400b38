"""The names of a run's output files, and the check that a run may write its folder.

An output folder holds::

    labels.nii.gz          label map on the input grid (export.format: nii.gz, nii, mha,
                           nrrd, or auto = the input's format)
    labels.ctbl            3D Slicer colour table (names and colours of the levels)
    labels_itksnap.txt     ITK-SNAP label description file
    labels_seg.dcm         DICOM SEG referencing the input series (DICOM input only)
    masks/<level>.nii.gz   one mask per vertebra (export.per_vertebra_masks)
    meshes/<level>.ply     fitted surfaces, world LPS mm, template vertex order
    surfaces/<level>.stl   smoothed surfaces of the label map (export.label_surfaces)
    labels.seg.nrrd        3D Slicer segmentation (names, colours, terminology)
    statistics.json/.csv   per-vertebra HU, body heights, Genant ratios, border flag
    centroids.json/.csv    the initial centroids used
    qc/sagittal.png, qc/coronal.png, qc/losses.png
    qc/curved_sagittal.png, qc/curved_coronal.png, qc/vertebrae.png  (export.qc_curved)
    report.json, report.md

``report.json`` is written last: its presence marks a finished run.
"""

from __future__ import annotations

from pathlib import Path

from diffam.core.atomic import check_writable
from diffam.core.volume import Volume

LABELS_STEM = "labels"
LABELS_FILE = "labels.nii.gz"
REPORT_FILE = "report.json"
REPORT_MD_FILE = "report.md"
SLICER_TABLE_FILE = "labels.ctbl"
ITKSNAP_TABLE_FILE = "labels_itksnap.txt"
DICOM_SEG_FILE = "labels_seg.dcm"
QC_DIR = "qc"
#: The curved reformations and the per-vertebra strip (export.qc_curved), by picture.
QC_CURVED_FILES = {"sagittal": "curved_sagittal.png", "coronal": "curved_coronal.png",
                   "vertebrae": "vertebrae.png"}
QC_FILES = ("sagittal.png", "coronal.png", "losses.png", *QC_CURVED_FILES.values())
#: Label map formats (``export.format``), besides ``auto``.
LABEL_FORMATS = ("nii.gz", "nii", "mha", "nrrd")


CENTROID_FILES = ("centroids.json", "centroids.csv")
SEG_NRRD_FILE = "labels.seg.nrrd"
STATISTICS_FILES = ("statistics.json", "statistics.csv")
SURFACES_DIR = "surfaces"
#: Folders holding one file per vertebra.
PER_VERTEBRA_DIRS = ("meshes", "masks", SURFACES_DIR)


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


def all_output_names(output_dir: Path) -> list[Path]:
    """Every file a run may write in ``output_dir`` (and those of earlier runs found there)."""
    output_dir = Path(output_dir)
    names = [labels_path(output_dir, f) for f in LABEL_FORMATS]
    names += [
        output_dir / n
        for n in (REPORT_FILE, REPORT_MD_FILE, SLICER_TABLE_FILE, ITKSNAP_TABLE_FILE,
                  DICOM_SEG_FILE, *CENTROID_FILES, SEG_NRRD_FILE, *STATISTICS_FILES)
    ]
    names += [output_dir / QC_DIR / n for n in QC_FILES]
    for folder in PER_VERTEBRA_DIRS:  # any earlier mesh or mask would stop the writing
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
    for path in all_output_names(output_dir):
        if path.exists() and not overwrite:
            raise FileExistsError(
                f"{path} exists from an earlier run; pass overwrite=true to replace the results "
                "(or resume=true to continue a stopped run), or choose another output_dir"
            )
    check_writable(output_dir / REPORT_FILE, overwrite=True)
