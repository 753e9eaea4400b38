"""Name detected vertebrae (VerSe ids) from a user hint, and say how.

A run of consecutive vertebrae, ordered from inferior to superior, is named
from one anchor: the lowest vertebra's level (``levels.lowest=L5``) or the
highest's (``levels.highest=T10``). Consecutive levels follow the standard
count C1-C7, T1-T12, L1-L5 (no transitional T13/L6).

Without a hint the anatomical anchor is the lowest rib-bearing vertebra
(T12, :func:`name_from_ribs`). The sacrum and the dens are not recognised
yet: a scan with no rib-free vertebra below its ribs (or with no ribs) needs
a hint, and naming raises :class:`LocalizationError` with the options to pass.
"""

from __future__ import annotations

from diffam.core.labels import STANDARD_VERSE_IDS, level_name, verse_id

#: The standard sequence of mobile vertebrae from head to tail.


class LocalizationError(ValueError):
    """The vertebrae cannot be found or named; the message says what to pass."""


HINT_ADVICE = (
    "pass levels.lowest=<level of the lowest vertebra in the scan> (e.g. levels.lowest=L5) "
    "or levels.highest=<level of the highest> (e.g. levels.highest=T10), or give the "
    "centroids (centroids=path/to/centroids.json or .csv)"
)


def name_levels(
    count: int, *, hint_lowest: str | int | None = None, hint_highest: str | int | None = None
) -> tuple[list[int], str]:
    """VerSe ids of ``count`` consecutive vertebrae ordered from inferior to superior.

    Args:
        count: number of vertebrae detected.
        hint_lowest: level of the lowest (most inferior) vertebra, e.g. ``"L5"``.
        hint_highest: level of the highest (most superior) vertebra, e.g. ``"T10"``.

    Returns:
        ``(ids, how)``: ``ids`` from inferior to superior, and a sentence
        saying how the naming was decided.

    Raises:
        LocalizationError: no hint, both hints inconsistent with ``count``,
            or a hint that runs past C1 or L5.
    """
    if count <= 0:
        raise LocalizationError("no vertebra to name")
    if hint_lowest is None and hint_highest is None:
        raise LocalizationError(
            f"{count} vertebrae were found but no anatomical landmark (sacrum, lowest rib pair, "
            f"dens) was recognised to name them; {HINT_ADVICE}"
        )
    lowest = _standard(hint_lowest, "levels.lowest") if hint_lowest is not None else None
    highest = _standard(hint_highest, "levels.highest") if hint_highest is not None else None
    if lowest is not None and highest is not None and lowest - highest + 1 != count:
        raise LocalizationError(
            f"levels.lowest={level_name(lowest)} and levels.highest={level_name(highest)} span "
            f"{lowest - highest + 1} vertebrae but {count} were detected; pass only one of them"
        )
    if lowest is None:
        lowest = highest + count - 1
        how = f"user hint levels.highest={level_name(highest)}, counted down {count - 1} levels"
    else:
        how = f"user hint levels.lowest={level_name(lowest)}, counted up {count - 1} levels"
    ids = [lowest - n for n in range(count)]
    if ids[-1] < 1 or ids[0] > 24:
        raise LocalizationError(
            f"{count} vertebrae counted from that hint would run past C1 or L5 "
            f"({how}); check the hint"
        )
    return ids, how


#: VerSe id of T12, the vertebra that carries the lowest rib pair.
T12 = 19


#: Vertebrae that must be seen below the lowest rib-bearing one for it to be
#: taken as T12 (L1 and L2).
VERTEBRAE_BELOW_T12 = 2


def name_from_ribs(carried: dict[int, set[str]], count: int,
                   partial: set[int] = frozenset()) -> tuple[list[int], str] | None:
    """Name ``count`` vertebrae from the lowest rib-bearing one (T12), or None.

    The anchor is the lowest vertebra that carries a rib while the vertebra
    above it carries one too (a lone rib-like component is not a rib cage),
    with a rib-free vertebra below it that the scan shows whole, and another
    vertebra below that one. Otherwise the ribs may go on below the scan:
    ribs run down and forward from their vertebra, so near the lower end of a
    scan a thoracic vertebra's ribs leave the field of view while its body is
    still in it (a T2-T10 window was named two levels off with one rib-free
    vertebra below its lowest ribs).

    Args:
        carried: vertebra index (inferior to superior) -> sides with a rib,
            from :func:`diffam.localize.ribs.rib_levels`.
        count: number of vertebrae detected.
        partial: indices of the vertebrae cut by the end of the scan.

    Returns:
        ``(ids, how)`` as :func:`name_levels`, or None when the ribs do not
        name the levels.
    """
    anchors = [n for n in sorted(carried)
               if n + 1 in carried and n >= VERTEBRAE_BELOW_T12
               and n - 1 not in carried and n - 1 not in partial]
    if not anchors:
        return None
    n12 = anchors[0]
    ids = [T12 + (n12 - n) for n in range(count)]
    if ids[0] > 24 or ids[-1] < 1:
        return None
    sides = " and ".join(sorted(carried[n12]))
    ribbed = len(carried)
    how = (
        f"lowest rib-bearing vertebra taken as T12 (rib on the {sides}; ribs found on "
        f"{ribbed} vertebrae), counted {n12} down and {count - 1 - n12} up"
    )
    return ids, how


def check_hints(hint_lowest: str | int | None, hint_highest: str | int | None) -> None:
    """Raise :class:`LocalizationError` naming a hint that is not a level C1-L5.

    For callers that check their settings before any work, even when the
    hints end up unused (centroids given).
    """
    for hint, what in ((hint_lowest, "levels.lowest"), (hint_highest, "levels.highest")):
        if hint is not None:
            _standard(hint, what)


def _standard(level: str | int, what: str) -> int:
    try:
        v = verse_id(level)
    except ValueError as err:
        raise LocalizationError(f"{what}={level!r}: {err}") from err
    if v not in STANDARD_VERSE_IDS:
        raise LocalizationError(
            f"{what}={level_name(v)}: hints must be a level C1-C7, T1-T12 or L1-L5"
        )
    return v
