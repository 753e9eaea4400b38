"""Thick discs seen as two endplate peaks: the disc lies between them (diffam.localize.periodicity)."""

from __future__ import annotations

import numpy as np

from diffam.localize.periodicity import disc_endplates, periodic_peaks

PERIOD_MM, STEP_MM = 36.0, 1.0
DISC_CENTRES_MM = np.arange(30.0, 200.0, PERIOD_MM)


def _profile(disc_mm: float, *, plate_sigma_mm: float = 1.5) -> np.ndarray:
    """Endplate profile (1 mm samples): each disc's two endplates ``disc_mm`` apart, Gaussian peaks."""
    s = np.arange(0.0, 220.0, STEP_MM)
    profile = np.zeros_like(s)
    for centre in DISC_CENTRES_MM:
        for plate in (centre - disc_mm / 2, centre + disc_mm / 2):
            profile += np.exp(-0.5 * ((s - plate) / plate_sigma_mm) ** 2)
    return profile


def test_the_two_endplates_of_a_thick_disc_pair_and_the_disc_lies_midway():
    profile = _profile(11.0)
    # Alternate the chosen plate from disc to disc, as the period search may.
    peaks = np.array([int(round(c + (5.5 if n % 2 else -5.5))) for n, c in enumerate(DISC_CENTRES_MM)])
    plates = disc_endplates(profile, peaks, STEP_MM, 26.0)
    np.testing.assert_allclose(plates.mean(axis=1) * STEP_MM, DISC_CENTRES_MM, atol=0.6)
    np.testing.assert_allclose(np.diff(plates, axis=1)[:, 0] * STEP_MM, 11.0, atol=1.1)


def test_the_period_search_keeps_one_plate_per_disc_which_the_pairing_centres():
    profile = _profile(11.0)
    peaks = periodic_peaks(profile, STEP_MM, period_mm=(26.0, 48.0))
    assert len(peaks) == len(DISC_CENTRES_MM)  # one peak per disc ...
    discs = disc_endplates(profile, peaks, STEP_MM, 26.0).mean(axis=1) * STEP_MM
    # ... at one of its plates, 5.5 mm off, until paired.
    assert np.abs(peaks * STEP_MM - DISC_CENTRES_MM).min() > 4.0
    np.testing.assert_allclose(discs, DISC_CENTRES_MM, atol=0.6)


def test_a_thin_disc_and_the_two_endplates_of_a_body_do_not_pair():
    thin = _profile(2.0)  # one blurred peak per disc
    peaks = np.round(DISC_CENTRES_MM).astype(int)
    plates = disc_endplates(thin, peaks, STEP_MM, 26.0)
    np.testing.assert_array_equal(plates[:, 0], plates[:, 1])
    # Bodies' endplates: a thin-disc column whose every second disc was
    # chosen (a 72 mm "period"): the unchosen discs lie half a period away.
    plates = disc_endplates(thin, peaks[::2], STEP_MM, 26.0)
    np.testing.assert_array_equal(plates[:, 0], plates[:, 1])


def test_a_weaker_bump_inside_a_body_is_no_endplate_partner():
    # A bump at half a plate's height 10 mm into the body next to a thin disc
    # (verse005: a 0.56 bump in L5's body moved the L4/L5 disc 5.5 mm).
    s = np.arange(0.0, 220.0, STEP_MM)
    profile = _profile(2.0) + 0.55 * np.exp(-0.5 * ((s - (DISC_CENTRES_MM[2] - 10.0)) / 1.5) ** 2)
    peaks = np.round(DISC_CENTRES_MM).astype(int)
    plates = disc_endplates(profile, peaks, STEP_MM, 26.0)
    np.testing.assert_array_equal(plates[:, 0], plates[:, 1])
