#!/usr/bin/env python
"""Per-level proportions of template vertebrae against label maps: body, canal, arch.

Measures, in each vertebra's own frame (superior ``s`` along the spine,
anterior ``a``, lateral ``l``; the body split from the arch at the canal as
:mod:`diffam.core.body_centre` splits it), the same quantities on the
template's meshes (voxelised on a fine grid) and on label maps:

* ``body_d``: depth of the body (AP) in the mid-sagittal band at mid-height;
* ``body_w``: width of the body (lateral) through its centre;
* ``body_h``: height of the body along ``s`` at its centre;
* ``scd``: canal depth (the mid-sagittal gap between body and lamina);
* ``scw``: canal width (the lateral gap at the canal's centre, median over
  the body's middle half height);
* ``post``: reach of the arch behind the canal's posterior wall (the
  spinous process projected on the AP axis);
* ``ap``: AP extent of the whole vertebra in the mid-sagittal band;
* ``span``: lateral extent of the whole vertebra (transverse processes);
* ``off``: body centroid to whole centroid along ``a`` (what separates a body
  centre from a whole-vertebra centroid);
* ``share``: the body's share of the vertebra's volume.

Usage::

    python benchmarks/template_proportions.py                     # template vs chest and verse007
    python benchmarks/template_proportions.py --template path.npz --labels chest
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from diffam.core.body_centre import BAND_MM, anterior_axes, body_part, interior_points

#: Grid step for voxelising template meshes, mm (finer than any label map used here).
MESH_STEP_MM = 0.5
#: Half thickness of the slabs the extents are read in, mm (a few label voxels).
SLAB_MM = 3.0

SCANS = {
    "chest": ("ct/chest_t1_l2/labels_totalsegmentator.nii.gz", "totalsegmentator"),
    "verse007": ("ct/verse007_t9_l3_crop/labels_verse.nii.gz", "verse"),
    "verse008": ("ct/verse008_t12_l5_crop/labels_verse.nii.gz", "verse"),
    "verse005": ("ct/verse005_l1_l5_crop/labels_verse.nii.gz", "verse"),
}
KEYS = ("body_d", "body_w", "body_h", "scd", "scw", "post", "ap", "span", "off", "share")


def _extent(x: np.ndarray, step: float) -> float:
    return float(x.max() - x.min() + step) if len(x) else float("nan")


def _gap_around_zero(x: np.ndarray, step: float) -> float:
    """Width of the empty run around 0 in the sorted coordinates ``x`` (nan if open)."""
    left, right = x[x < 0], x[x > 0]
    if not len(left) or not len(right):
        return float("nan")
    return float(right.min() - left.max() - step)


def measure(points: np.ndarray, s_ax: np.ndarray, a_ax: np.ndarray, voxel: np.ndarray) -> dict:
    """The proportions of one solid given as points (N, 3) on a grid of ``voxel`` (3,) mm
    (world LPS sizes; a voxel's extent along an axis is added to every extent along it)."""
    l_ax = np.cross(s_ax, a_ax)
    step_s, step_a, step_l = (float(np.abs(u) @ voxel) for u in (s_ax, a_ax, l_ax))
    centre = points.mean(0)
    rel = points - centre
    s, a, lat = rel @ s_ax, rel @ a_ax, rel @ l_ax
    body = body_part(points, a_ax, l_ax)
    a_b, s_b, l_b = a[body].mean(), s[body].mean(), lat[body].mean()
    out = {"off": float(a_b), "share": float(body.mean())}
    band = np.abs(lat - l_b) <= BAND_MM
    mid = band & (np.abs(s - s_b) <= SLAB_MM)
    out["body_d"] = _extent(a[mid & body], step_a)
    out["body_w"] = _extent(lat[body & (np.abs(s - s_b) <= SLAB_MM) & (np.abs(a - a_b) <= SLAB_MM)], step_l)
    out["body_h"] = _extent(s[body & (np.abs(lat - l_b) <= SLAB_MM) & (np.abs(a - a_b) <= SLAB_MM)], step_s)
    wall = a[body].min()  # posterior wall of the body
    behind = mid & ~body & (a < wall)
    arch = np.sort(a[behind])
    out["scd"] = float(wall - arch.max() - step_a) if len(arch) else float("nan")
    back = wall - out["scd"] - step_a  # anterior surface of the lamina in the midline
    out["post"] = float(back - a[band].min()) if len(arch) else float("nan")
    out["ap"] = _extent(a[band], step_a)
    out["span"] = _extent(lat, step_l)
    a_c = wall - 0.5 * out["scd"]
    h = out["body_h"]
    gaps = []
    for z in np.arange(s_b - 0.25 * h, s_b + 0.25 * h + 1e-9, step_s):
        row = (np.abs(a - a_c) <= 1.5) & (np.abs(s - z) <= 0.5 * step_s + 1e-9)
        if row.any():
            gaps.append(_gap_around_zero(lat[row] - l_b, step_l))
    gaps = [g for g in gaps if np.isfinite(g)]
    out["scw"] = float(np.median(gaps)) if gaps else float("nan")
    return out


def template_rows(path: str | None, levels: list[str]) -> dict[str, dict]:
    from diffam.core.template import load_template

    tpl = load_template(path or "spine")
    rows = {}
    for v in tpl.vertebrae:
        if v.level not in levels:
            continue
        pts = interior_points(v.vertices, v.faces, MESH_STEP_MM)
        rows[v.level] = measure(pts, v.frame[:3, 2], -v.frame[:3, 1], np.full(3, MESH_STEP_MM))
    return rows


def label_rows(scan: str, data: Path) -> dict[str, dict]:
    from diffam.core.centroids import centroids_from_label_map
    from diffam.core.image import read_image
    from diffam.core.labels import level_name, totalsegmentator_to_verse

    rel, conv = SCANS[scan]
    vol = read_image(data / rel)
    lab = (totalsegmentator_to_verse(vol.array) if conv == "totalsegmentator"
           else np.rint(np.asarray(vol.array)).astype(np.int64))
    whole = centroids_from_label_map(vol, conv)
    ids = sorted(whole)
    cents = np.stack([whole[k] for k in ids])
    anterior, _ = anterior_axes(cents)
    up = np.gradient(cents, axis=0) if len(ids) > 1 else np.array([[0.0, 0.0, 1.0]])
    up /= np.linalg.norm(up, axis=1, keepdims=True)
    up *= np.sign(up[:, 2:3])
    voxel = np.abs(vol.direction) @ vol.spacing
    rows = {}
    for n, k in enumerate(ids):
        kk, j, i = np.nonzero(lab == k)
        if not len(i):
            continue
        if kk.min() == 0 or kk.max() == lab.shape[0] - 1:
            continue  # cut by the scan: its proportions are partial
        pts = vol.index_to_world(np.stack([i, j, kk], 1).astype(np.float64))
        rows[level_name(k)] = measure(pts, up[n], anterior[n], voxel)
    return rows


def _table(title: str, rows: dict[str, dict]) -> str:
    lines = [f"**{title}**", "", "| level | " + " | ".join(KEYS) + " |",
             "|---|" + "---|" * len(KEYS)]
    for lv, r in rows.items():
        lines.append(f"| {lv} | " + " | ".join(f"{r[k]:.2f}" if k == "share" else f"{r[k]:.1f}"
                                               for k in KEYS) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--template", default=None, help="template .npz (default: the shipped spine)")
    ap.add_argument("--labels", default="chest,verse007", help="comma list of " + ",".join(SCANS))
    args = ap.parse_args()
    data = Path(os.environ.get("DIFFAM_SHARED_DATA", "../shared/data"))
    scans = {s: label_rows(s, data) for s in args.labels.split(",") if s}
    levels = sorted({lv for r in scans.values() for lv in r} | {f"T{i}" for i in range(1, 13)} | {"L1"},
                    key=lambda x: ("CTL".index(x[0]), int(x[1:])))
    print(_table("template " + (args.template or "spine"), template_rows(args.template, levels)))
    for s, rows in scans.items():
        print()
        print(_table(s, rows))


if __name__ == "__main__":
    main()
