"""The vertebral period along the spine: which endplate peaks form the column.

Vertebrae repeat along the straightened spine with a slowly varying period
(vertebra plus disc height). :func:`periodic_peaks` picks the best such
sequence of peaks of an endplate profile, and :func:`disc_endplates` places
each disc between its two endplate peaks where a thick disc shows both; the
expected periods come from the published body and disc heights of
:mod:`diffam.core.anatomy`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from diffam.core.anatomy import DISC_BELOW, MEASURED
from diffam.core.labels import level_name, segment_of

#: Weight of the expected-period term of :func:`periodic_peaks` when a hint
#: names the levels in view.
PERIOD_PRIOR = 2.0

#: A period within a factor ``1 + PERIOD_PRIOR_TOLERANCE`` of a level's typical
#: period (shorter or longer) costs nothing in the prior of
#: :func:`periodic_peaks`. Adult vertebrae differ from the
#: cited means by 10-20 %, and the gap between two chosen peaks can be short by
#: a disc's height where one disc shows two endplate peaks and the next one
#: (the 40 mm DICOM series: 20 mm between chosen peaks, 25 mm between the
#: discs, against a typical T12 period of 31 mm).
PERIOD_PRIOR_TOLERANCE = 0.25

#: Range of the vertebral period (vertebra plus disc height) in mm.
MIN_PERIOD_MM = 12.0
MAX_PERIOD_MM = 48.0


def periodic_peaks(
    profile: np.ndarray,
    step_mm: float,
    *,
    period_mm: tuple[float, float] = (MIN_PERIOD_MM, MAX_PERIOD_MM),
    cost: float = 0.5,
    smoothness: float = 10.0,
    expected_mm: np.ndarray | None = None,
    prior: float = 0.0,
) -> np.ndarray:
    """Indices of the best sequence of peaks with a smoothly varying spacing.

    Maximises ``sum(profile[n_i] - cost) - smoothness * sum(log(g_i / g_{i-1})^2)
    - prior * sum(max(|log(g_i / e_i)| - log(1 + tolerance), 0)^2)`` over
    increasing sequences with
    gaps ``g_i`` in ``period_mm``, the first peak within one maximal period
    of the start and the last within one of the end. ``profile`` is scaled
    to its 95th percentile first. ``expected_mm`` (``(M,)``, when a hint
    names the levels) is the typical period at each sample, ``e_i`` its
    value in the middle of gap ``i`` and ``tolerance``
    :data:`PERIOD_PRIOR_TOLERANCE`; this term keeps the pair of endplates
    around one disc from counting as two discs.
    """
    m = len(profile)
    scale = np.percentile(profile, 95)
    p = profile / scale if scale > 0 else profile * 0.0
    gmin = max(1, int(round(period_mm[0] / step_mm)))
    gmax = max(gmin, int(round(period_mm[1] / step_mm)))
    gaps = np.arange(gmin, gmax + 1)
    ng = len(gaps)
    penalty = smoothness * np.log(gaps[:, None] / gaps[None, :]) ** 2  # [g_now, g_prev]
    gap_cost = np.zeros((m, ng))  # [end of the gap, gap]
    if expected_mm is not None and prior > 0:
        middle = np.clip(np.arange(m)[:, None] - gaps[None, :] // 2, 0, m - 1)
        departure = np.abs(np.log(gaps[None, :] * step_mm / np.asarray(expected_mm)[middle]))
        gap_cost = prior * np.maximum(departure - np.log1p(PERIOD_PRIOR_TOLERANCE), 0.0) ** 2
    neg = -np.inf
    first = np.where(np.arange(m) <= gmax, p - cost, neg)
    best = np.full((m, ng), neg)
    back = np.full((m, ng), -1, dtype=int)  # previous gap index; -1: previous is a first peak
    for n in range(m):
        for gi, g in enumerate(gaps):
            prev = n - g
            if prev < 0:
                break
            cand_first = first[prev]
            cand = best[prev] - penalty[gi]
            k = int(np.argmax(cand))
            if cand[k] >= cand_first and cand[k] > neg:
                best[n, gi], back[n, gi] = cand[k] + p[n] - cost - gap_cost[n, gi], k
            elif cand_first > neg:
                best[n, gi], back[n, gi] = cand_first + p[n] - cost - gap_cost[n, gi], -1
    # Best end within one maximal period of the end.
    tail = np.arange(max(0, m - 1 - gmax), m)
    end_scores = [(first[n], n, -2) for n in tail] + [
        (best[n, gi], n, gi) for n in tail for gi in range(ng)
    ]
    score, n, gi = max(end_scores, key=lambda t: t[0])
    if not np.isfinite(score):
        return np.zeros(0, dtype=int)
    peaks = [n]
    while gi >= 0:
        prev_gi = back[n, gi]
        n = n - gaps[gi]
        peaks.append(n)
        gi = prev_gi if prev_gi >= 0 else -2
    return np.array(peaks[::-1], dtype=int)


#: Widest dark stretch (mm) of the body slab's density that :func:`disc_gap_profile`
#: counts as a disc: a lumbar disc (about 10-12 mm) with its plates blurred at 3 mm
#: spacing fits; a stretch of soft tissue beyond the end of the column does not.
DISC_GAP_WINDOW_MM = 16.0

#: A disc is soft tissue: only darkness below this density (HU) counts as its gap.
DISC_GAP_MAX_HU = 100.0

#: A disc's gap is at most this fraction of the density around it (the grey closing).
#: A body's marrow between its two plates is not that dark on the shared scans: the
#: chest CT's thoracic marrow reads 95-110 HU between plate bands of about 200 HU, its
#: L1's 72 HU between 150-190 HU, darker than its L1/L2 disc (89 HU). The phantoms'
#: discs at 3 mm read 35-60 HU between bodies of 250-300 HU.
DISC_GAP_FRACTION = 0.5

#: Weight of the disc gap against the endplate top-hat in the profile the period
#: search runs on. The gap, capped by :data:`DISC_GAP_MAX_HU`, is at most about
#: 60 HU deep, a plate's top-hat up to 100-300 HU (set on the 3 mm pelvis phantoms).
DISC_GAP_WEIGHT = 3.0

#: Smoothing (mm, Gaussian sigma) along the curve of the profile the period search runs on.
PROFILE_SMOOTH_MM = 2.5


def disc_gap_profile(density: np.ndarray, step_mm: float, outside_hu: float) -> np.ndarray:
    """How far (HU) the body slab at each sample lies below the density a disc may have there.

    The endplate top-hat sees a thick disc only by its two plates, and at
    3 mm spacing one plate of a disc is often too blurred to show (a phantom
    on a sacrum at 3 mm: L4's upper plate 0.18 of the 95th percentile, the
    disc above it 35-60 HU between bodies of 250-300 HU), so the period
    search took a body's own two plates for two discs and split it. A disc
    is a dark stretch narrower than :data:`DISC_GAP_WINDOW_MM`, below
    :data:`DISC_GAP_MAX_HU` and below :data:`DISC_GAP_FRACTION` of the grey
    closing of the density over that window (the bone around it). Zero where
    the window reaches past the end of the scan (``density <= outside_hu``).
    """
    smooth = ndimage.gaussian_filter1d(density, 1.0 / step_mm, mode="nearest")
    window = max(3, int(round(DISC_GAP_WINDOW_MM / step_mm)))
    around = ndimage.grey_closing(smooth, size=window)
    gap = np.maximum(np.minimum(DISC_GAP_FRACTION * around, DISC_GAP_MAX_HU) - smooth, 0.0)
    # Where the window reaches past the end of the scan no gap can be measured: the
    # partly seen slab at a face (the noisy chest CT's top face: -30 HU, then 19 HU
    # at its edge) is no disc.
    gap[ndimage.binary_dilation(density <= outside_hu, structure=np.ones(window, bool))] = 0.0
    return gap


def disc_profile(plates: np.ndarray, density: np.ndarray, step_mm: float,
                 outside_hu: float) -> np.ndarray:
    """The profile :func:`periodic_peaks` picks discs on: endplates (``plates``, the
    top-hat) and dark disc gaps (:func:`disc_gap_profile` of ``density``), smoothed."""
    evidence = plates + DISC_GAP_WEIGHT * disc_gap_profile(density, step_mm, outside_hu)
    return ndimage.gaussian_filter1d(evidence, PROFILE_SMOOTH_MM / step_mm, mode="nearest")


#: Vertebral period (body plus disc height, mm) by region, wide enough for
#: small and tall adults: cervical C3-C7, thoracic, lumbar.
REGION_PERIOD_MM = {"cervical": (12.0, 26.0), "thoracic": (16.0, 40.0), "lumbar": (26.0, 48.0)}


def period_range(verse_ids: list[int]) -> tuple[float, float]:
    """Range of the vertebral period (mm) over the regions of ``verse_ids`` (all: none given)."""
    regions = {segment_of(v) for v in verse_ids} & REGION_PERIOD_MM.keys()
    ranges = [REGION_PERIOD_MM[r] for r in regions] or [(MIN_PERIOD_MM, MAX_PERIOD_MM)]
    return min(r[0] for r in ranges), max(r[1] for r in ranges)


def typical_period_mm(verse_id: int) -> float:
    """Typical vertebral period (mm) of one level: mean body height plus the disc below.

    From the cited measurements of :mod:`diffam.core.anatomy` (Panjabi et al.
    body heights, Gilad and Nissan disc heights): about 19 mm at C3-T1,
    23 mm at T6, 31 mm at T12, 36-39 mm at L1-L5.
    """
    level = level_name(verse_id)
    m = MEASURED[level]
    return 0.5 * (m["body_height_ant"] + m["body_height_post"]) + DISC_BELOW[level]


def expected_periods(count: int, step_mm: float, anchor: int, *, from_inferior: bool) -> np.ndarray:
    """Typical period (mm) at each of ``count`` curve samples, level by level from one end.

    The hinted level ``anchor`` (VerSe id) is the first vertebra from the
    inferior end (``levels.lowest``) or from the superior end
    (``levels.highest``); each next vertebra, one level further, takes its
    own :func:`typical_period_mm` of the curve.
    """
    out = np.empty(count)
    position, level = 0.0, anchor
    while position < count * step_mm:
        period = typical_period_mm(int(np.clip(level, 1, 24)))
        first = int(position / step_mm)
        out[first : int((position + period) / step_mm) + 1] = period
        position += period
        level += -1 if from_inferior else 1
    return out if from_inferior else out[::-1].copy()


#: Largest distance between the two endplate peaks of one disc, as a fraction
#: of the vertebral period: a lumbar disc is about 10 of a 36 mm period, a
#: body (whose two endplates must not pair) about 26.
MAX_DISC_FRACTION = 0.4

#: Smallest distance (mm) between the two endplate peaks of one disc: closer
#: peaks are one blurred peak's ripple.
MIN_DISC_PAIR_MM = 4.0

#: A partner peak must be at least this fraction of the chosen peak's height.
PAIR_PEAK_FRACTION = 0.6

#: Smoothing (mm, Gaussian sigma) of the endplate profile where the two plates
#: of a disc are told apart, and how far (mm) a chosen peak moves to its maximum there.
PAIR_SMOOTH_MM = 1.0
SNAP_MM = 2.0

#: Between two paired peaks the profile must fall below this fraction of the
#: lower one (the dark disc between the plates, blurred by the profile's smoothing).
PAIR_DIP_FRACTION = 0.8


def disc_endplates(raw_profile: np.ndarray, peaks: np.ndarray, step_mm: float,
                   min_period_mm: float) -> np.ndarray:
    """The two endplates ``(inferior, superior)`` (sample indices) of each disc a peak was chosen for.

    A thin disc blurs into one peak of the endplate profile; a thick one (a
    lumbar disc at 1-1.5 mm resolution, a lower thoracic one at 1 mm) shows
    its two endplates as two peaks with the dark disc between, and
    :func:`periodic_peaks` (on a smoother profile, where a 6 mm pair is one
    peak and a shoulder) keeps one of them, so the disc would be placed half
    a disc off, and the side it keeps can change from one level to the
    next. On the profile smoothed by only :data:`PAIR_SMOOTH_MM`, each
    chosen peak is moved to its local maximum and paired with another local
    maximum at most :data:`MAX_DISC_FRACTION` of the local period away, of
    comparable height (:data:`PAIR_PEAK_FRACTION`) and separated from it by
    a dip (:data:`PAIR_DIP_FRACTION`); a peak without such a partner is both
    endplates. The disc lies midway. When two partners qualify, the higher.
    """
    peaks = np.asarray(peaks, dtype=int)
    out = np.stack([peaks, peaks], axis=1)
    if len(peaks) == 0:
        return out
    profile = ndimage.gaussian_filter1d(raw_profile, PAIR_SMOOTH_MM / step_mm, mode="nearest")
    inner = profile[1:-1]
    maxima = np.flatnonzero((inner > profile[:-2]) & (inner >= profile[2:])) + 1
    snap = max(1, int(round(SNAP_MM / step_mm)))
    gaps = np.diff(peaks) * step_mm
    for n, chosen in enumerate(peaks):
        lo_s, hi_s = max(0, chosen - snap), min(len(profile), chosen + snap + 1)
        p = lo_s + int(np.argmax(profile[lo_s:hi_s]))
        out[n] = (p, p)
        near = [g for g in (gaps[n - 1] if n > 0 else None, gaps[n] if n < len(gaps) else None)
                if g is not None]
        # The mean of the two neighbouring gaps, and at least the median gap:
        # where the chosen plate alternates, gaps alternate by a disc's height.
        period = max(np.mean(near), np.median(gaps)) if near else min_period_mm
        reach = MAX_DISC_FRACTION * period / step_mm
        best, best_height = None, 0.0
        for q in maxima:
            distance = abs(int(q) - p)
            if (distance * step_mm < MIN_DISC_PAIR_MM or distance > reach
                    or np.abs(peaks - q).min() <= snap):  # another disc's chosen peak
                continue
            low = min(profile[p], profile[q])
            lo, hi = min(p, q), max(p, q)
            if (profile[q] < PAIR_PEAK_FRACTION * profile[p]
                    or profile[lo:hi + 1].min() > PAIR_DIP_FRACTION * low):
                continue
            if profile[q] > best_height:
                best, best_height = int(q), float(profile[q])
        if best is not None:
            out[n] = (min(p, best), max(p, best))
    return out
