"""End vertebrae beyond the last disc: counted only when body bone is seen past the disc gap."""

from __future__ import annotations

import numpy as np
import pytest

from diffam.localize.end_segments import (
    IN_VIEW_VOLUME,
    OUTSIDE_DENSITY_HU,
    VOLUME_FIFTH_ABOVE,
    VOLUME_FIFTH_BELOW,
    end_segment_bone_mm,
    marrow_density_hu,
    shows_a_fifth,
)
from diffam.localize.template_calibration import volume_fifth_fractions

BODY_HU, DISC_HU, PLATE_HU = 150.0, 60.0, 350.0
PERIOD_MM, DISC_MM, PLATE_MM = 32.0, 8.0, 2.0
MIN_BODY_HU = 100.0
SOFT_HU, BLUR_MM = 20.0, 6.0


def _column(face_mm: float, *, fade_mm: float = 0.0) -> tuple[np.ndarray, float]:
    """Body-slab density, 1 mm samples, of a column whose scan ends below at ``face_mm``.

    Bodies of 150 HU with 2 mm endplates of 350 HU; discs of 60 HU. The lowest
    disc's upper endplate lies at 100 mm. With ``fade_mm``, the disc below it
    is not seen as a dark gap: the density only fades from the plate to the face
    over that length (partial volume of an oblique face), as in a tight crop.
    Returns ``(density, endplate peak mm)``.
    """
    s = np.arange(200.0)
    density = np.full(len(s), BODY_HU)
    for top in np.arange(100.0, 200.0, PERIOD_MM):
        density[(s >= top - DISC_MM) & (s < top)] = DISC_HU
        density[(s >= top) & (s < top + PLATE_MM)] = PLATE_HU
        density[(s >= top - DISC_MM - PLATE_MM) & (s < top - DISC_MM)] = PLATE_HU
    if fade_mm:
        ramp = (s >= face_mm) & (s < 100.0)
        density[ramp] = np.interp(s[ramp], [face_mm, 100.0], [MIN_BODY_HU - 40.0, PLATE_HU])
    density[s < face_mm] = OUTSIDE_DENSITY_HU
    return density, 100.0


def test_a_cut_body_past_the_disc_counts_by_the_bone_it_shows():
    # 12 mm of body past the disc and its lower plate: more than a fifth of a period.
    density, peak = _column(face_mm=100.0 - DISC_MM - PLATE_MM - 12.0)
    bone, span = end_segment_bone_mm(density, 1.0, peak, -1, PERIOD_MM, MIN_BODY_HU)
    # The body seen, and at most the lower plate and disc blurred into it.
    assert 12.0 <= bone <= 12.0 + PLATE_MM + DISC_MM
    assert bone < 0.9 * span  # cut by the face: partial


def test_a_whole_end_vertebra_is_not_partial():
    density, peak = _column(face_mm=0.0)
    bone, span = end_segment_bone_mm(density, 1.0, peak, -1, PERIOD_MM, MIN_BODY_HU)
    assert bone >= 0.9 * span


def test_a_fading_endplate_at_the_face_is_not_a_vertebra():
    # Bone-dense for 10 mm below the plate (more than a fifth of the period, so
    # the old rule counted it) but with no disc gap: only the plate fading out.
    density, peak = _column(face_mm=85.0, fade_mm=15.0)
    assert (density[88:100] > MIN_BODY_HU).sum() >= 0.2 * PERIOD_MM
    bone, _ = end_segment_bone_mm(density, 1.0, peak, -1, PERIOD_MM, MIN_BODY_HU)
    assert bone < 0.2 * PERIOD_MM


def test_the_top_end_is_the_mirror_image():
    density, peak = _column(face_mm=100.0 - DISC_MM - PLATE_MM - 12.0)
    mirrored = density[::-1].copy()
    bone, _ = end_segment_bone_mm(mirrored, 1.0, 199.0 - peak, +1, PERIOD_MM, MIN_BODY_HU)
    below, _ = end_segment_bone_mm(density, 1.0, peak, -1, PERIOD_MM, MIN_BODY_HU)
    assert abs(bone - below) <= 1.0


