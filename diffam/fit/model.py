"""The DiffAM optimisation: shape and appearance fitted to one scan.

Every iteration samples points around the current spine surface, predicts
their intensity from their signed distance to the spine through the
appearance MLP, and descends the weighted sum of the five losses of
:mod:`diffam.fit.objective` on the appearance (Adam) and on each vertebra's affine
and spectral parameters (VectorAdam with the per-frequency step).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

import diffsd
from diffam.core.config import OptimConfig, SegmentationConfig
from diffam.core.mesh_ops import sample_surface, unique_edges
from diffam.core.template import TemplateSet
from diffam.fit.appearance import AppearanceModel
from diffam.fit.deformation import InitialTransform, SpineShapeModel
from diffam.fit.field_of_view import FieldOfView
from diffam.fit.interpolation import VolumeSampler
from diffam.fit.objective import LOSS_TERMS, StepSamples, body_face_mask
from diffam.fit.optim import (
    VectorAdam,
    appearance_optimizer,
    frequency_step_scale,
    repeatable_cpu_kernels,
)
from diffam.fit.schedules import make_schedule
from diffam.fit.slice_profile import SliceBlur
from diffam.fit.spectral import laplace_beltrami_basis

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    """Fitted shapes.

    Attributes:
        vertices: (M, V, 3) fitted vertices, LPS mm, template vertex order.
        faces: (F, 3) shared faces.
        verse_ids: VerSe id of each of the M vertebrae.
        levels: level name of each vertebra.
        history: per iteration, the weighted total and each raw loss.
        seconds: wall time of the iterations.
        appearance_profile: (2, S) signed distance (mm) and predicted HU of
            the fitted appearance function, for reports.
        completed_iterations: iterations run.
        finished: the schedule ran to its end (False when stopped early).
    """

    vertices: np.ndarray
    faces: np.ndarray
    verse_ids: list[int]
    levels: list[str]
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    appearance_profile: np.ndarray | None = None
    completed_iterations: int = 0
    finished: bool = True


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation taking unit vector a to unit vector b, (3, 3)."""
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    v = np.cross(a, b)
    c = float(a @ b)
    if c < -0.999999:
        axis = np.cross(a, [1.0, 0, 0]) if abs(a[0]) < 0.9 else np.cross(a, [0, 1.0, 0])
        axis /= np.linalg.norm(axis)
        return 2 * np.outer(axis, axis) - np.eye(3)
    skew = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + skew + skew @ skew / (1 + c)


def centroid_tangents(points: np.ndarray) -> np.ndarray:
    """Unit tangents of a polyline (M, 3) by central differences."""
    gradient = np.gradient(points, axis=0)
    return gradient / np.linalg.norm(gradient, axis=1, keepdims=True).clip(1e-9)


def template_centres(template: TemplateSet, kind: str = "vertebra") -> np.ndarray:
    """(M, 3) centre of each template vertebra that a centroid of ``kind`` names.

    ``vertebra``: the centroid of the whole solid (what a label mask's centre of
    mass estimates); ``body``: the centre of the vertebral body (what VerSe
    ``*_ctd.json`` files give), :func:`diffam.core.body_centre.template_body_centres`.
    """
    if kind == "vertebra":
        return np.stack([v.centroid() for v in template.vertebrae])
    if kind == "body":
        from diffam.core.body_centre import template_body_centres

        return template_body_centres(template)
    raise ValueError(f"centroids_kind must be vertebra or body, got {kind!r}")


