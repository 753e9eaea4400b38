"""Guard neighbours: the vertebra just beyond each end of the given run, fitted and then dropped.

An end vertebra whose neighbour is in view but not fitted explains that
neighbour's bone by growing into it: nothing else in the model accounts for
it. On the chest CT (``benchmarks/bench_accuracy.py``, centroids for T1-L1
only, C7 and L2 in view) T1's mask lay 33 % on C7 and L1's 23 % on L2 (Dice
60 and 69); with C7 and L2 fitted as well, the overlap loss keeps the
neighbours apart and T1 and L1 reach 87 and 89. So the level beyond each end
is fitted too, from a centroid extrapolated one spacing beyond the end, when
that centroid lies in the scan; it is removed from every output (label map,
meshes, reports). Where a tight crop ends at the last vertebra asked for, the
neighbour beyond it is cut by the crop but partly in view (thoracic spinous
processes and facets reach a level down): its extrapolated centroid lies
just outside the scan, and it is fitted still when that centroid is at most
``outside_mm`` outside (``optim.guard_outside_mm``); the fit ignores the part
out of view (:mod:`diffam.fit.field_of_view`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from diffam.core.volume import Volume


def guard_centroids(
    centroids: Mapping[int, np.ndarray],
    template_ids: Iterable[int],
    volume: Volume,
    outside_mm: float = 0.0,
) -> dict[int, np.ndarray]:
    """Extrapolated centroids of the levels just beyond each end of ``centroids``.

    Args:
        centroids: VerSe id -> (3,) LPS mm, the levels to be fitted (two or more
            give a direction; with fewer no guard is added).
        template_ids: VerSe ids the template can fit.
        volume: the scan; a guard whose centroid lies outside it by more than
            ``outside_mm`` (from the box of voxel centres) is not added.
        outside_mm: how far outside the scan a guard's centroid may lie, mm.

    Returns:
        VerSe id -> (3,) LPS mm for each guard level (at most two): the end
        centroid plus the mean step per level between the end and its nearest
        given level, for a level the template has and ``centroids`` lack.
    """
    ids = sorted(centroids)
    available = set(template_ids)
    guards: dict[int, np.ndarray] = {}
    if len(ids) < 2:
        return guards
    for end, inner, beyond in ((ids[0], ids[1], ids[0] - 1), (ids[-1], ids[-2], ids[-1] + 1)):
        if beyond not in available or beyond in centroids:
            continue
        step = (np.asarray(centroids[end], float) - np.asarray(centroids[inner], float)) / (end - inner)
        point = np.asarray(centroids[end], float) + step * (beyond - end)
        if bool(volume.contains_world(point)) or _depth_mm(volume, point) >= -outside_mm:
            guards[beyond] = point
    return guards


def _depth_mm(volume: Volume, point: np.ndarray) -> float:
    """Signed distance (mm) of ``point`` to the box of voxel centres, > 0 inside."""
    import torch

    from diffam.fit.field_of_view import FieldOfView

    view = FieldOfView.of_volume(volume)
    return float(view.depth(torch.as_tensor(point, dtype=torch.float64)[None])[0])