def test_bone_fading_where_the_scan_goes_on_still_counts():
    # The same fade, but the scan shows a whole period beyond the disc: no face
    # cuts anything there, so the bone is the next vertebra (a curving neck that
    # the straight continuation of the centreline leaves).
    density, peak = _column(face_mm=85.0, fade_mm=15.0)
    density[density <= OUTSIDE_DENSITY_HU] = 0.0  # soft tissue seen instead of the face
    bone, _ = end_segment_bone_mm(density, 1.0, peak, -1, PERIOD_MM, MIN_BODY_HU)
    assert bone >= 0.2 * PERIOD_MM


def _paired_end(face_mm: float, body_hu: float, *, fade: bool) -> tuple[np.ndarray, float]:
    """Low-density column (bodies of ``body_hu``) whose lowest disc is resolved into
    two plates, cut by the scan's face at ``face_mm`` below its outer (lower) plate
    at 90 mm. Beyond the plate the scan shows either a body of the same density
    (``fade=False``) or only the plate's blur, fading to soft tissue within
    :data:`BLUR_MM`, then soft tissue to the face (the slivers at verse007's
    and verse005's crop faces fall from the plate to soft tissue in 6-8 mm).
    Returns ``(density, outer plate mm)``."""
    density, _ = _column(face_mm=0.0)
    density[density == BODY_HU] = body_hu
    plate = 100.0 - DISC_MM - PLATE_MM
    below = np.arange(len(density)) < plate
    if fade:
        s = np.arange(len(density), dtype=float)
        density[below] = np.interp(s[below], [plate - BLUR_MM, plate], [SOFT_HU, PLATE_HU])
    density[np.arange(len(density)) < face_mm] = OUTSIDE_DENSITY_HU
    return density, plate + 1.0


def test_a_low_density_cut_body_past_a_paired_disc_counts_by_the_scans_own_marrow():
    # Bodies of 70 HU (osteoporotic): 14 mm of the cut body past the outer
    # plate is below the fixed 100 HU bone threshold, so the old rule saw no
    # bone there, but it is as dense as the scan's own bodies.
    density, plate = _paired_end(face_mm=90.0 - 14.0, body_hu=70.0, fade=False)
    marrow = marrow_density_hu(density, 1.0, np.array([96.0, 128.0, 160.0]))  # disc centres
    assert abs(marrow - 70.0) < 5.0
    old, _ = end_segment_bone_mm(density, 1.0, plate, -1, PERIOD_MM, MIN_BODY_HU)
    bone, span = end_segment_bone_mm(density, 1.0, plate, -1, PERIOD_MM, MIN_BODY_HU,
                                     paired=True, marrow_hu=marrow)
    assert old < 0.2 * PERIOD_MM <= bone
    assert bone <= 14.0 and bone < 0.9 * span


def test_a_plate_fading_into_the_face_past_a_paired_disc_is_not_a_vertebra():
    # The same scan, but past the plate only its blur, fading to soft tissue,
    # before the face 14 mm below (an oblique crop face): it drops below the
    # marrow within a few millimetres, so no vertebra is counted there.
    density, plate = _paired_end(face_mm=90.0 - 14.0, body_hu=70.0, fade=True)
    bone, _ = end_segment_bone_mm(density, 1.0, plate, -1, PERIOD_MM, MIN_BODY_HU,
                                  paired=True, marrow_hu=70.0)
    assert bone < 0.2 * PERIOD_MM


#: Marrow of the scan of the slow fade (the chest CT's: 120-125 HU).
MARROW_HU = 120.0


