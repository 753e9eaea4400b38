"""Write a run's output folder: one writer per output, switched by the export config.

Each entry of :data:`OUTPUT_WRITERS` says when it runs (a test on
:class:`~diffam.core.config.ExportConfig`) and writes its files into the
folder; adding an output is one writer here plus its config field. Every file
is written atomically, and an existing output is refused unless ``overwrite``
is set (:func:`diffam.export.files.check_output_dir`). ``report.json`` is
written last: its presence marks a finished run. File names are in
:mod:`diffam.export.files`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from diffam.core.atomic import atomic_path, write_json_atomic
from diffam.core.centroids import write_centroids_csv, write_verse_json
from diffam.core.config import ExportConfig, SegmentationConfig
from diffam.core.image import write_image
from diffam.core.labels import exported_id
from diffam.core.version import VERSION
from diffam.core.volume import Volume
from diffam.export.files import (
    CENTROID_FILES,
    DICOM_SEG_FILE,
    ITKSNAP_TABLE_FILE,
    QC_CURVED_FILES,
    QC_DIR,
    REPORT_FILE,
    REPORT_MD_FILE,
    SEG_NRRD_FILE,
    SLICER_TABLE_FILE,
    STATISTICS_FILES,
    SURFACES_DIR,
    label_format,
    labels_path,
)
from diffam.fit.pipeline import SegmentationResult

log = logging.getLogger(__name__)

#: Largest anterior shift of the coronal reformation from the centroids to the bodies, mm.
MAX_BODY_SHIFT_MM = 25.0

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


@dataclass
class OutputContext:
    """What the writers share: the run's result, where it goes, and what they add to the report."""

    result: SegmentationResult
    image: Volume
    output_dir: Path
    config: SegmentationConfig
    overwrite: bool
    label_format: str
    #: Label table entries (value, name, colour) of ``config.export.labels``.
    entries: list
    #: Problems with optional outputs; they go to the report, the run still succeeds.
    warnings: list[str] = field(default_factory=list)
    #: Keys a writer adds to report.json.
    report: dict = field(default_factory=dict)
    #: Per-vertebra fit scores (:func:`diffam.fit.quality.fit_scores`), when computed.
    scores: list | None = None


@dataclass(frozen=True)
class OutputWriter:
    """One output: written when ``enabled(export_config)``; returns name -> path written."""

    name: str
    enabled: Callable[[ExportConfig], bool]
    write: Callable[[OutputContext], dict[str, Path]]


def write_mesh(vertices: np.ndarray, faces: np.ndarray, path: Path, overwrite: bool) -> None:
    """PLY or STL (by suffix) in world LPS mm, vertex order of the template.

    PLY keeps the vertex order (vertices correspond across scans); STL stores
    triangles only, so readers rebuild the vertices (same positions, their own order).
    """
    import trimesh

    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    with atomic_path(path, overwrite=overwrite) as temporary:
        mesh.export(temporary, file_type=path.suffix.lstrip("."))


# ---------------------------------------------------------------------- writers
def _labels(ctx: OutputContext) -> dict[str, Path]:
    path = labels_path(ctx.output_dir, ctx.label_format)
    return {"labels": write_image(ctx.result.labels, path, label_map=True,
                                  overwrite=ctx.overwrite)}


def _color_tables(ctx: OutputContext) -> dict[str, Path]:
    from diffam.export.colortables import write_itksnap_labels, write_slicer_ctbl

    return {
        "slicer_table": write_slicer_ctbl(
            ctx.entries, ctx.output_dir / SLICER_TABLE_FILE, overwrite=ctx.overwrite),
        "itksnap_table": write_itksnap_labels(
            ctx.entries, ctx.output_dir / ITKSNAP_TABLE_FILE, overwrite=ctx.overwrite),
    }


def _per_vertebra_masks(ctx: OutputContext) -> dict[str, Path]:
    fit, labels = ctx.result.fit, ctx.result.labels
    mask_dir = ctx.output_dir / "masks"
    mask_dir.mkdir(exist_ok=True)
    written = {}
    for verse, level in zip(fit.verse_ids, fit.levels):
        mask = (labels.array == exported_id(verse, ctx.config.export.labels)).astype(np.uint8)
        written[f"mask_{level}"] = write_image(
            labels.with_array(mask), mask_dir / f"{level}.{ctx.label_format}",
            label_map=True, overwrite=ctx.overwrite,
        )
    return written


def _meshes(ctx: OutputContext) -> dict[str, Path]:
    fit = ctx.result.fit
    mesh_dir = ctx.output_dir / "meshes"
    mesh_dir.mkdir(exist_ok=True)
    written = {}
    for level, vertices in zip(fit.levels, fit.vertices):
        path = mesh_dir / f"{level}.{ctx.config.export.mesh_format}"
        write_mesh(vertices, fit.faces, path, ctx.overwrite)
        written[f"mesh_{level}"] = path
    return written


