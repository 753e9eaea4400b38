"""A cut vertebra past a paired end disc, counted by the whole bony cross-sections the scan shows."""

from __future__ import annotations

import numpy as np

from diffam.localize.end_sections import column_sections, whole_section_mm
from diffam.localize.end_segments import (
    OUTSIDE_DENSITY_HU,
    end_segment_bone_mm,
    marrow_density_hu,
)

PERIOD_MM, DISC_MM, PLATE_MM = 36.0, 8.0, 2.0
CORTEX_HU, PLATE_HU, ARCH_HU, DISC_HU, SOFT_HU = 300.0, 350.0, 400.0, 80.0, 40.0
MIN_BODY_HU = 100.0
BODY_RADIUS_MM, BODY_CENTRE_V_MM = 18.0, -10.0
#: Lowest disc: lower (outer) plate at 56-57 mm, upper plate at 66-67 mm.
OUTER_PLATE_MM = 56.0
FACE_MM = 40.0  # the scan's face, 16 mm below the outer plate


def _straightened(marrow_hu: float, cut_marrow_hu: float, *, oblique: bool = False,
                  soft_past_plate: bool = False, face_mm: float = FACE_MM):
    """A straightened column (1 mm samples), cut by the scan's face below its lowest disc.

    Bodies are disks with a 2 mm cortex and an arch behind them. Their
    marrow is ``marrow_hu``, and the cut body below the lowest disc has
    ``cut_marrow_hu``; the discs are denser than both (the L3 crop: discs
    about 75 HU, marrow 40-65 HU). Each disc has two 2 mm plates. The face
    lies at ``face_mm`` across the column, or, with ``oblique``, tilted by
    27 degrees in the sagittal plane (a tight crop's face), so that each
    millimetre past the plate shows less of the section. With
    ``soft_past_plate`` the scan shows only soft tissue past the plate.

    Returns ``(array, inside, v, u, density, discs_mm)``.
    """
    v, u = np.arange(-40.0, 41.0), np.arange(-40.0, 41.0)
    vv, uu = np.meshgrid(v, u, indexing="ij")
    radius = np.hypot(vv - BODY_CENTRE_V_MM, uu)
    body, cortex = radius <= BODY_RADIUS_MM, (radius <= BODY_RADIUS_MM) & (radius > BODY_RADIUS_MM - 2)
    arch = (vv >= 14) & (vv <= 24) & (np.abs(uu) <= 12)
    s = np.arange(200.0)
    array = np.full((len(s), len(v), len(u)), SOFT_HU, dtype=np.float32)
    uppers = np.arange(OUTER_PLATE_MM + PLATE_MM + DISC_MM, 200.0, PERIOD_MM)
    for n, sn in enumerate(s):
        section = array[n]
        section[arch] = ARCH_HU
        upper = uppers[np.argmin(np.abs(uppers - sn))]
        if upper - DISC_MM <= sn < upper:
            section[body] = DISC_HU
        elif upper <= sn < upper + PLATE_MM or upper - DISC_MM - PLATE_MM <= sn < upper - DISC_MM:
            section[body] = PLATE_HU
        else:
            section[body] = cut_marrow_hu if sn < OUTER_PLATE_MM else marrow_hu
            section[cortex] = CORTEX_HU
        if soft_past_plate and sn < OUTER_PLATE_MM:
            section[:] = SOFT_HU
    # Oblique: the face rises 1 mm for every 2 mm towards the front.
    face = face_mm - (0.5 * vv if oblique else 0.0 * vv)
    inside = s[:, None, None] >= face[None]
    array[~inside] = -1024.0
    slab = (vv >= -25) & (vv <= -5) & (np.abs(uu) <= 8)
    seen = inside[:, slab].mean(axis=1) >= 0.5
    density = np.where(seen, (array[:, slab] * inside[:, slab]).sum(1)
                       / np.maximum(inside[:, slab].sum(1), 1), OUTSIDE_DENSITY_HU)
    discs = uppers - PLATE_MM - 0.5 * DISC_MM
    return array, inside, v, u, density, discs


def _bone_below(marrow_hu, cut_marrow_hu, **kwargs):
    array, inside, v, u, density, discs = _straightened(marrow_hu, cut_marrow_hu, **kwargs)
    marrow = marrow_density_hu(density, 1.0, discs)
    old, _ = end_segment_bone_mm(density, 1.0, OUTER_PLATE_MM, -1, PERIOD_MM, MIN_BODY_HU,
                                 paired=True, marrow_hu=marrow)
    sections = column_sections(array, inside, v, u, discs, 1.0)
    new, span = end_segment_bone_mm(density, 1.0, OUTER_PLATE_MM, -1, PERIOD_MM, MIN_BODY_HU,
                                    paired=True, marrow_hu=marrow, sections=sections)
    return old, new, span, sections


def test_a_cut_body_darker_than_the_scans_marrow_counts_by_its_whole_bony_sections():
    # As the L3 crop's cut L4: its marrow (40 HU) below 0.7 of the scan's (65
    # HU), so the marrow-relative rule sees no bone; but the scan shows its
    # whole section, cortex and arch, from the plate to the face 16 mm below.
    old, new, span, sections = _bone_below(65.0, 40.0)
    assert abs(sections.reference_mm2 - sections.bone_mm2[90]) < 1.0  # a mid-height section
    assert old < 0.2 * PERIOD_MM <= new
    # The run: from the plate (its blur is the cut body's own endplate) to the
    # face, and no further.
    assert abs(new - (OUTER_PLATE_MM - FACE_MM + 1.0)) <= 1.0
    assert new < 0.9 * span  # cut by the face: partial


def test_a_sliver_at_an_oblique_face_past_a_paired_disc_is_not_a_vertebra():
    # The same column under a tight crop's 27-degree face: past the plate the
    # scan shows less and less of the section, never the whole of it.
    _, new, _, _ = _bone_below(65.0, 40.0, oblique=True)
    assert new < 0.2 * PERIOD_MM


def test_soft_tissue_seen_whole_past_a_paired_disc_is_not_a_vertebra():
    # A whole section is not enough: it must hold the bone of a vertebra.
    array, inside, v, u, _, discs = _straightened(65.0, 40.0, soft_past_plate=True)
    sections = column_sections(array, inside, v, u, discs, 1.0)
    assert sections.seen[45:53].min() == 1.0
    assert whole_section_mm(sections, 1.0, OUTER_PLATE_MM - 3.0, OUTER_PLATE_MM - PERIOD_MM) == 0.0


def test_the_outer_plate_counts_as_the_cut_bodys_own_when_whole_sections_follow_it():
    # The face 8 mm past the outer plate, across the column (the 40 mm DICOM
    # series' T11): 5 mm of whole sections past the plate's 3 mm blur, less
    # than a fifth of the period, but the plate is the cut body's own endplate.
    array, inside, v, u, density, discs = _straightened(65.0, 65.0, face_mm=OUTER_PLATE_MM - 8.0)
    sections = column_sections(array, inside, v, u, discs, 1.0)
    past_blur = whole_section_mm(sections, 1.0, OUTER_PLATE_MM - 3.0, OUTER_PLATE_MM - PERIOD_MM)
    assert past_blur < 0.2 * PERIOD_MM  # what the rule counted before
    bone, span = end_segment_bone_mm(density, 1.0, OUTER_PLATE_MM, -1, PERIOD_MM, MIN_BODY_HU,
                                     paired=True, marrow_hu=65.0, sections=sections)
    assert 0.2 * PERIOD_MM <= bone <= 9.0
    assert span == PERIOD_MM and bone < 0.9 * span  # partial
