"""Atomic writing of output files.

Every file the package writes goes through :func:`atomic_path`: the data is
written to a temporary file in the destination folder and renamed onto the
final name only when writing succeeded, so a crash or an error never leaves a
half-written output under the final name (``os.replace`` is atomic within one
file system).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

# Suffixes made of two parts: the temporary file must keep them, since image
# libraries choose the file format from the name.
_DOUBLE_SUFFIXES = (".nii.gz", ".tar.gz", ".vtk.gz", ".csv.gz", ".json.gz")


def full_suffix(path: str | os.PathLike) -> str:
    """The file-type suffix of ``path``, keeping double suffixes like ``.nii.gz``."""
    name = Path(path).name
    lowered = name.lower()
    for suffix in _DOUBLE_SUFFIXES:
        if lowered.endswith(suffix):
            return name[-len(suffix) :]
    return Path(name).suffix


def check_writable(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Check that ``path`` can be written, before any work is done.

    Args:
        path: the output file.
        overwrite: whether an existing file at ``path`` may be replaced.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
        IsADirectoryError: ``path`` is a folder.
        FileNotFoundError: the parent folder does not exist.
        PermissionError: the parent folder is not writable.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise IsADirectoryError(f"output path {path} is a folder; give a file name inside it")
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"output file {path} already exists; pass overwrite=True (overwrite=true in a "
            "config) to replace it, or choose another name"
        )
    if not folder.is_dir():
        raise FileNotFoundError(
            f"output folder {folder} does not exist; create it first (mkdir -p {folder})"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(
            f"output folder {folder} is not writable; choose another output folder or fix its "
            "permissions"
        )
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary file lies in the same folder (hence on the same file system)
    and keeps the suffix of ``path`` (``.nii.gz``, ``.json``, ...), so writers
    that pick the format from the name behave as for ``path`` itself. If the
    body raises, the temporary file is removed and ``path`` is left untouched.

    Example::

        with atomic_path("out/labels.nii.gz") as tmp:
            sitk.WriteImage(image, str(tmp))

    Args:
        path: the final output file.
        overwrite: whether an existing file at ``path`` may be replaced.

    Yields:
        The temporary path to write to.

    Raises:
        FileExistsError, FileNotFoundError, PermissionError, IsADirectoryError:
            as :func:`check_writable`, before the body runs.
    """
    path = check_writable(path, overwrite=overwrite)
    suffix = full_suffix(path)
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    tmp = path.with_name(f".{stem}.{secrets.token_hex(4)}.tmp{suffix}")
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to the temporary file for {path}")
        if path.exists() and not overwrite:
            raise FileExistsError(
                f"output file {path} appeared while writing; pass overwrite=True to replace it"
            )
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike, text: str, *, overwrite: bool = True) -> Path:
    """Write text to ``path`` through :func:`atomic_path`; the folder is created if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, overwrite=overwrite) as temporary:
        temporary.write_text(text, encoding="utf-8", newline="")
    return path


def json_ready(value: Any) -> Any:
    """``value`` with numpy arrays and scalars, tuples and paths turned into JSON types.

    NaN and infinities become ``null`` (strict JSON has no such numbers).
    """
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, np.generic):
        return json_ready(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def write_json_atomic(path: str | os.PathLike, data: Any, *, overwrite: bool = True) -> Path:
    """Write ``data`` as indented JSON (see :func:`json_ready`) through :func:`atomic_path`."""
    return write_text_atomic(
        path, json.dumps(json_ready(data), indent=2) + "\n", overwrite=overwrite
    )
