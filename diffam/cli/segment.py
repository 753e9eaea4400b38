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


def main() -> None:
    """Console entry point (``diffam-segment``, ``python scripts/segment.py``)."""
    tolerate_any_terminal()
    _main()
