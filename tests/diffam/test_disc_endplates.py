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


def _density(disc_hu: float, body_hu: float, disc_mm: float, *, plate_hu: float | None = None):
    """Body-slab density (1 mm samples): bodies of ``body_hu`` (with plates of
    ``plate_hu`` 2 mm thick at each end when given) and discs of ``disc_hu``."""
    s = np.arange(0.0, 220.0, STEP_MM)
    density = np.full_like(s, body_hu)
    for centre in DISC_CENTRES_MM:
        if plate_hu is not None:
            density[np.abs(s - centre) <= disc_mm / 2 + 2.0] = plate_hu
        density[np.abs(s - centre) <= disc_mm / 2] = disc_hu
    return density


def test_a_dark_disc_between_dense_bodies_is_a_gap_and_the_period_search_finds_it_without_plates():
    from diffam.localize.periodicity import disc_gap_profile, disc_profile

    # The pelvis phantoms at 3 mm: discs of 35-60 HU between bodies of 250-300 HU,
    # with plates too blurred to show (a flat top-hat).
    density = _density(40.0, 270.0, 10.0)
    gap = disc_gap_profile(density, STEP_MM, -200.0)
    at = np.round(DISC_CENTRES_MM).astype(int)
    assert (gap[at] > 50.0).all() and gap[at + 18].max() == 0.0  # mid-body: none
    # Each disc shows one blurred plate, always on its upper side, at uneven
    # strength, and each body one weak ripple: on the top-hat alone every disc is
    # found at its one plate, 7 mm off, with no partner to centre it; with the gaps
    # at the disc itself.
    s = np.arange(0.0, 220.0, STEP_MM)
    plates = np.zeros_like(s)
    for n, centre in enumerate(DISC_CENTRES_MM):
        plates += (1.0 if n % 2 else 0.3) * 60.0 * np.exp(-0.5 * ((s - centre - 7.0) / 1.5) ** 2)
        plates += 25.0 * np.exp(-0.5 * ((s - centre - 18.0) / 1.5) ** 2)
    alone = periodic_peaks(disc_profile(plates, 0.0 * density + 270.0, STEP_MM, -200.0),
                           STEP_MM, period_mm=(26.0, 48.0))
    np.testing.assert_allclose(alone * STEP_MM - DISC_CENTRES_MM, 7.0, atol=1.0)
    peaks = periodic_peaks(disc_profile(plates, density, STEP_MM, -200.0), STEP_MM,
                           period_mm=(26.0, 48.0))
    np.testing.assert_allclose(peaks * STEP_MM, DISC_CENTRES_MM, atol=3.0)


def test_a_bodys_marrow_between_bright_plates_and_the_scans_end_are_no_disc_gap():
    from diffam.localize.periodicity import disc_gap_profile

    # The chest CT: thoracic marrow 95-110 HU between plate bands of about 200 HU
    # (discs blurred into them), and L1's marrow (72 HU) between 150-190 HU.
    for marrow, plate in ((100.0, 200.0), (72.0, 170.0)):
        density = _density(plate, marrow, 6.0, plate_hu=plate)
        assert disc_gap_profile(density, STEP_MM, -200.0).max() == 0.0
    # Past the end of the scan (the outside value) and soft tissue beyond the column.
    density = _density(40.0, 270.0, 10.0)
    density[:20] = -200.0
    density[-40:] = 30.0
    gap = disc_gap_profile(density, STEP_MM, -200.0)
    assert gap[:20].max() == 0.0 and gap[-30:].max() == 0.0
    # A partly seen slab at the scan's face (the noisy chest CT's top face: -30 HU,
    # then 19 HU at its edge) is no disc either: the window reaches past the scan.
    density = _density(40.0, 270.0, 10.0)
    density[190:197], density[197], density[198:] = -25.0, 19.0, -200.0
    assert disc_gap_profile(density, STEP_MM, -200.0)[185:].max() == 0.0
