"""Procedural vertebra: an implicit solid built from anatomical measurements.

A vertebra is the smooth union of simple primitives, each sized by one or two
published measurements (see :mod:`diffam.core.anatomy` for the numbers and sources):

* body: a waisted, kidney-shaped superelliptic prism (endplate width and depth,
  anterior and posterior height), minus the vertebral canal;
* pedicles: tapered rounded boxes (width, height, transverse angle);
* laminae: plates from the pedicles to the midline, closing the canal (genus 1);
* spinous process, transverse processes, superior and inferior articular
  processes: tapered rounded boxes; a dens (C2) and uncinate processes (C3-C7)
  where the level has them.

The function :func:`~diffam.authoring.vertebra_sdf.vertebra_sdf` returns an approximate signed distance (mm,
negative inside) in the vertebra's *local* frame: origin at the centre of the
vertebral body, x = Left, y = Posterior, z = Superior (LPS axes, the endplates
perpendicular to z). :func:`~diffam.authoring.vertebra_sdf.control_points` gives labelled points of every
primitive that correspond across levels; the mesher uses them to carry one mesh
from level to level (:mod:`diffam.authoring.template_builder`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import numpy as np


@dataclass(frozen=True)
class VertebraParams:
    """Measurements that define one vertebra (millimetres and degrees).

    Names follow Panjabi et al. (1991, 1992) where they have a counterpart:
    EPW (endplate width), EPD (endplate depth), VBH (body height), PDW/PDH
    (pedicle width/height), PDIt (pedicle transverse inclination), SCW/SCD
    (spinal canal width/depth), TPW (transverse process width, tip to tip),
    SPL (spinous process length).

    Attributes:
        body_width: EPW, lateral width of the endplate (x), mm.
        body_depth: EPD, antero-posterior depth of the endplate (y), mm.
        body_height_ant: Anterior body height (VBHa), mm.
        body_height_post: Posterior body height (VBHp), mm.
        body_exponent: Superellipse exponent of the endplate outline (2 = ellipse).
        body_kidney: Depth of the posterior concavity of the endplate outline, mm.
        body_waist: Relative narrowing of the body at mid-height (0 = straight walls).
        body_edge: Rounding radius of the endplate rim, mm.
        canal_width: SCW, mm.
        canal_depth: SCD, mm.
        canal_exponent: Superellipse exponent of the canal outline.
        canal_triangle: Narrowing of the canal towards posterior (0: none, 0.4: trefoil-like).
        pedicle_width: PDW (transverse), mm.
        pedicle_height: PDH (vertical), mm.
        pedicle_angle: PDIt, medial convergence of the pedicle axis, degrees.
        pedicle_length: Posterior reach of the pedicle beyond the body's posterior wall, mm.
        pedicle_z: Height of the pedicle axis above mid-body, mm.
        lamina_height: Vertical extent of a lamina, mm.
        lamina_thickness: Thickness of a lamina, mm.
        lamina_z: Height of the lamina centre above mid-body, mm.
        lamina_slope: Backward tilt of the laminae (top leans posteriorly), degrees.
        spinous_length: SPL measured from the posterior canal wall to the tip, mm.
        spinous_height: Vertical size of the spinous process at its root, mm.
        spinous_tip_height: Vertical size at the tip, mm.
        spinous_width: Lateral thickness, mm.
        spinous_angle: Downward inclination of the spinous process, degrees.
        spinous_bifid: Lateral split of the tip (cervical bifid tips), mm (0: none).
        transverse_span: TPW, tip-to-tip, mm.
        transverse_height: Vertical size of a transverse process, mm.
        transverse_thickness: Antero-posterior thickness, mm.
        transverse_angle: Backward sweep of the transverse processes, degrees
            (negative: pointing forward, as in the cervical spine).
        transverse_rise: Upward tilt of the transverse processes, degrees.
        transverse_z: Height of the transverse process root above mid-body, mm.
        transverse_y: Antero-posterior position of the root behind the posterior wall, mm.
        sap_height: Superior articular process: reach above the superior endplate level, mm.
        sap_width: Size of the facet, mm.
        sap_thickness: Thickness of the process, mm.
        sap_x: Lateral distance of the process from the midline, mm.
        sap_y: Antero-posterior position behind the posterior body wall, mm.
        facet_angle: Angle of the facet plane to the sagittal plane, degrees
            (0: sagittal, 90: coronal).
        iap_depth: Inferior articular process: reach below the inferior endplate, mm.
        iap_x: Lateral distance of the inferior process from the midline, mm.
        iap_y: Antero-posterior position behind the posterior body wall, mm.
        dens_height: Height of the dens above the superior endplate (C2), mm (0: none).
        dens_radius: Radius of the dens, mm.
        uncinate_height: Height of the uncinate processes (C3-C7), mm (0: none).
        blend: Smooth-union radius (fillets between primitives), mm.
    """

    body_width: float
    body_depth: float
    body_height_ant: float
    body_height_post: float
    body_exponent: float
    body_kidney: float
    body_waist: float
    body_edge: float
    canal_width: float
    canal_depth: float
    canal_exponent: float
    canal_triangle: float
    pedicle_width: float
    pedicle_height: float
    pedicle_angle: float
    pedicle_length: float
    pedicle_z: float
    lamina_height: float
    lamina_thickness: float
    lamina_z: float
    lamina_slope: float
    spinous_length: float
    spinous_height: float
    spinous_tip_height: float
    spinous_width: float
    spinous_angle: float
    spinous_bifid: float
    transverse_span: float
    transverse_height: float
    transverse_thickness: float
    transverse_angle: float
    transverse_rise: float
    transverse_z: float
    transverse_y: float
    sap_height: float
    sap_width: float
    sap_thickness: float
    sap_x: float
    sap_y: float
    facet_angle: float
    iap_depth: float
    iap_x: float
    iap_y: float
    dens_height: float
    dens_radius: float
    uncinate_height: float
    blend: float

    def as_array(self) -> np.ndarray:
        """All parameters as a float64 vector (field order)."""
        return np.array([getattr(self, f.name) for f in fields(self)], dtype=np.float64)

    @classmethod
    def from_array(cls, values: np.ndarray) -> VertebraParams:
        """Inverse of :meth:`as_array`."""
        names = [f.name for f in fields(cls)]
        if len(values) != len(names):
            raise ValueError(f"expected {len(names)} values, got {len(values)}")
        return cls(**{n: float(v) for n, v in zip(names, values)})

    def lerp(self, other: VertebraParams, t: float) -> VertebraParams:
        """Linear interpolation ``(1 - t) * self + t * other``."""
        return VertebraParams.from_array((1.0 - t) * self.as_array() + t * other.as_array())

    def to_dict(self) -> dict[str, float]:
        """Parameters as a plain dict."""
        return asdict(self)

    def with_(self, **changes: float) -> VertebraParams:
        """A copy with some parameters changed."""
        return replace(self, **changes)


# --------------------------------------------------------------------- primitives
def smooth_min(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum (Quilez), blend radius ``k`` (mm)."""
    if k <= 0:
        return np.minimum(a, b)
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def smooth_max(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    return -smooth_min(-a, -b, k)


def _round_box2(
    p: np.ndarray, q: np.ndarray, hx: np.ndarray, hy: np.ndarray, r: np.ndarray
) -> np.ndarray:
    """Signed distance to a 2D rectangle of half sizes (hx, hy) with corner radius r."""
    r = np.minimum(r, np.minimum(hx, hy) * 0.999)
    dx = np.abs(p) - hx + r
    dy = np.abs(q) - hy + r
    out = np.hypot(np.maximum(dx, 0), np.maximum(dy, 0)) + np.minimum(np.maximum(dx, dy), 0)
    return out - r


def orthonormal_frame(axis: np.ndarray, up: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Orthonormal frame (e1 along axis, e2 width, e3 height towards ``up``)."""
    n1 = np.linalg.norm(axis)
    e1 = axis / n1 if n1 > 1e-9 else np.array([0.0, 0.0, 1.0])
    e3 = up - np.dot(up, e1) * e1
    n3 = np.linalg.norm(e3)
    if n3 < 1e-9:
        alt = np.array([1.0, 0.0, 0.0]) if abs(e1[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
        e3 = alt - np.dot(alt, e1) * e1
        n3 = np.linalg.norm(e3)
    e3 = e3 / n3
    e2 = np.cross(e3, e1)
    return e1, e2, e3


@dataclass(frozen=True)
class Beam:
    """A tapered rounded box from ``a`` to ``b``.

    Attributes:
        a, b: End points (3,), mm.
        up: Direction of the "height" of the cross-section (3,).
        w0, h0: Half width and half height at ``a``, mm.
        w1, h1: Half width and half height at ``b``, mm.
        r: Rounding radius, mm.
    """

    a: tuple
    b: tuple
    up: tuple
    w0: float
    h0: float
    w1: float
    h1: float
    r: float

    def sdf(self, p: np.ndarray) -> np.ndarray:
        a = np.asarray(self.a, float)
        b = np.asarray(self.b, float)
        axis = b - a
        length = max(float(np.linalg.norm(axis)), 1e-6)
        e1, e2, e3 = orthonormal_frame(axis, np.asarray(self.up, float))
        d = p - a
        s = d @ e1
        u = d @ e2
        v = d @ e3
        t = np.clip(s / length, 0.0, 1.0)
        hw = self.w0 + (self.w1 - self.w0) * t
        hh = self.h0 + (self.h1 - self.h0) * t
        r = np.minimum(self.r, np.minimum(hw, hh) * 0.95)
        d2 = _round_box2(u, v, hw, hh, r)
        # The rounded caps: the axial extent is padded by r so the ends are domes.
        da = np.maximum(-s, s - length)
        q0 = d2 + r
        q1 = da
        return (
            np.hypot(np.maximum(q0, 0), np.maximum(q1, 0)) + np.minimum(np.maximum(q0, q1), 0) - r
        )

    def box(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned bounds (lo, hi) of the beam, mm."""
        c = self.corners()
        pad = max(self.r, 0.0)
        return c.min(axis=0) - pad, c.max(axis=0) + pad

    def corners(self) -> np.ndarray:
        """(10, 3) labelled points: both end centres and the 4 corners of each end section."""
        a = np.asarray(self.a, float)
        b = np.asarray(self.b, float)
        _, e2, e3 = orthonormal_frame(b - a, np.asarray(self.up, float))
        pts = [a, b]
        for c, w, h in ((a, self.w0, self.h0), (b, self.w1, self.h1)):
            for sw in (-1, 1):
                for sh in (-1, 1):
                    pts.append(c + sw * w * e2 + sh * h * e3)
        return np.array(pts)


# --------------------------------------------------------------------- layout
def _rot_z(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def body_height(p: VertebraParams, y: np.ndarray) -> np.ndarray:
    """Body height (mm) at antero-posterior position ``y`` (wedge between anterior and posterior)."""
    hm = 0.5 * (p.body_height_ant + p.body_height_post)
    return hm + (p.body_height_post - p.body_height_ant) * (y / p.body_depth)


def beams(p: VertebraParams) -> dict[str, Beam]:
    """The posterior-element primitives of a vertebra, by name (left/right as ``_l``/``_r``).

    All positions are in the local frame (origin at the body centre, LPS).
    """
    b = 0.5 * p.body_depth
    out: dict[str, Beam] = {}
    z_up = (0.0, 0.0, 1.0)
    y_canal_back = b + p.canal_depth  # posterior wall of the canal (anterior lamina surface)
    for side, sx in (("l", 1.0), ("r", -1.0)):
        # Pedicle: posterior end beside the canal, anterior end inside the body, converging medially.
        x_post = sx * (0.5 * p.canal_width + 0.5 * p.pedicle_width)
        y_post = b + p.pedicle_length
        ang = math.radians(p.pedicle_angle)
        length = p.pedicle_length + 8.0
        a_pt = (x_post - sx * length * math.sin(ang), y_post - length * math.cos(ang), p.pedicle_z)
        out[f"pedicle_{side}"] = Beam(
            a=a_pt,
            b=(x_post, y_post, p.pedicle_z),
            up=z_up,
            w0=0.5 * p.pedicle_width + 1.0,
            h0=0.5 * p.pedicle_height + 1.0,
            w1=0.5 * p.pedicle_width,
            h1=0.5 * p.pedicle_height,
            r=0.45 * p.pedicle_width,
        )
        # Lamina: around the posterior half of the canal, in two straight pieces: the pars
        # (pedicle end -> posterolateral corner of the canal) and the lamina proper
        # (corner -> midline), both offset by half the lamina thickness from the canal wall.
        slope = math.radians(p.lamina_slope)
        up_l = (0.0, math.sin(slope), math.cos(slope))
        y_mid = y_canal_back + 0.5 * p.lamina_thickness
        yc = b + 0.5 * p.canal_depth
        e = 2.0 / p.canal_exponent
        cx = 0.5 * p.canal_width * (1.0 - 0.5 * p.canal_triangle * 0.7) + 0.5 * p.lamina_thickness
        corner = (
            sx * cx * math.cos(math.pi / 4) ** e,
            yc + (0.5 * p.canal_depth + 0.5 * p.lamina_thickness) * math.sin(math.pi / 4) ** e,
            p.lamina_z,
        )
        out[f"pars_{side}"] = Beam(
            a=(x_post, y_post, 0.5 * (p.pedicle_z + p.lamina_z)),
            b=corner,
            up=up_l,
            w0=0.5 * p.lamina_thickness,
            h0=0.5 * p.lamina_height,
            w1=0.5 * p.lamina_thickness,
            h1=0.5 * p.lamina_height,
            r=0.45 * p.lamina_thickness,
        )
        out[f"lamina_{side}"] = Beam(
            a=corner,
            b=(0.0, y_mid, p.lamina_z),
            up=up_l,
            w0=0.5 * p.lamina_thickness,
            h0=0.5 * p.lamina_height,
            w1=0.5 * p.lamina_thickness,
            h1=0.5 * p.lamina_height,
            r=0.45 * p.lamina_thickness,
        )
        # Transverse process.
        x_root = sx * (0.5 * p.canal_width + 0.8 * p.pedicle_width)
        y_root = b + p.transverse_y
        reach = 0.5 * p.transverse_span - abs(x_root)
        ta, tr = math.radians(p.transverse_angle), math.radians(p.transverse_rise)
        tip = (
            sx * 0.5 * p.transverse_span,
            y_root + reach * math.tan(ta),
            p.transverse_z + reach * math.tan(tr),
        )
        out[f"transverse_{side}"] = Beam(
            a=(x_root - sx * 2.0, y_root, p.transverse_z),
            b=tip,
            up=z_up,
            w0=0.5 * p.transverse_thickness + 1.0,
            h0=0.5 * p.transverse_height + 1.5,
            w1=0.5 * p.transverse_thickness,
            h1=0.5 * p.transverse_height,
            r=0.45 * p.transverse_thickness,
        )
        # Superior articular process: rises from the pedicle-lamina junction.
        fa = math.radians(p.facet_angle)
        # facet plane normal points medially (+) and posteriorly; plate width lies in the plane
        width_dir = (sx * math.sin(fa), math.cos(fa), 0.0)
        z_top = 0.5 * p.body_height_post + p.sap_height
        base = (sx * p.sap_x, b + p.sap_y, p.pedicle_z)
        out[f"sap_{side}"] = Beam(
            a=base,
            b=(sx * p.sap_x, b + p.sap_y + 2.0, z_top),
            up=width_dir,
            w0=0.5 * p.sap_thickness + 1.0,
            h0=0.5 * p.sap_width + 1.0,
            w1=0.5 * p.sap_thickness,
            h1=0.5 * p.sap_width,
            r=0.45 * p.sap_thickness,
        )
        # Inferior articular process: hangs from the lamina.
        z_bot = -0.5 * p.body_height_post - p.iap_depth
        width_dir_i = (sx * math.sin(fa), math.cos(fa), 0.0)
        out[f"iap_{side}"] = Beam(
            a=(sx * p.iap_x, b + p.iap_y, p.lamina_z + 0.3 * p.lamina_height),
            b=(sx * p.iap_x, b + p.iap_y + 2.0, z_bot),
            up=width_dir_i,
            w0=0.5 * p.sap_thickness + 1.0,
            h0=0.5 * p.sap_width + 1.0,
            w1=0.5 * p.sap_thickness,
            h1=0.5 * p.sap_width,
            r=0.45 * p.sap_thickness,
        )
        # Uncinate process (cervical): a ridge on the lateral rim of the upper endplate;
        # its thickness shrinks with its height so that it vanishes continuously.
        z0 = 0.5 * p.body_height_post
        h_unc = max(p.uncinate_height, 0.0)
        t_unc = 1.5 * min(1.0, h_unc / 3.0) + 1e-3
        xu = sx * (0.5 * p.body_width - 2.0)
        out[f"uncinate_{side}"] = Beam(
            a=(xu, -0.25 * p.body_depth, z0 - 2.0),
            b=(xu, 0.3 * p.body_depth, z0 - 2.0 + h_unc),
            up=(sx, 0.0, 0.0),
            w0=t_unc,
            h0=t_unc,
            w1=t_unc,
            h1=t_unc,
            r=0.9 * t_unc,
        )
    # Spinous process, from the midline behind the canal, inclined downwards.
    sa = math.radians(p.spinous_angle)
    root = np.array([0.0, y_canal_back + 0.5 * p.lamina_thickness, p.lamina_z])
    length = p.spinous_length - 0.5 * p.lamina_thickness
    tip = root + length * np.array([0.0, math.cos(sa), -math.sin(sa)])
    up_s = (0.0, math.sin(sa), math.cos(sa))
    for side, sx in (("l", 1.0), ("r", -1.0)):
        # two halves; they coincide unless the tip is bifid
        out[f"spinous_{side}"] = Beam(
            a=tuple(root),
            b=tuple(tip + np.array([sx * 0.5 * p.spinous_bifid, 0.0, 0.0])),
            up=up_s,
            w0=0.5 * p.spinous_width + 0.5,
            h0=0.5 * p.spinous_height,
            w1=0.5 * p.spinous_width,
            h1=0.5 * p.spinous_tip_height,
            r=0.45 * p.spinous_width,
        )
    # Dens (C2): a vertical peg on the upper endplate; its radius shrinks with its height
    # (absent: dens_height = 0) so that it vanishes continuously into the body.
    z0 = 0.5 * p.body_height_ant
    rd = max(p.dens_radius, 1.0) * min(1.0, max(p.dens_height, 0.0) / 10.0) + 1e-3
    out["dens"] = Beam(
        a=(0.0, -0.1 * p.body_depth, z0 - 4.0),
        b=(0.0, -0.1 * p.body_depth, z0 - 4.0 + max(p.dens_height + 4.0 - rd, 0.0)),
        up=(0.0, 1.0, 0.0),
        w0=rd,
        h0=rd,
        w1=rd,
        h1=rd,
        r=0.95 * rd,
    )
    return out
