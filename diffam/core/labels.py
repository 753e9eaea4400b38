"""Vertebra label conventions: level names, VerSe ids and TotalSegmentator v2 ids.

The package works in VerSe ids internally (``docs/METHOD.md``, section 3):

    ======  =========  ==================  ==========================
    VerSe   level      TotalSegmentator v2  note
    ======  =========  ==================  ==========================
    1-7     C1-C7      50-44
    8-19    T1-T12     43-32
    20-24   L1-L5      31-27
    25      L6         --                  transitional, no TS class
    26      sacrum     25 (and 26 = S1)    TS S1 is merged into sacrum
    28      T13        --                  transitional, no TS class
    ======  =========  ==================  ==========================

0 is background in both. TotalSegmentator ids that are not vertebrae (organs,
ribs, ...) map to 0.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Segment = Literal["cervical", "thoracic", "lumbar", "sacral"]

#: Level name -> VerSe id.
VERSE_IDS: dict[str, int] = {
    **{f"C{n}": n for n in range(1, 8)},
    **{f"T{n}": 7 + n for n in range(1, 13)},
    **{f"L{n}": 19 + n for n in range(1, 7)},
    "sacrum": 26,
    "T13": 28,
}

#: VerSe id -> level name.
LEVEL_NAMES: dict[int, str] = {v: k for k, v in VERSE_IDS.items()}

#: TotalSegmentator v2 ("total" task) id of the sacrum and of S1.
TS_SACRUM = 25
TS_S1 = 26

#: TotalSegmentator v2 id -> VerSe id, for every vertebra class.
TOTALSEGMENTATOR_TO_VERSE: dict[int, int] = {
    TS_SACRUM: 26,
    TS_S1: 26,
    **{ts: 51 - ts for ts in range(27, 51)},  # 27 L5 -> 24, ..., 50 C1 -> 1
}

#: VerSe id -> TotalSegmentator v2 id (sacrum -> 25; L6 and T13 have none).
VERSE_TO_TOTALSEGMENTATOR: dict[int, int] = {26: TS_SACRUM, **{51 - ts: ts for ts in range(27, 51)}}


def verse_id(level: str | int) -> int:
    """VerSe id of a vertebra given by level name (``"L1"``, ``"t12"``, ``"sacrum"``) or id.

    Args:
        level: a level name (case-insensitive) or a VerSe id (int or digit string).

    Returns:
        The VerSe id (1-26 or 28).

    Raises:
        ValueError: unknown level name or id.
    """
    if isinstance(level, (int, np.integer)):
        if int(level) not in LEVEL_NAMES:
            raise ValueError(
                f"{level} is not a VerSe vertebra id; valid ids are 1-26 and 28 "
                "(1-7 C1-C7, 8-19 T1-T12, 20-24 L1-L5, 25 L6, 26 sacrum, 28 T13)"
            )
        return int(level)
    text = str(level).strip()
    if text.isdigit():
        return verse_id(int(text))
    key = "sacrum" if text.lower() in ("sacrum", "s1") else text.upper()
    if key not in VERSE_IDS:
        raise ValueError(
            f"unknown vertebra level {level!r}; use C1-C7, T1-T13, L1-L6 or sacrum, or a VerSe id"
        )
    return VERSE_IDS[key]


def level_name(verse: int) -> str:
    """Level name (``"C1"`` ... ``"L6"``, ``"sacrum"``, ``"T13"``) of a VerSe id.

    Raises:
        ValueError: ``verse`` is not a VerSe vertebra id.
    """
    return LEVEL_NAMES[verse_id(int(verse))]


def segment_of(level: str | int) -> Segment:
    """Spine segment of a vertebra given by level name or VerSe id.

    Returns:
        ``'cervical'`` (C1-C7), ``'thoracic'`` (T1-T13), ``'lumbar'`` (L1-L6) or
        ``'sacral'`` (sacrum).
    """
    v = verse_id(level)
    if v <= 7:
        return "cervical"
    if v <= 19 or v == 28:
        return "thoracic"
    if v <= 25:
        return "lumbar"
    return "sacral"


def _lookup(label_array: np.ndarray, table: dict[int, int], name: str) -> np.ndarray:
    labels = np.asarray(label_array)
    if labels.dtype.kind not in "iub":
        if labels.size and not np.all(np.equal(np.mod(labels, 1), 0)):
            raise ValueError(f"{name}: the label array holds non-integer values; pass a label map")
    labels = labels.astype(np.int64, copy=False)
    if labels.size and labels.min() < 0:
        raise ValueError(f"{name}: the label array holds negative values; pass a label map")
    top = int(labels.max()) if labels.size else 0
    lut = np.zeros(max(top, max(table)) + 1, dtype=np.uint8)
    for src, dst in table.items():
        lut[src] = dst
    return lut[labels]


def totalsegmentator_to_verse(label_array: np.ndarray) -> np.ndarray:
    """Relabel a TotalSegmentator v2 label map to VerSe ids.

    Vertebrae are renumbered (S1 merged into the sacrum); every other class
    (organs, ribs, ...) becomes background.

    Args:
        label_array: integer label map of any shape.

    Returns:
        uint8 array of the same shape with VerSe ids.
    """
    return _lookup(label_array, TOTALSEGMENTATOR_TO_VERSE, "totalsegmentator_to_verse")


def verse_to_totalsegmentator(
    label_array: np.ndarray, *, unmapped: Literal["error", "drop"] = "error"
) -> np.ndarray:
    """Relabel a VerSe label map to TotalSegmentator v2 ids.

    Args:
        label_array: integer label map of any shape with VerSe ids.
        unmapped: what to do with labels that have no TotalSegmentator class
            (L6 = 25, T13 = 28, or any unknown id): ``'error'`` raises,
            ``'drop'`` sets them to background.

    Returns:
        uint8 array of the same shape with TotalSegmentator v2 ids.

    Raises:
        ValueError: unmapped labels are present and ``unmapped='error'``.
    """
    labels = np.asarray(label_array)
    if unmapped == "error":
        present = set(np.unique(labels).tolist()) - {0}
        missing = sorted(present - set(VERSE_TO_TOTALSEGMENTATOR))
        if missing:
            names = [LEVEL_NAMES.get(int(m), "unknown") for m in missing]
            raise ValueError(
                f"VerSe labels {missing} ({', '.join(names)}) have no TotalSegmentator v2 class; "
                "pass unmapped='drop' to set them to background"
            )
    elif unmapped != "drop":
        raise ValueError(f"unmapped must be 'error' or 'drop', not {unmapped!r}")
    return _lookup(labels, VERSE_TO_TOTALSEGMENTATOR, "verse_to_totalsegmentator")


#: Label conventions of exported label maps (``export.labels``).
LABEL_CONVENTIONS = ("verse", "totalsegmentator")


def exported_id(verse: int, convention: str) -> int:
    """Value of a vertebra (by VerSe id) in a label map of ``convention``; 0 if it has none."""
    if convention == "totalsegmentator":
        return VERSE_TO_TOTALSEGMENTATOR.get(int(verse), 0)
    if convention == "verse":
        return int(verse)
    raise ValueError(f"label convention must be one of {LABEL_CONVENTIONS}, got {convention!r}")
