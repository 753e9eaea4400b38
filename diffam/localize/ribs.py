"""Find the ribs along the spine: the anatomical anchor that names thoracic levels.

Ribs are the only long bones that leave the column sideways. In the scan
straightened along the centreline (arc length ``s``, local left ``u`` and
posterior ``v``, :func:`diffam.localize.detection.straighten`), the bone of
a lateral sector of an annulus around the column is split into connected
components. A component is a rib when it starts near the column (its medial
end within :data:`RIB_MEDIAL_MM` of the centreline: the rib neck beside the
body and transverse process) and runs far out (beyond :data:`RIB_LATERAL_MM`);
transverse processes stop short of that, scapulae and arms never come close
to the column. A rib belongs to the vertebra whose interval holds its medial
end, shifted down by :data:`RIB_HEAD_ABOVE_MM` (rib heads articulate at the
upper half of their vertebra's body and the disc above).

Calibrated on the TotalSegmentator rib labels of the shared chest CT: the
medial end of rib k lies 0-12 mm above the centroid of vertebra Tk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from diffam.core.volume import Volume
from diffam.localize.centerline import Centerline
from diffam.localize.detection import straighten
from diffam.localize.spine_column import blood_pool_mask

#: Annulus (mm from the centreline) in which ribs are looked for.
ANNULUS_MM = (30.0, 95.0)

#: A rib's medial end lies within this distance (mm) of the centreline ...
RIB_MEDIAL_MM = 45.0

#: ... and it runs out at least this far (mm).
RIB_LATERAL_MM = 70.0

#: Median height (mm) of a rib's medial end above its vertebra's centre.
RIB_HEAD_ABOVE_MM = 5.0

#: Bone threshold (HU) for ribs (thin cortical bone, blurred at 2 mm).
RIB_BONE_HU = 160.0

#: Sampling step (mm) of the straightened volume used for ribs.
STEP_MM = 2.0

#: Most bone voxels per mm of radial extent: a rib is a thin bar (about 10-40
#: voxels per mm at ``STEP_MM``); enhanced kidneys, the scapula or the
#: iliac wings are broad plates and blobs.
MAX_VOXELS_PER_MM = 60.0


@dataclass
class Rib:
    """One rib found beside the column.

    Attributes:
        side: ``"left"`` or ``"right"`` (patient).
        medial_s_mm: arc length of its medial end on the centreline.
        medial_mm: distance (mm) of its medial end from the centreline.
        lateral_mm: farthest distance (mm) from the centreline reached in the annulus.
        voxels: size of the component (``STEP_MM`` voxels).
    """

    side: str
    medial_s_mm: float
    medial_mm: float
    lateral_mm: float
    voxels: int


def find_ribs(volume: Volume, centerline: Centerline) -> list[Rib]:
    """Ribs leaving the column along ``centerline``, from inferior to superior.

    Args:
        volume: CT in HU (typically the 2 mm working grid).
        centerline: the spine centreline (LPS mm).

    Returns:
        The ribs found, sorted by ``medial_s_mm``.
    """
    arc = centerline.arc_mm
    take = np.arange(0, len(arc), max(1, int(round(STEP_MM / max(np.median(np.diff(arc)), 1e-6)))))
    coarse = Centerline(centerline.points[take], centerline.tangents[take], arc[take])
    st = straighten(
        volume,
        coarse,
        u_half_mm=ANNULUS_MM[1],
        v_range_mm=(-ANNULUS_MM[1], ANNULUS_MM[1]),
        step_mm=STEP_MM,
    )
    v, u = np.meshgrid(st.v, st.u, indexing="ij")
    r = np.hypot(u, v)
    # Lateral sector: within 60 degrees of the left-right axis (spinous processes and
    # the sternum lie in the excluded front and back sectors).
    sector = (r >= ANNULUS_MM[0]) & (r <= ANNULUS_MM[1]) & (np.abs(u) >= 0.5 * r)
    bone = (st.array > RIB_BONE_HU) & ~blood_pool_mask(st.array) & sector[None]
    labels, count = ndimage.label(bone)
    ribs: list[Rib] = []
    if count == 0:
        return ribs
    objects = ndimage.find_objects(labels)
    for lab, box in enumerate(objects, start=1):
        if box is None:
            continue
        mask = labels[box] == lab
        m, jv, iu = np.nonzero(mask)
        m = m + box[0].start
        rr = r[jv + box[1].start, iu + box[2].start]
        medial, lateral = float(rr.min()), float(rr.max())
        if medial > RIB_MEDIAL_MM or lateral < RIB_LATERAL_MM:
            continue
        size = int(mask.sum())
        if size > MAX_VOXELS_PER_MM * (lateral - medial):
            continue
        near = rr <= medial + 2 * STEP_MM
        side_u = float(u[jv + box[1].start, iu + box[2].start].mean())
        ribs.append(
            Rib(
                side="left" if side_u > 0 else "right",
                medial_s_mm=float(np.median(coarse.arc_mm[m[near]])),
                medial_mm=medial,
                lateral_mm=lateral,
                voxels=size,
            )
        )
    return sorted(ribs, key=lambda rib: rib.medial_s_mm)


def rib_levels(ribs: list[Rib], bounds_mm: np.ndarray) -> dict[int, set[str]]:
    """Which vertebrae carry ribs: vertebra index -> sides (``{"left", "right"}``).

    Args:
        ribs: from :func:`find_ribs`.
        bounds_mm: ``(V, 2)`` arc-length interval of each detected vertebra,
            inferior to superior.
    """
    carried: dict[int, set[str]] = {}
    for rib in ribs:
        s = rib.medial_s_mm - RIB_HEAD_ABOVE_MM
        inside = np.nonzero((bounds_mm[:, 0] <= s) & (s < bounds_mm[:, 1]))[0]
        if len(inside):
            carried.setdefault(int(inside[0]), set()).add(rib.side)
    return carried
