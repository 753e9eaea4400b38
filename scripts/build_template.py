#!/usr/bin/env python
"""Build a diffam template set from labelled CT scans or vertebra meshes.

Every level of the reference template (default: the shipped ``spine`` set) is
fitted to each subject's surface of that level with diffsd; the mean of the
fits (Procrustes) becomes the level's mesh. All levels keep the reference's
shared connectivity, so the result works anywhere a shipped template does
(``template.name=path/to/set.npz``).

Examples::

    # label maps (VerSe ids; --labels totalsegmentator for TotalSegmentator v2)
    python scripts/build_template.py --masks s1_seg.nii.gz s2_seg.nii.gz --output my_spine.npz
    # meshes of one level
    python scripts/build_template.py --mesh L1=sub1_L1.ply --mesh L1=sub2_L1.stl --output l1.npz
    python scripts/build_template.py --mesh-glob 'L1=meshes/*_L1.ply' --output l1.npz
"""

from __future__ import annotations

import argparse
import glob
import sys
import time
from collections import defaultdict

from diffam.template_from_data import (
    FitOptions,
    build_template_set,
    load_mesh,
    surfaces_from_label_map,
)


def _level_path(arg: str) -> tuple[str, str]:
    if "=" not in arg:
        raise argparse.ArgumentTypeError(f"expected LEVEL=PATH, got {arg!r}")
    level, path = arg.split("=", 1)
    return level.strip().upper(), path


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    src = p.add_argument_group("inputs (any combination; several subjects per level are averaged)")
    src.add_argument("--masks", nargs="+", default=[], metavar="LABELMAP",
                     help="label maps (NIfTI/MHA/NRRD/DICOM), one per subject")
    src.add_argument("--labels", choices=["verse", "totalsegmentator"], default="verse",
                     help="label convention of --masks (default: verse)")
    src.add_argument("--mesh", action="append", type=_level_path, default=[], metavar="LEVEL=PATH",
                     help="a PLY/STL/OBJ surface of one level, world LPS mm (repeatable)")
    src.add_argument("--mesh-glob", action="append", type=_level_path, default=[],
                     metavar="LEVEL=PATTERN", help="all meshes matching a glob pattern for one level")
    p.add_argument("--output", "-o", required=True, help="output template file (.npz)")
    p.add_argument("--name", default=None, help="name of the set (default: output file stem)")
    p.add_argument("--levels", nargs="+", default=None, help="levels to build (default: all found)")
    p.add_argument("--reference", default="spine",
                   help="template set (name or .npz) giving the common connectivity (default: spine)")
    p.add_argument("--smooth", type=int, default=10, help="Taubin iterations on mask surfaces")
    p.add_argument("--min-subjects", type=int, default=1, help="skip levels with fewer subjects")
    p.add_argument("--steps", type=int, default=200, help="Adam steps per fit")
    p.add_argument("--modes", type=int, default=80, help="Laplace-Beltrami modes of the fit")
    p.add_argument("--samples", type=int, default=4000, help="subject surface samples per step")
    p.add_argument("--eigenmodes", type=int, default=0,
                   help="store this many eigenpairs of the mean local shape in the set")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    subjects: dict[str, list] = defaultdict(list)
    for path in args.masks:
        for level, mesh in surfaces_from_label_map(
            path, convention=args.labels, levels=args.levels, smooth_iterations=args.smooth
        ).items():
            subjects[level].append(mesh)
    for level, path in args.mesh:
        subjects[level].append(load_mesh(path))
    for level, pattern in args.mesh_glob:
        paths = sorted(glob.glob(pattern))
        if not paths:
            print(f"error: no file matches {pattern!r}", file=sys.stderr)
            return 2
        subjects[level].extend(load_mesh(q) for q in paths)
    if args.levels:
        subjects = {lv: s for lv, s in subjects.items() if lv in args.levels}
    subjects = {lv: s for lv, s in subjects.items() if len(s) >= args.min_subjects}
    if not subjects:
        print("error: no subject surfaces (give --masks, --mesh or --mesh-glob)", file=sys.stderr)
        return 2
    opt = FitOptions(steps=args.steps, modes=args.modes, samples=args.samples, seed=args.seed)
    t0 = time.time()
    name = args.name or args.output.rsplit("/", 1)[-1].removesuffix(".npz")
    tpl, models = build_template_set(
        subjects, reference=args.reference, name=name, options=opt,
        eigenmodes=args.eigenmodes, verbose=not args.quiet,
    )
    path = tpl.save(args.output)
    for lv, m in models.items():
        res = [f.residual for f in m.fits]
        print(f"{lv}: {len(res)} subject(s), fit residual mean {sum(res) / len(res):.2f} mm")
    print(f"wrote {path} ({len(tpl)} levels, {len(tpl.faces)} faces each) in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    # Tables use non-ASCII signs (e.g. +-); never crash on a terminal in the C locale.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
    sys.exit(main())
