"""Coarse rigid search of the initial placement, before the fit.

Centroids can be off by a centimetre or more (a body centre taken for a
whole-vertebra centre, a hand-placed point, the localiser's guess), and the
gradient descent of the fit only sees a few millimetres around the surface.
This search moves each placed template vertebra rigidly to where its solid
best explains the scan:

* Score: the mean HU of the scan (blurred by ``BLUR_MM``, clipped to
  0..1000) at the placed vertebra's surface points: the surface should lie on
  the bright cortical shell. (A region score, solid against a shell around
  it, fails: the cancellous inside is darker than the cortex at the surface.)
  Points outside the scan's field of view are left out of the mean, and the
  mean is scaled by min(1, fraction in view / fraction in view at the
  start): leaving the scan never pays, and entering it pays only by what is
  seen there. A vertebra less than half in view at the start (cut by the
  border) is not searched: its centroid is all there is to go by.
* Stage 1, the whole column: one translation for all vertebrae, on a grid of
  +-``search_mm`` and then finer around the best.
* Stage 2, each vertebra: translations of +-``search_mm`` and rotations of
  +-``search_deg`` about each axis (one axis at a time, then refined), with a
  prior pulling the vertebra toward the position its neighbours imply (the
  midpoint of its neighbours, extrapolated at the ends), so that a vertebra
  started toward a neighbour lands on its own bone, not the neighbour's.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from diffam.fit.deformation import InitialTransform
from diffam.fit.field_of_view import FieldOfView

#: HU window of the score.
HU_RANGE = (0.0, 1000.0)
#: Blur of the scan for the score, mm.
BLUR_MM = 2.0
#: Surface points per vertebra (a subset of the vertices).
POINTS = 1500
#: Weight of the neighbour prior, HU: score - PRIOR_HU * (distance / spacing)^2.
PRIOR_HU = 60.0
#: Weight of the pull toward the start, HU: STAY_HU * ((move / search_mm)^2 + (turn / search_deg)^2),
#: so that a vertebra moves only for clear evidence.
STAY_HU = 15.0
#: A move is kept only when it raises the score by this fraction over the start:
#: a vertebra started on its bone stays there (the template's shape differs from
#: the patient's, so the best rigid pose of a correct start is a few mm off).
MIN_GAIN = 0.2


def _rotation(axis: int, degrees: float) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    r = np.eye(3)
    a, b = [(1, 2), (0, 2), (0, 1)][axis]
    r[a, a], r[a, b], r[b, a], r[b, b] = c, -s, s, c
    return r


class _Scorer:
    """Mean clipped HU at the surface points in view, scaled by the fraction in view."""

    def __init__(self, sampler):
        self.sampler = sampler.blurred(BLUR_MM)
        self.view = FieldOfView.of_sampler(sampler)

    def in_view(self, points: torch.Tensor) -> float:
        """Fraction of (N, 3) points in view."""
        return float(self.view.inside(points).double().mean())

    def scores(self, points: torch.Tensor, start_fraction: float = 1.0) -> torch.Tensor:
        """(C,) for candidate surface points (C, N, 3) mm."""
        c, n, _ = points.shape
        flat = points.reshape(-1, 3)
        hu = self.sampler.sample(flat.to(torch.float32)).clamp(*HU_RANGE).double()
        inside = self.view.inside(flat).double().reshape(c, n)
        count = inside.sum(1)
        mean = (hu.reshape(c, n) * inside).sum(1) / count.clamp_min(1.0)
        return mean * (count / n / max(start_fraction, 1e-6)).clamp(max=1.0)


def _translations(radius: float, step: float) -> np.ndarray:
    r = np.arange(-radius, radius + 1e-9, step)
    return np.array(list(itertools.product(r, r, r)))


def _prior_targets(centres: np.ndarray) -> np.ndarray | None:
    """Where the neighbours put each vertebra: the midpoint of its neighbours (extrapolated at ends)."""
    m = len(centres)
    if m < 3:
        return None
    out = np.empty_like(centres)
    out[1:-1] = 0.5 * (centres[:-2] + centres[2:])
    out[0] = 2 * centres[1] - centres[2]
    out[-1] = 2 * centres[-2] - centres[-3]
    return out


def rigid_search(
    sampler,
    template_vertices: np.ndarray,
    faces: np.ndarray,
    placement: InitialTransform,
    *,
    search_mm: float = 15.0,
    search_deg: float = 15.0,
    log=None,
) -> InitialTransform:
    """Refine ``placement`` by the coarse rigid search of the module docstring.

    Args:
        sampler: the scan (HU), :class:`diffam.fit.interpolation.VolumeSampler`.
        template_vertices: (M, V, 3) template vertices, mm (before placement).
        faces: (F, 3) shared faces.
        placement: the initial similarity per vertebra (from the centroids).
        search_mm: translation range per axis, mm.
        search_deg: rotation range about each axis, degrees.

    Returns:
        the refined :class:`InitialTransform` (same scales).
    """
    device = sampler.device
    placed = placement.apply(torch.as_tensor(template_vertices, dtype=torch.float64))
    m = placed.shape[0]
    centres = placed.mean(1).numpy()
    pick = torch.linspace(0, placed.shape[1] - 1, min(POINTS, placed.shape[1])).long()
    offsets = [(placed[k] - placed[k].mean(0))[pick].to(device) for k in range(m)]
    scorer = _Scorer(sampler)
    start_fraction = [scorer.in_view(torch.as_tensor(centres[k], device=device) + offsets[k])
                      for k in range(m)]
    searched = [f >= 0.5 for f in start_fraction]
    if not any(searched):
        return placement

    def column_score(shifts: np.ndarray) -> np.ndarray:
        t = torch.as_tensor(shifts, device=device)
        total = torch.zeros(len(shifts), dtype=torch.float64, device=device)
        for k in range(m):
            if searched[k]:
                base = torch.as_tensor(centres[k], device=device)
                points = base + offsets[k][None] + t[:, None, :]
                total += scorer.scores(points, start_fraction[k])
        return total.cpu().numpy()

    # Stage 1: the column as a whole.
    shift = np.zeros(3)
    for radius, step in ((search_mm, 2.5), (2.0, 1.0)):
        candidates = shift + _translations(radius, step)
        shift = candidates[int(np.argmax(column_score(candidates)))]
    start_score = float(column_score(np.zeros((1, 3)))[0])
    if float(column_score(shift[None])[0]) < start_score + MIN_GAIN * abs(start_score):
        shift = np.zeros(3)
    centres1 = centres + shift
    if log is not None:
        log.info('rigid search: column moved %s mm', np.round(shift, 1).tolist())

    # Stage 2: each vertebra, translations and rotations, with the neighbour prior.
    prior = _prior_targets(centres1)
    spacing = float(np.median(np.linalg.norm(np.diff(centres1, axis=0), axis=1))) if m > 1 else 1.0
    rotations = [np.eye(3)] + [_rotation(a, s * search_deg) for a in range(3) for s in (-1, 1)]
    fine_rot = [np.eye(3)] + [_rotation(a, s * search_deg / 3) for a in range(3) for s in (-1, 1)]
    new_rot, new_shift = [], []
    for k in range(m):
        best = (np.eye(3), np.zeros(3))
        if not searched[k]:  # cut by the border: keep it where the centroid put it
            new_rot.append(best[0])
            new_shift.append(-shift)
            continue
        for radius, step, rots in ((search_mm, 3.0, rotations), (3.0, 1.5, fine_rot),
                                   (1.0, 1.0, fine_rot)):
            trans = best[1] + _translations(radius, step)
            if radius == search_mm:  # also around the vertebra's own start, before stage 1
                trans = np.concatenate([trans, trans - shift])
            t = torch.as_tensor(trans, device=device)
            penalty = 0.0
            if prior is not None:
                d = np.linalg.norm(centres1[k] + trans - prior[k], axis=1) / spacing
                penalty = PRIOR_HU * d ** 2
            scores, options = [], []
            for r in rots:
                total = r @ best[0]
                rot = torch.as_tensor(total, device=device)
                turned = offsets[k] @ rot.T
                points = torch.as_tensor(centres1[k], device=device) + turned[None] + t[:, None, :]
                s = scorer.scores(points, start_fraction[k]).cpu().numpy()
                angle = math.degrees(math.acos(np.clip((np.trace(total) - 1) / 2, -1, 1)))
                stay = STAY_HU * ((np.linalg.norm(trans + shift, axis=1) / search_mm) ** 2
                                  + (angle / max(search_deg, 1e-9)) ** 2)
                scores.append(s - penalty - stay)
                options.append(total)
            scores = np.stack(scores)
            i, j = np.unravel_index(int(np.argmax(scores)), scores.shape)
            best = (options[i], trans[j])
        own = torch.as_tensor(centres[k], device=device) + offsets[k]
        turned = offsets[k] @ torch.as_tensor(best[0], device=device).T
        moved = torch.as_tensor(centres1[k] + best[1], device=device) + turned
        before = float(scorer.scores(own[None], start_fraction[k])[0])
        after = float(scorer.scores(moved[None], start_fraction[k])[0])
        if after < before + MIN_GAIN * abs(before):
            best = (np.eye(3), -shift)  # no clear gain: keep the start
        new_rot.append(best[0])
        new_shift.append(best[1])
        if log is not None:
            log.info("rigid search: vertebra %d moved %s mm", k, np.round(best[1], 1).tolist())

    # Compose: x'' = c1 + t + R (x' + shift - c1), x' = s R0 x + T0.
    r0 = placement.rotation.double().numpy()
    t0 = placement.translation.double().numpy()
    rotation = np.empty_like(r0)
    translation = np.empty_like(t0)
    for k in range(m):
        r = new_rot[k]
        rotation[k] = r @ r0[k]
        translation[k] = r @ (t0[k] + shift - centres1[k]) + centres1[k] + new_shift[k]
    return InitialTransform(torch.as_tensor(rotation), torch.as_tensor(translation),
                            placement.scale.clone())
