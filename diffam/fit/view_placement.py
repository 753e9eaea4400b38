"""Centroids of vertebrae cut by the scan's border: they locate the part in view.

A centroid made from a label map (or found in the image) of a vertebra that
the border cuts is the centre of the vertebra's part in view, not of the
whole vertebra. Placing the whole template's centre on it puts the template
half on the neighbour: verse005 with only the lowest 9 mm of L1 in view put
L1's template over L2 (``benchmarks/bench_accuracy.py`` ``verse005@top9``).

So each template is placed as usual (:func:`diffam.fit.model.initial_placement`)
and then moved, translation only, until the centre of its part inside the
field of view lies on the given centroid: the fixed point of
``t <- t + (target - centre_in_view(t))``. Along a cut axis the centre in
view moves by a half to all of a shift of the template (half for a uniform
slab, all when the template lies wholly inside), so the step converges; along
the others by all of it. The result is where the whole template's centre
goes; the rest of the pipeline (guard neighbours, placement, fit) uses it in
place of the given centroid.

The solution need not be unique. Cut through the body, the centre in view
hardly moves along the spine as the template does (the body leaves the view
as the processes enter it) and moves across it instead; the fixed point then
landed 18-23 mm from the whole centre on the template itself (given: 8-12 mm
off), where damped Gauss-Newton steps (:func:`_gauss_newton_shift`) landed
2-4 mm off; with only a spinous process in view (verse005 ``top9``) the fixed
point landed 3 mm off, Gauss-Newton 34 mm. So where two uncut vertebrae on
one side give an extrapolated centre, both are solved and the solution
nearer that extrapolation is kept; otherwise the fixed point's.

The tilt of a cut vertebra's template is that of its nearest uncut
neighbour at first: the placement tilts each template along the curve
through the centroids, and a cut vertebra's lies off that curve (verse005
``top9``: L1's visible 9 mm are its spinous process, 32 mm behind and 25 mm
below its centre). Tilted along the given centroids, L1's template ended
39 mm and L2's 25 mm from where their whole labels' centres lie; tilted as
L3, L1's ended 3 mm off and L2 counted as not cut. Then the placement is
redone from the moved centres, :data:`ROUNDS` times in all.

A face cuts a vertebra when at least :data:`CUT_FRACTION` of the placed
template lies beyond it: a template a little larger than the bone sticks out
of a crop cut tight to the labels (the VerSe crops), and there the given
centroid is the whole vertebra's.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from diffam.core.body_centre import interior_points, template_body_points
from diffam.core.config import SegmentationConfig
from diffam.core.labels import level_name
from diffam.core.template import TemplateSet
from diffam.fit.deformation import InitialTransform
from diffam.fit.field_of_view import FieldOfView
from diffam.fit.model import initial_placement, template_centres

log = logging.getLogger(__name__)

#: Spacing of the grid of template points whose centre is computed, mm.
STEP_MM = 2.0
#: Least fraction of a placed template's points beyond one face of the view for the
#: vertebra to count as cut (its centroid then centres the part in view).
CUT_FRACTION = 0.1
#: Fixed-point iterations at most, and the shift (mm) below which they stop.
MAX_STEPS = 20
TOLERANCE_MM = 0.1
#: Step (mm) of the differences of the Gauss-Newton Jacobian, and its first damping (mm^0).
PROBE_MM = 1.0
DAMPING = 0.05
#: Placements of the templates in turn: the first is tilted along the given
#: centroids, which for a cut vertebra lie off the spine's curve (verse005
#: ``top9``: L1's visible 9 mm, its spinous process, 32 mm behind its centre).
ROUNDS = 3
#: Fewest template points in view for a centre in view to mean anything.
MIN_POINTS = 20


class TemplatePoints:
    """Grid points inside each template vertebra (``vertebra``) or its body (``body``),
    computed the first time a vertebra's are asked for: only a template with a vertex out
    of view can be cut (the view is convex), and most are not."""

    def __init__(self, template: TemplateSet, kind: str):
        if kind not in ("vertebra", "body"):
            raise ValueError(f"centroids_kind must be vertebra or body, got {kind!r}")
        self.template, self.kind = template, kind
        self._points: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.template.vertebrae)

    def __getitem__(self, m: int) -> np.ndarray:
        if m not in self._points:
            v = self.template.vertebrae[m]
            self._points[m] = (interior_points(v.vertices, v.faces, STEP_MM) if self.kind == "vertebra"
                               else template_body_points(self.template, step_mm=STEP_MM, only=[m])[0])
        return self._points[m]


def template_points(template: TemplateSet, kind: str) -> list[np.ndarray]:
    """Grid points inside each template vertebra (``vertebra``) or its body (``body``)."""
    points = TemplatePoints(template, kind)
    return [points[m] for m in range(len(points))]


def _may_be_cut(template: TemplateSet, placement, m: int, view: FieldOfView) -> bool:
    """Whether any vertex of placed template ``m`` lies out of view (else no point inside does)."""
    vertices = torch.as_tensor(template.vertebrae[m].vertices, dtype=torch.float64)
    return not bool(view.inside(_placed(vertices, placement, m)).all())


def _placed(points: np.ndarray, placement, m: int) -> torch.Tensor:
    """Template points of vertebra ``m`` (N, 3) placed by ``placement``."""
    rotation = placement.rotation[m].double()
    return (float(placement.scale[m]) * torch.as_tensor(points) @ rotation.T
            + placement.translation[m].double())


def is_cut(placed: torch.Tensor, view: FieldOfView) -> bool:
    """Whether :data:`CUT_FRACTION` or more of the placed template points lie beyond one face."""
    return bool((view.outside_along_axes(placed).double().mean(0) >= CUT_FRACTION).any())


def _cut_flags(template: TemplateSet, placement, points: TemplatePoints, view: FieldOfView
               ) -> list[bool]:
    """Whether the border cuts each placed template (:func:`is_cut`)."""
    return [_may_be_cut(template, placement, m, view) and len(points[m]) > 0
            and is_cut(_placed(points[m], placement, m), view) for m in range(len(points))]


def cut_levels(template: TemplateSet, centroids: dict[int, np.ndarray], view: FieldOfView,
               config: SegmentationConfig, kind: str = "vertebra",
               points: TemplatePoints | None = None) -> set[int]:
    """VerSe ids of the vertebrae the scan's border cuts, their templates placed on the
    given centroids: those centroids locate a part in view, not the vertebra's centre.

    Args: as :func:`in_view_centres`.
    """
    given = np.stack([np.asarray(centroids[v.verse_id], dtype=np.float64)
                      for v in template.vertebrae])
    placement = initial_placement(template, given, config, kind=kind)
    flags = _cut_flags(template, placement, points or TemplatePoints(template, kind), view)
    return {v.verse_id for v, cut in zip(template.vertebrae, flags) if cut}


def _fixed_point_shift(placed: torch.Tensor, target: torch.Tensor, view: FieldOfView) -> torch.Tensor:
    """Shift (3,) mm of ``placed`` points after which their part in view is centred on ``target``:
    the fixed point of ``t <- t + (target - centre_in_view(t))``."""
    shift = torch.zeros(3, dtype=torch.float64)
    inside = view.inside(placed)
    for _ in range(MAX_STEPS):
        step = target - placed[inside].mean(0)
        moved = placed + step
        moved_inside = view.inside(moved)
        if int(moved_inside.sum()) < MIN_POINTS:
            break  # the template would leave the view: keep the last placement
        shift, placed, inside = shift + step, moved, moved_inside
        if float(step.norm()) < TOLERANCE_MM:
            break
    return shift


def _gauss_newton_shift(placed: torch.Tensor, target: torch.Tensor, view: FieldOfView) -> torch.Tensor:
    """The same by damped Gauss-Newton steps on ``|target - centre_in_view(t)|`` with the
    Jacobian by differences of :data:`PROBE_MM`: it follows a centre in view that moves
    across the shift, not with it (a cut through the body: the body leaves the view as the
    processes enter it)."""

    def residual(shift):
        moved = placed + shift
        inside = view.inside(moved)
        return None if int(inside.sum()) < MIN_POINTS else target - moved[inside].mean(0)

    shift = torch.zeros(3, dtype=torch.float64)
    r = residual(shift)
    if r is None:
        return shift  # nothing of the template in view to centre: no Jacobian to start from
    damping = DAMPING
    for _ in range(MAX_STEPS):
        jacobian = torch.zeros(3, 3, dtype=torch.float64)  # d centre_in_view / d shift
        for axis in range(3):
            probe = torch.zeros(3, dtype=torch.float64)
            probe[axis] = PROBE_MM
            ahead = residual(shift + probe)
            if ahead is not None:
                jacobian[:, axis] = (r - ahead) / PROBE_MM
            elif (behind := residual(shift - probe)) is not None:
                jacobian[:, axis] = (behind - r) / PROBE_MM
        normal = jacobian.T @ jacobian + damping * torch.eye(3, dtype=torch.float64)
        step = torch.linalg.solve(normal, jacobian.T @ r)
        after = residual(shift + step)
        if after is not None and float(after.norm()) < float(r.norm()):
            shift, r, damping = shift + step, after, damping / 2
            if float(step.norm()) < TOLERANCE_MM:
                break
        else:
            damping *= 4
    return shift


def _extrapolated(centres: np.ndarray, cut: list[bool], m: int) -> np.ndarray | None:
    """Centre of vertebra ``m`` extrapolated along the run from the two nearest uncut
    vertebrae on one side of it; None without two."""
    for side in (1, -1):
        uncut = [n for n in range(m + side, len(cut) if side > 0 else -1, side) if not cut[n]]
        if len(uncut) >= 2:
            n1, n2 = uncut[:2]
            return centres[n1] + (centres[n1] - centres[n2]) * (m - n1) / (n1 - n2)
    return None


def whole_template_targets(template: TemplateSet, points: TemplatePoints, given: np.ndarray,
                           centres: np.ndarray, placement, view: FieldOfView) -> np.ndarray:
    """Where each template's centre goes so that its part in view is centred on ``given``.

    Args:
        template: the vertebrae to fit, in the order of ``given``.
        points: their template points of the kind the centroids name.
        given: (M, 3) given centroids, mm (centres of the part in view).
        centres: (M, 3) where ``placement`` puts each template's centre, mm.
        placement: a :class:`diffam.fit.deformation.InitialTransform` of the templates.
        view: the scan's field of view.

    Returns:
        (M, 3) centres, mm: ``centres`` moved for each cut vertebra
        (:func:`is_cut`), ``given`` for the others.
    """
    given = np.asarray(given, dtype=np.float64)
    out = given.copy()
    cut = _cut_flags(template, placement, points, view)
    for m in (m for m in range(len(points)) if cut[m]):
        placed = _placed(points[m], placement, m)
        target = torch.as_tensor(given[m])
        start = np.asarray(centres[m], dtype=np.float64)
        candidates = [start + _fixed_point_shift(placed, target, view).numpy()]
        prior = _extrapolated(given, cut, m)
        if prior is not None:  # two solutions; the one nearer the run's extrapolation
            candidates.append(start + _gauss_newton_shift(placed, target, view).numpy())
            candidates.sort(key=lambda c: float(np.linalg.norm(c - prior)))
        out[m] = candidates[0]
    return out


def in_view_centres(template: TemplateSet, centroids: dict[int, np.ndarray], view: FieldOfView,
                    config: SegmentationConfig, kind: str = "vertebra",
                    points: TemplatePoints | None = None) -> dict[int, np.ndarray]:
    """The given centroids with each cut vertebra's moved to where its whole template's centre goes.

    Args:
        template: the vertebrae to fit (those of ``centroids``), cranio-caudal.
        centroids: VerSe id -> (3,) given centroid, mm.
        view: the scan's field of view.
        config: the run's configuration (the placement's tilt and scale).
        kind: what the centroids are, ``vertebra`` or ``body``.
        points: the templates' interior points of ``kind``, when the caller has them
            already (they are computed once per cut vertebra; see :class:`TemplatePoints`).
    """
    ids = [v.verse_id for v in template.vertebrae]
    given = np.stack([np.asarray(centroids[v], dtype=np.float64) for v in ids])
    points = points or TemplatePoints(template, kind)
    centres = given
    placement = _tilt_of_uncut_neighbours(
        template, initial_placement(template, given, config, kind=kind), points, given, view, kind)
    for round_ in range(ROUNDS):
        moved = whole_template_targets(template, points, given, centres, placement, view)
        if np.array_equal(moved, centres):
            break  # nothing cut (the usual case), or nothing moves any more
        centres = moved
        if round_ + 1 < ROUNDS:
            placement = initial_placement(template, centres, config, kind=kind)
    for v, before, after in zip(ids, given, centres):
        if np.linalg.norm(after - before) > 0:
            log.info("%s is cut by the scan's border: its template's centre moves %.1f mm so "
                     "that its part in view is centred on the given centroid", level_name(v),
                     float(np.linalg.norm(after - before)))
    return dict(zip(ids, centres))


def _tilt_of_uncut_neighbours(template, placement, points, given, view, kind):
    """``placement`` with each cut vertebra tilted as the nearest vertebra the border does not
    cut, its centre of ``kind`` kept on ``given`` (see the module docstring)."""
    cut = _cut_flags(template, placement, points, view)
    uncut = [m for m, c in enumerate(cut) if not c]
    if not uncut or not any(cut):
        return placement
    rotation = placement.rotation.clone()
    for m in range(len(cut)):
        if cut[m]:
            rotation[m] = placement.rotation[min(uncut, key=lambda n: abs(n - m))]
    return InitialTransform.from_centroids(template_centres(template, kind), given,
                                           rotation=rotation, scale=placement.scale)
