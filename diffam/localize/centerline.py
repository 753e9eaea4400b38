"""A smooth spine centreline through the per-slice column points."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass
class Centerline:
    """A smooth curve sampled at uniform arc length, from inferior to superior.

    Attributes:
        points: ``(M, 3)`` LPS mm.
        tangents: ``(M, 3)`` unit tangents pointing towards the head.
        arc_mm: ``(M,)`` arc length in mm from the first point.
    """

    points: np.ndarray
    tangents: np.ndarray
    arc_mm: np.ndarray

    @property
    def length_mm(self) -> float:
        """Total arc length in mm."""
        return float(self.arc_mm[-1]) if len(self.arc_mm) else 0.0

    def at(self, s: np.ndarray | float) -> np.ndarray:
        """Points ``(..., 3)`` LPS mm at arc lengths ``s`` (mm, clamped to the curve)."""
        s = np.clip(np.asarray(s, dtype=np.float64), 0.0, self.length_mm)
        return np.stack([np.interp(s, self.arc_mm, self.points[:, c]) for c in range(3)], -1)

    def tangent_at(self, s: np.ndarray | float) -> np.ndarray:
        """Unit tangents ``(..., 3)`` at arc lengths ``s`` (mm)."""
        s = np.clip(np.asarray(s, dtype=np.float64), 0.0, self.length_mm)
        t = np.stack([np.interp(s, self.arc_mm, self.tangents[:, c]) for c in range(3)], -1)
        return t / np.linalg.norm(t, axis=-1, keepdims=True)

    def project(self, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Arc length (mm) of the nearest curve sample and the distance (mm) to it.

        Args:
            xyz: ``(N, 3)`` LPS mm.

        Returns:
            ``(s, d)``, both ``(N,)``.
        """
        xyz = np.atleast_2d(np.asarray(xyz, dtype=np.float64))
        d2 = ((xyz[:, None, :] - self.points[None, :, :]) ** 2).sum(-1)
        n = np.argmin(d2, axis=1)
        return self.arc_mm[n], np.sqrt(d2[np.arange(len(xyz)), n])


def _resample(points: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    s = np.arange(0.0, arc[-1] + 1e-9, step)
    if len(s) < 2:
        s = np.array([0.0, arc[-1]])
    return np.stack([np.interp(s, arc, points[:, c]) for c in range(3)], -1), s


def _smooth_curve(curve: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing along a curve, padded by point reflection at both ends.

    Reflecting through the end points continues the curve's end direction,
    so a straight end stays straight where ``mode="nearest"`` would flatten
    it towards a constant (bending short curves at both ends).
    """
    pad = min(len(curve) - 1, int(np.ceil(4.0 * sigma)))
    if pad < 1:
        return curve
    before = 2.0 * curve[0] - curve[pad:0:-1]
    after = 2.0 * curve[-1] - curve[-2 : -pad - 2 : -1]
    padded = np.concatenate([before, curve, after])
    return ndimage.gaussian_filter1d(padded, sigma, axis=0, mode="nearest")[pad : pad + len(curve)]


def fit_centerline(
    points: np.ndarray,
    *,
    step_mm: float = 1.0,
    smooth_mm: float = 8.0,
    tangent_smooth_mm: float = 20.0,
) -> Centerline:
    """Fit a smooth centreline through ordered column points.

    Args:
        points: ``(N, 3)`` LPS mm, ordered from inferior to superior; NaN
            rows are ignored.
        step_mm: arc-length step of the result in mm.
        smooth_mm: Gaussian smoothing along the curve, in mm of arc length.
        tangent_smooth_mm: the same for the curve the tangents (and so the
            straightening frames) are taken from.

    Returns:
        The :class:`Centerline`.

    Raises:
        ValueError: fewer than two valid points.
    """
    points = np.asarray(points, dtype=np.float64)
    points = points[~np.isnan(points).any(axis=1)]
    if len(points) < 2:
        raise ValueError("a centreline needs at least two valid column points")
    # Pre-smooth by index so that noise does not inflate the chord length.
    points = ndimage.gaussian_filter1d(points, 1.5, axis=0, mode="nearest")
    curve, _ = _resample(points, step_mm)
    sigma = smooth_mm / step_mm
    if len(curve) > 3:
        curve = _smooth_curve(curve, sigma)
    curve, arc = _resample(curve, step_mm)
    # Tangents from a smoother copy of the curve: straightening samples the
    # bodies 20-50 mm in front of the curve, where a frame that turns by
    # more than about 1.5 deg per mm folds the straightened image onto
    # itself (a body's endplates counted twice).
    tangents = np.gradient(_smooth_curve(curve, tangent_smooth_mm / step_mm), axis=0)
    tangents /= np.maximum(np.linalg.norm(tangents, axis=1, keepdims=True), 1e-12)
    if tangents[:, 2].mean() < 0:  # orient towards the head (+z in LPS)
        curve, tangents = curve[::-1], -tangents[::-1]
    return Centerline(curve, tangents, arc)


def extend_centerline(centerline: Centerline, length_mm: float) -> Centerline:
    """The centreline continued straight along its end tangents by ``length_mm`` at both ends.

    The column found from enclosed canal sections stops short of the ends of
    the bony spine (below the lowest pedicles, above the highest); the
    extension lets detection see the end vertebrae whole. Arc length restarts
    at the new inferior end.
    """
    step = float(np.median(np.diff(centerline.arc_mm))) if len(centerline.arc_mm) > 1 else 1.0
    k = np.arange(1, int(round(length_mm / step)) + 1)[:, None] * step
    below = centerline.points[0] - k[::-1] * centerline.tangents[0]
    above = centerline.points[-1] + k * centerline.tangents[-1]
    points = np.concatenate([below, centerline.points, above])
    tangents = np.concatenate(
        [
            np.repeat(centerline.tangents[:1], len(k), 0),
            centerline.tangents,
            np.repeat(centerline.tangents[-1:], len(k), 0),
        ]
    )
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    return Centerline(points, tangents, arc)