def dicom_seg_wanted(setting, image: Volume) -> bool | None:
    """True: write it, and fail if impossible; None: write it if possible; False: no."""
    text = str(setting).strip().lower()
    if text in _FALSE:
        return False
    if text not in _TRUE and text != "auto":
        raise ValueError(f"export.dicom_seg must be auto, true or false, got {setting!r}")
    if image.source is None or not image.source.is_dicom or len(image.source.dicom_files) < 2:
        if text in _TRUE:
            log.info("export.dicom_seg=true but the input is not a DICOM series: no DICOM SEG")
        return False
    return True if text in _TRUE else None


def _dicom_seg(ctx: OutputContext) -> dict[str, Path]:
    from diffam.export import dicom_seg

    want = dicom_seg_wanted(ctx.config.export.dicom_seg, ctx.image)
    if want is False:
        return {}
    try:
        if not dicom_seg.available():
            raise dicom_seg.DicomSegError(
                'no DICOM SEG written: highdicom is not installed (pip install -e ".[dicom]")'
            )
        info = dicom_seg.write_dicom_seg(
            ctx.result.labels, ctx.image.source.dicom_files, ctx.entries,
            ctx.output_dir / DICOM_SEG_FILE, overwrite=ctx.overwrite,
            software_version=VERSION,
        )
    except (dicom_seg.DicomSegError, OSError) as error:
        if want:
            raise
        log.warning("%s", error)
        ctx.warnings.append(str(error))
        return {}
    if info.repaired:
        ctx.warnings.append("the DICOM series lacks " + ", ".join(info.repaired)
                            + "; the DICOM SEG references repaired values")
    ctx.report["dicom_seg"] = {
        "file": info.path.name,
        "series_instance_uid": info.series_instance_uid,
        "segments": info.segments,
        "repaired_source_attributes": info.repaired,
    }
    return {"dicom_seg": info.path}


def _centroids(ctx: OutputContext) -> dict[str, Path]:
    json_path, csv_path = (ctx.output_dir / name for name in CENTROID_FILES)
    # Each file holds the kind it is read as by default (centroids_kind=auto): the
    # JSON body centres, the CSV whole-vertebra centres, both of the initial placement.
    result = ctx.result
    write_verse_json(result.body_centroids or result.centroids, ctx.image, json_path,
                     overwrite=ctx.overwrite)
    write_centroids_csv(result.vertebra_centroids or result.centroids, csv_path,
                        overwrite=ctx.overwrite)
    return {"centroids_json": json_path, "centroids_csv": csv_path}


def _fit_scores(ctx: OutputContext) -> dict[str, Path]:
    """No file: the scores go into the reports and flag doubtful vertebrae in the log."""
    fit, export, result = ctx.result.fit, ctx.config.export, ctx.result
    if fit.appearance_profile is None or not len(fit.levels):
        return {}
    # the whole-vertebra centres the fit started from (how far each vertebra moved)
    starts = result.vertebra_centroids or (
        result.centroids if result.centroids_kind == "vertebra" else {})
    initial = np.array([starts.get(v, np.full(3, np.nan)) for v in fit.verse_ids], float)
    try:
        from diffam.fit.quality import fit_scores

        ctx.scores = fit_scores(fit.vertices, fit.faces, fit.levels, fit.appearance_profile,
                                ctx.image, initial_centroids=initial,
                                threshold=export.fit_score_threshold)
    except Exception as error:  # noqa: BLE001 - a report extra must not lose the run
        log.warning("fit score not computed: %s", error)
        ctx.warnings.append(f"fit score not computed: {error}")
        return {}
    for score in ctx.scores:
        if score.doubtful and not np.isfinite(score.score):
            log.warning("%s looks doubtful: too few points near its surface lie in the image "
                        "to score it", score.level)
        elif score.doubtful:
            log.warning("%s looks doubtful: fit score %.2f < %.2f (correlation %.2f, residual "
                        "%.0f HU, %.0f %% in view); check it in qc/vertebrae.png and in a viewer",
                        score.level, score.score, export.fit_score_threshold,
                        score.correlation, score.residual_hu, 100 * score.in_view)
    return {}


