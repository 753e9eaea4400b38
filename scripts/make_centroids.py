#!/usr/bin/env python
"""Write initial centroids (CSV label,x,y,z in LPS mm, or VerSe JSON) from a label map.

Example:
    python scripts/make_centroids.py labels=labels.nii.gz convention=totalsegmentator \
        output=centroids.csv
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffam.centroids import (  # noqa: E402
    centroids_from_label_map,
    write_centroids_csv,
    write_verse_json,
)
from diffam.image import read_image  # noqa: E402


@hydra.main(config_path="../configs", config_name="make_centroids", version_base="1.3")
def main(cfg: DictConfig) -> None:
    if not cfg.labels or not cfg.output:
        sys.exit("pass labels=path/to/labels.nii.gz and output=centroids.csv|.json")
    volume = read_image(cfg.labels)
    centroids = centroids_from_label_map(volume, cfg.convention)
    output = Path(cfg.output)
    if output.suffix == ".json":
        write_verse_json(centroids, volume, output, overwrite=cfg.overwrite)
    else:
        write_centroids_csv(centroids, output, overwrite=cfg.overwrite)
    print(f"{len(centroids)} centroids written to {output}")


if __name__ == "__main__":
    # Tables use non-ASCII signs (e.g. +-); never crash on a terminal in the C locale.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
    main()