def initial_placement(
    template: TemplateSet, target: np.ndarray, config: SegmentationConfig,
    kind: str = "vertebra",
) -> InitialTransform:
    """Similarity per vertebra moving template centres onto ``target`` (M, 3) mm.

    ``kind`` says what the targets are: whole-vertebra centroids (``vertebra``)
    or vertebral body centres (``body``); the matching template centre
    (:func:`template_centres`) is put on each target. With two or more vertebrae, each template is tilted so that its
    cranio-caudal tangent follows the curve through the targets, and all are
    scaled by the ratio of target to template inter-centroid spacing.
    """
    source = template_centres(template, kind)
    m = len(source)
    rotation = np.repeat(np.eye(3)[None], m, axis=0)
    scale = np.ones(m)
    if m >= 2:
        if config.shape.align_to_centroids:
            for i, (a, b) in enumerate(zip(centroid_tangents(source), centroid_tangents(target))):
                rotation[i] = _rotation_between(a, b)
        low, high = config.shape.initial_scale_range
        ratio = np.median(
            np.linalg.norm(np.diff(target, axis=0), axis=1)
            / np.linalg.norm(np.diff(source, axis=0), axis=1).clip(1e-9)
        )
        scale[:] = float(np.clip(ratio, low, high))
    return InitialTransform.from_centroids(source, target, rotation=rotation, scale=scale)


