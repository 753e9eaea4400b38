"""Write a run's output folder: label map, meshes, centroids, report.

Every file is written atomically, and an existing output is refused unless
``overwrite`` is set, so neither an interrupted run nor a second run can
destroy a previous result.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict
from pathlib import Path

import numpy as np

from diffam.atomic import atomic_path, check_writable
from diffam.centroids import write_centroids_csv, write_verse_json
from diffam.config import SegmentationConfig
from diffam.image import Volume, write_image
from diffam.labels import level_name
from diffam.segment import SegmentationResult

LABELS_FILE = "labels.nii.gz"
REPORT_FILE = "report.json"


def output_files(output_dir: Path) -> list[Path]:
    """The main files a finished run leaves (used to skip finished scans in batch mode)."""
    return [output_dir / LABELS_FILE, output_dir / REPORT_FILE]


def check_output_dir(output_dir: Path, overwrite: bool) -> None:
    """Refuse to start a run whose results would replace an existing one."""
    output_dir.mkdir(parents=True, exist_ok=True)
    for path in output_files(output_dir):
        check_writable(path, overwrite=overwrite)


def write_mesh(vertices: np.ndarray, faces: np.ndarray, path: Path, overwrite: bool) -> None:
    """PLY or STL (by suffix) in world LPS mm, vertex order of the template."""
    import trimesh

    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    with atomic_path(path, overwrite=overwrite) as temporary:
        mesh.export(temporary, file_type=path.suffix.lstrip("."))


def write_outputs(result: SegmentationResult, image: Volume, output_dir: Path,
                  config: SegmentationConfig, *, overwrite: bool = False,
                  inputs: dict | None = None) -> dict[str, Path]:
    """Write everything a user opens after a run.

    Returns:
        name -> path of every file written.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    written["labels"] = write_image(result.labels, output_dir / LABELS_FILE, label_map=True,
                                    overwrite=overwrite)
    fit = result.fit
    if config.export.meshes:
        mesh_dir = output_dir / "meshes"
        mesh_dir.mkdir(exist_ok=True)
        for level, vertices in zip(fit.levels, fit.vertices):
            path = mesh_dir / f"{level}.{config.export.mesh_format}"
            write_mesh(vertices, fit.faces, path, overwrite)
            written[f"mesh_{level}"] = path
    if config.export.per_vertebra_masks:
        mask_dir = output_dir / "masks"
        mask_dir.mkdir(exist_ok=True)
        for verse_id, level in zip(fit.verse_ids, fit.levels):
            mask = (result.labels.array == _exported_id(verse_id, config)).astype(np.uint8)
            written[f"mask_{level}"] = write_image(
                result.labels.with_array(mask), mask_dir / f"{level}.nii.gz", label_map=True,
                overwrite=overwrite)
    written["centroids_json"] = output_dir / "centroids.json"
    write_verse_json(result.centroids, image, written["centroids_json"], overwrite=overwrite)
    written["centroids_csv"] = output_dir / "centroids.csv"
    write_centroids_csv(result.centroids, written["centroids_csv"], overwrite=overwrite)
    written["report"] = output_dir / REPORT_FILE
    report = build_report(result, image, config, inputs or {})
    with atomic_path(written["report"], overwrite=overwrite) as temporary:
        temporary.write_text(json.dumps(report, indent=2, default=_json_default))
    return written


def _exported_id(verse_id: int, config: SegmentationConfig) -> int:
    if config.export.labels == "totalsegmentator":
        from diffam.labels import VERSE_TO_TOTALSEGMENTATOR

        return VERSE_TO_TOTALSEGMENTATOR[verse_id]
    return verse_id


def build_report(result: SegmentationResult, image: Volume, config: SegmentationConfig,
                 inputs: dict) -> dict:
    """A JSON-ready summary of the run."""
    import diffam

    voxel_ml = float(np.prod(image.spacing)) / 1000.0
    fit = result.fit
    vertebrae = []
    for verse_id, level in zip(fit.verse_ids, fit.levels):
        count = int((result.labels.array == _exported_id(verse_id, config)).sum())
        vertebrae.append({"level": level, "verse_id": verse_id, "volume_ml": count * voxel_ml,
                          "initial_centroid_mm": result.centroids.get(verse_id)})
    final = fit.history[-1] if fit.history else {}
    return {
        "inputs": inputs,
        "image": {"shape_ijk": list(image.shape_ijk), "spacing_mm": image.spacing,
                  "origin_mm": image.origin, "direction": image.direction,
                  "orientation": image.orientation_code()},
        "centroids_source": result.centroid_source,
        "completed": result.completed,
        "iterations": fit.completed_iterations,
        "timings_s": result.timings,
        "final_losses": final,
        "vertebrae": vertebrae,
        "levels_found": [level_name(v) for v in fit.verse_ids],
        "config": asdict(config),
        "versions": _versions(diffam.__version__),
    }


def _versions(own: str) -> dict[str, str]:
    import numba
    import SimpleITK
    import torch

    return {"diffam": own, "python": platform.python_version(), "torch": torch.__version__,
            "numba": numba.__version__, "SimpleITK": SimpleITK.Version_VersionString()}


def _json_default(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
