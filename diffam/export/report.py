"""``report.json``: a JSON-ready summary of one run (inputs, geometry, timings, volumes, scores)."""

from __future__ import annotations

import platform
from dataclasses import asdict

import numpy as np

from diffam.core.config import SegmentationConfig
from diffam.core.labels import exported_id, level_name
from diffam.core.version import VERSION
from diffam.core.volume import Volume
from diffam.fit.pipeline import SegmentationResult


def _label_statistics(labels: Volume, values: list[int]) -> dict[int, tuple[int, np.ndarray]]:
    """Voxel count and world centroid (LPS mm; None when empty) of each label value."""
    from scipy import ndimage

    array = labels.array
    counts = np.bincount(array.reshape(-1).astype(np.int64), minlength=max(values, default=0) + 1)
    present = [v for v in values if v > 0 and counts[v] > 0]
    centres = (
        ndimage.center_of_mass(np.ones(array.shape, np.uint8), array, present) if present else []
    )
    out = {v: (int(counts[v]) if v > 0 else 0, None) for v in values}
    for value, zyx in zip(present, centres):
        out[value] = (int(counts[value]), labels.index_to_world(np.array(zyx[::-1])))
    return out


def build_report(
    result: SegmentationResult, image: Volume, config: SegmentationConfig, inputs: dict, scores=None
) -> dict:
    """A JSON-ready summary of the run (``scores``: :func:`diffam.fit.quality.fit_scores`)."""

    voxel_ml = float(np.prod(image.spacing)) / 1000.0
    fit = result.fit
    values = [exported_id(v, config.export.labels) for v in fit.verse_ids]
    statistics = _label_statistics(result.labels, values)
    by_level = {s.level: s for s in scores} if scores else {}
    vertebrae = []
    for verse_id, level, value in zip(fit.verse_ids, fit.levels, values):
        count, centre = statistics[value]
        entry = {
            "level": level,
            "verse_id": verse_id,
            "label_value": value,
            "volume_ml": count * voxel_ml,
            "initial_centroid_mm": result.centroids.get(verse_id),
            "label_centroid_mm": centre,
        }
        score = by_level.get(level)
        if score is not None:
            measures = score.as_dict()
            entry["fit_score"] = measures["score"]
            entry.update({f"fit_{name}": measures[name] for name in score.features()})
            entry.update({"fit_score_points": score.points, "doubtful": score.doubtful})
        vertebrae.append(entry)
    final = fit.history[-1] if fit.history else {}
    return {
        "inputs": inputs,
        "image": {
            "shape_ijk": list(image.shape_ijk),
            "spacing_mm": image.spacing,
            "origin_mm": image.origin,
            "direction": image.direction,
            "orientation": image.orientation_code(),
        },
        "centroids_source": result.centroid_source,
        "completed": result.completed,
        "iterations": fit.completed_iterations,
        "iterations_configured": config.optim.iterations,
        "timings_s": result.timings,
        "final_losses": final,
        "label_convention": config.export.labels,
        "vertebrae": vertebrae,
        "levels_found": [level_name(v) for v in fit.verse_ids],
        "doubtful_levels": [v["level"] for v in vertebrae if v.get("doubtful")],
        "fit_score_threshold": config.export.fit_score_threshold if scores else None,
        "appearance_profile": None
        if fit.appearance_profile is None
        else {
            "distance_mm": np.round(fit.appearance_profile[0], 3),
            "predicted_hu": np.round(fit.appearance_profile[1], 1),
        },
        "config": asdict(config),
        "versions": _versions(VERSION),
    }


def _versions(own: str) -> dict[str, str]:
    import numba
    import SimpleITK
    import torch

    versions = {
        "diffam": own,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numba": numba.__version__,
        "SimpleITK": SimpleITK.Version_VersionString(),
    }
    try:
        import highdicom

        versions["highdicom"] = highdicom.__version__
    except ImportError:
        pass
    return versions
