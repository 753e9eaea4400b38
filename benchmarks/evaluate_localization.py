"""Measure automatic vertebra localisation (diffam.localize) on phantoms and the real scans.

Prints one row per scan: vertebrae scored, identification rate (VerSe: the
prediction of a level lies within 20 mm of its true centroid and that true
centroid is its closest), median localisation error, and how naming was
decided. Real scans are scored on the vertebrae whose label does not touch the
scan boundary ("complete") and, separately, on all labelled vertebrae.

    python scripts/evaluate_localization.py [--data ../shared/data] [--no-phantoms]
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path

from diffam.core.centroids import centroids_from_label_map
from diffam.core.image import read_image
from diffam.core.labels import totalsegmentator_to_verse
from diffam.evaluation.localization import complete_labels, score_localization
from diffam.localize import LocalizationError, localize_vertebrae

CHEST = ("ct/chest_t1_l2/ct.nii.gz", "ct/chest_t1_l2/labels_totalsegmentator.nii.gz")

REAL_SCANS = [
    # name, image, labels, convention, hint
    ("chest_t1_l2", *CHEST, "totalsegmentator", {}),
    # L3 is cut by the scan, but in view.
    ("chest_t1_l2+hint", *CHEST, "totalsegmentator", {"hint_lowest": "L3"}),
    ("chest_t1_l2+highest", *CHEST, "totalsegmentator", {"hint_highest": "C6"}),
    (
        "dicom_t11_t12",
        "ct/dicom_t11_t12",
        "ct/dicom_t11_t12_labels/labels_totalsegmentator.nii.gz",
        "totalsegmentator",
        {"hint_lowest": "T12"},
    ),
    (
        "l3_crop",
        "ct/l3_crop/ct.nii.gz",
        "ct/l3_crop/labels_verse.nii.gz",
        "verse",
        {"hint_lowest": "L4"},
    ),
]


def _row(name, score, naming, seconds):
    ids = ",".join(str(k) for k in score.evaluated)
    return (
        f"{name:<28} n={len(score.evaluated):<3} id={100 * score.identification_rate:5.1f}% "
        f"median={score.median_error_mm:5.1f} mm  ({seconds:4.0f} s) [{ids}]  naming: {naming}"
    )


def evaluate_phantoms(levels_list, seeds, spacing_mm=1.5):
    from diffam.authoring.phantom import PhantomConfig, make_phantom
    from diffam.core.template import load_template

    template = load_template("lumbar")
    for levels in levels_list:
        for seed in seeds:
            t0 = time.time()
            config = PhantomConfig(levels=levels, spacing_mm=(spacing_mm,) * 3, seed=seed)
            phantom = make_phantom(template, config)
            name = f"phantom {levels[0]}-{levels[-1]} s{seed}"
            try:
                loc = localize_vertebrae(phantom.image, hint_lowest=levels[-1])
            except LocalizationError as err:
                print(f"{name:<28} FAILED: {err}")
                continue
            score = score_localization(loc.centroids, phantom.centroids)
            print(_row(name, score, loc.naming, time.time() - t0), flush=True)


@functools.lru_cache(maxsize=1)
def _load_scan(data: Path, image: str, labels: str, convention: str):
    """A scan, its true centroids and its complete labels (read once for several hints)."""
    volume = read_image(data / image)
    label_map = read_image(data / labels)
    true = centroids_from_label_map(label_map, convention)
    verse = (
        label_map.with_array(totalsegmentator_to_verse(label_map.array))
        if convention == "totalsegmentator"
        else label_map
    )
    return volume, true, complete_labels(verse, sorted(true))


def evaluate_real(data: Path):
    for name, image, labels, convention, hints in REAL_SCANS:
        if not (data / image).exists():
            print(f"{name:<28} missing: {data / image}")
            continue
        t0 = time.time()
        volume, true, complete = _load_scan(data, image, labels, convention)
        try:
            loc = localize_vertebrae(volume, **hints)
        except LocalizationError as err:
            print(f"{name:<28} no result: {err}")
            continue
        seconds = time.time() - t0
        print(
            _row(
                name + " complete",
                score_localization(loc.centroids, true, evaluate=complete),
                loc.naming,
                seconds,
            )
        )
        print(_row(name + " all", score_localization(loc.centroids, true), "", seconds))
        pred = ", ".join(f"{k}:{'p' if k in loc.partial else ''}" for k in sorted(loc.centroids))
        print(f"{'':<28} predicted ids {pred}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data"
    )
    parser.add_argument("--no-phantoms", action="store_true")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    if not args.no_phantoms:
        evaluate_phantoms([("L1", "L2", "L3"), ("L1", "L2", "L3", "L4", "L5")], args.seeds)
    evaluate_real(args.data)


if __name__ == "__main__":
    main()
