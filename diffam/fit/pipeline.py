"""Segment one CT scan: the library entry point behind ``scripts/segment.py``.

Takes a :class:`diffam.core.volume.Volume` and typed configuration, returns the
label map on the scan's own grid together with the fitted meshes; it never
reads a command line and never writes files (see :mod:`diffam.export.writers`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from diffam.core.centroids import check_inside
from diffam.core.config import SegmentationConfig
from diffam.core.labels import level_name, verse_to_totalsegmentator
from diffam.core.template import TemplateSet, load_template
from diffam.core.volume import Volume
from diffam.fit.field_of_view import FieldOfView
from diffam.fit.guards import guard_centroids
from diffam.fit.model import (
    FitResult,
    SpineFit,
    centroid_tangents,
    initial_placement,
    template_centres,
)
from diffam.fit.refine import refine_labels
from diffam.fit.roi import fit_samplers
from diffam.fit.slice_profile import slice_blur

log = logging.getLogger(__name__)

#: Below this HU no vertebra can be seen: a scan (or region) without bone.
MIN_BONE_HU = 150.0
#: A fitted centroid this close (mm) to the given one was not moved by re-seating or the
#: in-view placement, so the tether may hold the vertebra to it.
UNMOVED_CENTROID_MM = 0.5


class SegmentationError(ValueError):
    """The scan, its centroids or the configuration cannot be segmented; says why and what to do."""


@dataclass
class SegmentationResult:
    """What :func:`segment` returns.

    Attributes:
        labels: label map on the input grid (VerSe ids, or TotalSegmentator
            v2 ids if configured), same geometry as the input.
        fit: the fitted meshes and the loss history.
        centroids: VerSe id -> (3,) LPS mm initial centroids used.
        centroid_source: how they were obtained ("given", or the localiser's naming).
        completed: False when the run was stopped before the last iteration
            (the labels then reflect the state reached).
        timings: seconds per stage.
    """

    labels: Volume
    fit: FitResult
    centroids: dict[int, np.ndarray]
    centroid_source: str
    completed: bool
    timings: dict[str, float] = field(default_factory=dict)
    #: What ``centroids`` are: whole-vertebra centres (``vertebra``) or body centres (``body``).
    centroids_kind: str = "vertebra"
    #: The initial placement's whole-vertebra centres and body centres (VerSe id -> LPS mm).
    vertebra_centroids: dict[int, np.ndarray] = field(default_factory=dict)
    body_centroids: dict[int, np.ndarray] = field(default_factory=dict)
    #: The meshes ``labels`` was drawn from: ``fit`` plus the guard neighbours, which were
    #: fitted so that they hold their own bone and then dropped from ``labels`` (None when
    #: the result was not made by :func:`segment`). :func:`draw_labels` redraws it.
    drawn_from: FitResult | None = None
    #: VerSe ids of the guard neighbours in ``drawn_from``.
    guard_ids: list[int] = field(default_factory=list)


def draw_labels(image: Volume, drawn_from: FitResult, guard_ids, refine_config,
                device: torch.device | None = None) -> np.ndarray:
    """The label map (VerSe ids, ``image``'s grid, (Z, Y, X)) of fitted meshes.

    Every mesh of ``drawn_from`` takes its own bone in the refinement, guard neighbours
    included (so a vertebra does not grow into the unfitted one beside it); the guards'
    labels are then cleared, since they were never asked for.
    """
    labels = refine_labels(image, [(v, drawn_from.faces) for v in drawn_from.vertices],
                           drawn_from.verse_ids, refine_config, device=device)
    if guard_ids:
        labels[np.isin(labels, list(guard_ids))] = 0
    return labels


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SegmentationError("device=cuda was asked for but no CUDA GPU is available; "
                                "use device=cpu or device=auto")
    if name != "cpu" and not name.startswith("cuda"):
        raise SegmentationError(f"device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def select_template(template: TemplateSet, centroids: dict[int, np.ndarray],
                    levels: list[str] | None) -> TemplateSet:
    """The template's vertebrae that have a centroid (and are in ``levels``), in order."""
    wanted = [v.level for v in template.vertebrae if v.verse_id in centroids
              and (levels is None or v.level in levels)]
    if not wanted:
        have = sorted(level_name(k) if 0 < k < 29 else str(k) for k in centroids)
        raise SegmentationError(
            f"none of the centroid levels {have} is in template {template.name!r} (levels "
            f"{template.levels}); choose a template that covers them (template=...)")
    return template.subset(wanted)


def check_bone(volume: Volume, centroids: dict[int, np.ndarray], radius_mm: float = 15.0) -> None:
    """Refuse a scan with no bone near the centroids (wrong scan, MR, or wrong coordinates)."""
    brightest = -np.inf
    for point in centroids.values():
        index = np.round(volume.world_to_index(point[None])[0]).astype(int)
        half = np.ceil(radius_mm / volume.spacing).astype(int)
        lo = np.clip(index - half, 0, np.array(volume.shape_ijk) - 1)
        hi = np.clip(index + half + 1, 1, np.array(volume.shape_ijk))
        block = volume.array[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]]
        if block.size:
            brightest = max(brightest, float(np.percentile(block, 99)))
    if brightest < MIN_BONE_HU:
        raise SegmentationError(
            f"no bone near the centroids: the brightest voxels there are {brightest:.0f} HU, "
            f"below {MIN_BONE_HU:.0f} HU. Is this a CT in Hounsfield units, and are the "
            "centroids in world LPS millimetres (csv) or voxel indices (VerSe json)?")


def check_level_hints(hint_lowest: str | None, hint_highest: str | None) -> None:
    """Raise :class:`SegmentationError` for a hint that is not a vertebra level."""
    from diffam.localize.naming import LocalizationError, check_hints

    try:
        check_hints(hint_lowest, hint_highest)
    except LocalizationError as error:
        raise SegmentationError(str(error)) from None


def find_centroids(image: Volume, hint_lowest: str | None, hint_highest: str | None):
    """Initial centroids from the image alone (see :mod:`diffam.localize`)."""
    try:
        from diffam.localize import LocalizationError, localize_vertebrae
    except ImportError as error:  # pragma: no cover - the localiser ships with the package
        raise SegmentationError("no centroids were given and the automatic localiser is not "
                                "available: pass centroids=path.json|csv") from error
    try:
        found = localize_vertebrae(image, hint_lowest=hint_lowest, hint_highest=hint_highest)
    except LocalizationError as error:
        raise SegmentationError(str(error)) from error
    return found.centroids, found.naming


def reseat_given(image: Volume, chosen: TemplateSet, centroids: dict[int, np.ndarray],
                 kind: str, config: SegmentationConfig, points=None
                 ) -> tuple[dict[int, np.ndarray], str]:
    """The given centroids re-seated on the scan's vertebrae (:mod:`diffam.fit.reseat`), and the
    source text. ``points``: the :class:`diffam.fit.view_placement.TemplatePoints` shared with the
    in-view placement (None: made here when needed)."""
    from diffam.fit.reseat import reseat_centroids

    to_vertebra = None
    if kind == "body":  # compare through the template's body-to-vertebra offset as placed
        target = np.stack([centroids[v.verse_id] for v in chosen.vertebrae])
        placement = initial_placement(chosen, target, config, kind="body")
        whole = placement.apply(torch.as_tensor(template_centres(chosen)[:, None, :])).numpy()
        to_vertebra = {v.verse_id: whole[i, 0] - target[i] for i, v in enumerate(chosen.vertebrae)}
    cut = set()
    if config.optim.centroids_in_view:
        from diffam.fit.view_placement import cut_levels

        cut = cut_levels(chosen, centroids, FieldOfView.of_volume(image), config, kind, points)
    found = reseat_centroids(image, centroids, keep_mm=config.optim.reseat_keep_mm,
                             to_vertebra=to_vertebra, cut_by_border=cut)
    if not found.moved:
        if found.reason:
            log.info("given centroids kept: %s", found.reason)
        return found.centroids, "given"
    moved = ", ".join(f"{level_name(v)} {d:.0f} mm" for v, d in sorted(found.moved.items()))
    if found.turned_deg:
        moved = f"turned {found.turned_deg:.0f} degrees onto the column; {moved}"
    log.info("given centroids re-seated on the detected vertebrae: %s", moved)
    return found.centroids, f"given, re-seated on the detected vertebrae ({moved})"


def segment(
    image: Volume,
    config: SegmentationConfig | None = None,
    *,
    centroids: dict[int, np.ndarray] | None = None,
    template: TemplateSet | None = None,
    hint_lowest: str | None = None,
    hint_highest: str | None = None,
    progress: Callable[[dict[str, float]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    checkpoint: Path | None = None,
    resume: bool = False,
    centroids_kind: str = "vertebra",
) -> SegmentationResult:
    """Fit the spine template to ``image`` and label its vertebrae.

    Args:
        image: CT in HU, any orientation and spacing.
        config: run configuration (default: the published settings).
        centroids: VerSe id -> (3,) LPS mm initial centroid; found
            automatically when None.
        template: a loaded template set (default: ``config.template``).
        hint_lowest, hint_highest: level names that help the localiser
            name the vertebrae it finds (e.g. "L5", "T10").
        progress: called with every iteration's losses.
        should_stop: polled every iteration; True stops early (Ctrl-C).
        checkpoint: file to save the fit state to (every
            ``config.optim.checkpoint_every_iterations`` and when stopped).
        resume: continue from ``checkpoint`` if it exists.
        centroids_kind: ``vertebra`` when ``centroids`` are whole-vertebra
            centres of mass (label-map centroids, the localiser's), ``body``
            when they are vertebral body centres (VerSe ``*_ctd.json``).

    Returns:
        :class:`SegmentationResult`.
    """
    config = config or SegmentationConfig()
    check_level_hints(hint_lowest, hint_highest)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    template = template or load_template(config.template)

    if centroids_kind not in ("vertebra", "body"):
        raise SegmentationError(f"centroids_kind must be vertebra or body, got {centroids_kind!r}")
    if centroids is None:
        centroids, source = find_centroids(image, hint_lowest, hint_highest)
        centroids_kind = "vertebra"
    else:
        source = "given"
    try:
        check_inside(centroids, image)
    except ValueError as error:
        raise SegmentationError(str(error)) from error
    check_bone(image, centroids)
    given = dict(centroids) if source == "given" else {}
    chosen = select_template(template, centroids, config.levels)
    fitted = {v.verse_id: centroids[v.verse_id] for v in chosen.vertebrae}
    # The templates' interior points, shared by the cut test of the re-seating and the
    # in-view placement (computed lazily, once per vertebra the border may cut).
    points = None
    if config.optim.centroids_in_view:
        from diffam.fit.view_placement import TemplatePoints, in_view_centres

        points = TemplatePoints(chosen, centroids_kind)
    if config.optim.reseat_centroids and source == "given":
        fitted, source = reseat_given(image, chosen, fitted, centroids_kind, config, points)
        centroids = {**centroids, **fitted}
    if config.optim.centroids_in_view:
        fitted = in_view_centres(chosen, fitted, FieldOfView.of_volume(image), config,
                                 centroids_kind, points)
    guards = (guard_centroids(fitted, [v.verse_id for v in template.vertebrae], image,
                              outside_mm=config.optim.guard_outside_mm)
              if config.optim.guard_neighbours else {})
    if guards:
        log.info("guard neighbours fitted and dropped: %s",
                 ", ".join(level_name(v) for v in sorted(guards)))
        chosen = select_template(template, {**fitted, **guards}, None)
    target = np.stack([({**fitted, **guards})[v.verse_id] for v in chosen.vertebrae])
    timings["initialise"] = time.perf_counter() - start

    # Crop around the placed template (plus margin) and resample for fitting.
    tick = time.perf_counter()
    placement = initial_placement(chosen, target, config, kind=centroids_kind)
    placed = placement.apply(torch.as_tensor(chosen.stacked_vertices())).numpy()
    margin = config.optim.crop_margin_mm
    sampler, fine_sampler = fit_samplers(image, placed.reshape(-1, 3).min(0) - margin,
                                         placed.reshape(-1, 3).max(0) + margin,
                                         config.optim, device)
    if config.optim.init_search and not (resume and checkpoint is not None
                                         and Path(checkpoint).exists()):
        from diffam.fit.rigid_search import rigid_search

        search_tick = time.perf_counter()
        placement = rigid_search(sampler, chosen.stacked_vertices(), chosen.faces, placement,
                                 search_mm=config.optim.init_search_mm,
                                 search_deg=config.optim.init_search_deg)
        timings["search"] = time.perf_counter() - search_tick
    fit = SpineFit(sampler, chosen, target, config, device, placement=placement,
                   field_of_view=FieldOfView.of_volume(image, device),
                   fine_sampler=fine_sampler,
                   slice_blur=slice_blur(image.spacing, image.direction,
                                         config.appearance.slice_blur_scale))
    if config.losses.tether > 0:
        fit.tether = tether_to_given(fit, chosen, placement, target, given, centroids_kind,
                                     config.optim.tether_free_mm)
    if resume and checkpoint is not None and Path(checkpoint).exists():
        fit.load_state_dict(torch.load(checkpoint, map_location=device, weights_only=False))
        log.info("resumed from %s at iteration %d", checkpoint, fit.iteration)
    timings["prepare"] = time.perf_counter() - tick

    tick = time.perf_counter()
    stop_requested = False

    def stop() -> bool:
        nonlocal stop_requested
        stop_requested = bool(should_stop and should_stop())
        return stop_requested

    checkpoint_every = config.optim.checkpoint_every_iterations

    def on_iteration(record):
        if checkpoint is not None and checkpoint_every and \
                record["iteration"] % checkpoint_every == 0:
            save_checkpoint(fit, checkpoint)
        if progress is not None:
            progress(record)

    result = fit.run(on_iteration, stop)
    completed = fit.finished
    if checkpoint is not None and not completed:
        save_checkpoint(fit, checkpoint)
    timings["fit"] = time.perf_counter() - tick

    tick = time.perf_counter()
    drawn_from = result  # kept whole: the guards are dropped from ``result`` below
    labels = draw_labels(image, drawn_from, list(guards), config.refine, device=device)
    if guards:
        keep = [i for i, v in enumerate(result.verse_ids) if v not in guards]
        result = replace(result, vertices=result.vertices[keep],
                         verse_ids=[result.verse_ids[i] for i in keep],
                         levels=[result.levels[i] for i in keep])
    if config.export.labels == "totalsegmentator":
        labels = verse_to_totalsegmentator(labels, unmapped="drop")
    elif config.export.labels != "verse":
        raise SegmentationError(
            f"export.labels must be verse or totalsegmentator, got {config.export.labels!r}")
    from diffam.core.image import label_dtype

    label_volume = image.with_array(labels.astype(label_dtype(labels)))
    timings["export"] = time.perf_counter() - tick
    timings["total"] = time.perf_counter() - start
    ids = [v.verse_id for v in chosen.vertebrae]
    placed_centres = {}
    for kind in ("vertebra", "body"):
        centres = template_centres(chosen, kind)
        moved = placement.apply(torch.as_tensor(centres[:, None, :])).numpy()[:, 0]
        placed_centres[kind] = {v: c for v, c in zip(ids, moved) if v not in guards}
    return SegmentationResult(label_volume, result, dict(centroids), source, completed, timings,
                              centroids_kind, placed_centres["vertebra"], placed_centres["body"],
                              drawn_from, sorted(guards))


def tether_to_given(fit: SpineFit, chosen: TemplateSet, placement, target: np.ndarray,
                    given: dict[int, np.ndarray], kind: str, free_mm: float):
    """The axial tether (:mod:`diffam.fit.tether`) of the vertebrae whose fitted centroid is
    the one given: not the localiser's, not guards, not moved by re-seating or in-view placement."""
    from diffam.fit.tether import build_tether

    active = [v.verse_id in given
              and float(np.linalg.norm(target[i] - given[v.verse_id])) < UNMOVED_CENTROID_MM
              for i, v in enumerate(chosen.vertebrae)]
    centres = placement.apply(torch.as_tensor(template_centres(chosen, kind)[:, None, :]))
    with torch.no_grad():
        placed = fit.shape().detach().cpu().numpy()
    faces = fit.faces.cpu().numpy()
    if kind == "body":
        faces = faces[fit.body_faces.cpu().numpy()]
    log.info("tether along the spine (free %.1f mm): %d of %d vertebrae", free_mm, sum(active),
             len(active))
    axes = centroid_tangents(target) if len(target) >= 2 else np.array([[0.0, 0.0, 1.0]])
    return build_tether(placed, faces, centres.numpy()[:, 0], target, axes, active, free_mm,
                        fit.device)


def save_checkpoint(fit: SpineFit, path: Path) -> None:
    """Write the fit state atomically (a half-written checkpoint never replaces a good one)."""
    from diffam.core.atomic import atomic_path

    with atomic_path(path, overwrite=True) as temporary:
        torch.save(fit.state_dict(), temporary)
