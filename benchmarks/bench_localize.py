"""Stress suite of automatic localisation (diffam.localize) on the shared labelled scans.

Every real scan of ``../shared/data/ct`` is varied the way scans in the wild
vary, and localisation is scored against the centroids of its label map
(VerSe identification: within 20 mm and nearest; median error in mm):

* ``spacing``: resampled to 1, 2 and 3 mm isotropic;
* ``window``: cut along the spine to random windows of 3-12 vertebrae;
* ``axes``: the voxel axes permuted and flipped (LPS, RAS, PIR) and an
  oblique grid (direction rotated 12 degrees, resampled);
* ``noise``: Gaussian noise (40 HU) and smoothing (0.8 mm), as in low-dose scans;
* ``pelvis``: synthetic phantoms of L1-L5 on a sacrum and iliac bones
  (:mod:`diffam.authoring.pelvis`; no shared scan shows a sacrum) at 1, 2 and
  3 mm, cut to windows with and without the sacrum (and a 100 mm slab that
  leaves out the ilia), with the axes permuted and oblique, and the same
  spine without the pelvis, which must ask for a hint.

Each case first runs without a hint. When localisation asks for one (its
message names ``levels.lowest``), that is recorded as ``asked`` and the case
runs again with the lowest level in view as the hint, as a user would answer.
A vertebra is in view when at least a fifth of its whole volume is. A vertebra
the shared scan itself cuts (its label touches the scan's border) is taken to
be as large as the nearest level the scan shows whole, so a sliver at the
scan's face (the chest CT's C5: 99 voxels in its top slice) is not scored as a
vertebra in view; ``--count-slivers`` scores every labelled level, as before.

    python benchmarks/bench_localize.py                 # every group
    python benchmarks/bench_localize.py --fast          # the quick subset the tests run
    python benchmarks/bench_localize.py --groups spacing axes --scans verse005_l1_l5_crop
    python benchmarks/bench_localize.py --timing      # time and memory on a 512 x 512 x 400 scan
    python benchmarks/bench_localize.py --noise-seeds 0,1,2,3   # the noise group per draw and pooled

One noise draw hides failures that shift a whole crop's names by one level
(loc9: seeds 2 and 3 of the noise group alone); ``--noise-seeds`` runs the
noise group once per seed (the noise group alone, ``--groups noise --seed S``)
and prints each draw's rate and the pooled rate.
"""

from __future__ import annotations

import argparse
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from diffam.core.centroids import centroids_from_label_map
from diffam.core.image import read_image
from diffam.core.labels import level_name, totalsegmentator_to_verse
from diffam.core.volume import Volume, resample
from diffam.evaluation.localization import score_localization
from diffam.localize import LocalizationError, localize_vertebrae

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ct"
#: name: (image, label map, label convention)
SCANS = {
    "chest_t1_l2": ("chest_t1_l2/ct.nii.gz", "chest_t1_l2/labels_totalsegmentator.nii.gz",
                    "totalsegmentator"),
    "verse005_l1_l5_crop": ("verse005_l1_l5_crop/ct.nii.gz",
                            "verse005_l1_l5_crop/labels_verse.nii.gz", "verse"),
    "verse007_t9_l3_crop": ("verse007_t9_l3_crop/ct.nii.gz",
                            "verse007_t9_l3_crop/labels_verse.nii.gz", "verse"),
    "verse008_t12_l5_crop": ("verse008_t12_l5_crop/ct.nii.gz",
                             "verse008_t12_l5_crop/labels_verse.nii.gz", "verse"),
    "dicom_t11_t12": ("dicom_t11_t12", "dicom_t11_t12_labels/labels_totalsegmentator.nii.gz",
                      "totalsegmentator"),
    "l3_crop": ("l3_crop/ct.nii.gz", "l3_crop/labels_verse.nii.gz", "verse"),
}
#: Fraction of a vertebra's voxels that must be in view for it to count.
IN_VIEW_FRACTION = 0.2
GROUPS = ("original", "spacing", "window", "axes", "noise", "pelvis")
FAST = {"scans": ("verse008_t12_l5_crop", "verse005_l1_l5_crop"), "groups": ("original", "axes")}
HU_AIR = -1024.0


