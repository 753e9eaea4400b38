"""End vertebrae beyond the last disc: counted only when body bone is seen past the disc gap."""

from __future__ import annotations

import numpy as np

from diffam.localize.end_segments import (
    OUTSIDE_DENSITY_HU,
    end_segment_bone_mm,
    marrow_density_hu,
)

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
