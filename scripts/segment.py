#!/usr/bin/env python
"""Segment the vertebrae of CT scans with DiffAM (a thin CLI over diffam.segment).

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
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffam.runner import run_from_settings  # noqa: E402

log = logging.getLogger("segment")


@hydra.main(config_path="../configs", config_name="segment", version_base="1.3")
def main(cfg: DictConfig) -> None:
    settings = OmegaConf.to_container(cfg, resolve=True)
    code = run_from_settings(settings, should_stop=_install_interrupt_handler())
    if code:
        sys.exit(code)


def _install_interrupt_handler():
    """First Ctrl-C: finish the iteration, save a checkpoint, stop. Second: abort."""
    state = {"stop": False}

    def handler(signum, frame):
        if state["stop"]:
            raise KeyboardInterrupt
        state["stop"] = True
        log.warning("stopping after this iteration and saving a checkpoint "
                    "(Ctrl-C again to abort at once)")

    signal.signal(signal.SIGINT, handler)
    return lambda: state["stop"]


if __name__ == "__main__":
    main()