@dataclass
class Case:
    group: str
    scan: str
    variant: str
    image: Volume
    labels: Volume


@dataclass
class Outcome:
    case: Case
    evaluated: list[int] = field(default_factory=list)
    identified: list[int] = field(default_factory=list)
    errors_mm: list[float] = field(default_factory=list)
    asked_for_hint: bool = False
    failed: str | None = None
    seconds: float = 0.0


# ---------------------------------------------------------------------- variants
def _load(name: str) -> tuple[Volume, Volume]:
    image_path, label_path, convention = SCANS[name]
    image, labels = read_image(DATA / image_path), read_image(DATA / label_path)
    if convention == "totalsegmentator":
        labels = labels.with_array(totalsegmentator_to_verse(labels.array))
    return image, labels


def _reoriented(volume: Volume, code: str) -> Volume:
    image = sitk.DICOMOrient(volume.to_sitk(), code)
    return Volume.from_sitk(image, volume.source)


def _oblique(volume: Volume, degrees: float, interpolator) -> Volume:
    angle = np.radians(degrees)
    rotation = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)],
                         [0, np.sin(angle), np.cos(angle)]])
    direction = rotation @ volume.direction
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], float)
    world = volume.index_to_world(corners * (np.array(volume.shape_ijk) - 1))
    local = world @ direction  # coordinates along the new axes
    origin = direction @ local.min(0)
    size = np.ceil((local.max(0) - local.min(0)) / volume.spacing).astype(int) + 1
    image = sitk.Resample(volume.to_sitk(), [int(s) for s in size], sitk.Transform(),
                          interpolator, [float(o) for o in origin],
                          [float(s) for s in volume.spacing],
                          [float(d) for d in direction.reshape(-1)],
                          HU_AIR if interpolator == sitk.sitkLinear else 0.0)
    return Volume.from_sitk(image, volume.source)


def _window(image: Volume, labels: Volume, rng, count: int) -> tuple[Volume, Volume, str]:
    """A crop along the spine's main voxel axis holding about ``count`` vertebrae."""
    ids = sorted(int(v) for v in np.unique(labels.array) if v)
    centres_kji = {v: np.mean(np.nonzero(labels.array == v), axis=1) for v in ids}
    spread = np.ptp(np.array(list(centres_kji.values())), axis=0) * labels.spacing[::-1]
    array_axis = int(np.argmax(spread))  # the voxel axis the column runs along
    axis = 2 - array_axis
    centres = {v: c[array_axis] for v, c in centres_kji.items()}
    order = sorted(ids, key=lambda v: centres[v])
    count = min(count, len(order))
    first = int(rng.integers(0, len(order) - count + 1))
    chosen = order[first:first + count]
    span = [np.nonzero(labels.array == v)[array_axis] for v in chosen]
    lo, hi = int(min(s.min() for s in span)), int(max(s.max() for s in span)) + 1
    index = [slice(None)] * 3
    index[array_axis] = slice(lo, hi)
    origin_index = np.zeros(3)
    origin_index[axis] = lo

    def cut(volume: Volume) -> Volume:
        # Each volume's own origin: a label map may share the scan's voxels
        # but not its direction (the DICOM series' labels are flipped along j).
        return Volume(np.ascontiguousarray(volume.array[tuple(index)]), volume.spacing.copy(),
                      volume.index_to_world(origin_index), volume.direction.copy(), volume.source)

    return cut(image), cut(labels), f"{level_name(chosen[0])}-{level_name(chosen[-1])}"


