"""Vertebral BODY centres, of template meshes and of label maps.

VerSe centroid files (``*_ctd.json``) give the centre of the vertebral body,
not of the whole vertebra: on VerSe scans the body centre lies 11-15 mm
anterior of the whole vertebra's centre of mass. The template is placed by
one of the two, so both must be computable the same way on a template mesh
and on a label map.

Definition used everywhere here: the body is the part of the vertebra
anterior of the spinal canal. Along the vertebra's antero-posterior axis,
the solid points of a thin mid-sagittal band show a gap (the canal) between
the body (anterior) and the arch (posterior); the body centre is the centroid
of all solid points anterior of that gap's anterior end (the posterior wall
of the body; :func:`canal_posterior_wall`, which the body measurements of
:mod:`diffam.export.statistics` use too). When no gap is found, the anterior half (points anterior of
the whole centroid plus ``fallback_offset_mm``) is used.

Axes: superior ``u`` along the spine (the tangent of the curve through the
centroids, +z for a single vertebra), anterior ``a`` = LPS -y made
orthogonal to ``u``, lateral ``u x a``. A template with local frames uses
its frames (local +y is posterior).
"""

from __future__ import annotations

import numpy as np

from diffam.core.volume import Volume

Centroids = dict[int, np.ndarray]

#: Half width of the mid-sagittal band searched for the canal, mm.
BAND_MM = 5.0
#: Shortest empty run along the AP axis that counts as the canal, mm.
MIN_GAP_MM = 3.0
#: Solid runs along the AP axis shorter than this are specks, not bone closing the canal, mm.
SPECK_MM = 2.0


def anterior_axes(centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Anterior and lateral unit axes (M, 3) for centroids (M, 3) ordered along the spine."""
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 3)
    if len(centres) >= 2:
        up = np.gradient(centres, axis=0)
        up /= np.linalg.norm(up, axis=1, keepdims=True).clip(1e-9)
        up *= np.sign(up[:, 2:3] + 1e-12)  # superior: +z in LPS
    else:
        up = np.array([[0.0, 0.0, 1.0]])
    front = np.array([0.0, -1.0, 0.0])
    anterior = front - (up @ front)[:, None] * up
    anterior /= np.linalg.norm(anterior, axis=1, keepdims=True).clip(1e-9)
    lateral = np.cross(up, anterior)
    return anterior, lateral


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` index pairs of the runs of True in a 1D bool array."""
    padded = np.concatenate([[False], flags, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2], edges[1::2]))


def canal_posterior_wall(occupied: np.ndarray, coordinates_mm: np.ndarray, step_mm: float, *,
                         min_gap_mm: float = MIN_GAP_MM, speck_mm: float = SPECK_MM
                         ) -> float | None:
    """Where the vertebral body begins along the anterior axis: the anterior end of the canal.

    The one body/canal split of the package (body centres here, body
    measurements in :mod:`diffam.export.statistics`).

    Args:
        occupied: bool per bin along the anterior axis (index increasing
            anteriorly): whether the vertebra has solid points in that bin.
        coordinates_mm: the bins' centres along the anterior axis, mm.
        step_mm: bin width, mm.
        min_gap_mm: shortest empty run that counts as the canal.
        speck_mm: solid runs shorter than this are noise (a stray voxel, a
            thin bridge), not bone that closes a gap.

    Returns:
        The anterior-axis coordinate (mm) of the posterior wall of the body,
        i.e. the start of the anterior-most solid run that has a canal behind
        it; None when no gap of ``min_gap_mm`` is found.
    """
    runs = [r for r in _runs(np.asarray(occupied, bool)) if (r[1] - r[0]) * step_mm >= speck_mm]
    for (_, stop_behind), (start, _) in zip(runs[::-1][1:], runs[::-1][:-1]):
        if (start - stop_behind) * step_mm >= min_gap_mm:
            return float(coordinates_mm[start]) - step_mm / 2
        # a gap too short to be the canal: the run behind belongs to the body too
    return None


