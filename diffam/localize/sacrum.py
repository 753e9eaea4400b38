"""Find the sacrum below the column: the anatomical anchor that names L5.

With the iliac bones the sacrum is the easiest bone of a CT to recognise:
below the lowest lumbar disc the column meets a bone mass far wider than a
vertebral body, whose alae are joined on both sides, across the sacro-iliac
joints, to the ilia. No vertebra above it has that: the widest lumbar
transverse processes end about 50 mm from the midline and the iliac crests
beside L5 are separated from it by muscle.

In the scan straightened along the centreline (:func:`diffam.localize.detection.straighten`,
arc length ``s``, local left ``u`` and posterior ``v``), each cross-section's
bone (:data:`BONE_HU`, holes filled) is split into 2D components.
The components that hold the vertebral body (a strip in front of the
posterior wall), with those within :data:`JOINT_MM` of them (across a joint
space), give the section's reach to the left and right. A section is *sacral*
when the body's bone reaches :data:`REACH_MM` on both sides and holds, in the
ala zone on each side (:data:`ALA_ZONE_MM`), at least :data:`ALA_AREA_MM2` of
filled bone: a mass, not a rib (a rib joined to a thoracic vertebra reaches
as far but is a thin bar, and only for the height of one rib). The sacrum is
a run of sacral sections at least :data:`MIN_RUN_MM` long; the lowest such run
is taken, provided the column below it is no longer than a sacrum
(:data:`MAX_BELOW_MM`), and the lowest vertebra whose lower disc lies above its upper end is
L5 (L6 in a transitional spine, which only the ribs can tell:
:func:`diffam.localize.naming.name_vertebrae`). Vertebrae detected below it
are sacral segments (the column cues follow the sacral canal, and the fused
segments' remnant discs look like discs), not mobile vertebrae.

A scan cut to a sagittal slab (VerSe crops are 80-105 mm wide) leaves the
ilia out, and the alae end at its sides. A side whose bone runs into the
scan's lateral face (the sample beyond its outermost bone lies outside the
scan) is *cut* and counts as reaching: nothing in view says where that bone
ends, and what the ala-zone area still requires, a mass on both sides at the
body's own height, is what no lumbar vertebra has (transverse processes are
bars: at most 264 mm^2 there on the bench's slab phantom; the shared VerSe
crops' sections cut on both sides hold at most 216 mm^2). A side counts as cut
when the scan ends within :data:`JOINT_MM` of its outermost bone (a slab's
side may lie in the joint space, and blurred edge voxels fall under
:data:`BONE_HU`). The sacrum is then recognised without its ilia, with
:data:`CUT_CONFIDENCE` times the confidence.

The confidence grows with the run's length up to :data:`FULL_RUN_MM` (the
alae of S1-S2 span about 40 mm) and with how symmetric the two sides' reach
is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from diffam.core.volume import Volume
from diffam.localize.centerline import Centerline
from diffam.localize.detection import Detection, straighten

#: Bone threshold (HU): cortex and the denser cancellous bone.
BONE_HU = 180.0
#: Sampling step (mm) of the straightened scan.
STEP_MM = 2.0
#: Half-width (mm) of the cross-sections: the sacrum and the posterior ilia.
U_HALF_MM = 110.0
#: Posterior offsets (mm) of the cross-sections, around the centreline.
V_RANGE_MM = (-70.0, 50.0)
#: Both sides of the body's bone reach at least this far (mm) from the centreline
#: in a sacral section: past the ala (about 50 mm) into the ilium.
REACH_MM = 70.0
#: Lateral zone (mm from the centreline) of the alae, where a sacral section holds bone mass.
ALA_ZONE_MM = (30.0, 60.0)
#: Filled bone area (mm^2) in each side's ala zone of a sacral section.
ALA_AREA_MM2 = 400.0
#: Bone this close (mm) to the body's counts as joined to it: the sacro-iliac
#: joint space (2-5 mm) is often a full dark voxel at 3 mm.
JOINT_MM = 6.0
#: Shortest run (mm of arc length) of sacral sections taken as the sacrum.
MIN_RUN_MM = 16.0
#: The detected "vertebrae" below the sacrum's top are its segments (and the
#: coccyx): their centres lie at most this far (mm) below it. A run of wide
#: sections with more column below it (shoulder blades joined to the upper
#: ribs) is no sacrum.
MAX_BELOW_MM = 140.0
#: How far (mm) below the sacral run's top the disc under L5 may be placed.
DISC_TOLERANCE_MM = 5.0
#: Run length (mm) that earns full confidence.
FULL_RUN_MM = 30.0
#: The body strip that seeds a section's components: in front of the posterior
#: wall by these offsets (mm), within this half-width (mm).
BODY_STRIP_MM = ((-30.0, -4.0), 8.0)
#: Confidence factor of a sacrum whose alae run into the scan's sides on both sides
#: over most of its run (a slab without the ilia): a wide mass cut by the scan is less
#: sure than alae joined to the ilia, and a full rib cage (confidence 1) outweighs it.
CUT_CONFIDENCE = 0.5


@dataclass
class Sacrum:
    """The sacrum found below the column.

    Attributes:
        lowest_lumbar: index (inferior to superior) of the vertebra above the sacrum.
        top_mm: arc length of the upper end of the sacral run.
        run_mm: length (mm) of the run of sacral sections.
        reach_mm: median reach (mm) of the body's bone to the (left, right) over the run.
        confidence: in ``[0, 1]``.
        cut: the alae run into the scan's sides (no ilia in view) over most of the run.
    """

    lowest_lumbar: int
    top_mm: float
    run_mm: float
    reach_mm: tuple[float, float]
    confidence: float
    cut: bool = False

    def describe(self) -> str:
        joined = "cut by the scan's sides, no ilia in view," if self.cut else "joined to the ilia"
        return (f"sacrum below vertebra {self.lowest_lumbar} (alae {joined} over "
                f"{self.run_mm:.0f} mm, reaching {self.reach_mm[0]:.0f} and "
                f"{self.reach_mm[1]:.0f} mm to the left and right; confidence "
                f"{self.confidence:.2f})")


def section_reach(st_array: np.ndarray, u: np.ndarray, v: np.ndarray, wall_mm: np.ndarray,
                  inside: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per cross-section: the body's bone reach and ala-zone area to each side.

    Args:
        st_array: ``(M, V, U)`` straightened HU at :data:`STEP_MM`.
        u, v: the sections' left and posterior offsets (mm).
        wall_mm: ``(M,)`` posterior-wall offset ``v`` of the body (mm).
        inside: ``(M, V, U)`` whether each sample lies inside the scan (None: all do).

    Returns:
        ``(reach, area, cut)``, each ``(M, 2)``: left and right reach (mm; 0 where
        no bone holds the body strip), filled bone area in the ala zone (mm^2), and
        whether the scan's face cuts that side's bone at its lateral end: the next
        sample outwards, beside one of its outermost bone samples, lies outside the
        scan. An oblique upper or lower face crosses a section front to back, so it
        does not lie beside both sides' outermost bone; a slab's sides do.
    """
    # No blood-pool mask (as for the ribs): at 3 mm the cortex blurs into the marrow and the
    # mask takes whole bodies. An enhanced vessel joined to the bone does not reach the ilia.
    bone = st_array > BONE_HU
    vv, uu = np.meshgrid(v, u, indexing="ij")
    joint = max(1, int(round(JOINT_MM / STEP_MM)))
    (front, back), half = BODY_STRIP_MM
    pixel = STEP_MM * STEP_MM
    reach = np.zeros((len(st_array), 2))
    area = np.zeros((len(st_array), 2))
    cut = np.zeros((len(st_array), 2), bool)
    for m, section in enumerate(bone):
        section = ndimage.binary_fill_holes(section)  # dark (fatty) marrow inside its cortex
        strip = ((vv >= wall_mm[m] + front) & (vv <= wall_mm[m] + back)
                 & (np.abs(uu) <= half))
        labels, _ = ndimage.label(section)
        seeds = np.unique(labels[strip & section])
        seeds = seeds[seeds > 0]
        if not len(seeds):
            continue
        body = np.isin(labels, seeds)
        # Bone across a joint space: the components within JOINT_MM of the body's.
        near = ndimage.binary_dilation(body, iterations=joint) & section
        body = np.isin(labels, np.unique(labels[near]))
        reach[m] = (max(uu[body].max(), 0.0), max(-uu[body].min(), 0.0))
        for side, sign in enumerate((1.0, -1.0)):
            zone = (sign * uu >= ALA_ZONE_MM[0]) & (sign * uu <= ALA_ZONE_MM[1])
            area[m, side] = pixel * np.count_nonzero(body & zone)
            if inside is not None and reach[m, side] > 0.0:
                cut[m, side] = _cut_at_side(body, inside[m], uu, sign, reach[m, side])
    return reach, area, cut