def make_cases(scans, groups, seed: int = 0) -> list[Case]:
    rng = np.random.default_rng(seed)
    cases = []
    for name in scans:
        image, labels = _load(name)
        if "original" in groups:
            cases.append(Case("original", name, "as shared", image, labels))
        if "spacing" in groups:
            for mm in (1.0, 2.0, 3.0):
                cases.append(Case("spacing", name, f"{mm:g} mm", resample(image, mm),
                                  resample(labels, mm, interpolator="nearest")))
        if "window" in groups:
            for count in sorted({int(rng.integers(3, 13)) for _ in range(2)}):
                cut_image, cut_labels, span = _window(image, labels, rng, count)
                cases.append(Case("window", name, span, cut_image, cut_labels))
        if "axes" in groups:
            for code in ("LPS", "RAS", "PIR"):
                cases.append(Case("axes", name, code, _reoriented(image, code),
                                  _reoriented(labels, code)))
            cases.append(Case("axes", name, "oblique 12 deg",
                              _oblique(image, 12.0, sitk.sitkLinear),
                              _oblique(labels, 12.0, sitk.sitkNearestNeighbor)))
        if "noise" in groups:
            smooth = sitk.SmoothingRecursiveGaussian(image.to_sitk(), 0.8)
            noisy = sitk.GetArrayFromImage(smooth) + rng.normal(0, 40.0, image.array.shape)
            cases.append(Case("noise", name, "40 HU, 0.8 mm",
                              image.with_array(noisy.astype(np.float32)), labels))
    return cases


def _phantom_case(variant: str, spacing_mm: float, seed: int, **options) -> tuple[Case, dict]:
    """A lumbar phantom (on a sacrum and pelvis unless told otherwise) and its whole volumes."""
    from diffam.authoring.phantom import PhantomConfig, make_phantom
    from diffam.core.template import load_template

    options = {"sacrum": True, "pelvis": True, **options}
    phantom = make_phantom(load_template("lumbar"), PhantomConfig(
        levels=("L1", "L2", "L3", "L4", "L5"), spacing_mm=(spacing_mm,) * 3, seed=seed, **options))
    full = {v: mm3 for v, mm3 in label_volumes_mm3(phantom.labels).items() if v <= 25}
    return Case("pelvis", "phantom", variant, phantom.image, phantom.labels), full


def _phantom_crop(case: Case, variant: str, *, z_mm=(-np.inf, np.inf), x_mm=np.inf) -> Case:
    """``case`` (an LPS phantom) cut to world ``z`` in ``z_mm`` and ``|x - midline| <= x_mm``."""
    shape = case.image.array.shape
    z = case.image.index_to_world(np.c_[np.zeros(shape[0]), np.zeros(shape[0]),
                                        np.arange(shape[0])])[:, 2]
    x = case.image.index_to_world(np.c_[np.arange(shape[2]), np.zeros(shape[2]),
                                        np.zeros(shape[2])])[:, 0]
    midline = float(np.median(x[np.nonzero(case.labels.array)[2]]))
    ks = np.nonzero((z >= z_mm[0]) & (z <= z_mm[1]))[0]
    iss = np.nonzero(np.abs(x - midline) <= x_mm)[0]
    index = (slice(ks[0], ks[-1] + 1), slice(None), slice(iss[0], iss[-1] + 1))

    def cut(volume: Volume) -> Volume:
        origin = volume.index_to_world(np.array([iss[0], 0, ks[0]], float))
        return Volume(np.ascontiguousarray(volume.array[index]), volume.spacing.copy(), origin,
                      volume.direction.copy(), volume.source)

    return Case("pelvis", "phantom", variant, cut(case.image), cut(case.labels))


