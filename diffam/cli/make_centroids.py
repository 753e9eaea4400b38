"""``diffam-make-centroids``: write initial centroids (CSV label,x,y,z in LPS mm, or VerSe JSON) from a label map.

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


def main() -> None:
    """Console entry point (``diffam-make-centroids``, ``python scripts/make_centroids.py``)."""
    tolerate_any_terminal()
    _main()
