"""What an output folder holds: nothing, a finished result of a scan, or why it is not one.

Used by the batch skip logic (folder mode, multirun) and by ``resume=true``:
a folder is finished only when ``report.json`` is readable, belongs to this
scan, says ``completed``, every file it lists exists and no checkpoint is left.
"""

from __future__ import annotations

import json
from pathlib import Path

from diffam.cli.checkpoints import PHANTOM_SCAN


def folder_state(output_dir: Path, scan: str) -> str | None:
    """None: nothing there; ``"done"``: a finished result of this scan; else why not to skip.

    A folder holding another scan's result (two scans with one file stem in a
    multirun) or an unfinished run (stopped, checkpoint left) is not skipped.
    """
    from diffam.export.files import REPORT_FILE, output_files
    from diffam.export.staging import previous_outputs

    output_dir = Path(output_dir)
    files = output_files(output_dir)
    if not any(p.exists() for p in files) and not previous_outputs(output_dir):
        return None
    try:
        report = json.loads((output_dir / REPORT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return (f"{output_dir} holds an incomplete result (no readable {REPORT_FILE}); "
                "overwrite=true to redo it")
    inputs = report.get("inputs") or {}
    done_scan = inputs.get("scan_path") or inputs.get("scan")
    if done_scan and not same_scan(str(done_scan), scan):
        return (f"{output_dir} holds the result of another scan ({done_scan}); scans "
                "sharing a file stem need distinct output folders (folder mode names them by "
                "path, or hydra.sweep.subdir=${hydra.job.num} in multirun)")
    listed = [output_dir / name for name in (report.get("files") or {}).values()]
    missing = [p for p in listed if not p.exists()]
    if missing:
        return (f"{output_dir} is inconsistent: {missing[0].name} listed in {REPORT_FILE} "
                "is missing; overwrite=true to redo it")
    if not all(p.exists() for p in files) or not report.get("completed", True) \
            or (output_dir / "checkpoint.pt").exists():
        return (f"{output_dir} holds an unfinished run; resume=true to continue it or "
                "overwrite=true to redo it")
    return "done"


def same_scan(done: str, scan: str) -> bool:
    if PHANTOM_SCAN in (done, scan):
        return done == scan
    if Path(done).is_absolute():
        return Path(done).resolve() == Path(scan).resolve()
    return Path(done).name == Path(scan).name  # relative: cwd unknown; compare names
