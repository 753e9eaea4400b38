"""``diffam-segment``: segment the vertebrae of CT scans (Hydra front end of :mod:`diffam.cli.runner`).

Examples:
    python scripts/segment.py scan=ct.nii.gz centroids=ct_ctd.json
    python scripts/segment.py scan=builtin:phantom optim=fast
    python scripts/segment.py scans=data/ pattern='*.nii.gz' output_dir=results/
    python scripts/segment.py -m scan=a.nii.gz,b.nii.gz
    python scripts/segment.py --help          # every option with its comment: --cfg job
"""

from __future__ import annotations

import logging
import signal
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from diffam.cli.hydra_batch import job_record  # registers the ${scan_stem:...} resolver
from diffam.cli.runner import run_from_settings
from diffam.cli.terminal import tolerate_any_terminal
from diffam.core.resources import config_dir

log = logging.getLogger("segment")


@hydra.main(config_path=str(config_dir()), config_name="segment", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    settings = OmegaConf.to_container(cfg, resolve=True)
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        # One job of a sweep: results go to a record that BatchSummaryCallback gathers into
        # batch_summary.json; no sys.exit, so a failed scan does not stop the other jobs.
        record = job_record(hydra_cfg.sweep.dir, hydra_cfg.job.num)
        run_from_settings(settings, should_stop=_install_interrupt_handler(), batch_record=record)
        return
    code = run_from_settings(settings, should_stop=_install_interrupt_handler())
    if code:
        sys.exit(code)


_INTERRUPT = {"stop": False}


def _install_interrupt_handler():
    """First Ctrl-C: finish the iteration, save a checkpoint, stop. Second: abort."""
    state = _INTERRUPT  # shared by the jobs of a multirun in one process: Ctrl-C stops them all

    def handler(signum, frame):
        if state["stop"]:
            raise KeyboardInterrupt
        state["stop"] = True
        log.warning("stopping after this iteration and saving a checkpoint "
                    "(Ctrl-C again to abort at once)")

    signal.signal(signal.SIGINT, handler)
    return lambda: state["stop"]


def run_dir_follows_output_dir(argv: list[str]) -> list[str]:
    """Hydra overrides that put Hydra's log into ``output_dir`` instead of ``outputs/<date>/<time>``.

    Without them every run leaves an ``outputs/<date>/<time>/`` folder in the
    working folder even when ``output_dir=`` is given. Only for a single run
    whose ``output_dir`` can be created; multirun keeps its sweep folders, and
    an output_dir that cannot be made is left to the run's own clear error.
    """
    import os
    from pathlib import Path

    if any(a in ("-m", "--multirun") or a.startswith(("hydra.run.dir=", "--")) for a in argv):
        return []
    given = [a.split("=", 1)[1] for a in argv if a.startswith("output_dir=")]
    if not given or not given[-1]:
        return []
    folder = Path(given[-1])
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        return []
    quoted = str(folder).replace("\\", "\\\\").replace("'", "\\'")
    return [f"hydra.run.dir='{quoted}'", "hydra.output_subdir=null"]


def main() -> None:
    """Console entry point (``diffam-segment``, ``python scripts/segment.py``)."""
    tolerate_any_terminal()
    sys.argv += run_dir_follows_output_dir(sys.argv[1:])
    _main()
