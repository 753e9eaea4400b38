"""A sacrum and the iliac bones below a phantom's lumbar spine (analytic shapes).

The phantom's vertebrae are template meshes; the sacrum and pelvis are
analytic solids placed from the lowest vertebra's inferior endplate, so
that they follow its deformation. The shapes are coarse but keep what a
localiser must recognise (lengths in mm, from adult anatomy):

* the sacrum: an S1 body :data:`DISC_MM` below L5's inferior endplate across
  the L5/S1 disc, its endplate tilted :data:`EXTRA_TILT_DEG` further forward
  than L5's (the lumbosacral disc is taller in front); below it the fused
  segments taper and curve forward over :data:`SACRUM_LENGTH_MM`; the alae
  reach :data:`ALA_HALF_WIDTH_MM` to each side over the upper segments; the
  sacral canal runs behind the bodies under a bony roof; a remnant S1/S2 disc
  is a thin gap inside the fused bodies, closed by bone at its rim;
* the iliac bones: across the sacro-iliac joint (a gap of
  :data:`SI_JOINT_MM`) a thick posterior ilium rising above S1 beside L5, a
  thin iliac wing flaring out and forward, and a block of acetabulum below.

Everything is expressed in the sacral frame: ``x`` left, ``a`` anterior in
the S1 endplate's plane, ``t`` depth below the S1 endplate along its normal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: L5/S1 disc height (mm) at the endplate centres.
DISC_MM = 11.0
#: S1's endplate is tilted this much (degrees) further forward than L5's inferior one.
EXTRA_TILT_DEG = 15.0
#: Length (mm) of the sacrum along its axis, S1 endplate to apex.
SACRUM_LENGTH_MM = 100.0
#: Forward bend of the sacrum: anterior offset (mm) of its axis at depth t is CURVE * t^2.
CURVE_PER_MM = 0.002
#: Half-width (mm) of the sacrum across its alae (S1-S2).
ALA_HALF_WIDTH_MM = 52.0
#: Depth range (mm below the S1 endplate) of the alae.
ALA_DEPTH_MM = (3.0, 45.0)
#: Width of the sacro-iliac joint space (mm).
SI_JOINT_MM = 3.0
#: Depth (mm below S1's endplate) of the S1/S2 remnant disc, and its thickness (mm).
REMNANT_DISC_MM = (28.0, 2.0)
#: Lateral reach (mm from the midline) of the iliac wings.
WING_HALF_WIDTH_MM = 135.0
#: Highest point of the iliac bones (mm above S1's endplate: the crest lies beside L5).
CREST_ABOVE_MM = 40.0
#: Deepest point (mm below S1's endplate) of the acetabular block.
ACETABULUM_DEPTH_MM = 110.0


@dataclass
class SacralFrame:
    """Where the sacrum sits: S1 endplate centre and axes (LPS mm, unit vectors)."""

    origin: np.ndarray
    left: np.ndarray
    anterior: np.ndarray
    up: np.ndarray

    def local(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(x, a, t)`` sacral coordinates (mm) of ``(N, 3)`` LPS points, the bend removed."""
        d = np.asarray(points, np.float64) - self.origin
        t = -(d @ self.up)
        a = d @ self.anterior - CURVE_PER_MM * np.clip(t, 0.0, None) ** 2
        return d @ self.left, a, t

    def world(self, x, a, t) -> np.ndarray:
        """LPS points of sacral coordinates (inverse of :meth:`local`)."""
        x, a, t = (np.asarray(c, np.float64)[..., None] for c in (x, a, t))
        a = a + CURVE_PER_MM * np.clip(t, 0.0, None) ** 2
        return self.origin + x * self.left + a * self.anterior - t * self.up