def pelvis_cases(seed: int = 0) -> list[tuple[Case, dict]]:
    """The ``pelvis`` group: each case with the whole volume of each of its vertebrae."""
    cases = []
    for n, mm in enumerate((1.0, 2.0, 3.0)):
        case, full = _phantom_case(f"L1-S, {mm:g} mm", mm, seed + n)
        cases.append((case, full))
    base, full = cases[1]  # 2 mm
    z = {v: base.labels.index_to_world(np.argwhere(base.labels.array == v)[:, ::-1]
                                       .astype(float))[:, 2] for v in (22, 23, 24)}
    cases += [
        (_phantom_crop(base, "L3-S window", z_mm=(-np.inf, z[22].max() + 3.0)), full),
        (_phantom_crop(base, "L1-L4 window", z_mm=(z[24].max() - 3.0, np.inf)), full),
        (_phantom_crop(base, "L1-S, 100 mm slab", x_mm=50.0), full),
    ]
    for code in ("RAS", "PIR"):
        cases.append((Case("pelvis", "phantom", f"L1-S, {code}", _reoriented(base.image, code),
                           _reoriented(base.labels, code)), full))
    cases.append((Case("pelvis", "phantom", "L1-S, oblique 12 deg",
                       _oblique(base.image, 12.0, sitk.sitkLinear),
                       _oblique(base.labels, 12.0, sitk.sitkNearestNeighbor)), full))
    cases.append(_phantom_case("L1-L5, no pelvis", 2.0, seed + 1, sacrum=False, pelvis=False))
    return cases


# ---------------------------------------------------------------------- scoring
def label_volumes_mm3(labels: Volume) -> dict[int, float]:
    counts = np.bincount(labels.array.ravel().astype(np.int64))
    voxel = float(np.prod(labels.spacing))
    return {v: n * voxel for v, n in enumerate(counts) if v and n}


def _touches_border(labels: np.ndarray) -> set[int]:
    faces = [labels[0], labels[-1], labels[:, 0], labels[:, -1], labels[:, :, 0], labels[:, :, -1]]
    return {int(v) for face in faces for v in np.unique(face) if v}


def whole_volumes_mm3(labels: Volume) -> dict[int, float]:
    """Each labelled level's whole volume in mm^3, ``labels`` being the shared (uncropped) map.

    A level whose label touches the scan's border is cut by the scan; its whole
    volume is taken as the largest of its own and that of the nearest level the
    scan shows whole (neighbouring vertebrae differ by about a tenth in volume).
    """
    volumes = label_volumes_mm3(labels)
    cut = _touches_border(np.asarray(labels.array))
    whole = [v for v in volumes if v not in cut]
    out = dict(volumes)
    for v in cut & set(volumes):
        if whole:
            nearest = min(whole, key=lambda w: (abs(w - v), w))
            out[v] = max(volumes[v], volumes[nearest])
    return out


def in_view(labels: Volume, full_mm3: dict[int, float]) -> list[int]:
    seen = label_volumes_mm3(labels)
    return [v for v, full in full_mm3.items() if seen.get(v, 0.0) >= IN_VIEW_FRACTION * full]


def run_case(case: Case, full_mm3: dict[int, float]) -> Outcome:
    outcome = Outcome(case)
    visible = in_view(case.labels, full_mm3)
    true = {k: c for k, c in centroids_from_label_map(case.labels, "verse").items()
            if k in visible}
    start = time.perf_counter()
    try:
        try:
            found = localize_vertebrae(case.image)
        except LocalizationError as error:
            if "levels.lowest" not in str(error):
                raise
            outcome.asked_for_hint = True
            found = localize_vertebrae(case.image, hint_lowest=level_name(max(visible)))
    except LocalizationError as error:
        outcome.failed = str(error).split(";")[0]
        outcome.evaluated = sorted(true)
        return outcome
    finally:
        outcome.seconds = time.perf_counter() - start
    score = score_localization(found.centroids, true)
    outcome.evaluated, outcome.identified = score.evaluated, score.identified
    outcome.errors_mm = list(score.errors_mm.values())
    return outcome