def _slow_fade_to_a_face(face_mm: float) -> tuple[np.ndarray, float]:
    """Body-slab density below a thin disc blurred into one peak (100 mm), over a cut
    body whose marrow (105 HU) is about as dark as that blur; the face of the scan at
    ``face_mm`` is padded with air that the slab's smoothing blends in (an oblique,
    resampled scan: the chest CT's cut L3). Returns ``(density, peak mm)``."""
    s = np.arange(200.0)
    density = np.full(len(s), 250.0)
    density[(s >= 98.0) & (s <= 102.0)] = PLATE_HU
    below = s < 98.0
    density[below] = np.interp(s[below], [face_mm + 6.0, 91.0, 98.0], [105.0, 110.0, PLATE_HU])
    edge = (s >= face_mm) & (s < face_mm + 3.0)
    density[edge] = np.interp(s[edge], [face_mm, face_mm + 3.0], [-150.0, 90.0])
    density[s < face_mm] = OUTSIDE_DENSITY_HU
    return density, 100.0


def test_a_cut_body_as_dark_as_a_blurred_thin_disc_counts_when_the_face_lies_beyond_the_gap():
    # 16 mm of cut body between the peak and the face, 18 mm away: more than
    # half a 25 mm period, so no face lies where a disc gap is looked for, and
    # the density never dips there, it only falls slowly. The darkest sample is
    # then the window's far end, and counting only the bone past it (the old
    # rule) left 2-3 mm of a body that fills most of the view.
    period = 25.0
    density, peak = _slow_fade_to_a_face(face_mm=100.0 - 18.0)
    bone, span = end_segment_bone_mm(density, 1.0, peak, -1, period, MIN_BODY_HU,
                                     marrow_hu=MARROW_HU)
    assert shows_a_fifth(bone, period, -1)
    assert bone < 0.9 * span  # still partial


def test_a_plate_fading_past_half_a_period_into_the_face_still_does_not_count():
    # verse007 at 3 mm: below its lowest (thin) disc the slab falls from 210 HU
    # to soft tissue over 12 mm into the crop's face, 20 mm away. The window's
    # far end is the darkest sample, but far below the scan's marrow: a fade.
    period = 32.0
    s = np.arange(200.0)
    density = np.full(len(s), 220.0)
    fade = s < 98.0
    density[fade] = np.interp(s[fade], [80.0, 98.0], [0.0, 220.0])
    density[s < 80.0] = OUTSIDE_DENSITY_HU
    bone, _ = end_segment_bone_mm(density, 1.0, 100.0, -1, period, MIN_BODY_HU,
                                  marrow_hu=MARROW_HU)
    assert not shows_a_fifth(bone, period, -1)


def test_a_fading_endplate_reaching_the_face_within_half_a_period_still_does_not_count():
    # The same slow fall, but the face lies within half a period of the peak:
    # the gap is the face, as before, and nothing past it is bone.
    period = 36.0
    density, peak = _slow_fade_to_a_face(face_mm=100.0 - 12.0)
    bone, _ = end_segment_bone_mm(density, 1.0, peak, -1, period, MIN_BODY_HU,
                                  marrow_hu=MARROW_HU)
    assert not shows_a_fifth(bone, period, -1)


def test_a_vertebra_above_the_highest_disc_counts_with_less_body_than_a_fifth_of_its_period():
    # The arch of the vertebra above a disc hangs below its body, so a face
    # just above the disc shows a fifth of its volume with less of its body:
    # the L3 crop's cut L2 shows 7 mm of a 36.5 mm period, 37 % of its volume
    # by its label (a fifth of the period would need 7.3 mm).
    assert shows_a_fifth(7.0, 36.5, +1)
    assert not shows_a_fifth(0.1 * 36.5, 36.5, +1)
    assert not shows_a_fifth(0.1 * 36.5, 36.5, -1)
    assert VOLUME_FIFTH_ABOVE < IN_VIEW_VOLUME and VOLUME_FIFTH_BELOW < IN_VIEW_VOLUME