def sacral_frame(lowest_vertices: np.ndarray) -> SacralFrame:
    """The sacral frame below a lumbar vertebra given by its mesh vertices (LPS mm).

    The inferior endplate is the lowest surface of the body (the front 30 mm
    of the vertebra, within 18 mm of its midline): a plane fitted to the
    lowest vertex of each 3 mm column. S1's endplate centre lies
    :data:`DISC_MM` below its centre along its normal.
    """
    v = np.asarray(lowest_vertices, np.float64)
    midline = float(np.median(v[:, 0]))
    front = v[:, 1].min()
    body = v[(np.abs(v[:, 0] - midline) <= 18.0) & (v[:, 1] <= front + 30.0)]
    cells = np.floor(body[:, :2] / 3.0).astype(int)
    lowest: dict[tuple[int, int], np.ndarray] = {}
    for cell, point in zip(map(tuple, cells), body):
        if cell not in lowest or point[2] < lowest[cell][2]:
            lowest[cell] = point
    plate = np.array(list(lowest.values()))
    # Keep the plate itself, not the rim where the body's side wall turns up.
    plate = plate[plate[:, 2] <= np.percentile(plate[:, 2], 70)]
    design = np.c_[plate[:, 0], plate[:, 1], np.ones(len(plate))]
    (gx, gy, _), *_ = np.linalg.lstsq(design, plate[:, 2], rcond=None)
    up = _unit(np.array([-gx, -gy, 1.0]))
    left = _unit(np.array([1.0, 0.0, 0.0]) - up[0] * up)
    anterior = np.cross(left, up)  # (L x S) = -P: anterior
    tilt = np.radians(EXTRA_TILT_DEG)
    up, anterior = np.cos(tilt) * up + np.sin(tilt) * anterior, np.cos(tilt) * anterior - np.sin(tilt) * up
    centre = plate.mean(0)
    return SacralFrame(centre - DISC_MM * up, left, anterior, up)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def sacrum_mask(x, a, t) -> np.ndarray:
    """Bone of the sacrum at sacral coordinates (mm)."""
    f = np.clip(t / SACRUM_LENGTH_MM, 0.0, 1.0)
    half_width = 25.0 - 14.0 * f  # S1 body 50 mm wide, apex 22 mm
    half_depth = 16.0 - 8.0 * f  # S1 body 32 mm deep
    ax = np.abs(x)
    along = (t >= 0.0) & (t <= SACRUM_LENGTH_MM)
    body = (ax <= half_width) & (np.abs(a) <= half_depth)
    back = -half_depth  # posterior wall of the bodies
    ala = ((t >= ALA_DEPTH_MM[0]) & (t <= ALA_DEPTH_MM[1]) & (ax <= ALA_HALF_WIDTH_MM)
           & (a >= back - 20.0) & (a <= half_depth - 4.0))
    lateral_mass = (ax <= 26.0) & (a >= back - 24.0) & (a <= back) & (t <= 0.85 * SACRUM_LENGTH_MM)
    canal = (ax <= 11.0) & (a >= back - 14.0) & (a < back - 1.0)
    top, thick = REMNANT_DISC_MM
    remnant = ((t >= top) & (t <= top + thick) & (ax <= half_width - 4.0)
               & (np.abs(a) <= half_depth - 4.0))
    return along & (body | ala | lateral_mass) & ~canal & ~remnant


def ilium_mask(x, a, t) -> np.ndarray:
    """Bone of both iliac bones at sacral coordinates (mm), mirrored in ``x``."""
    ax = np.abs(x)
    inner = ALA_HALF_WIDTH_MM + SI_JOINT_MM
    # Posterior ilium: thick bone facing the ala across the joint, rising beside L5.
    posterior = ((ax >= inner) & (ax <= inner + 25.0) & (a >= -40.0) & (a <= 14.0)
                 & (t >= -CREST_ABOVE_MM + 10.0) & (t <= ALA_DEPTH_MM[1] + 5.0))
    # Wing: a 7 mm plate flaring out and forward from the posterior ilium.
    plate_a = -30.0 + 0.9 * (ax - inner - 15.0)
    wing = ((ax >= inner + 15.0) & (ax <= WING_HALF_WIDTH_MM) & (np.abs(a - plate_a) <= 3.5)
            & (t >= -CREST_ABOVE_MM) & (t <= 60.0))
    # Acetabulum and the bone below it.
    acetabulum = ((ax >= 80.0) & (ax <= 110.0) & (a >= 0.0) & (a <= 45.0)
                  & (t >= 50.0) & (t <= ACETABULUM_DEPTH_MM))
    return posterior | wing | acetabulum


def extent_points(frame: SacralFrame, pelvis: bool) -> np.ndarray:
    """LPS corners of a box holding the sacrum (and the pelvis), for sizing the grid."""
    half = WING_HALF_WIDTH_MM if pelvis else ALA_HALF_WIDTH_MM
    depth = ACETABULUM_DEPTH_MM if pelvis else SACRUM_LENGTH_MM
    top = -CREST_ABOVE_MM if pelvis else 0.0
    corners = [(x, a, t) for x in (-half, half) for a in (-45.0, 50.0) for t in (top, depth)]
    return np.array([frame.world(*c) for c in corners])


def pelvis_bone(frame: SacralFrame, points: np.ndarray, pelvis: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(sacrum, ilium)`` bool masks of ``(N, 3)`` LPS points (ilium all False without pelvis)."""
    x, a, t = frame.local(points)
    sacrum = sacrum_mask(x, a, t)
    ilium = ilium_mask(x, a, t) & ~sacrum if pelvis else np.zeros_like(sacrum)
    return sacrum, ilium
