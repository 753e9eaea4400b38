"""Helpers shared by the slow tests that fit cut or moved versions of the shared real scans."""

from __future__ import annotations

import numpy as np

from diffam.core.config import OptimConfig, SegmentationConfig
from diffam.evaluation import evaluate_arrays

#: The quick fixed schedule these tests fit with (optim=fast).
FAST = dict(iterations=300, num_image_points=4000, num_surface_points=4000,
            processing_spacing_mm=1.5)


def fast_config() -> SegmentationConfig:
    return SegmentationConfig(optim=OptimConfig(**FAST), device="cpu")


def keep_levels(array, levels) -> np.ndarray:
    """The label map with every label outside ``levels`` set to 0, as int32."""
    return np.where(np.isin(array, levels), array, 0).astype(np.int32)


def dice_by_label(pred, truth, image) -> dict[int, float]:
    """Dice (points, 0-100) per label present in ``truth``, on ``image``'s grid."""
    sx, sy, sz = (float(s) for s in image.spacing)
    rows = evaluate_arrays(pred, truth, (sz, sy, sx), tuple(float(o) for o in image.origin),
                           np.asarray(image.direction))
    return {r.label: 100 * r.dice for r in rows if r.status in ("matched", "missing")}