def _qc_images(ctx: OutputContext) -> dict[str, Path]:
    from diffam.export.qc import write_loss_png, write_plane_png

    result, image = ctx.result, ctx.image
    written: dict[str, Path] = {}
    qc_dir = ctx.output_dir / QC_DIR
    title = Path(str(image.source.path)).name if image.source is not None else ""
    try:
        qc_dir.mkdir(exist_ok=True)
        if len(result.fit.levels):
            for view in ("sagittal", "coronal"):
                written[f"qc_{view}"] = write_plane_png(
                    image, result.labels, result.fit.vertices, ctx.entries, view,
                    qc_dir / f"{view}.png", overwrite=ctx.overwrite, title=title,
                )
        path = write_loss_png(result.fit.history, qc_dir / "losses.png", overwrite=ctx.overwrite,
                              title=f"Losses over the iterations {title}".strip())
        if path is not None:
            written["qc_losses"] = path
    except Exception as error:  # noqa: BLE001 - pictures must not lose the run
        log.warning("QC pictures not written: %s", error)
        ctx.warnings.append(f"QC pictures not written: {error}")
    return written


def _qc_curved(ctx: OutputContext) -> dict[str, Path]:
    """qc/curved_sagittal.png, qc/curved_coronal.png and qc/vertebrae.png (every vertebra)."""
    from diffam.core.body_centre import anterior_axes, body_centres_from_label_map
    from diffam.core.mesh_ops import solid_centroid
    from diffam.export.qc_curved import write_curved_png, write_vertebra_strip_png

    fit, image = ctx.result.fit, ctx.image
    present = _present_vertebrae(ctx)
    if not present:
        return {}
    index = {level: n for n, level in enumerate(fit.levels)}
    levels = [level for level, _, _ in present]
    values = [value for _, _, value in present]
    centroids = np.stack([solid_centroid(fit.vertices[index[level]], fit.faces)
                          for level in levels])
    # the coronal surface goes through the bodies: the centreline moved anteriorly by the
    # median distance of the bodies' centres (label map, split as the statistics split it)
    # in front of the centroids; the median, as a badly fitted vertebra's body is anywhere
    bodies = body_centres_from_label_map(ctx.result.labels, ctx.config.export.labels)
    anterior, _ = anterior_axes(centroids)
    ahead = [float((bodies[verse] - centroid) @ axis) for (_, verse, _), centroid, axis
             in zip(present, centroids, anterior) if verse in bodies]
    shift = float(np.clip(np.median(ahead), 0.0, MAX_BODY_SHIFT_MM)) if ahead else 0.0
    qc_dir = ctx.output_dir / QC_DIR
    qc_dir.mkdir(exist_ok=True)
    title = Path(str(image.source.path)).name if image.source is not None else ""
    written = {}
    for view, ahead_mm in (("sagittal", 0.0), ("coronal", shift)):
        written[f"qc_curved_{view}"] = write_curved_png(
            image, ctx.result.labels, centroids, levels, values, ctx.entries, view,
            qc_dir / QC_CURVED_FILES[view], overwrite=ctx.overwrite, title=title,
            anterior_shift_mm=ahead_mm)
    written["qc_vertebrae"] = write_vertebra_strip_png(
        image, ctx.result.labels, centroids, levels, values, ctx.entries,
        qc_dir / QC_CURVED_FILES["vertebrae"], scores=ctx.scores, overwrite=ctx.overwrite,
        title=title)
    return written


def _optional(what: str, write: Callable[[OutputContext], dict[str, Path]]):
    """A writer whose failure is logged and reported, not fatal (an extra must not lose the run)."""

    def guarded(ctx: OutputContext) -> dict[str, Path]:
        try:
            return write(ctx)
        except FileExistsError:
            raise
        except Exception as error:  # noqa: BLE001
            log.warning("%s not written: %s", what, error)
            ctx.warnings.append(f"{what} not written: {error}")
            return {}

    return guarded


def _present_vertebrae(ctx: OutputContext) -> list[tuple[str, int, int]]:
    """``(level, VerSe id, label value)`` of the fitted vertebrae that have a label value."""
    convention = ctx.config.export.labels
    return [(level, verse, exported_id(verse, convention))
            for verse, level in zip(ctx.result.fit.verse_ids, ctx.result.fit.levels)
            if exported_id(verse, convention)]


def _statistics(ctx: OutputContext) -> dict[str, Path]:
    """statistics.json/.csv (one row per vertebra) and the rows for the reports."""
    import csv
    import io

    from diffam.export.statistics import COLUMNS, vertebra_statistics

    ct = ctx.image if ctx.image.same_grid(ctx.result.labels) else None
    rows = vertebra_statistics(
        ctx.result.labels, ct, [(level, value) for level, _, value in _present_vertebrae(ctx)],
        cortex_margin_mm=ctx.config.export.trabecular_margin_mm)
    json_path, csv_path = (ctx.output_dir / name for name in STATISTICS_FILES)
    write_json_atomic(json_path, {"vertebrae": rows}, overwrite=ctx.overwrite)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else (f"{v:.6g}" if isinstance(v, float) else v)
                         for k, v in row.items()})
    with atomic_path(csv_path, overwrite=ctx.overwrite) as temporary:
        Path(temporary).write_text(text.getvalue(), encoding="utf-8")
    ctx.report["statistics"] = rows
    cut = [row["level"] for row in rows if row["cut_by_border"]]
    if cut:
        ctx.warnings.append(f"cut by the scan border, their statistics are partial: "
                            f"{', '.join(cut)}")
    return {"statistics_json": json_path, "statistics_csv": csv_path}


