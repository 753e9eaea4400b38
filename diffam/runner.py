"""Run segmentations from plain settings: the glue between a CLI and the library.

``scripts/segment.py`` hands the resolved Hydra config here as a plain dict
(so the library never imports Hydra or OmegaConf); this module turns it into
typed configuration, finds the scans, runs :func:`diffam.segment.segment`
with a progress bar, writes the outputs and keeps going past a failed scan
in folder mode.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffam.config import (
    AppearanceConfig,
    ExportConfig,
    LossWeights,
    OptimConfig,
    SegmentationConfig,
    ShapeConfig,
    from_mapping,
)

log = logging.getLogger("diffam")

PHANTOM_SCAN = "builtin:phantom"


class SettingsError(ValueError):
    """The settings are inconsistent; the message says which option to change."""


@dataclass
class Job:
    scan: str
    output_dir: Path


def segmentation_config(settings: dict) -> SegmentationConfig:
    """Typed configuration from the plain settings of ``configs/segment.yaml``."""
    template = settings.get("template") or {}
    return SegmentationConfig(
        template=str(template.get("name", "lumbar")),
        levels=list(template["levels"]) if template.get("levels") else None,
        losses=from_mapping(LossWeights, settings.get("losses")),
        shape=from_mapping(ShapeConfig, settings.get("shape")),
        appearance=from_mapping(AppearanceConfig, settings.get("appearance")),
        optim=from_mapping(OptimConfig, settings.get("optim")),
        export=from_mapping(ExportConfig, settings.get("export")),
        device=str(settings.get("device", "auto")),
        seed=int(settings.get("seed", 0)),
    )


def find_jobs(settings: dict) -> tuple[list[Job], bool]:
    """The scans to segment and where each one's results go; True for folder mode."""
    output_dir = Path(settings["output_dir"])
    scan, folder = settings.get("scan"), settings.get("scans")
    if scan and folder:
        raise SettingsError("give either scan=FILE (one scan) or scans=FOLDER (many), not both")
    if scan:
        return [Job(str(scan), output_dir)], False
    if not folder:
        raise SettingsError(
            "no input: pass scan=path/to/ct.nii.gz (or a DICOM folder), scans=FOLDER for "
            f"many, or scan={PHANTOM_SCAN} for the built-in demo")
    folder = Path(folder)
    if not folder.is_dir():
        raise SettingsError(f"scans={folder} is not a folder")
    pattern = settings.get("pattern") or "*"
    files = sorted(p for p in folder.glob(pattern) if p.is_file())
    series = sorted(p for p in folder.iterdir() if p.is_dir() and any(p.iterdir()))
    if not files and not series:
        raise SettingsError(f"scans={folder}: no file matches pattern={pattern!r} and no "
                            "DICOM series sub-folder was found")
    return [Job(str(p), output_dir / _stem(p)) for p in files + series], True


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr", ".dcm"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def run_from_settings(settings: dict, should_stop: Callable[[], bool] | None = None) -> int:
    """Segment every scan of the settings; returns the process exit code.

    0: all done; 1: some scans failed (listed at the end); 2: bad settings.
    """
    try:
        config = segmentation_config(settings)
        jobs, folder_mode = find_jobs(settings)
    except (SettingsError, ValueError, TypeError) as error:
        log.error("%s", error)
        return 2
    overwrite = bool(settings.get("overwrite", False))
    failures: list[tuple[str, str]] = []
    skipped: list[str] = []
    for number, job in enumerate(jobs, 1):
        if folder_mode:
            log.info("[%d/%d] %s", number, len(jobs), job.scan)
        if folder_mode and not overwrite and _finished(job.output_dir):
            log.info("already done (overwrite=true to redo): %s", job.output_dir)
            skipped.append(job.scan)
            continue
        try:
            run_one(job, settings, config, overwrite, should_stop)
        except KeyboardInterrupt:
            log.error("aborted: %s", job.scan)
            return 130
        except Exception as error:  # noqa: BLE001 - reported per scan, the batch goes on
            known = isinstance(error, (ValueError, OSError, FileExistsError))
            log.error("%s failed: %s", job.scan, error, exc_info=not known)
            failures.append((job.scan, str(error)))
            if not folder_mode:
                return 1 if not isinstance(error, FileExistsError) else 2
        if should_stop is not None and should_stop():
            log.warning("stopped by the user; run again with resume=true to continue")
            break
    if folder_mode:
        done = len(jobs) - len(failures) - len(skipped)
        log.info("batch summary: %d segmented, %d skipped (already done), %d failed",
                 done, len(skipped), len(failures))
        for scan, message in failures:
            log.info("  FAILED %s: %s", scan, message)
    return 1 if failures else 0


