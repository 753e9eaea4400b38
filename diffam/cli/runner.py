"""Run segmentations from plain settings: the glue between a CLI and the library.

``scripts/segment.py`` hands the resolved Hydra config here as a plain dict
(so the library never imports Hydra or OmegaConf); this module turns it into
typed configuration, finds the scans, runs :func:`diffam.fit.pipeline.segment`
with a progress bar, writes the outputs and keeps going past a failed scan
in folder mode.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffam.cli.checkpoints import PHANTOM_SCAN
from diffam.cli.exit_status import BAD_SETTINGS, FAILED, OK, STOPPED, is_settings_error
from diffam.cli.settings_check import SettingsError, check_segment_settings
from diffam.core.atomic import write_json_atomic
from diffam.core.config import SegmentationConfig, segmentation_config
from diffam.localize.naming import check_hints

log = logging.getLogger("diffam")


@dataclass
class Job:
    scan: str
    output_dir: Path


def find_jobs(settings: dict) -> tuple[list[Job], bool]:
    """The scans to segment and where each one's results go; True for folder mode.

    Folder mode names each output folder after its scan's file stem
    (``data/a.nii.gz`` -> ``output_dir/a``); scans sharing a stem
    (``data/case1/ct.nii.gz``, ``data/case2/ct.nii.gz``) are named by their
    path below ``scans=`` instead (``case1_ct``, ``case2_ct``).
    """
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
    inside_output = _is_relative_to(output_dir.resolve(), folder.resolve())
    files = sorted(p for p in folder.glob(pattern) if p.is_file()
                   and not (inside_output and _is_relative_to(p.resolve(), output_dir.resolve())))
    series = sorted(p for p in folder.iterdir()
                    if p.is_dir() and p.resolve() != output_dir.resolve() and _is_dicom_series(p))
    if not files and not series:
        raise SettingsError(f"scans={folder}: no file matches pattern={pattern!r} and no "
                            "DICOM series sub-folder was found")
    scans = files + series
    names = [scan_name(p) for p in scans]
    repeated = {n for n in names if names.count(n) > 1}
    names = [_sanitize("_".join(p.relative_to(folder).parent.parts + (n,))) if n in repeated
             else n for p, n in zip(scans, names)]
    return [Job(str(p), output_dir / n) for p, n in zip(scans, names)], True


def scan_name(scan: str | Path | None) -> str:
    """A scan's file stem, safe as a folder name: ``data/sub-01.nii.gz`` -> ``sub-01``.

    Used for the output folder of each scan in folder mode and, through the
    ``${scan_stem:...}`` resolver of ``configs/segment.yaml``, in multirun.
    A DICOM series folder gives its folder name; ``builtin:phantom`` gives
    ``phantom``.
    """
    if scan is None or str(scan) == "":
        return ""
    if str(scan) == PHANTOM_SCAN:
        return "phantom"
    from diffam.core.image import image_stem

    return _sanitize(image_stem(scan))


def _sanitize(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]", "_", name) or "scan"


def _is_relative_to(path: Path, other: Path) -> bool:
    try:
        path.relative_to(other)
        return True
    except ValueError:
        return False


def _is_dicom_series(folder: Path, probe: int = 5) -> bool:
    """True when one of the first files of ``folder`` is DICOM (``DICM`` at byte 128)."""
    checked = 0
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        if path.suffix.lower() == ".dcm":
            return True
        try:
            with path.open("rb") as f:
                f.seek(128)
                if f.read(4) == b"DICM":
                    return True
        except OSError:
            pass
        checked += 1
        if checked >= probe:
            break
    return False


def resolve_centroids(value: str | None, scan: str) -> str | None:
    """The centroid file of one scan from the ``centroids=`` setting.

    ``value`` may be a file (used as is), a template with ``{stem}`` (the
    scan's file stem) and/or ``{dir}`` (the folder holding the scan), or a
    folder holding ``<stem>.json``, ``<stem>.csv`` or ``<stem>_ctd.json``.

    Raises:
        SettingsError: No file (or more than one) fits this scan.
    """
    if not value:
        return None
    value = str(value)
    stem = scan_name(scan)
    if "{" in value:
        try:
            path = Path(value.format(stem=stem, dir=str(Path(scan).parent)))
        except (KeyError, IndexError, ValueError) as error:
            raise SettingsError(f"centroids={value}: only {{stem}} and {{dir}} can be "
                                f"filled in ({error})") from None
        if not path.exists():
            raise SettingsError(f"centroids={value}: {path} does not exist for scan {scan}")
        return str(path)
    path = Path(value)
    if not path.exists():
        raise SettingsError(f"centroids={value} does not exist; give a VerSe JSON or CSV file, "
                            "a folder of <stem>.json|csv files, or leave centroids= out to find "
                            "the vertebrae automatically")
    if not path.is_dir():
        return value
    names = [f"{stem}.json", f"{stem}.csv", f"{stem}_ctd.json"]
    found = [path / n for n in names if (path / n).is_file()]
    if not found:
        raise SettingsError(f"centroids={path}/: no centroid file for scan {scan} (looked for "
                            + ", ".join(names) + ")")
    if len(found) > 1:
        raise SettingsError(f"centroids={path}/: more than one centroid file for scan {scan}: "
                            + ", ".join(p.name for p in found) + "; remove all but one")
    return str(found[0])


def run_from_settings(settings: dict, should_stop: Callable[[], bool] | None = None, *,
                      batch_record: Path | None = None) -> int:
    """Segment every scan of the settings; returns the process exit code.

    0: all done; 1: some scans failed (listed at the end); 2: bad settings
    (checked before any work, or an output folder that may not be replaced);
    130: stopped by the user (Ctrl-C; resume=true continues).

    Folder mode (``scans=``) and a job of a Hydra multirun (``batch_record``
    given: the file where this job's per-scan results go, gathered into
    ``batch_summary.json`` at the end of the sweep by
    :class:`diffam.cli.hydra_batch.BatchSummaryCallback`) skip scans whose output
    folder holds a finished result unless ``overwrite=true``, and go on past a
    failed scan. Folder mode writes ``output_dir/batch_summary.json``.
    """
    batch = batch_record is not None
    settings = {**settings, **{k: str(v) for k, v in settings.items() if k in _PATH_SETTINGS
                               and isinstance(v, int | float) and not isinstance(v, bool)}}
    try:
        check_segment_settings(settings)
        config = segmentation_config(settings)
        levels = settings.get("levels") or {}
        check_hints(levels.get("lowest"), levels.get("highest"))  # before any scan is read
        jobs, folder_mode = find_jobs(settings)
    except (SettingsError, ValueError, TypeError) as error:
        log.error("%s", error)
        if batch:
            write_json_atomic(batch_record, [_entry(Job(str(settings.get("scan") or
                                                      settings.get("scans")),
                                                  Path(settings["output_dir"])),
                                              "failed", error=str(error))])
        return BAD_SETTINGS
    overwrite = bool(settings.get("overwrite", False))
    resume = bool(settings.get("resume", False))
    skip_done = (folder_mode or batch) and not overwrite
    if folder_mode and settings.get("centroids") and len(jobs) > 1:
        value = str(settings["centroids"])
        if "{" not in value and not Path(value).is_dir():
            log.warning("centroids=%s is one file and is used for every scan; give a folder "
                        "of <stem>.json|csv files or a template with {stem} instead", value)
    entries: list[dict] = []
    code = 0
    for number, job in enumerate(jobs, 1):
        if should_stop is not None and should_stop():
            entries.append(_entry(job, "not started"))
            continue
        if folder_mode:
            log.info("[%d/%d] %s", number, len(jobs), job.scan)
        start = time.perf_counter()
        try:
            state = _done_state(job) if skip_done else None
            if state == "done":
                log.info("already done (overwrite=true to redo): %s", job.output_dir)
                entries.append(_entry(job, "skipped"))
                continue
            if state and not resume:
                raise FileExistsError(state)
            completed = run_one(job, settings, config, overwrite, should_stop)
            entries.append(_entry(job, "segmented" if completed else "stopped",
                                  seconds=time.perf_counter() - start))
            if not completed:
                code = STOPPED
        except KeyboardInterrupt:
            log.error("aborted: %s", job.scan)
            entries.append(_entry(job, "failed", error="aborted (KeyboardInterrupt)"))
            code = STOPPED
            break
        except Exception as error:  # noqa: BLE001 - reported per scan, the batch goes on
            known = isinstance(error, (ValueError, OSError, FileExistsError))
            log.error("%s failed: %s", job.scan, error, exc_info=not known)
            entries.append(_entry(job, "failed", error=f"{type(error).__name__}: {error}",
                                  seconds=time.perf_counter() - start))
            if not folder_mode and not batch:
                return BAD_SETTINGS if is_settings_error(error) else FAILED
        if should_stop is not None and should_stop():
            log.warning("stopped by the user; run again with resume=true to continue")
    failed = any(e["status"] == "failed" for e in entries)
    if folder_mode:
        log_batch_summary(entries)
        path = write_batch_summary(Path(settings["output_dir"]), entries, mode="folder")
        log.info("batch summary written to %s", path)
    if batch:
        write_json_atomic(batch_record, entries)
    return code or (FAILED if failed else OK)


#: Paths Hydra may parse as numbers (a DICOM folder named 12345).
_PATH_SETTINGS = ("scan", "scans", "centroids", "output_dir", "series_uid")
BATCH_SUMMARY_FILE = "batch_summary.json"
#: Status of a scan in a batch, in the order of the summary line.
BATCH_STATUSES = ("segmented", "skipped", "stopped", "failed", "not started", "unfinished")


def _entry(job: Job, status: str, error: str | None = None,
           seconds: float | None = None) -> dict:
    return {"scan": job.scan, "output_dir": str(job.output_dir), "status": status,
            "error": error, "seconds": None if seconds is None else round(seconds, 1)}


def batch_counts(entries: list[dict]) -> dict[str, int]:
    """How many scans ended in each status (see :data:`BATCH_STATUSES`), and the total."""
    counts = {s: sum(e["status"] == s for e in entries) for s in BATCH_STATUSES}
    counts["total"] = len(entries)
    return counts


def log_batch_summary(entries: list[dict]) -> None:
    """Log one line of counts, then every scan that failed or did not finish."""
    counts = batch_counts(entries)
    log.info("batch summary: %d segmented, %d skipped (already done), %d failed%s",
             counts["segmented"], counts["skipped"], counts["failed"],
             "".join(f", {counts[s]} {s}" for s in ("stopped", "not started", "unfinished")
                     if counts[s]))
    for e in entries:
        if e["status"] == "failed":
            log.error("  FAILED %s: %s", e["scan"], e["error"])
        elif e["status"] in ("stopped", "not started", "unfinished"):
            log.warning("  %s %s%s", e["status"].upper(), e["scan"],
                        f": {e['error']}" if e.get("error") else "")


def write_batch_summary(folder: Path, entries: list[dict], mode: str) -> Path:
    """Write ``folder/batch_summary.json`` atomically (replacing an earlier one).

    The file holds ``mode`` (``folder`` or ``multirun``), ``finished_at``
    (ISO time), ``counts`` (per status, see :func:`batch_counts`) and
    ``scans``: per scan its ``scan``, ``output_dir``, ``status``, ``error``
    (or null) and ``seconds`` (or null).
    """
    summary = {"mode": mode, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               "counts": batch_counts(entries), "scans": entries}
    return write_json_atomic(Path(folder) / BATCH_SUMMARY_FILE, summary)


def _done_state(job: Job) -> str | None:
    """None: nothing there; ``"done"``: a finished result of this scan; else why not to skip."""
    from diffam.cli.folder_state import folder_state

    return folder_state(job.output_dir, job.scan)


def run_one(job: Job, settings: dict, config: SegmentationConfig, overwrite: bool,
            should_stop: Callable[[], bool] | None) -> bool:
    """Segment one scan and write its output folder; True when the fit completed.

    Everything is written into a staging folder and swapped in whole at the end
    (:class:`diffam.export.staging.StagedOutput`): a failure leaves the previous
    result untouched, and a new result replaces every file of the old one.
    """
    from diffam.cli import checkpoints
    from diffam.export.files import check_output_dir
    from diffam.export.staging import clean_leftovers

    output_dir = job.output_dir
    resume = bool(settings.get("resume", False))
    centroids_file = resolve_centroids(settings.get("centroids"), job.scan)
    check_output_dir(output_dir, overwrite or resume)
    clean_leftovers(output_dir)
    checkpoint = output_dir / checkpoints.CHECKPOINT_FILE
    if job.scan != PHANTOM_SCAN and settings.get("memory_check", True):
        from diffam.core.memory import check_memory

        check_memory(job.scan, localise=not centroids_file,
                     limit_gb=settings.get("memory_limit_gb"))
    identity = checkpoints.scan_identity(job.scan, settings, config)
    resuming = checkpoints.prepare(output_dir, identity, resume=resume, overwrite=overwrite,
                                   folder_state=lambda: _done_state(job))
    try:
        return _fit_and_write(job, settings, config, should_stop, centroids_file, resuming)
    finally:
        if not checkpoint.exists():  # failed before the first checkpoint: no record left
            checkpoints.remove(output_dir)


def _fit_and_write(job: Job, settings: dict, config: SegmentationConfig,
                   should_stop: Callable[[], bool] | None, centroids_file: str | None,
                   resuming: bool) -> bool:
    from diffam.cli import checkpoints
    from diffam.core.centroids import centroids_kind, read_centroids
    from diffam.core.image import read_image
    from diffam.export.staging import StagedOutput
    from diffam.export.writers import write_outputs
    from diffam.fit.pipeline import segment

    output_dir = job.output_dir
    checkpoint = output_dir / checkpoints.CHECKPOINT_FILE
    phantom = None
    with StagedOutput(output_dir) as staged:
        if job.scan == PHANTOM_SCAN:
            phantom, image = _make_phantom(settings, config, staged.path, True)
            centroids = phantom.centroids if not centroids_file else None
        else:
            image = read_image(job.scan, series_uid=settings.get("series_uid"))
            centroids = None
        kind = "vertebra"  # the phantom's and the localiser's centroids
        if centroids_file:
            log.info("initial centroids: %s", centroids_file)
            centroids = read_centroids(centroids_file, image)
            setting = settings.get("centroids_kind", "auto")
            kind = centroids_kind(centroids_file, setting)
            log.info("centroids read as %s centres (centroids_kind=%s)", kind, setting)
        levels = settings.get("levels") or {}

        # The converge schedule's length is known only when it ends: no total, no ETA.
        bar = _progress_bar(config.optim.iterations if config.optim.schedule == "fixed" else None)
        try:
            result = segment(image, config, centroids=centroids,
                             hint_lowest=levels.get("lowest"),
                             hint_highest=levels.get("highest"),
                             progress=bar.update_record, should_stop=should_stop,
                             checkpoint=checkpoint, resume=resuming, centroids_kind=kind)
        finally:
            bar.close()
        inputs = {"scan": job.scan, "centroids": centroids_file, "output_dir": str(output_dir),
                  "scan_path": job.scan if job.scan == PHANTOM_SCAN
                  else str(Path(job.scan).resolve())}
        written = write_outputs(result, image, staged.path, config, overwrite=True,
                                inputs=inputs)
        staged.commit()
    labels_file = output_dir / written["labels"].relative_to(staged.path)
    if result.completed:
        checkpoints.remove(output_dir)
        log.info("done in %.0f s: %s", result.timings.get("total", 0.0), labels_file)
    else:
        log.warning("stopped at iteration %d of %d; labels written for the state reached. "
                    "Continue with resume=true output_dir=%s", result.fit.completed_iterations,
                    config.optim.iterations, output_dir)
    if phantom is not None:
        _report_phantom_dice(result.labels.array, phantom.labels.array, result.fit.verse_ids)
    return bool(result.completed)


def _make_phantom(settings, config, output_dir: Path, overwrite: bool):
    from diffam.authoring.phantom import PhantomConfig, make_phantom
    from diffam.core.image import write_image
    from diffam.core.template import load_template

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
    from diffam.core.labels import level_name
    from diffam.evaluation.metrics import dice

    scores = []
    for value in verse_ids:
        score = dice(predicted == value, truth == value)
        scores.append(score)
        log.info("Dice %s: %.3f", level_name(value), score)
    log.info("mean Dice against the phantom's ground truth: %.3f", float(np.mean(scores)))


class _progress_bar:
    """tqdm bar over iterations showing the total and every active loss."""

    #: Iterations between refreshes of the loss figures (formatting them costs time).
    POSTFIX_EVERY = 10

    def __init__(self, total: int | None):
        from tqdm import tqdm

        self.start = time.perf_counter()
        self.bar = tqdm(total=total, desc="fitting", unit="it", dynamic_ncols=True)

    def update_record(self, record: dict) -> None:
        from diffam.fit.objective import LOSS_TERMS

        if self.bar.n == 0 and record["iteration"] > 1:  # resumed
            self.bar.update(record["iteration"] - 1)
        self.bar.update(1)
        if record["iteration"] % self.POSTFIX_EVERY == 0:
            self.bar.set_postfix({k: f"{record[k]:.4f}" for k in ("total", *LOSS_TERMS)
                                  if k in record})

    def close(self) -> None:
        self.bar.close()
