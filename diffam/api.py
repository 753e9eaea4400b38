"""The Python API: segment a scan in a call, as ``diffam-segment`` does on the command line.

Example::

    import diffam
    out = diffam.segment("ct.nii.gz", centroids="ct_ctd.json", optim="fast")
    out.labels            # SimpleITK image on the input's grid (VerSe ids)
    out.meshes["L1"]      # (vertices (V, 3) LPS mm, faces (F, 3))

Nothing is written unless ``output_dir`` is given; then the folder holds what
``diffam-segment`` writes there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from diffam.cli.settings import compose_settings, override_strings
from diffam.cli.settings_check import check_segment_settings
from diffam.core.centroids import read_centroids
from diffam.core.config import segmentation_config
from diffam.core.image import read_image
from diffam.core.labels import verse_id
from diffam.core.volume import Volume, volume_from_nibabel, volume_to_nibabel
from diffam.fit.pipeline import SegmentationResult
from diffam.fit.pipeline import segment as segment_volume


class Segmentation(NamedTuple):
    """What :func:`segment` returns.

    Attributes:
        labels: the label map on the input's grid, of the input's kind
            (SimpleITK image for a path or a SimpleITK image, nibabel image for
            a nibabel image, :class:`~diffam.core.volume.Volume` for a Volume).
        meshes: level name -> ``(vertices (V, 3) float64 LPS mm, faces (F, 3) int)``,
            template vertex order.
        result: the full :class:`~diffam.fit.pipeline.SegmentationResult`
            (losses, timings, centroids used).
        files: name -> path of every file written (empty without ``output_dir``).
    """

    labels: Any
    meshes: dict[str, tuple[np.ndarray, np.ndarray]]
    result: SegmentationResult
    files: dict[str, Path]


def _as_volume(image) -> tuple[Volume, str]:
    if isinstance(image, Volume):
        return image, "volume"
    if isinstance(image, (str, os.PathLike)):
        return read_image(image), "sitk"
    import SimpleITK as sitk

    if isinstance(image, sitk.Image):
        return Volume.from_sitk(image), "sitk"
    if hasattr(image, "affine") and hasattr(image, "dataobj"):
        return volume_from_nibabel(image), "nibabel"
    raise TypeError(
        "image must be a file or DICOM folder path, a SimpleITK image, a nibabel image or a "
        f"diffam Volume, got {type(image).__name__}"
    )


#: How the label map is handed back for each kind of input.
_LABEL_KINDS = {"volume": lambda v: v, "sitk": Volume.to_sitk, "nibabel": volume_to_nibabel}


def _centroids(centroids, volume: Volume) -> dict[int, np.ndarray] | None:
    if centroids is None:
        return None
    if isinstance(centroids, (str, os.PathLike)):
        return read_centroids(centroids, volume)
    return {verse_id(k): np.asarray(v, dtype=np.float64).reshape(3) for k, v in centroids.items()}


def _describe(value) -> str | None:
    """How an input appears in report.json: its path, or what kind of object it was."""
    if value is None or isinstance(value, (str, os.PathLike)):
        return None if value is None else str(value)
    return f"{type(value).__name__} given in Python"


def segment(
    image,
    centroids=None,
    *,
    output_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    lowest: str | None = None,
    highest: str | None = None,
    **options,
) -> Segmentation:
    """Segment the vertebrae of one CT scan.

    Args:
        image: a NIfTI/MHA/NRRD path or DICOM folder, a SimpleITK image, a
            nibabel image or a :class:`~diffam.core.volume.Volume` (HU).
        centroids: initial centroids: a VerSe JSON or CSV file, or a mapping
            level name or VerSe id -> ``(3,)`` LPS mm; None finds them.
        output_dir: where to write the result files (as ``diffam-segment``);
            None writes nothing.
        overwrite: replace an earlier result in ``output_dir``.
        lowest, highest: level names that help name the vertebrae found
            automatically (``levels.lowest`` / ``levels.highest`` of the CLI).
        **options: the command's options: a preset of a group
            (``optim="fast"``, ``template="lumbar"``), fields of a group
            (``optim={"iterations": 300}``) or top-level values (``seed=1``,
            ``device="cpu"``).

    Returns:
        :class:`Segmentation`.

    Raises:
        ValueError: an option names no setting or preset, or has a bad type,
            range or choice (:class:`~diffam.cli.settings_check.SettingsError`
            lists every one), before any work.
    """
    settings = compose_settings("segment", override_strings(options))
    check_segment_settings(settings)  # the CLI's checks, before any work
    config = segmentation_config(settings)
    volume, kind = _as_volume(image)
    if output_dir is not None:
        from diffam.export.files import check_output_dir

        check_output_dir(Path(output_dir), overwrite)
    result = segment_volume(volume, config, centroids=_centroids(centroids, volume),
                            hint_lowest=lowest, hint_highest=highest)
    files: dict[str, Path] = {}
    if output_dir is not None:
        from diffam.export.staging import StagedOutput
        from diffam.export.writers import write_outputs

        inputs = {"scan": _describe(image), "centroids": _describe(centroids),
                  "output_dir": str(output_dir)}
        with StagedOutput(Path(output_dir)) as staged:  # all files or none replace a result
            written = write_outputs(result, volume, staged.path, config, overwrite=True,
                                    inputs=inputs)
            staged.commit()
        files = {name: Path(output_dir) / path.relative_to(staged.path)
                 for name, path in written.items()}
    meshes = {level: (vertices, result.fit.faces)
              for level, vertices in zip(result.fit.levels, result.fit.vertices)}
    return Segmentation(_LABEL_KINDS[kind](result.labels), meshes, result, files)
