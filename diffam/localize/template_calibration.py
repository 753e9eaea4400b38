"""Constants of the localiser measured on the shipped templates.

The localiser's geometry is anatomy, not tuning: how far the solid centroid
lies in front of the body's posterior wall (:func:`wall_to_centroid_offset`,
:data:`~diffam.localize.detection.WALL_TO_CENTROID_MM`), and how much body past
an end disc holds a fifth of a cut vertebra's volume, the share at which label
maps count it (:func:`volume_fifth_fractions`,
:data:`~diffam.localize.end_segments.VOLUME_FIFTH_ABOVE` and ``_BELOW``).
Slow tests recompute them from the templates. The localiser's modules import
nothing from here, so the calibration needs no import cycle.
"""

from __future__ import annotations

import numpy as np
import torch

import diffsd
from diffam.localize.detection import WALL_TO_CENTROID_MM
from diffam.localize.end_segments import IN_VIEW_VOLUME
from diffam.localize.orientation import local_frame
from diffam.localize.periodicity import typical_period_mm


def volume_fifth_fractions(template, levels) -> dict[str, tuple[float, float]]:
    """Body length past each end disc that holds :data:`IN_VIEW_VOLUME` of a vertebra, per level.

    For each level of ``template`` (a :class:`~diffam.core.template.TemplateSet`)
    in ``levels``: its local frame (S along the line joining its neighbours'
    centroids, P the patient posterior made orthogonal), its inside on a 1 mm
    grid, its body (the inside more than
    :data:`~diffam.localize.detection.WALL_TO_CENTROID_MM` in front of the
    centroid) and the body's endplates (1st and 99th percentile of S). Returns
    level -> ``(from_inferior, from_superior)``: the height above the inferior
    endplate, and below the superior one, that holds that share of the whole
    vertebra's volume, as fractions of the level's typical period
    (:func:`~diffam.localize.periodicity.typical_period_mm`).
    """
    centroids = np.array([v.centroid() for v in template.vertebrae])
    order = np.argsort(-centroids[:, 2])  # head to tail
    out = {}
    for rank, n in enumerate(order):
        vertebra = template.vertebrae[n]
        if vertebra.level not in levels:
            continue
        up = centroids[order[max(rank - 1, 0)]]
        down = centroids[order[min(rank + 1, len(order) - 1)]]
        frame = local_frame(up - down)
        lo, hi = vertebra.vertices.min(0) - 1.0, vertebra.vertices.max(0) + 1.0
        axes = [np.arange(a, b, 1.0) for a, b in zip(lo, hi)]
        grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
        distance = diffsd.signed_distance(torch.as_tensor(vertebra.vertices),
                                          torch.as_tensor(vertebra.faces),
                                          torch.as_tensor(grid)).distance.numpy()
        inside = grid[distance < 0] - centroids[n]
        height, posterior = inside @ frame[:, 2], inside @ frame[:, 1]
        body = height[posterior < -WALL_TO_CENTROID_MM]
        inferior, superior = np.percentile(body, 1), np.percentile(body, 99)
        ordered = np.sort(height)
        share = int(IN_VIEW_VOLUME * len(ordered))
        period = typical_period_mm(vertebra.verse_id)
        out[vertebra.level] = (float(ordered[share] - inferior) / period,
                               float(superior - ordered[-1 - share]) / period)
    return out


def wall_to_centroid_offset(template) -> float:
    """Mean distance (mm) from the posterior body wall to the solid centroid in a template.

    Each vertebra's local frame has S along the line joining its neighbours'
    centroids and P the patient posterior made orthogonal to it; along the P
    line through the centroid, the wall is where the body ends posteriorly.
    (Lumbar template: L1 8.0, L2 6.5, L3 5.75, L4 5.0, L5 4.75 mm.)
    """
    centroids = np.array([v.centroid() for v in template.vertebrae])
    order = np.argsort(-centroids[:, 2])  # head to tail
    offsets = []
    r = np.arange(-60.0, 0.0, 0.25)
    for rank, n in enumerate(order):
        vertebra = template.vertebrae[n]
        up = centroids[order[max(rank - 1, 0)]]
        down = centroids[order[min(rank + 1, len(order) - 1)]]
        if np.allclose(up, down):
            frame = np.eye(3)
        else:
            frame = local_frame(up - down)
        pts = centroids[n] + r[:, None] * frame[:, 1]
        d = diffsd.signed_distance(
            torch.as_tensor(vertebra.vertices),
            torch.as_tensor(vertebra.faces),
            torch.as_tensor(pts),
        ).distance.numpy()
        inside = np.nonzero(d < 0)[0]
        if len(inside):
            offsets.append(-float(r[inside.max()]))
    return float(np.mean(offsets))
