"""Hydra glue for batch runs of ``scripts/segment.py -m`` (multirun).

Two pieces, both named in ``configs/segment.yaml``:

* the ``${scan_stem:...}`` resolver, which names each job's output folder
  after its scan (``hydra.sweep.subdir``), registered when this module is
  imported;
* :class:`BatchSummaryCallback`, which gathers the per-job results into
  ``<sweep dir>/batch_summary.json`` and logs the failures when the sweep
  ends (exit status 1 if a scan failed).

Launchers that run jobs in other processes or on other machines (joblib,
submitit/SLURM) unpickle the callback there, which imports this module first,
so the resolver exists wherever a job's output folder is computed. The rest of
the library does not import Hydra; this module is only used from the CLI.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from diffam.cli.runner import log_batch_summary, scan_name, write_batch_summary

log = logging.getLogger("diffam")

#: Folder (inside the sweep dir) where each multirun job leaves its results.
RECORDS_DIR = ".batch_jobs"


def scan_stem(*values: Any) -> str:
    """Folder name of the first non-empty value: a scan path's stem, else the value itself.

    ``${scan_stem:${scan},${scans},${hydra.job.num}}``: the scan's stem, the
    scans folder's name in folder mode, the job number otherwise.
    """
    for value in values:
        if value is not None and str(value) != "":
            return scan_name(str(value))
    return "job"


def register_resolvers() -> None:
    """Register ``scan_stem`` with OmegaConf (once per process)."""
    if not OmegaConf.has_resolver("scan_stem"):
        OmegaConf.register_new_resolver("scan_stem", scan_stem)


def job_record(sweep_dir: str | Path, job_num: int) -> Path:
    """Where multirun job ``job_num`` writes its per-scan results."""
    return Path(sweep_dir) / RECORDS_DIR / f"{int(job_num)}.json"


class BatchSummaryCallback(Callback):
    """Writes ``batch_summary.json`` in the sweep dir when a multirun ends.

    A job that left no result record (killed, out of memory, SLURM time
    limit) is listed as ``unfinished``. Exit status 1 when a scan failed or
    did not finish, so scripts and schedulers see it.
    """

    def __init__(self, fail_exit_code: int = 1) -> None:
        self.fail_exit_code = int(fail_exit_code)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        shutil.rmtree(Path(config.hydra.sweep.dir) / RECORDS_DIR, ignore_errors=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        records = sweep_dir / RECORDS_DIR
        entries: list[dict] = []
        for path in sorted(records.glob("*.json"), key=lambda p: int(p.stem)):
            try:
                entries += json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:
                entries.append(
                    {
                        "scan": f"job {path.stem}",
                        "output_dir": None,
                        "status": "unfinished",
                        "error": str(error),
                        "seconds": None,
                    }
                )
        log_batch_summary(entries)
        summary = write_batch_summary(sweep_dir, entries, mode="multirun")
        shutil.rmtree(records, ignore_errors=True)
        log.info("batch summary written to %s", summary)
        if any(e["status"] in ("failed", "unfinished") for e in entries):
            raise SystemExit(self.fail_exit_code)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        # The job's record says "unfinished" until the job replaces it with its results.
        hydra = config.hydra
        if hydra.mode != RunMode.MULTIRUN:
            return
        record = job_record(hydra.sweep.dir, hydra.job.num)
        record.parent.mkdir(parents=True, exist_ok=True)
        scan = OmegaConf.select(config, "scan") or OmegaConf.select(config, "scans")
        record.write_text(
            json.dumps(
                [
                    {
                        "scan": str(scan),
                        "output_dir": str(hydra.runtime.output_dir),
                        "status": "unfinished",
                        "error": "the job ended without reporting (killed?)",
                        "seconds": None,
                    }
                ]
            ),
            encoding="utf-8",
        )


register_resolvers()
