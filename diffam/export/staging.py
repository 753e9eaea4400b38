"""All-or-nothing output folders: a run writes into a staging folder that is swapped in whole.

A run writes every output into ``output_dir/.staging-<pid>-<token>/``; only
when all of them were written does :meth:`StagedOutput.commit` replace the
previous run's files by the new ones:

1. the old ``report.json`` is removed first, so from then on the folder is
   visibly unfinished (no report) until the swap ends;
2. every file and folder an earlier run may have left (any ``labels.*``,
   ``meshes/``, ``masks/``, ``qc/``, tables, centroids, reports, phantom
   files) is removed, so nothing of the old run survives beside the new one;
3. the staged entries are moved in (``os.replace``, atomic per entry on one
   file system), ``report.json`` last.

A failure before the commit (bad setting, full disk, writer error) removes
the staging folder and leaves the previous result untouched. A process killed
during the commit leaves a folder without ``report.json``, which the batch
skip logic and ``evaluate.py`` treat as unfinished. Leftover staging folders
and hidden ``.*.tmp*`` files of killed runs are removed by :func:`clean_leftovers`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
from pathlib import Path

from diffam.export.files import (
    PER_VERTEBRA_DIRS,
    QC_DIR,
    REPORT_FILE,
    all_output_names,
)

log = logging.getLogger(__name__)

STAGING_PREFIX = ".staging-"
#: Files of ``scan=builtin:phantom`` runs, replaced like the other outputs.
PHANTOM_FILES = ("phantom_ct.nii.gz", "phantom_labels.nii.gz")
#: Hidden temporary files of :func:`diffam.core.atomic.atomic_path`.
_TMP_PATTERN = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp(\..*)?$")
_STAGING_PATTERN = re.compile(rf"^{re.escape(STAGING_PREFIX)}(\d+)-[0-9a-f]+$")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def clean_leftovers(output_dir: Path) -> list[Path]:
    """Remove staging folders and hidden temporary files that killed runs left in ``output_dir``.

    Staging folders of a process that is still alive are kept. Returns what was removed.
    """
    output_dir = Path(output_dir)
    removed: list[Path] = []
    if not output_dir.is_dir():
        return removed
    folders = [output_dir, *(output_dir / d for d in (*PER_VERTEBRA_DIRS, QC_DIR))]
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            match = _STAGING_PATTERN.match(path.name)
            if match and path.is_dir() and not _pid_alive(int(match.group(1))):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
            elif _TMP_PATTERN.match(path.name) and path.is_file():
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed.append(path)
    if removed:
        log.info("removed %d leftover file(s) of an interrupted run in %s", len(removed),
                 output_dir)
    return removed


def previous_outputs(output_dir: Path) -> list[Path]:
    """Every file or folder of an earlier run in ``output_dir`` (what a commit replaces)."""
    output_dir = Path(output_dir)
    found = [p for p in all_output_names(output_dir) if p.exists()
             and p.parent == output_dir]
    found += [output_dir / d for d in (*PER_VERTEBRA_DIRS, QC_DIR) if (output_dir / d).exists()]
    found += [output_dir / n for n in PHANTOM_FILES if (output_dir / n).exists()]
    return found


def _move(source: Path, target: Path) -> None:
    os.replace(source, target)


class StagedOutput:
    """A staging folder inside ``output_dir``; :meth:`commit` swaps it in, :meth:`discard` drops it.

    Use as a context manager: leaving the block without :meth:`commit` (an
    exception, Ctrl-C) discards the staged files.
    """

    def __init__(self, output_dir: Path):
        self.output_dir = Path(output_dir)
        self.path = self.output_dir / f"{STAGING_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        self.committed = False

    def __enter__(self) -> StagedOutput:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.path.mkdir()
        return self

    def __exit__(self, *exc) -> None:
        if not self.committed:
            self.discard()

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def commit(self) -> None:
        """Replace the earlier run's outputs by the staged ones (``report.json`` last)."""
        final_report = self.output_dir / REPORT_FILE
        # 1. From here on the folder has no report: visibly unfinished until step 3 ends.
        final_report.unlink(missing_ok=True)
        # 2. Nothing of the earlier run stays beside the new one.
        for path in previous_outputs(self.output_dir):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        # 3. Move the new outputs in, the report last.
        staged_report = self.path / REPORT_FILE
        for entry in sorted(self.path.iterdir()):
            if entry != staged_report:
                _move(entry, self.output_dir / entry.name)
        if staged_report.exists():
            _move(staged_report, final_report)
        self.committed = True
        shutil.rmtree(self.path, ignore_errors=True)