def summarize(outcomes: list[Outcome]) -> list[dict]:
    rows = []
    for group in dict.fromkeys(o.case.group for o in outcomes):
        chosen = [o for o in outcomes if o.case.group == group]
        evaluated = sum(len(o.evaluated) for o in chosen)
        identified = sum(len(o.identified) for o in chosen)
        errors = [e for o in chosen for e in o.errors_mm]
        rows.append({
            "group": group, "cases": len(chosen), "vertebrae": evaluated,
            "id_rate": 100.0 * identified / evaluated if evaluated else float("nan"),
            "median_error_mm": float(np.median(errors)) if errors else float("nan"),
            "asked_for_hint": sum(o.asked_for_hint for o in chosen),
            "failed": sum(o.failed is not None for o in chosen),
        })
    return rows


# ---------------------------------------------------------------------- timing
#: Grid of the timing case (i, j, k voxels): a large clinical CT.
TIMING_SHAPE = (512, 512, 400)


def _rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def timing_case() -> Volume:
    """The chest CT resampled to :data:`TIMING_SHAPE` over the same field of view (int16 HU)."""
    image, _ = _load("chest_t1_l2")
    extent = np.array(image.shape_ijk) * image.spacing
    spacing = extent / np.array(TIMING_SHAPE)
    out = sitk.Resample(image.to_sitk(), [int(n) for n in TIMING_SHAPE], sitk.Transform(),
                        sitk.sitkLinear, [float(o) for o in image.origin],
                        [float(s) for s in spacing], [float(d) for d in image.direction.ravel()],
                        HU_AIR, sitk.sitkInt16)
    return Volume.from_sitk(out, image.source)


def measure_timing(repeats: int = 2) -> None:
    """Wall time and peak resident memory above the loaded scan of localisation on a large scan."""
    volume = timing_case()
    float32_bytes = 4 * int(np.prod(TIMING_SHAPE))
    for _ in range(repeats):
        base, peak, running = _rss_bytes(), [0], [True]

        def sample(peak=peak, running=running):
            while running[0]:
                peak[0] = max(peak[0], _rss_bytes())
                time.sleep(0.01)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        start = time.perf_counter()
        try:
            found = localize_vertebrae(volume)
            what = found.naming.split(";")[0]
        except LocalizationError as error:
            what = f"asked for a hint: {str(error).split(';')[0]}"
        seconds = time.perf_counter() - start
        running[0] = False
        sampler.join()
        extra = max(peak[0] - base, 0)
        print(f"{'x'.join(map(str, TIMING_SHAPE))} int16: {seconds:.1f} s, peak memory above the "
              f"scan {extra / 2**20:.0f} MiB = {extra / float32_bytes:.2f} x its float32 size "
              f"({what})", flush=True)


def seed_rows(outcomes_by_seed: dict[int, list[Outcome]]) -> list[dict]:
    """Identification per noise seed and pooled over them: rows of ``seed`` (an int or
    ``"pooled"``), ``vertebrae``, ``identified``, ``id_rate`` (%), ``median_error_mm``
    and ``worst`` (the case with the lowest rate, ``scan variant k/n``)."""
    rows = []
    pooled = [o for outcomes in outcomes_by_seed.values() for o in outcomes]
    for seed, chosen in [*outcomes_by_seed.items(), ("pooled", pooled)]:
        evaluated = sum(len(o.evaluated) for o in chosen)
        identified = sum(len(o.identified) for o in chosen)
        errors = [e for o in chosen for e in o.errors_mm]
        scored = [o for o in chosen if o.evaluated]
        worst = min(scored, key=lambda o: len(o.identified) / len(o.evaluated), default=None)
        rows.append({
            "seed": seed, "vertebrae": evaluated, "identified": identified,
            "id_rate": 100.0 * identified / evaluated if evaluated else float("nan"),
            "median_error_mm": float(np.median(errors)) if errors else float("nan"),
            "worst": (f"{worst.case.scan} {len(worst.identified)}/{len(worst.evaluated)}"
                      if worst is not None else ""),
        })
    return rows


