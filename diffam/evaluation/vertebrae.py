"""VerSe vertebra ids, names, spine segments and conversion of label maps to VerSe ids.

Evaluation works in VerSe ids (METHOD.md, section 3): 1-7 = C1-C7, 8-19 =
T1-T12, 20-24 = L1-L5, 25 = L6, 26 = sacrum, 28 = T13; 0 is background.
Ground truth or predictions in other conventions are converted with a lookup
table: TotalSegmentator v2 (task "total") is built in, any other through a
two-column CSV file (``source,verse``).

The tables themselves are those of :mod:`diffam.core.labels`.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from diffam.core.labels import LEVEL_NAMES, TOTALSEGMENTATOR_TO_VERSE, relabel


def _verse_identity() -> dict[int, int]:
    return {i: i for i in LEVEL_NAMES}


def _totalsegmentator_v2() -> dict[int, int]:
    return dict(TOTALSEGMENTATOR_TO_VERSE)


BUILTIN_MAPPINGS = {"verse": _verse_identity, "totalsegmentator": _totalsegmentator_v2}


def read_mapping_csv(path: str | Path) -> dict[int, int]:
    """Read a label mapping from a two-column CSV file.

    The first column is the label value in the file, the second the VerSe
    id (0 drops the label). A header row is allowed (any non-numeric first
    row is skipped); lines starting with ``#`` are ignored.

    Args:
        path: CSV file, e.g. ``source,verse\\n31,20\\n30,21``.

    Returns:
        Mapping source label -> VerSe id.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"label mapping file {path} not found: give 'verse', "
            "'totalsegmentator' or the path of a CSV file 'source,verse'"
        )
    table: dict[int, int] = {}
    with path.open(newline="", encoding="utf-8") as f:
        for n, row in enumerate(csv.reader(f), start=1):
            if not row or row[0].strip().startswith("#"):
                continue
            try:
                src, dst = int(row[0]), int(row[1])
            except (ValueError, IndexError):
                if n == 1:
                    continue  # header
                raise ValueError(
                    f"{path}, line {n}: expected two integers 'source,verse', got {row!r}"
                ) from None
            if dst != 0 and dst not in LEVEL_NAMES:
                raise ValueError(f"{path}, line {n}: {dst} is not a VerSe id (1-26, 28 or 0)")
            table[src] = dst
    if not table:
        raise ValueError(f"{path} holds no mapping rows 'source,verse'")
    return table


def get_mapping(spec: str | Path) -> dict[int, int]:
    """Label mapping to VerSe ids from a name or a CSV path.

    Args:
        spec: ``"verse"``, ``"totalsegmentator"`` (v2, task "total") or the
            path of a CSV file read by :func:`read_mapping_csv`.

    Returns:
        Mapping source label -> VerSe id; labels not in it are background.
    """
    key = str(spec).strip().lower()
    if key in BUILTIN_MAPPINGS:
        return BUILTIN_MAPPINGS[key]()
    if key in {"ts", "totalseg", "totalsegmentator_v2"}:
        return _totalsegmentator_v2()
    return read_mapping_csv(spec)


def to_verse(labels: np.ndarray, mapping: dict[int, int]) -> tuple[np.ndarray, list[int]]:
    """Convert a label map to VerSe ids.

    Args:
        labels: Integer label map, any shape (e.g. (Z, Y, X)).
        mapping: Source label -> VerSe id (from :func:`get_mapping`).

    Returns:
        ``(verse, ignored)``: the uint8 map of VerSe ids, same shape, and the
        sorted non-zero source labels that were present but not mapped
        (set to background), so that callers can report them.
    """
    return relabel(labels, mapping)
