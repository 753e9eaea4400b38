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

Segment = Literal["cervical", "thoracic", "lumbar", "sacrum"]

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

#: The 24 regular levels C1-L5 in cranio-caudal order (templates hold these).
STANDARD_LEVELS: tuple[str, ...] = (
    tuple(f"C{n}" for n in range(1, 8))
    + tuple(f"T{n}" for n in range(1, 13))
    + tuple(f"L{n}" for n in range(1, 6))
)
#: VerSe ids of :data:`STANDARD_LEVELS` (1-24).
STANDARD_VERSE_IDS: tuple[int, ...] = tuple(VERSE_IDS[lv] for lv in STANDARD_LEVELS)

#: Segments of the summary tables, in the order of the paper's Table 1 (the
#: sacrum is reported per vertebra but belongs to none of them).
SEGMENTS: tuple[str, ...] = ("cervical", "thoracic", "lumbar")

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
        ``'sacrum'``.
    """
    v = verse_id(level)
    if v <= 7:
        return "cervical"
    if v <= 19 or v == 28:
        return "thoracic"
    if v <= 25:
        return "lumbar"
    return "sacrum"


def anatomical_order(verse: int) -> float:
    """Sort key placing VerSe ids head to tail (T13 between T12 and L1, the sacrum last)."""
    return 19.5 if verse == VERSE_IDS["T13"] else float(verse)


#: Largest label value a label map may hold (larger values mean an intensity image).
MAX_LABEL_VALUE = 2**24


def relabel(label_array: np.ndarray, table: dict[int, int]) -> tuple[np.ndarray, list[int]]:
    """Map the values of a label map through ``table`` (values not in it become 0).

    Args:
        label_array: integer label map, any shape.
        table: source value -> new value (0-255).

    Returns:
        ``(relabelled, ignored)``: the uint8 map, same shape, and the sorted
        non-zero source values present but not in ``table``.

    Raises:
        ValueError: the array holds non-integer, negative or huge values
            (an intensity or probability image, not a label map).
    """
    labels = np.asarray(label_array)
    if labels.dtype.kind not in "iub":
        rounded = np.rint(labels)
        if labels.size and not np.array_equal(rounded, labels):
            raise ValueError("the label map holds non-integer values: give a label image, "
                             "not an intensity or probability image")
        labels = rounded
    labels = labels.astype(np.int64, copy=False)
    if labels.size == 0:
        return np.zeros(labels.shape, np.uint8), []
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0:
        raise ValueError(f"the label map holds negative values ({lo}): not a label image")
    if hi > MAX_LABEL_VALUE:
        raise ValueError(f"the label map holds a value of {hi}: not a label image")
    lut = np.zeros(max(hi, max(table, default=0)) + 1, dtype=np.uint8)
    for src, dst in table.items():
        if src >= 0:
            lut[src] = dst
    present = np.flatnonzero(np.bincount(labels.ravel().astype(np.intp, copy=False)))
    ignored = [int(v) for v in present if v != 0 and lut[v] == 0]
    return lut[labels], ignored


def totalsegmentator_to_verse(label_array: np.ndarray) -> np.ndarray:
    """Relabel a TotalSegmentator v2 label map to VerSe ids.

    Vertebrae are renumbered (S1 merged into the sacrum); every other class
    (organs, ribs, ...) becomes background.

    Args:
        label_array: integer label map of any shape.

    Returns:
        uint8 array of the same shape with VerSe ids.
    """
    return relabel(label_array, TOTALSEGMENTATOR_TO_VERSE)[0]


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
    return relabel(labels, VERSE_TO_TOTALSEGMENTATOR)[0]


#: Label conventions of exported label maps (``export.labels``).
LABEL_CONVENTIONS = ("verse", "totalsegmentator")


def exported_id(verse: int, convention: str) -> int:
    """Value of a vertebra (by VerSe id) in a label map of ``convention``; 0 if it has none."""
    if convention == "totalsegmentator":
        return VERSE_TO_TOTALSEGMENTATOR.get(int(verse), 0)
    if convention == "verse":
        return int(verse)
    raise ValueError(f"label convention must be one of {LABEL_CONVENTIONS}, got {convention!r}")