def _parse_seeds(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


#: Table columns: (heading, row key, format spec).
ID_RATE = ("id rate %", "id_rate", ".1f")
MEDIAN_ERROR = ("median error mm", "median_error_mm", ".1f")


def print_table(rows, columns) -> None:
    """Print ``rows`` (dicts) as a markdown table of ``columns`` (heading, key, format)."""
    print("\n| " + " | ".join(c[0] for c in columns) + " |")
    print("|" + "---|" * len(columns))
    for r in rows:
        print("| " + " | ".join(format(r[key], spec) for _, key, spec in columns) + " |")


def run_noise_seeds(scans, seeds: list[int], count_slivers: bool = False) -> dict[int, list[Outcome]]:
    """The noise group of ``scans`` once per seed (each draw as ``--groups noise --seed S``)."""
    by_seed: dict[int, list[Outcome]] = {}
    fulls = {}
    for name in scans:
        _, labels = _load(name)
        fulls[name] = label_volumes_mm3(labels) if count_slivers else whole_volumes_mm3(labels)
    for seed in seeds:
        by_seed[seed] = []
        for name in scans:
            for case in make_cases([name], ["noise"], seed):
                o = run_case(case, fulls[name])
                by_seed[seed].append(o)
                status = o.failed or f"id {len(o.identified)}/{len(o.evaluated)}"
                print(f"noise seed {seed:<3} {case.scan:<22} "
                      f"{'hint asked, ' if o.asked_for_hint else ''}{status} ({o.seconds:.0f} s)",
                      flush=True)
    print_table(seed_rows(by_seed), [("noise seed", "seed", ""), ("vertebrae", "vertebrae", ""),
                                     ("identified", "identified", ""), ID_RATE, MEDIAN_ERROR,
                                     ("worst case", "worst", "")])
    return by_seed


def main(argv=None) -> list[Outcome]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", nargs="+", default=list(SCANS), choices=list(SCANS))
    parser.add_argument("--groups", nargs="+", default=list(GROUPS), choices=list(GROUPS))
    parser.add_argument("--fast", action="store_true", help="the subset the tests run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--count-slivers", action="store_true",
                        help="score every labelled level, however little of it the shared scan shows")
    parser.add_argument("--timing", action="store_true",
                        help=f"time a {'x'.join(map(str, TIMING_SHAPE))} scan instead")
    parser.add_argument("--noise-seeds", type=_parse_seeds, default=None, metavar="S,S,...",
                        help="run only the noise group, once per seed, and print each draw's "
                             "and the pooled identification rate")
    args = parser.parse_args(argv)
    if args.noise_seeds:
        by_seed = run_noise_seeds(args.scans, args.noise_seeds, args.count_slivers)
        return [o for outcomes in by_seed.values() for o in outcomes]
    if args.timing:
        measure_timing()
        return []
    scans, groups = (FAST["scans"], FAST["groups"]) if args.fast else (args.scans, args.groups)
    outcomes = []

    def run(case: Case, full: dict) -> None:
        o = run_case(case, full)
        outcomes.append(o)
        status = o.failed or (f"id {len(o.identified)}/{len(o.evaluated)}, median "
                              f"{np.median(o.errors_mm) if o.errors_mm else float('nan'):.1f} mm")
        print(f"{case.group:<9} {case.scan:<22} {case.variant:<16} "
              f"{'hint asked, ' if o.asked_for_hint else ''}{status} ({o.seconds:.0f} s)",
              flush=True)

    scan_groups = [g for g in groups if g != "pelvis"]
    for name in scans if scan_groups else ():
        _, labels = _load(name)
        full = label_volumes_mm3(labels) if args.count_slivers else whole_volumes_mm3(labels)
        for case in make_cases([name], scan_groups, args.seed):
            run(case, full)
    if "pelvis" in groups:
        for case, full in pelvis_cases(args.seed):
            run(case, full)
    print_table(summarize(outcomes), [("group", "group", ""), ("cases", "cases", ""),
                                      ("vertebrae", "vertebrae", ""), ID_RATE, MEDIAN_ERROR,
                                      ("asked for a hint", "asked_for_hint", ""),
                                      ("failed", "failed", "")])
    return outcomes


if __name__ == "__main__":
    main()
