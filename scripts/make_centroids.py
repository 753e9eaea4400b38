#!/usr/bin/env python
"""Write initial centroids (CSV label,x,y,z in LPS mm, or VerSe JSON) from a label map.

``kind=vertebra`` writes each vertebra's centre of mass, ``kind=body`` its body
centre (the centroid of the voxels anterior of the spinal canal, as VerSe
``*_ctd.json`` files give it: :mod:`diffam.body_centre`); ``kind=auto`` (the
default) writes body centres to a .json and whole-vertebra centres to a .csv,
which is how ``scripts/segment.py`` reads them by default (``centroids_kind=auto``).

Example:
    python scripts/make_centroids.py labels=labels.nii.gz convention=totalsegmentator \
        output=centroids.csv
    python scripts/make_centroids.py labels=labels.nii.gz kind=body output=body_ctd.json
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffam.body_centre import body_centres_from_label_map  # noqa: E402
from diffam.centroids import (  # noqa: E402
    CentroidError,
    centroids_from_label_map,
    centroids_kind,
    write_centroids_csv,
    write_verse_json,
)
from diffam.image import read_image  # noqa: E402


@hydra.main(config_path="../configs", config_name="make_centroids", version_base="1.3")
def main(cfg: DictConfig) -> None:
    if not cfg.labels or not cfg.output:
        sys.exit("pass labels=path/to/labels.nii.gz and output=centroids.csv|.json")
    volume = read_image(cfg.labels)
    output = Path(cfg.output)
    try:
        kind = centroids_kind(output, cfg.get("kind", "auto"))
    except CentroidError as error:
        sys.exit(str(error))
    if kind == "body":
        centroids = body_centres_from_label_map(volume, cfg.convention)
    else:
        centroids = centroids_from_label_map(volume, cfg.convention)
    if output.suffix == ".json":
        write_verse_json(centroids, volume, output, overwrite=cfg.overwrite)
    else:
        write_centroids_csv(centroids, output, overwrite=cfg.overwrite)
    print(f"{len(centroids)} {kind} centroids written to {output}")


if __name__ == "__main__":
    # Tables use non-ASCII signs (e.g. +-); never crash on a terminal in the C locale.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
    main()
