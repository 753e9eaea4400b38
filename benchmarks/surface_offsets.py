#!/usr/bin/env python
"""Where fitted surfaces miss the ground truth: signed surface distances per vertebra and region.

Reads fits saved by ``bench_accuracy.py --save-fits`` (``.npz``: vertices LPS mm,
faces, VerSe ids) and, for every fitted vertebra with ground truth, samples the
ground truth's signed distance (mm, > 0 outside the true mask; from Euclidean
distance transforms on the scan's grid, so good to about half a voxel) at the
fitted vertices. The vertices are grouped by the template's local frame (x
left, y posterior, z superior; the body is the part anterior of the mean
vertex, as for the gap loss):

* ``body_sup`` / ``body_inf``: body vertices whose normal points up / down
  (the endplates), ``body_wall``: the rest of the body, ``posterior``: the arch;
  each with the median signed distance and the share beyond +-1.5 mm;
* ``shift``: the least-squares fit ``d(x) = a + n(x) . s`` over the body and
  over the arch, ``a`` the swelling (mm, > 0: too large) and ``s`` the
  displacement (mm) in the vertebra's local frame (``sz`` > 0: too high).

    python benchmarks/bench_accuracy.py --scans chest --centroids vertebra --save-fits \\
        --output /tmp/acc
    python benchmarks/surface_offsets.py chest /tmp/acc/fits/chest_vertebra_base.npz
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_accuracy import SCANS, ground_truth  # noqa: E402

from diffam.core.labels import level_name  # noqa: E402
from diffam.core.template import load_template  # noqa: E402

#: Normals steeper than this (|n_z| in the local frame) make a body vertex an endplate.
ENDPLATE_NORMAL_Z = 0.6
#: Offsets beyond this (mm) count as off in the shares printed.
OFF_MM = 1.5
#: Vertices farther than this from the true surface (mm) are left out of the
#: displacement fit (a vertebra on the wrong bone is not a displacement).
SHIFT_FIT_REACH_MM = 8.0
#: Voxels of margin around each true mask for its distance transform.
MARGIN_VOXELS = 12


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) unit area-weighted vertex normals."""
    normals = np.zeros_like(vertices)
    face_normal = np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]],
                           vertices[faces[:, 2]] - vertices[faces[:, 0]])
    for corner in range(3):
        np.add.at(normals, faces[:, corner], face_normal)
    return normals / np.linalg.norm(normals, axis=1, keepdims=True).clip(1e-12)


def regions(local: np.ndarray, faces: np.ndarray) -> dict[str, np.ndarray]:
    """Vertex masks of the body's endplates, its wall and the arch (local frame)."""
    normal_z = vertex_normals(local, faces)[:, 2]
    body = local[:, 1] < local[:, 1].mean()
    return {"body_sup": body & (normal_z > ENDPLATE_NORMAL_Z),
            "body_inf": body & (normal_z < -ENDPLATE_NORMAL_Z),
            "body_wall": body & (np.abs(normal_z) <= ENDPLATE_NORMAL_Z),
            "posterior": ~body}


def signed_distance_of_mask(mask: np.ndarray, spacing_zyx: np.ndarray):
    """(slices, signed distance mm) of a (Z, Y, X) mask over its box plus a margin."""
    box = ndimage.find_objects(mask.astype(np.int8))[0]
    box = tuple(slice(max(s.start - MARGIN_VOXELS, 0), s.stop + MARGIN_VOXELS) for s in box)
    inside = mask[box]
    return box, (ndimage.distance_transform_edt(~inside, sampling=spacing_zyx)
                 - ndimage.distance_transform_edt(inside, sampling=spacing_zyx))


def displacement(distance, normals, rotation, mask) -> np.ndarray:
    """(swelling, sx, sy, sz) mm of ``d = a + n . s`` over ``mask``, s in the local frame."""
    use = mask & (np.abs(distance) < SHIFT_FIT_REACH_MM)
    design = np.c_[np.ones(use.sum()), normals[use]]
    coefficients = np.linalg.lstsq(design, distance[use], rcond=None)[0]
    return np.r_[coefficients[0], rotation.T @ coefficients[1:]]


def report(scan_name: str, fit_path: Path, template_name: str = "spine") -> list[str]:
    image, _, truth, levels = ground_truth(SCANS[scan_name])
    spacing_zyx = np.asarray(image.spacing)[::-1]
    template = load_template(template_name)
    fit = np.load(fit_path)
    lines = [f"{fit_path}: signed distance mm (> 0 outside the truth): median, share > "
             f"+{OFF_MM}, share < -{OFF_MM}; shift: swelling and displacement (x left, "
             "y posterior, z superior)",
             "level | body_sup | body_inf | body_wall | posterior | body shift a sx sy sz | "
             "arch shift a sx sy sz"]
    for vertices, vid in zip(fit["vertices"], fit["verse_ids"]):
        vid = int(vid)
        if vid not in levels:
            continue
        local = template.by_level(level_name(vid)).local_vertices()
        centred_local, centred = local - local.mean(0), vertices - vertices.mean(0)
        u, _, vt = np.linalg.svd(centred_local.T @ centred)
        rotation = (u @ vt).T  # local -> world (vertices correspond to the template's)
        box, distance_field = signed_distance_of_mask(truth == vid, spacing_zyx)
        index = image.world_to_index(vertices)[:, ::-1].T - np.array([s.start for s in box])[:, None]
        distance = ndimage.map_coordinates(distance_field, index, order=1, mode="nearest")
        parts = regions(local, fit["faces"])
        cells = [f"{np.median(distance[m]):+5.2f} {np.mean(distance[m] > OFF_MM):.2f} "
                 f"{np.mean(distance[m] < -OFF_MM):.2f}" for m in parts.values()]
        normals = vertex_normals(vertices, fit["faces"])
        body = parts["body_sup"] | parts["body_inf"] | parts["body_wall"]
        for mask in (body, parts["posterior"]):
            cells.append(" ".join(f"{x:+5.2f}" for x in displacement(distance, normals, rotation,
                                                                      mask)))
        lines.append(f"{level_name(vid):4s} | " + " | ".join(cells))
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("scan", choices=sorted(SCANS))
    parser.add_argument("fits", type=Path, nargs="+", help="npz files of bench_accuracy --save-fits")
    parser.add_argument("--template", default="spine")
    args = parser.parse_args(argv)
    for path in args.fits:
        print("\n".join(report(args.scan, path, args.template)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