class SpineFit:
    """State of one fit: models, optimisers, samplers; one :meth:`step` per iteration.

    Args:
        sampler: the scan (HU) on the compute device.
        template: the template set, already restricted to the levels to fit,
            in cranio-caudal order; all vertebrae share one connectivity.
        target_centroids: (M, 3) initial centroid of each template vertebra, mm.
        config: the run's configuration.
        device: compute device.
        placement: initial similarity per vertebra (default:
            :func:`initial_placement` of ``target_centroids``).
        field_of_view: the whole scan's field of view, for keeping the
            vertebrae in it (default: the sampler's box).
        fine_sampler: the same crop on a finer grid
            (``optim.fine_spacing_mm``), sampled instead of ``sampler`` once
            the schedule's blur is 0: resampling to the coarse processing
            grid blurs the cortex, which only the last stage can use.
        slice_blur: the scan's extra blur along its slice axis, applied to
            the predicted image (:mod:`diffam.fit.slice_profile`); None: none.
    """

    def __init__(
        self,
        sampler: VolumeSampler,
        template: TemplateSet,
        target_centroids: np.ndarray,
        config: SegmentationConfig,
        device: torch.device,
        placement: InitialTransform | None = None,
        field_of_view: FieldOfView | None = None,
        fine_sampler: VolumeSampler | None = None,
        slice_blur: SliceBlur | None = None,
    ):
        self.config = config
        self.device = device
        self.sampler = sampler
        self.fine_sampler = fine_sampler
        #: (2, 3) mm offsets along the scan's slice axis at which the image loss
        #: also predicts (diffam.fit.slice_profile), or None.
        self.slice_offsets = None if slice_blur is None else torch.as_tensor(
            slice_blur.offsets_mm(), dtype=torch.float32, device=device)
        self.template = template
        self.iteration = 0
        self.history: list[dict[str, float]] = []
        #: Set to True to accumulate per-stage seconds in ``stage_seconds``
        #: (exclusive: a stage timed inside another is not counted twice).
        self.time_stages = False
        self.stage_seconds: dict[str, float] = {}
        self._timer_stack: list[list[float]] = []
        self.schedule = make_schedule(config.optim, config.shape)
        optim = config.optim
        self.unit = optim.unit_mm
        self.dtype = torch.float32
        faces = torch.as_tensor(template.faces)
        # The shared basis lives on the average vertebra, taken in each level's
        # own frame when the template has frames (levels are tilted along the spine).
        if all(getattr(v, "frame", None) is not None for v in template.vertebrae):
            mean_shape = template.mean_local_shape()
        else:
            mean_shape = np.mean([v.vertices - v.vertices.mean(0) for v in template.vertebrae], 0)
        basis = _basis_for(template, mean_shape, faces.numpy(), config.shape.num_eigenvectors)
        #: Faces of the vertebral body, where the gap loss keeps a disc to the neighbours.
        self.body_faces = torch.as_tensor(body_face_mask(mean_shape, faces.numpy()), device=device)
        #: The axial tether to given centroids (diffam.fit.tether), set by the pipeline.
        self.tether = None
        if placement is None:
            placement = initial_placement(template, np.asarray(target_centroids, float), config)
        self.shape = SpineShapeModel(
            [torch.as_tensor(v.vertices) for v in template.vertebrae],
            faces,
            torch.as_tensor(basis.eigenvectors),
            torch.as_tensor(basis.eigenvalues),
            unit_mm=self.unit,
            basis_unit_mm=1.0,
            initial_transform=placement,
            dtype=self.dtype,
        ).to(device)
        a = config.appearance
        self.appearance = AppearanceModel(
            n_frequencies=a.num_frequencies,
            frequency_std=a.frequency_std,
            hidden=a.hidden,
            n_hidden_layers=a.layers,
            activation=a.activation,
            intensity_scale=a.intensity_scale,
        ).to(device)
        self.generator = torch.Generator(device=device).manual_seed(config.seed)

        groups = []
        for group in self.shape.param_groups():
            enabled = config.shape.affine if group["name"] == "affine" else config.shape.spectral
            if enabled:
                groups.append(group)
            else:
                for p in group["params"]:
                    p.requires_grad_(False)
        self.shape_optimizer = (
            VectorAdam(groups, lr=optim.lr, betas=optim.betas) if groups else None
        )
        self.appearance_optimizer = appearance_optimizer(
            self.appearance.parameters(), lr=optim.lr, betas=optim.betas
        )

        self.faces = self.shape.faces
        self.packed_faces = self.shape.packed_faces
        self.num_faces = self.faces.shape[0]
        self.edges = torch.as_tensor(unique_edges(self.faces.cpu().numpy()), device=device)
        m = self.shape.num_meshes
        self.image_point_budget, self.surface_point_budget = point_budgets(config.optim, m)
        vertices = self.shape.packed(self.shape()).detach()
        self.union_bvh = diffsd.MeshBVH(vertices, self.packed_faces)
        self.mesh_bvh = diffsd.MeshBVH(
            vertices, self.packed_faces, torch.arange(m, device=device) * self.num_faces
        )
        # Samples outside the data box carry no information (diffam.fit.field_of_view).
        self.data_view = FieldOfView.of_sampler(sampler)
        self.coarse_view = self.data_view
        self.fine_view = None if fine_sampler is None else FieldOfView.of_sampler(fine_sampler)
        self.scan_view = field_of_view or self.data_view
        with torch.no_grad():
            start = vertices.reshape(m, -1, 3).mean(1)
            self.view_floor = torch.minimum(
                self.scan_view.depth(start.double()),
                torch.full((m,), float(optim.view_margin_mm), dtype=torch.float64, device=device))
        # Start the appearance at the mean intensity around the template.
        with torch.no_grad():
            points = self._image_points(vertices, self.image_point_budget,
                                        optim.sample_sigma_mm)
            observed = self.sampler.sample(points)
            mask = self.in_view(points)
            if mask is not None and bool(mask.any()):
                observed = observed[mask]
            mean = self.appearance.normalize(observed).mean()
        self.appearance.set_output_bias(float(mean))

    def in_view(self, points: torch.Tensor) -> torch.Tensor | None:
        """(N,) bool: samples with image data; None when masking is off."""
        if not self.config.optim.mask_outside_view:
            return None
        return self.data_view.inside(points)

    # ------------------------------------------------------------------ pieces
    def _image_points(self, packed_vertices: torch.Tensor, count: int,
                      sigma_mm: float) -> torch.Tensor:
        """``count`` points on the surfaces plus Gaussian noise of ``sigma_mm``, detached, (N, 3) mm."""
        points, face, _ = sample_surface(
            packed_vertices.detach(),
            self.packed_faces,
            count,
            generator=self.generator,
        )
        noise = torch.randn(
            points.shape, generator=self.generator, device=self.device, dtype=points.dtype
        )
        return points + sigma_mm * noise

    @property
    def finished(self) -> bool:
        """The schedule has run to its end."""
        return self.schedule.finished(self.iteration)

    # ------------------------------------------------------------------ step
    def step(self) -> dict[str, float]:
        """One iteration; returns the weighted total and every raw loss."""
        config, optim, weights = self.config, self.config.optim, self.config.losses
        settings = self.schedule.settings(self.iteration)
        sigma, alpha = settings.blur_mm, settings.alpha
        image_count = max(round(settings.point_fraction * self.image_point_budget), 1)
        surface_count = max(round(settings.point_fraction * self.surface_point_budget), 1)
        terms = [term for name, term in LOSS_TERMS.items()
                 if getattr(weights, name) > 0 and term.applies(self)]
        with self.stage_timer("shape"):
            vertices = self.shape()  # (M, V, 3) mm
            packed = self.shape.packed(vertices)
        with self.stage_timer("blur"):
            target_sampler = self.target_sampler(sigma)
        with self.stage_timer("sampling"):
            samples = StepSamples(vertices=vertices, packed=packed,
                                  points=self._image_points(packed, image_count,
                                                            settings.sample_sigma_mm),
                                  union=None, target_sampler=target_sampler)
            if any(term.needs_surface_samples for term in terms):
                samples.surface_points, samples.surface_faces, _ = sample_surface(
                    packed, self.packed_faces, surface_count, generator=self.generator
                )
        with self.stage_timer("signed_distance"):
            if any(term.needs_union_distance for term in terms):
                samples.union = diffsd.signed_distance(
                    packed, self.union_bvh.faces, samples.points, bvh=self.union_bvh,
                    beta=optim.winding_beta,
                )
        with self.stage_timer("losses"):
            values = {term.name: term.evaluate(self, samples) for term in terms}
            total = sum(getattr(weights, name) * value for name, value in values.items())

        with self.stage_timer("backward"), repeatable_cpu_kernels(self.device):
            self.appearance_optimizer.zero_grad(set_to_none=True)
            if self.shape_optimizer is not None:
                self.shape_optimizer.zero_grad(set_to_none=True)
                if config.shape.spectral:
                    self.shape_optimizer.set_frequency_scale(
                        frequency_step_scale(self.shape.eigenvalues, alpha), "spectral"
                    )
            total.backward()
        with self.stage_timer("optimiser"):
            self.appearance_optimizer.step()
            if self.shape_optimizer is not None:
                self.shape_optimizer.step()
        self.iteration += 1
        record = {
            "iteration": self.iteration,
            "total": float(total.detach()),
            "blur_mm": sigma,
            "alpha": alpha,
        }
        self.schedule.observe(self.iteration, record["total"])
        record.update({name: float(value.detach()) for name, value in values.items()})
        self.history.append(record)
        return record

    def target_sampler(self, blur_mm: float) -> VolumeSampler:
        """The scan blurred by ``blur_mm``; once the (quantised) blur is 0, the
        crop on the finer grid where there is one. Sets :attr:`data_view`, the
        box whose samples carry data, to that sampler's."""
        blurred = self.sampler.blurred(blur_mm)
        if blurred is self.sampler and self.fine_sampler is not None:
            self.data_view = self.fine_view
            return self.fine_sampler
        self.data_view = self.coarse_view
        return blurred

    @contextlib.contextmanager
    def stage_timer(self, name: str):
        """Accumulate wall time per stage in :attr:`stage_seconds` (synchronising CUDA).

        Stages may nest (the image lookup inside the losses): the time of an
        inner stage is counted for it alone, not again for the outer one.
        """
        if not self.time_stages:
            yield
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        frame = [time.perf_counter(), 0.0]  # start, seconds spent in inner stages
        self._timer_stack.append(frame)
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self._timer_stack.pop()
            elapsed = time.perf_counter() - frame[0]
            self.stage_seconds[name] = self.stage_seconds.get(name, 0.0) + elapsed - frame[1]
            if self._timer_stack:
                self._timer_stack[-1][1] += elapsed

    def run(
        self,
        callback: Callable[[dict[str, float]], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> FitResult:
        """Iterate until the schedule ends (from :attr:`iteration`, so a restored fit resumes).

        Args:
            callback: called with each iteration's record (progress display).
            should_stop: polled every iteration; True ends the run early
                (e.g. after Ctrl-C), keeping the state consistent.
        """
        start = time.perf_counter()
        while not self.finished:
            if should_stop is not None and should_stop():
                break
            record = self.step()
            if callback is not None:
                callback(record)
        return self.result(time.perf_counter() - start)

    def result(self, seconds: float = 0.0) -> FitResult:
        with torch.no_grad():
            vertices = self.shape().cpu().numpy().astype(np.float64)
            distance = torch.linspace(-20, 20, 81, device=self.device)
            profile = self.appearance.denormalize(self.appearance(distance / self.unit))
        return FitResult(
            vertices=vertices,
            faces=self.faces.cpu().numpy(),
            verse_ids=[v.verse_id for v in self.template.vertebrae],
            levels=self.template.levels,
            history=list(self.history),
            seconds=seconds,
            appearance_profile=np.stack([distance.cpu().numpy(), profile.cpu().numpy()]),
            completed_iterations=self.iteration,
            finished=self.finished,
        )

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """Everything needed to continue the fit exactly."""
        return {
            "iteration": self.iteration,
            "history": self.history,
            "shape": self.shape.state_dict(),
            "appearance": self.appearance.state_dict(),
            "shape_optimizer": self.shape_optimizer.state_dict() if self.shape_optimizer else None,
            "appearance_optimizer": self.appearance_optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "schedule": self.schedule.state_dict(),
            "levels": self.template.levels,
        }

    def load_state_dict(self, state: dict) -> None:
        if list(state["levels"]) != self.template.levels:
            raise ValueError(
                f"checkpoint is for levels {state['levels']}, this run fits "
                f"{self.template.levels}: start without resume=true"
            )
        self.iteration = int(state["iteration"])
        self.history = list(state["history"])
        self.shape.load_state_dict(state["shape"])
        self.appearance.load_state_dict(state["appearance"])
        if self.shape_optimizer is not None and state["shape_optimizer"] is not None:
            self.shape_optimizer.load_state_dict(state["shape_optimizer"])
        self.appearance_optimizer.load_state_dict(state["appearance_optimizer"])
        self.generator.set_state(state["generator"])
        self.schedule.load_state_dict(state.get("schedule", {}))


def point_budgets(optim, num_vertebrae: int) -> tuple[int, int]:
    """Image and surface points per iteration at full resolution, for ``num_vertebrae``.

    The per-vertebra budgets of :class:`~diffam.core.config.OptimConfig` times
    the number of vertebrae, or its per-scan counts where those budgets are 0.
    """
    image = optim.image_points_per_vertebra * num_vertebrae or optim.num_image_points
    surface = optim.surface_points_per_vertebra * num_vertebrae or optim.num_surface_points
    per_scan_default = OptimConfig()
    for kind, per_vertebra in (("image", optim.image_points_per_vertebra),
                               ("surface", optim.surface_points_per_vertebra)):
        count = getattr(optim, f"num_{kind}_points")
        if per_vertebra and count != getattr(per_scan_default, f"num_{kind}_points"):
            log.warning("optim.num_%s_points=%d is not used: optim.%s_points_per_vertebra=%d "
                        "applies (set it to 0 for a count per scan)", kind, count, kind,
                        per_vertebra)
    return int(image), int(surface)


def _basis_for(template: TemplateSet, mean_shape: np.ndarray, faces: np.ndarray, k: int):
    """The shared eigenbasis: the template's stored one when it has enough modes."""
    stored = template.eigenvectors
    if (
        stored is not None
        and template.eigenvalues is not None
        and stored.shape[1] >= k
        and stored.shape[0] == mean_shape.shape[0]
    ):
        from diffam.fit.spectral import SpectralBasis

        return SpectralBasis(template.eigenvalues[:k], stored[:, :k], np.ones(len(stored)))
    return laplace_beltrami_basis(mean_shape, faces, min(k, len(mean_shape) - 2))