def _finished(output_dir: Path) -> bool:
    from diffam.outputs import output_files

    return all(p.exists() for p in output_files(output_dir))


def run_one(job: Job, settings: dict, config: SegmentationConfig, overwrite: bool,
            should_stop: Callable[[], bool] | None) -> None:
    """Segment one scan and write its output folder."""
    from diffam.centroids import read_centroids
    from diffam.image import read_image
    from diffam.outputs import check_output_dir, write_outputs
    from diffam.segment import segment

    output_dir = job.output_dir
    resume = bool(settings.get("resume", False))
    check_output_dir(output_dir, overwrite or resume)
    phantom = None
    if job.scan == PHANTOM_SCAN:
        phantom, image = _make_phantom(settings, config, output_dir, overwrite or resume)
        centroids = phantom.centroids if not settings.get("centroids") else None
    else:
        image = read_image(job.scan)
        centroids = None
    if settings.get("centroids"):
        centroids = read_centroids(settings["centroids"], image)
    levels = settings.get("levels") or {}

    bar = _progress_bar(config.optim.iterations)
    try:
        result = segment(image, config, centroids=centroids,
                         hint_lowest=levels.get("lowest"), hint_highest=levels.get("highest"),
                         progress=bar.update_record, should_stop=should_stop,
                         checkpoint=output_dir / "checkpoint.pt", resume=resume)
    finally:
        bar.close()
    inputs = {"scan": job.scan, "centroids": settings.get("centroids"),
              "output_dir": str(output_dir)}
    written = write_outputs(result, image, output_dir, config, overwrite=overwrite or resume,
                            inputs=inputs)
    if result.completed:
        (output_dir / "checkpoint.pt").unlink(missing_ok=True)
        log.info("done in %.0f s: %s", result.timings.get("total", 0.0), written["labels"])
    else:
        log.warning("stopped at iteration %d of %d; labels written for the state reached. "
                    "Continue with resume=true output_dir=%s", result.fit.completed_iterations,
                    config.optim.iterations, output_dir)
    if phantom is not None:
        _report_phantom_dice(result.labels.array, phantom.labels.array, result.fit.verse_ids)


def _make_phantom(settings, config, output_dir: Path, overwrite: bool):
    from diffam.image import write_image
    from diffam.phantom import PhantomConfig, make_phantom
    from diffam.template import load_template

    options = settings.get("phantom") or {}
    spacing = float(options.get("spacing_mm", 1.5))
    phantom_config = PhantomConfig(levels=tuple(options.get("levels", ("L1", "L2", "L3"))),
                                   spacing_mm=(spacing, spacing, spacing),
                                   seed=int(options.get("seed", 0)))
    log.info("making a synthetic phantom of %s at %.1f mm", ", ".join(phantom_config.levels),
             spacing)
    phantom = make_phantom(load_template(config.template), phantom_config)
    write_image(phantom.image, output_dir / "phantom_ct.nii.gz", overwrite=overwrite)
    write_image(phantom.labels, output_dir / "phantom_labels.nii.gz", label_map=True,
                overwrite=overwrite)
    return phantom, phantom.image


def _report_phantom_dice(predicted: np.ndarray, truth: np.ndarray, verse_ids) -> None:
    from diffam.labels import level_name

    scores = []
    for value in verse_ids:
        a, b = predicted == value, truth == value
        dice = 2 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum())
        scores.append(dice)
        log.info("Dice %s: %.3f", level_name(value), dice)
    log.info("mean Dice against the phantom's ground truth: %.3f", float(np.mean(scores)))


class _progress_bar:
    """tqdm bar over iterations showing the losses; a no-op without tqdm."""

    def __init__(self, total: int):
        self.start = time.perf_counter()
        try:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="fitting", unit="it", dynamic_ncols=True)
        except ImportError:  # pragma: no cover
            self.bar = None

    def update_record(self, record: dict) -> None:
        if self.bar is None:
            return
        if self.bar.n == 0 and record["iteration"] > 1:  # resumed
            self.bar.update(record["iteration"] - 1)
        self.bar.update(1)
        if record["iteration"] % 10 == 0:
            self.bar.set_postfix({k: f"{record[k]:.4f}" for k in
                                  ("total", "image", "normal", "overlap") if k in record})

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