@pytest.mark.slow
def test_the_volume_fifth_fractions_are_the_templates_largest_over_t1_to_l5():
    from diffam.core.labels import level_name
    from diffam.core.template import load_template

    levels = [level_name(v) for v in range(8, 25)]  # T1-L5
    fractions = volume_fifth_fractions(load_template("spine"), levels)
    assert sorted(fractions) == sorted(levels)
    above = max(f[0] for f in fractions.values())
    below = max(f[1] for f in fractions.values())
    assert abs(VOLUME_FIFTH_ABOVE - above) <= 0.005
    assert abs(VOLUME_FIFTH_BELOW - below) <= 0.005
    # Lumbar vertebrae, the arch hanging below the body: from below, less than from above.
    assert all(fractions[f"L{n}"][0] < fractions[f"L{n}"][1] for n in (1, 2, 3, 4))


def test_the_bone_counted_does_not_depend_on_float_error_in_the_curve_step():
    # The chest CT with noise: a centreline step of 0.99997 mm put the sample
    # 3 mm past the plate (DISC_SIDE_MM) 0.1 um too close, and it was dropped:
    # 3 mm of its cut C6 counted instead of 4.
    step = 0.9999684785291265
    density, plate = _paired_end(face_mm=90.0 - 14.0, body_hu=70.0, fade=False)
    marrow = marrow_density_hu(density, 1.0, np.array([96.0, 128.0, 160.0]))
    exact, _ = end_segment_bone_mm(density, 1.0, plate, -1, PERIOD_MM, MIN_BODY_HU,
                                   paired=True, marrow_hu=marrow)
    drifted, _ = end_segment_bone_mm(density, step, (plate / 1.0) * step, -1, PERIOD_MM,
                                     MIN_BODY_HU, paired=True, marrow_hu=marrow)
    assert abs(drifted - exact) < 0.01


def test_a_whole_low_density_vertebra_past_the_last_disc_counts_by_the_scans_own_marrow():
    # verse005 with noise: its T12/L1 disc is not found at the crop's top
    # face, so L1 lies whole past the last disc found, and the scan shows a
    # whole period there (nothing cut). Its marrow, like all of the scan's
    # (61 HU), is below the fixed 100 HU threshold: the old rule saw 0-4 mm
    # of bone and lost L1.
    density, plate = _paired_end(face_mm=0.0, body_hu=65.0, fade=False)
    marrow = marrow_density_hu(density, 1.0, np.array([96.0, 128.0, 160.0]))
    bone, span = end_segment_bone_mm(density, 1.0, plate, -1, PERIOD_MM, MIN_BODY_HU,
                                     paired=True, marrow_hu=marrow)
    assert shows_a_fifth(bone, PERIOD_MM, -1)
    assert bone >= 0.9 * span  # whole, not partial
    # Soft tissue past the disc (the column's true end) is still no vertebra.
    density[: int(plate) - 6] = SOFT_HU
    bone, _ = end_segment_bone_mm(density, 1.0, plate, -1, PERIOD_MM, MIN_BODY_HU,
                                  paired=True, marrow_hu=marrow)
    assert not shows_a_fifth(bone, PERIOD_MM, -1)


def test_a_flat_stretch_down_to_the_face_is_the_disc_wherever_noise_puts_its_darkest_sample():
    # verse008 with noise (seed 0 of the noise group alone): under L5's lower
    # plate, blurred into one peak with the L5/S1 disc, the slab stays at
    # 125-140 HU for 8 mm down to the crop's face (its measured densities,
    # below). Smoothed, its darkest sample within half a period fell 5 mm
    # from the face, so 6 mm of "bone" past it made a sliver of S1 a
    # vertebra below L5, and the hint then named every level one off.
    period = 31.5
    density = np.full(120, 350.0)
    density[48:64] = [125, 136, 138, 140, 135, 131, 128, 134, 141, 149, 162, 180, 209, 249,
                      299, 354]
    density[:48] = OUTSIDE_DENSITY_HU
    bone, _ = end_segment_bone_mm(density, 1.0, 64.0, -1, period, MIN_BODY_HU, marrow_hu=101.0)
    assert not shows_a_fifth(bone, period, -1)