def body_part(points: np.ndarray, anterior: np.ndarray, lateral: np.ndarray,
              *, bin_mm: float = 1.0, fallback_offset_mm: float = 0.0) -> np.ndarray:
    """(N,) bool: the solid ``points`` (N, 3) anterior of the canal (see module docstring)."""
    points = np.asarray(points, dtype=np.float64)
    centre = points.mean(0)
    s = (points - centre) @ anterior
    band = np.abs((points - centre) @ lateral) <= BAND_MM
    cut = None
    if band.sum() >= 4:
        sb = s[band]
        edges = np.arange(sb.min(), sb.max() + bin_mm, bin_mm)
        if len(edges) >= 3:
            counts, edges = np.histogram(sb, bins=edges)
            cut = canal_posterior_wall(counts > 0, edges[:-1] + bin_mm / 2, bin_mm)
    body = s >= (fallback_offset_mm if cut is None else cut)
    if not body.any():
        body = s >= 0
    return body


def body_centre_of_points(points: np.ndarray, anterior: np.ndarray, lateral: np.ndarray,
                          *, bin_mm: float = 1.0, fallback_offset_mm: float = 0.0) -> np.ndarray:
    """Centroid of the solid ``points`` (N, 3) anterior of the canal (see module docstring)."""
    points = np.asarray(points, dtype=np.float64)
    return points[body_part(points, anterior, lateral, bin_mm=bin_mm,
                            fallback_offset_mm=fallback_offset_mm)].mean(0)


def interior_points(vertices: np.ndarray, faces: np.ndarray, step_mm: float) -> np.ndarray:
    """Grid points (step_mm apart) inside a closed mesh."""
    import torch

    import diffsd

    lo, hi = vertices.min(0), vertices.max(0)
    axes = [np.arange(a + 0.5 * step_mm, b, step_mm) for a, b in zip(lo, hi)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    v = torch.as_tensor(vertices, dtype=torch.float64)
    f = torch.as_tensor(np.asarray(faces), dtype=torch.int64)
    d = diffsd.signed_distance(v, f, torch.as_tensor(grid)).distance.numpy()
    return grid[d < 0]


def template_body_points(template, *, step_mm: float = 2.0,
                         only: list[int] | None = None) -> list[np.ndarray]:
    """Grid points (``step_mm`` apart) inside the body of every vertebra of a template set
    (of the vertebrae at the indices ``only``, in that order, when given).

    Uses each vertebra's local frame for the axes when the template has frames
    (local +y is posterior, +x lateral), the centroid curve otherwise.
    """
    vertebrae = list(template.vertebrae)
    solids = [np.stack([v.centroid()]) for v in vertebrae]
    anterior, lateral = anterior_axes(np.concatenate(solids))
    out = []
    for m in range(len(vertebrae)) if only is None else only:
        v = vertebrae[m]
        a, lat = anterior[m], lateral[m]
        if getattr(v, "frame", None) is not None:
            a, lat = -v.frame[:3, 1], v.frame[:3, 0]
        points = interior_points(v.vertices, v.faces, step_mm)
        out.append(points[body_part(points, a, lat)])
    return out


def template_body_centres(template, *, step_mm: float = 2.0) -> np.ndarray:
    """Body centre (M, 3) mm of every vertebra of a template set, from its meshes
    (the centroid of :func:`template_body_points`)."""
    return np.stack([p.mean(0) for p in template_body_points(template, step_mm=step_mm)])


def body_centres_from_label_map(volume: Volume, convention: str = "verse") -> Centroids:
    """Body centre (LPS mm) of every vertebra of a label map (see module docstring).

    Args:
        volume: label map.
        convention: ``verse`` or ``totalsegmentator`` label values.
    """
    from diffam.core.centroids import centroids_from_label_map
    from diffam.core.labels import totalsegmentator_to_verse

    whole = centroids_from_label_map(volume, convention)
    if not whole:
        return {}
    if convention == "totalsegmentator":
        labels = totalsegmentator_to_verse(volume.array)
    else:
        labels = np.rint(np.asarray(volume.array)).astype(np.int64)
    ids = sorted(whole)
    anterior, lateral = anterior_axes(np.stack([whole[k] for k in ids]))
    out: Centroids = {}
    for n, label in enumerate(ids):
        k, j, i = np.nonzero(labels == label)
        points = volume.index_to_world(np.stack([i, j, k], 1).astype(np.float64))
        out[label] = body_centre_of_points(points, anterior[n], lateral[n])
    return out

