"""``diffam-make-centroids``: write initial centroids (CSV label,x,y,z in LPS mm, or VerSe JSON) from a label map.

``kind=vertebra`` writes each vertebra's centre of mass, ``kind=body`` its body
centre (the centroid of the voxels anterior of the spinal canal, as VerSe
``*_ctd.json`` files give it: :mod:`diffam.core.body_centre`); ``kind=auto`` (the
default) writes body centres to a .json and whole-vertebra centres to a .csv,
which is how ``diffam-segment`` reads them by default (``centroids_kind=auto``).

Example:
    diffam-make-centroids labels=labels.nii.gz convention=totalsegmentator \
        output=centroids.csv
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from diffam.cli.terminal import tolerate_any_terminal
from diffam.core.centroids import (
    centroids_from_label_map,
    write_centroids_csv,
    write_verse_json,
)
from diffam.core.image import read_image
from diffam.core.resources import config_dir


@hydra.main(config_path=str(config_dir()), config_name="make_centroids", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    code = run(cfg)
    if code:
        sys.exit(code)


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def run(cfg) -> int:
    """Write the centroids; returns the exit status (0 done, 1 failed, 2 bad settings)."""
    from diffam.core.atomic import check_writable
    from diffam.core.body_centre import body_centres_from_label_map
    from diffam.core.centroids import CentroidError, centroids_kind, check_usable
    from diffam.core.volume import ImageReadError

    if not cfg.labels or not cfg.output:
        return _fail("pass labels=path/to/labels.nii.gz and output=centroids.csv|.json", 2)
    if cfg.convention not in ("verse", "totalsegmentator"):
        return _fail(f"convention={cfg.convention!r}: must be verse or totalsegmentator", 2)
    if not isinstance(cfg.overwrite, bool):
        return _fail(f"overwrite={cfg.overwrite!r}: must be true or false", 2)
    output = Path(cfg.output)
    if output.suffix.lower() not in (".csv", ".json"):
        return _fail(f"output={output}: must end in .csv (label,x,y,z in LPS mm) or .json "
                     "(VerSe, voxel indices)", 2)
    try:
        kind = centroids_kind(output, cfg.get("kind", "auto"))
    except CentroidError as error:
        return _fail(str(error), 2)
    try:
        check_writable(output, overwrite=cfg.overwrite)
    except (FileExistsError, FileNotFoundError, PermissionError, IsADirectoryError) as error:
        return _fail(f"{error}".replace("overwrite=True (overwrite=true in a config)",
                                        "overwrite=true"), 2)
    try:
        volume = read_image(cfg.labels)
    except ImageReadError as error:
        return _fail(str(error), 1)
    problem = label_map_problem(volume.array, cfg.convention)
    if problem:
        return _fail(f"labels={cfg.labels}: {problem}", 2)
    if kind == "body":
        centroids = body_centres_from_label_map(volume, cfg.convention)
    else:
        centroids = centroids_from_label_map(volume, cfg.convention)
    try:
        check_usable(centroids, f"labels={cfg.labels}")
    except CentroidError as error:
        return _fail(f"{error}".replace("holds no centroid; add one entry per vertebra, or "
                                        "leave centroids= out to find the vertebrae "
                                        "automatically", "holds no vertebra label of the "
                                        f"{cfg.convention} convention"), 1)
    try:
        if output.suffix.lower() == ".json":
            write_verse_json(centroids, volume, output, overwrite=cfg.overwrite)
        else:
            write_centroids_csv(centroids, output, overwrite=cfg.overwrite)
    except OSError as error:
        return _fail(f"cannot write {output}: {error}", 1)
    print(f"{len(centroids)} {kind} centroids written to {output}")
    return 0


#: More distinct values than this: an intensity image, not a label map.
MAX_LABEL_VALUES = 256


def label_map_problem(array, convention: str) -> str | None:
    """Why ``array`` is not a label map of ``convention``; None when it may be."""
    import numpy as np

    array = np.asarray(array)
    if array.dtype.kind == "f" and not np.all(np.mod(array, 1) == 0):
        return ("holds non-integer values: this looks like a CT (intensities), not a label "
                "map; give the segmentation")
    values = np.unique(array)
    if values.size and values.min() < 0 or values.size > MAX_LABEL_VALUES:
        return (f"holds {values.size} distinct values from {values.min():g} to "
                f"{values.max():g}: this looks like a CT (intensities), not a label map; "
                "give the segmentation")
    if convention == "verse":
        totalseg = [int(v) for v in values if 29 <= v <= 50]
        if totalseg:
            return (f"holds values {totalseg[:8]} that are TotalSegmentator vertebra ids, not "
                    "VerSe ids (1-28): pass convention=totalsegmentator")
    return None


def main() -> None:
    """Console entry point (``diffam-make-centroids``, ``python scripts/make_centroids.py``)."""
    tolerate_any_terminal()
    _main()
