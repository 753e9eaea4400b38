"""The column's whole cross-section past an end disc: a cut vertebra seen by its structure.

Past a disc that shows both its endplates
(:func:`~diffam.localize.periodicity.disc_endplates`) the next vertebra
begins at once. Where the scan's marrow is as dark as soft tissue (the L3
crop: 40-60 HU, darker than its discs), no density threshold tells the body
of a cut vertebra from a sliver fading into the scan's face. Their
structure does. A face across the column shows the cut vertebra's whole
cross-section, its cortex and the arch behind it, with as much bone as the
scan's own vertebrae show at mid-height, from the disc up to the face. A
sliver at a tight crop's oblique face (the bottom faces of the VerSe crops)
shows only part of the section, and less of it with every millimetre past
the disc.

So, past a paired end disc, a section of the straightened scan counts as
the cut vertebra's bone when two things hold:

* the scan shows the whole section within :data:`SECTION_RADIUS_MM` of the
  centreline (at least :data:`WHOLE_SECTION_FRACTION` of it);
* the section holds at least :data:`SECTION_BONE_FRACTION` of the bone
  (above :data:`SECTION_BONE_HU`) of the scan's mid-height sections.

:func:`whole_section_mm` measures the run of such sections, contiguous from
the disc outwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Radius (mm) around the centreline of the column's cross-section: the body
#: and the root of the arch (the centreline follows the bone's centre of mass).
SECTION_RADIUS_MM = 30.0

#: Share of that cross-section the scan must show for the section to be
#: seen whole. Set on the shared scans (no held-out scan). Past the lower
#: paired end disc of the L3 crop it is 0.99-1.0 for 14 mm. Past the paired
#: end discs at the oblique lower faces of verse005 and verse007 it is at
#: most 0.92 from 3 mm past the plate on, so no run starts. At verse008's
#: upper face the run is 3 mm (6 mm with the plate's blur, which counts the
#: unlabelled T11 above the crop's T12: 5.99 mm, 0.19 of the period, shows a
#: fifth of a vertebra's volume from above, see
#: :data:`~diffam.localize.end_segments.VOLUME_FIFTH_ABOVE`).
WHOLE_SECTION_FRACTION = 0.95

#: Bone threshold (HU) of the cortex counted in a section.
SECTION_BONE_HU = 150.0

#: Bone of a counted section, as a fraction of the median bone of the scan's
#: sections at mid-height between consecutive discs. A floor that keeps out
#: fat and soft tissue past the spine's end. The cut L4 of the L3 crop holds
#: 1.2-1.35 of its scan's mid-height bone.
SECTION_BONE_FRACTION = 0.5


@dataclass
class ColumnSections:
    """The column's cross-section along a straightened scan, one value per centreline sample.

    Attributes:
        seen: ``(M,)`` share of the section within :data:`SECTION_RADIUS_MM`
            that lies inside the scan.
        bone_mm2: ``(M,)`` area (mm^2) of that section above :data:`SECTION_BONE_HU`.
        reference_mm2: median ``bone_mm2`` of the whole sections at
            mid-height between consecutive discs; NaN when there are none.
    """

    seen: np.ndarray
    bone_mm2: np.ndarray
    reference_mm2: float


def column_sections(array: np.ndarray, inside: np.ndarray | None, v_mm: np.ndarray,
                    u_mm: np.ndarray, discs_mm: np.ndarray, step: float) -> ColumnSections:
    """The cross-sections of a straightened scan.

    Args:
        array: ``(M, V, U)`` HU on planes perpendicular to the centreline.
        inside: ``(M, V, U)`` whether each sample lies in the scan; None: all do.
        v_mm, u_mm: ``(V,)`` and ``(U,)`` mm offsets from the centreline
            (posterior, left), evenly spaced.
        discs_mm: ``(D,)`` arc lengths (mm) of the discs.
        step: arc length (mm) between centreline samples.
    """
    vv, uu = np.meshgrid(v_mm, u_mm, indexing="ij")
    disk = vv**2 + uu**2 <= SECTION_RADIUS_MM**2
    sample_mm2 = float(abs(v_mm[1] - v_mm[0]) * abs(u_mm[1] - u_mm[0]))
    seen = inside[:, disk].mean(axis=1) if inside is not None else np.ones(len(array))
    bone = (array[:, disk] > SECTION_BONE_HU).sum(axis=1) * sample_mm2
    mids = np.round(0.5 * (discs_mm[1:] + discs_mm[:-1]) / step).astype(int)
    mids = mids[(mids >= 0) & (mids < len(array))]
    mids = mids[seen[mids] >= WHOLE_SECTION_FRACTION]
    reference = float(np.median(bone[mids])) if len(mids) else float("nan")
    return ColumnSections(seen, bone, reference)


def whole_section_mm(sections: ColumnSections, step: float, start_mm: float,
                     end_mm: float) -> float:
    """Length (mm) of the run of whole, bony sections from ``start_mm`` towards ``end_mm``.

    The run starts at the sample nearest ``start_mm`` (past the disc and
    its plate's blur) and stops at the first section that is not seen whole
    or holds too little bone, or at ``end_mm``.
    """
    if not np.isfinite(sections.reference_mm2):
        return 0.0
    whole = ((sections.seen >= WHOLE_SECTION_FRACTION)
             & (sections.bone_mm2 >= SECTION_BONE_FRACTION * sections.reference_mm2))
    first, last = int(round(start_mm / step)), int(round(end_mm / step))
    direction = 1 if last >= first else -1
    run = 0
    for n in range(first, last + direction, direction):
        if not 0 <= n < len(whole) or not whole[n]:
            break
        run += 1
    return float(run * step)
