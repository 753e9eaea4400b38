"""``diffam-build-template``: build a template set from labelled scans or vertebra meshes.

Every level of the reference template (default: the shipped ``spine`` set) is
fitted to each subject's surface of that level with diffsd; the mean of the
fits (Procrustes) becomes the level's mesh. All levels keep the reference's
shared connectivity, so the result works anywhere a shipped template does
(``template.name=path/to/set.npz``). ``procedural=true`` regenerates the
shipped ``spine`` and ``lumbar`` sets from the published measurements instead.

Examples::

    diffam-build-template masks=[s1_seg.nii.gz,s2_seg.nii.gz] output=my_spine.npz
    diffam-build-template labels=totalsegmentator masks=[ts.nii.gz] output=ts.npz
    diffam-build-template 'meshes={L1: [sub1_L1.ply, "meshes/*_L1.ply"]}' output=l1.npz
"""

from __future__ import annotations

import glob
import sys
import time
from collections import defaultdict
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from diffam.cli.terminal import tolerate_any_terminal
from diffam.core.resources import config_dir

EXIT_BAD_SETTINGS = 2


def _subject_surfaces(cfg: DictConfig) -> dict[str, list]:
    from diffam.authoring.subject_surfaces import load_mesh, surfaces_from_label_map

    levels = list(cfg.levels) if cfg.levels else None
    subjects: dict[str, list] = defaultdict(list)
    for path in cfg.masks:
        found = surfaces_from_label_map(
            path, convention=cfg.labels, levels=levels, smooth_iterations=cfg.smooth_iterations
        )
        for level, mesh in found.items():
            subjects[level].append(mesh)
    for level, entries in OmegaConf.to_container(cfg.meshes).items():
        for entry in [entries] if isinstance(entries, str) else entries:
            paths = sorted(glob.glob(entry)) if glob.has_magic(entry) else [entry]
            if not paths:
                raise SystemExit(f"error: no file matches {entry!r} (meshes.{level})")
            subjects[level.upper()].extend(load_mesh(p) for p in paths)
    if levels:
        subjects = {lv: s for lv, s in subjects.items() if lv in levels}
    return {lv: s for lv, s in subjects.items() if len(s) >= cfg.min_subjects}


def _build_procedural(cfg: DictConfig) -> int:
    from diffam.authoring.template_builder import write_shipped_templates

    folder = Path(cfg.output) if cfg.output else config_dir().parent / "templates"
    for path in write_shipped_templates(folder, overwrite=cfg.overwrite, verbose=not cfg.quiet):
        print("wrote", path)
    return 0


def run(cfg: DictConfig) -> int:
    """Build as configured; returns the process exit status."""
    if cfg.procedural:
        return _build_procedural(cfg)
    from diffam.authoring.template_from_data import FitOptions, build_template_set

    if not cfg.output:
        print("error: pass output=my_set.npz", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    subjects = _subject_surfaces(cfg)
    if not subjects:
        print("error: no subject surfaces (give masks=[...] or meshes={LEVEL: [...]})",
              file=sys.stderr)
        return EXIT_BAD_SETTINGS
    options = FitOptions(steps=cfg.steps, modes=cfg.modes, samples=cfg.samples, seed=cfg.seed)
    t0 = time.time()
    output = Path(cfg.output)
    name = cfg.name or output.name.removesuffix(".npz")
    tpl, models = build_template_set(
        subjects, reference=cfg.reference, name=name, options=options,
        eigenmodes=cfg.eigenmodes, verbose=not cfg.quiet,
    )
    path = tpl.save(output)
    for lv, m in models.items():
        res = [f.residual for f in m.fits]
        print(f"{lv}: {len(res)} subject(s), fit residual mean {sum(res) / len(res):.2f} mm")
    print(f"wrote {path} ({len(tpl)} levels, {len(tpl.faces)} faces each) "
          f"in {time.time() - t0:.0f} s")
    return 0


@hydra.main(config_path=str(config_dir()), config_name="build_template", version_base="1.3")
def _main(cfg: DictConfig) -> None:
    status = run(cfg)
    if status:
        sys.exit(status)


def main() -> None:
    """Console entry point (``diffam-build-template``, ``python scripts/build_template.py``)."""
    tolerate_any_terminal()
    _main()
