"""VerSe vertebra ids, names, spine segments and conversion of label maps to VerSe ids.

Evaluation works in VerSe ids (METHOD.md, section 3): 1-7 = C1-C7, 8-19 =
T1-T12, 20-24 = L1-L5, 25 = L6, 26 = sacrum, 28 = T13; 0 is background.
Ground truth or predictions in other conventions are converted with a lookup
table: TotalSegmentator v2 (task "total") is built in, any other through a
two-column CSV file (``source,verse``).

This module keeps its own small table on purpose so that evaluation does not
depend on the rest of the package; it must agree with ``diffam.core.labels``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

#: VerSe id -> level name, in VerSe numbering.
VERSE_NAMES: dict[int, str] = {
    **{i: f"C{i}" for i in range(1, 8)},
    **{i: f"T{i - 7}" for i in range(8, 20)},
    **{i: f"L{i - 19}" for i in range(20, 26)},
    26: "sacrum",
    28: "T13",
}

#: Segments of the summary table, in the order of the paper's Table 1.
SEGMENTS: tuple[str, ...] = ("cervical", "thoracic", "lumbar")


def segment_of(verse_id: int) -> str:
    """Spine segment of a VerSe id.

    Args:
        verse_id: VerSe label value (1-26 or 28).

    Returns:
        ``"cervical"``, ``"thoracic"`` (T1-T12 and T13), ``"lumbar"`` (L1-L6)
        or ``"sacrum"``. The sacrum is reported per vertebra but is not part
        of the cervical/thoracic/lumbar/total summary rows.
    """
    if 1 <= verse_id <= 7:
        return "cervical"
    if 8 <= verse_id <= 19 or verse_id == 28:
        return "thoracic"
    if 20 <= verse_id <= 25:
        return "lumbar"
    if verse_id == 26:
        return "sacrum"
    raise ValueError(f"{verse_id} is not a VerSe vertebra id (1-26 or 28)")


def anatomical_order(verse_id: int) -> float:
    """Sort key placing ids head to tail (T13 between T12 and L1).

    Args:
        verse_id: VerSe label value.

    Returns:
        A float that sorts C1 < ... < T12 < T13 < L1 < ... < L6 < sacrum.
    """
    return 19.5 if verse_id == 28 else float(verse_id)


def _verse_identity() -> dict[int, int]:
    return {i: i for i in VERSE_NAMES}


def _totalsegmentator_v2() -> dict[int, int]:
    from diffam.core.labels import TOTALSEGMENTATOR_TO_VERSE

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
            if dst != 0 and dst not in VERSE_NAMES:
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
    if not np.issubdtype(labels.dtype, np.integer):
        rounded = np.rint(labels)
        if not np.array_equal(rounded, labels):
            raise ValueError(
                "label map holds non-integer values: give a label image, "
                "not an intensity or probability image"
            )
        labels = rounded.astype(np.int64)
    if labels.size == 0:
        return np.zeros(labels.shape, np.uint8), []
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0:
        raise ValueError(f"label map holds negative values ({lo}): not a label image")
    if hi > 2**24:
        raise ValueError(f"label map holds a value of {hi}: not a label image")
    present = np.flatnonzero(np.bincount(labels.ravel().astype(np.intp, copy=False)))
    lut = np.zeros(hi + 1, dtype=np.uint8)
    for src, dst in mapping.items():
        if 0 <= src < lut.size:
            lut[src] = dst
    ignored = [int(v) for v in present if v != 0 and lut[v] == 0]
    return lut[labels], ignored