def _cut_at_side(body: np.ndarray, inside: np.ndarray, uu: np.ndarray, sign: float,
                 reach_mm: float) -> bool:
    """Whether the scan ends within :data:`JOINT_MM` outwards (``sign`` along ``u``) of
    ``body``'s outermost bone: the bone runs into the scan's side there.

    Within, not at: where a slab's side cuts an ala near its own end, the edge voxels are
    partly bone and blur under :data:`BONE_HU` (a whole dark voxel at 3 mm), as a joint
    space does. Past the straightened grid's own edge nothing is sampled: that is not the
    scan's side.
    """
    outermost = body & (sign * uu >= reach_mm - STEP_MM - 1e-6)
    rows, cols = np.nonzero(outermost)
    steps = np.arange(1, max(1, int(round(JOINT_MM / STEP_MM))) + 1)[:, None]
    beyond = cols + (1 if sign > 0 else -1) * steps
    valid = (beyond >= 0) & (beyond < body.shape[1])
    outside = ~inside[np.broadcast_to(rows, beyond.shape)[valid], beyond[valid]]
    return bool(outside.any())


def find_sacrum(volume: Volume, centerline: Centerline, detection: Detection) -> Sacrum | None:
    """The sacrum below the detected vertebrae, or None.

    Args:
        volume: CT in HU (the working grid).
        centerline: the spine centreline the detection worked on.
        detection: its vertebrae (``bounds_mm``, ``centres_mm``, ``wall_mm``).
    """
    if not len(detection.centres_mm):
        return None
    arc = centerline.arc_mm
    take = np.arange(0, len(arc), max(1, int(round(STEP_MM / max(np.median(np.diff(arc)), 1e-6)))))
    # Only below the highest vertebra's centre: the sacrum lies below a vertebra.
    take = take[arc[take] <= detection.centres_mm[-1]]
    if len(take) < 2:
        return None
    coarse = Centerline(centerline.points[take], centerline.tangents[take], arc[take])
    st = straighten(volume, coarse, u_half_mm=U_HALF_MM, v_range_mm=V_RANGE_MM, step_mm=STEP_MM)
    reach, area, cut = section_reach(st.array, st.u, st.v, detection.wall_mm[take], st.inside)
    sacral = ((reach >= REACH_MM) | cut).all(axis=1) & (area.min(axis=1) >= ALA_AREA_MM2)
    labels, count = ndimage.label(sacral)
    runs = [np.nonzero(labels == n)[0] for n in range(1, count + 1)]
    runs = [r for r in runs if (r[-1] - r[0] + 1) * STEP_MM >= MIN_RUN_MM]
    if not runs:
        return None
    run = runs[0]  # the lowest: the sacrum is the bottom of the column
    top = float(coarse.arc_mm[run[-1]])
    lowest = lowest_lumbar(detection, top)
    if lowest is None or top - detection.centres_mm[0] > MAX_BELOW_MM:
        return None  # no vertebra above it, or a column below it longer than a sacrum
    run_mm = (run[-1] - run[0] + 1) * STEP_MM
    left, right = np.median(reach[run], axis=0)
    symmetry = min(left, right) / max(left, right)
    # Cut: the ilia are not what made its sections wide (most of them reach the sides short of them).
    sides_cut = bool(np.mean((reach[run] < REACH_MM).any(axis=1)) > 0.5)
    confidence = float(min(1.0, run_mm / FULL_RUN_MM) * symmetry
                       * (CUT_CONFIDENCE if sides_cut else 1.0))
    return Sacrum(lowest, top, run_mm, (float(left), float(right)), confidence, sides_cut)




def lowest_lumbar(detection: Detection, top_mm: float) -> int | None:
    """Index of the lowest vertebra whose lower disc lies above the sacral run's top, or None.

    S1's endplate, and the L5/S1 disc on it, lie above the top of the alae;
    S1's body, tilted forward, rises above that top too, so a detected piece
    of it can have its centre there (a phantom at 3 mm: 3 mm above), but not
    its lower disc. :data:`DISC_TOLERANCE_MM` allows for the disc's blur.
    """
    above = np.nonzero(detection.bounds_mm[:, 0] >= top_mm - DISC_TOLERANCE_MM)[0]
    return int(above[0]) if len(above) else None
