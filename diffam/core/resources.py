"""Where the data shipped beside the code lives: template sets and Hydra configs.

A source checkout keeps them at the repository root (``templates/``,
``configs/``, beside the ``diffam`` package); an installed wheel carries them
as data files under ``<sys.prefix>/share/diffam/``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
INSTALLED_DATA_ROOT = Path(sys.prefix) / "share" / "diffam"
TEMPLATE_DIR_VARIABLE = "DIFFAM_TEMPLATE_DIR"


def resource_dirs(kind: str) -> list[Path]:
    """Candidate folders for ``kind`` (``"templates"`` or ``"configs"``), checkout first."""
    return [REPOSITORY_ROOT / kind, INSTALLED_DATA_ROOT / kind]


def template_dirs() -> list[Path]:
    """Folders searched for built-in template sets, in order.

    ``$DIFFAM_TEMPLATE_DIR`` (if set), then :func:`resource_dirs` of ``templates``.
    """
    env = os.environ.get(TEMPLATE_DIR_VARIABLE)
    return ([Path(env)] if env else []) + resource_dirs("templates")


def config_dir() -> Path:
    """The folder of the Hydra configs (``segment.yaml`` and its groups)."""
    for folder in resource_dirs("configs"):
        if (folder / "segment.yaml").is_file():
            return folder
    raise FileNotFoundError(
        "diffam's configs were not found in "
        + " or ".join(str(d) for d in resource_dirs("configs"))
        + ": reinstall the package (pip install diffam) or run from a source checkout"
    )
