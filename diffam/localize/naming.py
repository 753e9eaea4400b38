"""Name detected vertebrae (VerSe ids) from a user hint, and say how.

A run of consecutive vertebrae, ordered from inferior to superior, is named
from one anchor: the lowest vertebra's level (``levels.lowest=L5``) or the
highest's (``levels.highest=T10``). Consecutive levels follow the standard
count C1-C7, T1-T12, L1-L5 (no transitional T13/L6).

Without a hint the anatomical anchors are the lowest rib-bearing vertebra
(T12, :func:`name_from_ribs`) and the sacrum (the vertebra above it is L5,
:mod:`diffam.localize.sacrum`); :func:`name_vertebrae` combines them. When
both are seen with six vertebrae between them, the lowest is L6 (VerSe id
25, a transitional spine); when they disagree otherwise, the more confident
anchor names the levels and the naming says so. The dens is not recognised
yet: a scan with neither anchor needs a hint, and naming raises
:class:`LocalizationError` with the options to pass.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from diffam.core.labels import STANDARD_VERSE_IDS, level_name, verse_id

if TYPE_CHECKING:
    from diffam.localize.sacrum import Sacrum

log = logging.getLogger(__name__)


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
    n12 = rib_anchor(carried, partial)
    if n12 is None:
        return None
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


def rib_anchor(carried: dict[int, set[str]], partial: set[int] = frozenset()) -> int | None:
    """Index of the vertebra the ribs take as T12 (rules of :func:`name_from_ribs`), or None."""
    anchors = [n for n in sorted(carried)
               if n + 1 in carried and n >= VERTEBRAE_BELOW_T12
               and n - 1 not in carried and n - 1 not in partial]
    return anchors[0] if anchors else None


#: Rib-bearing levels, from T12 up, that the rib confidence looks at.
RIB_CONFIDENCE_LEVELS = 4


def rib_confidence(carried: dict[int, set[str]], n12: int) -> float:
    """Confidence in ``[0, 1]`` of the rib anchor at vertebra ``n12``.

    The share of ribs present among both sides of the :data:`RIB_CONFIDENCE_LEVELS`
    vertebrae from T12 up: a full cage (a pair on each) is 1; the minimum the
    anchor rule accepts, a one-sided rib on T12 and on T11 only, is 0.25.
    """
    sides = sum(len(carried.get(n, ())) for n in range(n12, n12 + RIB_CONFIDENCE_LEVELS))
    return sides / (2.0 * RIB_CONFIDENCE_LEVELS)


#: VerSe ids of L5 and L6; :data:`SACRAL` marks a detected segment of the sacrum.
L5, L6, SACRAL = 24, 25, 26


def name_vertebrae(
    count: int,
    carried: dict[int, set[str]],
    partial: set[int] = frozenset(),
    sacrum: Sacrum | None = None,
    *,
    hint_lowest: str | int | None = None,
    hint_highest: str | int | None = None,
) -> tuple[list[int], str]:
    """Name ``count`` detected vertebrae from the hints, the ribs and the sacrum.

    Vertebrae below the sacrum's top (its segments, which the column cues
    follow down the sacral canal) are named :data:`SACRAL`; the callers drop
    them. A hint is followed when given, and the anchors' disagreement noted.
    Without one: with both anchors, five vertebrae from the lowest lumbar to
    T12 exclusive agree, six name a transitional L6; any other count is a
    disagreement, logged and said, and the more confident anchor wins (the
    ribs on a tie). With one anchor, it names the levels; with none, the
    hint request of :func:`name_levels` is raised.

    Args:
        count: number of vertebrae detected, inferior to superior.
        carried: vertebra index -> sides with a rib (:func:`diffam.localize.ribs.rib_levels`).
        partial: indices of the vertebrae cut by the end of the scan.
        sacrum: the sacrum found below the column (:func:`diffam.localize.sacrum.find_sacrum`).
        hint_lowest, hint_highest: as :func:`name_levels`.

    Returns:
        ``(ids, how)``: ``count`` VerSe ids, inferior to superior, and the
        sentence saying how they were decided.
    """
    first = sacrum.lowest_lumbar if sacrum is not None else 0
    mobile = count - first
    dropped = [SACRAL] * first
    carried = {n - first: sides for n, sides in carried.items() if n >= first}
    partial = {n - first for n in partial if n >= first}
    n12 = rib_anchor(carried, partial)
    from_ribs = name_from_ribs(carried, mobile, partial)
    sacral_note = ""
    if sacrum is not None:
        sacral_note = f"; {sacrum.describe()}" + (
            f", {first} sacral segment(s) below it dropped" if first else "")
    if hint_lowest is not None or hint_highest is not None or (from_ribs is None and sacrum is None):
        ids, how = name_levels(mobile, hint_lowest=hint_lowest, hint_highest=hint_highest)
        if from_ribs is not None and from_ribs[0] != ids:
            how += (f" (the ribs suggest {level_name(from_ribs[0][0])}-"
                    f"{level_name(from_ribs[0][-1])} instead; the hint was followed)")
        if sacrum is not None and ids[0] != L5:
            how += " (the sacrum suggests L5 for the lowest instead; the hint was followed)"
        return dropped + ids, how + sacral_note
    from_sacrum = [L5 - n for n in range(mobile)]
    if n12 is None:
        how = f"vertebra above the sacrum taken as L5, counted {mobile - 1} up"
        return dropped + _checked(from_sacrum, how), how + sacral_note
    if sacrum is None:
        return dropped + from_ribs[0], from_ribs[1]
    ribs_ids = [T12 + (n12 - n) for n in range(mobile)]
    # Ribs that would name past C1 or below L6 lose to the sacrum.
    ribs_conf = rib_confidence(carried, n12) if ribs_ids[-1] >= 1 and ribs_ids[0] <= L6 else 0.0
    ribs_how = from_ribs[1] if from_ribs is not None else (
        f"lowest rib-bearing vertebra taken as T12, counted {n12} down and {mobile - 1 - n12} up")
    if n12 == 5:
        return dropped + _checked(ribs_ids, ribs_how), (
            f"{ribs_how}; the sacrum agrees (L5 above it){sacral_note}")
    if n12 == 6:
        return dropped + _checked(ribs_ids, ribs_how), (
            f"{ribs_how}; six lumbar vertebrae between the lowest ribs and the sacrum: a "
            f"transitional spine, the lowest named L6 (VerSe id {L6}){sacral_note}")
    sacrum_wins = sacrum.confidence > ribs_conf
    disagreement = (
        f"the ribs (T12, confidence {ribs_conf:.2f}) and the sacrum (L5 above it, confidence "
        f"{sacrum.confidence:.2f}) disagree: {n12} vertebrae between them, not 5; the "
        f"{'sacrum' if sacrum_wins else 'ribs'} were followed")
    log.warning("naming: %s", disagreement)
    if sacrum_wins:
        how = f"vertebra above the sacrum taken as L5, counted {mobile - 1} up"
        return dropped + _checked(from_sacrum, how), f"{how}; {disagreement}{sacral_note}"
    return dropped + _checked(ribs_ids, ribs_how), f"{ribs_how}; {disagreement}{sacral_note}"


def _checked(ids: list[int], how: str) -> list[int]:
    if ids[-1] < 1 or ids[0] > L6:
        raise LocalizationError(
            f"{len(ids)} vertebrae counted from an anatomical anchor would run past C1 "
            f"({how}); {HINT_ADVICE}")
    return ids


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
