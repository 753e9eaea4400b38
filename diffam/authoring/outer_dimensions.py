"""Published outer dimensions of a vertebra turned into the generator's parameters.

The morphometric studies measure to the bone's outer surface (tip to tip,
midline depth); the generator (:mod:`diffam.authoring.vertebra_shape`) places
the axes of rounded primitives and the outline before its concavity. This
module converts one into the other.
"""

from __future__ import annotations

import numpy as np

from diffam.authoring.vertebra_shape import Beam, VertebraParams, beams, orthonormal_frame


def _overshoot(beam: Beam, direction: tuple[float, float, float]) -> float:
    """How far a beam's solid reaches beyond its end point ``b`` along ``direction`` (mm).

    A beam is its core (half sizes less the rounding radius, axially from ``a`` to
    ``b``) dilated by the rounding radius: the tip's outer point lies the radius
    plus the core's half section, projected on ``direction``, beyond ``b``.
    """
    d = np.asarray(direction, float)
    _, e2, e3 = orthonormal_frame(np.subtract(beam.b, beam.a), np.asarray(beam.up, float))
    r = min(beam.r, 0.95 * min(beam.w1, beam.h1))  # the radius Beam.sdf uses at the tip
    return r + abs(float(e2 @ d)) * (beam.w1 - r) + abs(float(e3 @ d)) * (beam.h1 - r)


def outer_to_model(p: VertebraParams, *, span: bool = True) -> VertebraParams:
    """Turn published outer dimensions into the generator's parameters (thoracic levels).

    The generator reads three published values differently from how they were
    measured (Panjabi et al. 1991, [P91t] in :mod:`diffam.core.anatomy`):

    * EPD is the endplate's depth in the midsagittal plane, where the kidney-shaped
      outline is concave, and SCD runs from there (the body's posterior wall) to the
      lamina; the generator's ``body_depth`` is the outline's depth before the
      concavity is cut out, and its canal begins at that uncut depth, so the body
      came out ``body_kidney`` (2 mm) short in the midline and the canal as much
      too deep (the arch itself sat where the sum EPD + SCD puts it).
    * TPW is the distance between the outer tips of the transverse processes and
      SPL runs from the canal to the outer tip of the spinous process; the
      generator puts the end of each process's axis there and rounds a cap and a
      half section beyond it, so the processes came out about 9 mm (span) and
      3 mm (spinous) long.

    Checked on the chest CT's labels (TotalSegmentator) and verse007's expert labels
    (``benchmarks/template_proportions.py``, docs/ACCURACY.md "acc10").

    Args:
        p: Parameters holding the published values.
        span: Also read ``transverse_span`` as the outer tip-to-tip distance.
    """
    p = p.with_(body_depth=p.body_depth + p.body_kidney, canal_depth=p.canal_depth - p.body_kidney)
    b = beams(p)
    tpw = p.transverse_span
    if span:
        tpw -= 2.0 * _overshoot(b["transverse_l"], (1.0, 0.0, 0.0))
    sp = b["spinous_l"]
    axis = np.subtract(sp.b, sp.a)
    spl = p.spinous_length - _overshoot(sp, axis / np.linalg.norm(axis))
    return p.with_(transverse_span=tpw, spinous_length=spl)
