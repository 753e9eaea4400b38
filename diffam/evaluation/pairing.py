"""Pairing predicted and ground-truth label files by file-name stem.

The stem of ``sub-01.nii.gz`` is ``sub-01`` (double suffixes such as
``.nii.gz`` are removed whole). Optional suffixes (e.g. ``_seg`` or
``_seg-vert_msk``) can be stripped from the stems of either side so that
``sub-01_seg.nii.gz`` pairs with ``sub-01.nii.gz``.

A folder may also hold run folders of ``scripts/segment.py`` (folder mode or
multirun): ``<case>/labels.nii.gz`` is then named ``<case>`` (the folder
name, strip suffixes applied), so ``pred=results/`` pairs with
``gt=labels/<case>.nii.gz``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from diffam.core.image import IMAGE_SUFFIXES, image_stem

#: Name (without extension) of the label map inside a run folder of scripts/segment.py.
RUN_LABELS_STEM = "labels"

def stem(path: str | Path, strip: Sequence[str] = ()) -> str:
    """File-name stem without the image extension and stripped suffixes (``sub-01``).

    See :func:`diffam.core.image.image_stem`.
    """
    return image_stem(path, tuple(strip))


def display_name(path: Path) -> str:
    """File name, with its folder for a run folder's ``labels.nii.gz``."""
    path = Path(path)
    if stem(path) == RUN_LABELS_STEM and path.parent.name:
        return f"{path.parent.name}/{path.name}"
    return path.name


@dataclass
class Pairing:
    """Result of pairing.

    Attributes:
        pairs: ``(case, pred_path, gt_path)`` sorted by case.
        unpaired_pred: Prediction files without a ground truth.
        unpaired_gt: Ground-truth files without a prediction.
    """

    pairs: list[tuple[str, Path, Path]] = field(default_factory=list)
    unpaired_pred: list[Path] = field(default_factory=list)
    unpaired_gt: list[Path] = field(default_factory=list)

    def report(self) -> str:
        """Human-readable summary of what was and was not paired."""
        lines = [f"{len(self.pairs)} pair(s) of prediction and ground truth"]
        if self.unpaired_pred:
            lines.append(
                f"{len(self.unpaired_pred)} prediction(s) without ground truth: "
                + ", ".join(display_name(p) for p in self.unpaired_pred)
            )
        if self.unpaired_gt:
            lines.append(
                f"{len(self.unpaired_gt)} ground truth(s) without prediction: "
                + ", ".join(display_name(p) for p in self.unpaired_gt)
            )
        return "\n".join(lines)


def list_images(folder: Path, pattern: str = "*") -> list[Path]:
    """Image files directly inside ``folder`` whose names match ``pattern``.

    Args:
        folder: A directory.
        pattern: fnmatch pattern on the file name (e.g. ``"*_seg.nii.gz"``).

    Returns:
        Sorted files with a recognised image extension (``.raw`` and other
        side files of ``.mhd``/``.hdr`` are not listed).
    """
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file()
        and fnmatch.fnmatch(p.name, pattern)
        and any(p.name.lower().endswith(s) for s in IMAGE_SUFFIXES)
    )


def _run_labels(folder: Path) -> Path | None:
    """The label map of a run folder (``labels.nii.gz``, or ``labels.<ext>``), if any."""
    for suf in IMAGE_SUFFIXES:
        path = folder / f"{RUN_LABELS_STEM}{suf}"
        if path.is_file():
            return path
    return None


def list_run_folders(folder: Path) -> list[Path]:
    """Label maps of run folders directly inside ``folder``: ``<case>/labels.nii.gz``.

    Args:
        folder: A directory, e.g. the ``output_dir`` of a folder-mode run or
            the sweep dir of a multirun of ``scripts/segment.py``.

    Returns:
        Sorted paths of the label maps found (``labels.<ext>``, any image
        extension; ``.nii.gz`` first when a folder holds several).
    """
    found = (_run_labels(d) for d in sorted(folder.iterdir()) if d.is_dir())
    return [p for p in found if p is not None]


def _strip(name: str, strip: Sequence[str]) -> str:
    for suf in strip:
        if suf and name.endswith(suf) and len(name) > len(suf):
            return name[: -len(suf)]
    return name


def _by_stem(
    files: list[Path], strip: Sequence[str], side: str, runs: Sequence[Path] = ()
) -> dict[str, Path]:
    out: dict[str, Path] = {}
    keyed = [(stem(f, strip), f) for f in files] + [(_strip(r.parent.name, strip), r) for r in runs]
    for key, f in keyed:
        if key in out:
            raise ValueError(
                f"{side}: {display_name(out[key])} and {display_name(f)} have the same stem "
                f"'{key}'; remove one or narrow the file pattern"
            )
        out[key] = f
    return out


def pair_paths(
    pred: str | Path,
    gt: str | Path,
    pattern: str = "*",
    pred_strip: Sequence[str] = (),
    gt_strip: Sequence[str] = (),
) -> Pairing:
    """Pair prediction and ground-truth files.

    Args:
        pred: A prediction file, or a folder of them.
        gt: A ground-truth file, or a folder of them (same kind as ``pred``).
            Folders may also hold run folders ``<case>/labels.nii.gz``
            (outputs of ``scripts/segment.py``), named by the folder.
        pattern: fnmatch pattern selecting files in folders (not applied to
            run folders).
        pred_strip: Suffixes stripped from prediction stems before matching.
        gt_strip: Suffixes stripped from ground-truth stems before matching.

    Returns:
        A :class:`Pairing`. Two files always form one pair, named after the
        ground-truth stem, whatever their names.

    Raises:
        FileNotFoundError: When a path does not exist.
        ValueError: When one path is a file and the other a folder, or two
            files of one folder share a stem.
    """
    pred, gt = Path(pred), Path(gt)
    for p, side in ((pred, "pred"), (gt, "gt")):
        if not p.exists():
            raise FileNotFoundError(f"{side}={p} does not exist")
    if pred.is_file() and gt.is_file():
        return Pairing(pairs=[(stem(gt, gt_strip), pred, gt)])
    if pred.is_file() != gt.is_file():
        raise ValueError(f"pred={pred} and gt={gt} must both be files or both be folders")
    p_map = _by_stem(list_images(pred, pattern), pred_strip, "pred", list_run_folders(pred))
    g_map = _by_stem(list_images(gt, pattern), gt_strip, "gt", list_run_folders(gt))
    common = sorted(set(p_map) & set(g_map))
    return Pairing(
        pairs=[(k, p_map[k], g_map[k]) for k in common],
        unpaired_pred=[p_map[k] for k in sorted(set(p_map) - set(g_map))],
        unpaired_gt=[g_map[k] for k in sorted(set(g_map) - set(p_map))],
    )
