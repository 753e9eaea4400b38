"""Which scan and settings a checkpoint belongs to: ``checkpoint.json`` beside ``checkpoint.pt``.

``resume=true`` continues ``output_dir/checkpoint.pt`` only when the record
says it was made from the same scan (path, size, modification time) and the
same fit settings; anything else is refused before any work, with the fix.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from diffam.core.atomic import write_json_atomic

PHANTOM_SCAN = "builtin:phantom"
CHECKPOINT_FILE = "checkpoint.pt"
RECORD_FILE = "checkpoint.json"


class CheckpointMismatch(ValueError):
    """``resume=true`` would continue a checkpoint of another scan or other settings."""


def scan_identity(scan: str, settings: dict, config) -> dict:
    """What a checkpoint must match: the scan file(s) and the settings that shape the fit."""
    if scan == PHANTOM_SCAN:
        files = {"scan": scan, "phantom": json.dumps(settings.get("phantom") or {},
                                                     sort_keys=True, default=str)}
    else:
        path = Path(scan).resolve()
        if not path.exists():  # read_image says so, with the fix
            size, mtime = -1, 0
        elif path.is_dir():
            entries = sorted(p for p in path.iterdir() if p.is_file())
            size = sum(p.stat().st_size for p in entries)
            mtime = max((p.stat().st_mtime_ns for p in entries), default=0)
        else:
            stat = path.stat()
            size, mtime = stat.st_size, stat.st_mtime_ns
        files = {"scan": str(path), "size": int(size), "mtime_ns": int(mtime)}
    fit = asdict(config)
    fit.pop("export", None)  # outputs may change between the stop and the resume
    digest = hashlib.sha256(json.dumps(fit, sort_keys=True, default=str).encode()).hexdigest()
    levels = settings.get("levels") or {}
    return {**files, "centroids": settings.get("centroids"),
            "level_hints": [levels.get("lowest"), levels.get("highest")],
            "settings_sha256": digest[:16]}


def write_record(output_dir: Path, identity: dict) -> Path:
    return write_json_atomic(Path(output_dir) / RECORD_FILE, identity)


def remove(output_dir: Path) -> None:
    for name in (CHECKPOINT_FILE, RECORD_FILE):
        (Path(output_dir) / name).unlink(missing_ok=True)


def check_resumable(output_dir: Path, identity: dict) -> None:
    """Refuse to continue a checkpoint made from another scan or other settings."""
    record_path = Path(output_dir) / RECORD_FILE
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise CheckpointMismatch(
            f"{Path(output_dir) / CHECKPOINT_FILE} does not record which scan it belongs to "
            f"(no readable {RECORD_FILE}); it cannot be resumed safely: run without resume=true "
            "(with overwrite=true) to start again") from None
    names = {"scan": "scan", "size": "scan file size", "mtime_ns": "scan modification time",
             "phantom": "phantom settings", "centroids": "centroids",
             "level_hints": "levels.lowest/highest", "settings_sha256": "fit settings"}
    differ = [names.get(k, k) for k in sorted(set(record) | set(identity))
              if record.get(k) != identity.get(k)]
    if differ:
        raise CheckpointMismatch(
            f"the checkpoint in {output_dir} was made with another {', '.join(differ)} "
            f"(checkpoint scan: {record.get('scan')}, this run: {identity.get('scan')}); "
            "resume with the same scan and settings, or run with overwrite=true and without "
            "resume=true to start again")


def prepare(output_dir: Path, identity: dict, *, resume: bool, overwrite: bool,
            folder_state: Callable[[], str | None]) -> bool:
    """Before any work: True to continue ``checkpoint.pt``, False to start afresh (record written).

    ``folder_state`` says what the folder holds (None: nothing; ``"done"``: a
    finished result; else why it is not finished). ``resume=true`` without a
    checkpoint never replaces an earlier result, and a checkpoint is continued
    only for the same scan and settings.

    Raises:
        FileExistsError: nothing to resume, and a result would be replaced.
        CheckpointMismatch: the checkpoint belongs to another scan or other settings.
    """
    checkpoint = Path(output_dir) / CHECKPOINT_FILE
    if resume and not overwrite and not checkpoint.exists():
        state = folder_state()
        if state == "done":
            raise FileExistsError(
                f"{output_dir} holds a finished run: there is nothing to resume; pass "
                "overwrite=true to redo it, or choose another output_dir")
        if state is not None:
            raise FileExistsError(
                f"resume=true: {output_dir} has no {CHECKPOINT_FILE} to continue from and "
                f"holds an earlier result ({state.split(';')[0]}); pass overwrite=true to redo "
                "it, or choose another output_dir")
    if resume and checkpoint.exists():
        check_resumable(output_dir, identity)
        return True
    remove(output_dir)
    write_record(output_dir, identity)
    return False
