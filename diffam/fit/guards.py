"""Guard neighbours: the vertebra just beyond each end of the given run, fitted and then dropped.

An end vertebra whose neighbour is in view but not fitted explains that
neighbour's bone by growing into it: nothing else in the model accounts for
it. On the chest CT (``benchmarks/bench_accuracy.py``, centroids for T1-L1
only, C7 and L2 in view) T1's mask lay 33 % on C7 and L1's 23 % on L2 (Dice
60 and 69); with C7 and L2 fitted as well, the overlap loss keeps the
neighbours apart and T1 and L1 reach 87 and 89. So the level beyond each end
is fitted too, from a centroid extrapolated one spacing beyond the end, when
that centroid lies in the scan; it is removed from every output (label map,
meshes, reports). Where the scan ends at the last vertebra (tight crops) the
extrapolated centroid lies outside and nothing changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from diffam.core.volume import Volume


def guard_centroids(
    centroids: Mapping[int, np.ndarray],
    template_ids: Iterable[int],
    volume: Volume,
) -> dict[int, np.ndarray]:
    """Extrapolated centroids of the levels just beyond each end of ``centroids``.

    Args:
        centroids: VerSe id -> (3,) LPS mm, the levels to be fitted (two or more
            give a direction; with fewer no guard is added).
        template_ids: VerSe ids the template can fit.
        volume: the scan; a guard whose centroid lies outside it is not added.

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
        if bool(volume.contains_world(point)):
            guards[beyond] = point
    return guards