def _seg_nrrd(ctx: OutputContext) -> dict[str, Path]:
    from diffam.export.colortables import level_color
    from diffam.export.seg_nrrd import segment_name, write_seg_nrrd

    convention = ctx.config.export.labels
    segments = [{"name": segment_name(level, convention), "value": value, "level": level,
                 "rgb": level_color(verse)} for level, verse, value in _present_vertebrae(ctx)]
    path = write_seg_nrrd(ctx.result.labels, segments, ctx.output_dir / SEG_NRRD_FILE,
                          overwrite=ctx.overwrite)
    return {"seg_nrrd": path}


def _label_surfaces(ctx: OutputContext) -> dict[str, Path]:
    from diffam.export.label_surfaces import label_surface

    folder = ctx.output_dir / SURFACES_DIR
    folder.mkdir(exist_ok=True)
    written = {}
    for level, _, value in _present_vertebrae(ctx):
        vertices, faces = label_surface(ctx.result.labels.array == value, ctx.result.labels)
        if not len(faces):
            continue
        path = folder / f"{level}.stl"
        write_mesh(vertices, faces, path, ctx.overwrite)
        written[f"surface_{level}"] = path
    return written


def _always(export: ExportConfig) -> bool:
    return True


#: Every output but the reports, in the order written.
OUTPUT_WRITERS: tuple[OutputWriter, ...] = (
    OutputWriter("labels", _always, _labels),
    OutputWriter("color_tables", lambda e: e.color_tables, _color_tables),
    OutputWriter("per_vertebra_masks", lambda e: e.per_vertebra_masks, _per_vertebra_masks),
    OutputWriter("meshes", lambda e: e.meshes, _meshes),
    OutputWriter("dicom_seg", _always, _dicom_seg),  # decides from the input, see dicom_seg_wanted
    OutputWriter("centroids", _always, _centroids),
    OutputWriter("seg_nrrd", lambda e: e.seg_nrrd, _optional("labels.seg.nrrd", _seg_nrrd)),
    OutputWriter("label_surfaces", lambda e: e.label_surfaces,
                 _optional("label surfaces", _label_surfaces)),
    OutputWriter("statistics", lambda e: e.statistics, _optional("statistics", _statistics)),
    OutputWriter("fit_score", lambda e: e.fit_score, _fit_scores),
    OutputWriter("qc_images", lambda e: e.qc_images, _qc_images),
    # after the fit score (the strip shows it); qc_images switches every picture off
    OutputWriter("qc_curved", lambda e: e.qc_images and e.qc_curved,
                 _optional("curved QC pictures", _qc_curved)),
)


def write_outputs(
    result: SegmentationResult,
    image: Volume,
    output_dir: Path,
    config: SegmentationConfig,
    *,
    overwrite: bool = False,
    inputs: dict | None = None,
) -> dict[str, Path]:
    """Write everything a user opens after a run, then ``report.md`` and ``report.json``.

    Files that only help (tables, DICOM SEG in ``auto`` mode, fit scores, QC
    pictures) never make the run fail: a failure is logged and listed in the
    report's ``warnings``.

    Returns:
        name -> path of every file written.
    """
    from diffam.export.colortables import label_entries
    from diffam.export.report import build_report
    from diffam.export.report_md import write_markdown_report

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    ctx = OutputContext(
        result=result, image=image, output_dir=output_dir, config=config, overwrite=overwrite,
        label_format=label_format(config.export.format, image),
        entries=label_entries(config.export.labels),
    )
    written: dict[str, Path] = {}
    for writer in OUTPUT_WRITERS:
        if writer.enabled(config.export):
            written.update(writer.write(ctx))
    report = build_report(result, image, config, inputs or {}, scores=ctx.scores)
    report["label_file_format"] = ctx.label_format
    report["warnings"] = ctx.warnings
    report.update(ctx.report)
    written["report_md"] = output_dir / REPORT_MD_FILE
    written["report"] = output_dir / REPORT_FILE
    report["files"] = {
        name: str(path.relative_to(output_dir)) if path.is_relative_to(output_dir) else str(path)
        for name, path in written.items()
    }
    write_markdown_report(report, written["report_md"], overwrite=overwrite)
    write_json_atomic(written["report"], report, overwrite=overwrite)
    return written
