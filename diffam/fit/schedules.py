"""Schedules of the DiffAM optimisation (coarse to fine).

Linear schedules count iterations 0 .. total - 1 and reach their end value at
iteration ``end_fraction * (total - 1)``. A whole-fit schedule
(:data:`SCHEDULES`, chosen by ``optim.schedule``) says what each iteration
uses (:class:`StepSettings`) and when the fit ends: the paper's fixed number
of iterations (:class:`FixedSchedule`) or coarse-to-fine stages that end when
their loss stops improving (:class:`ConvergeSchedule`).
"""

from __future__ import annotations

from dataclasses import dataclass

from diffam.core.config import OptimConfig, ShapeConfig


def linear_schedule(
    start: float, end: float, iteration: int, total: int, end_fraction: float = 1.0
) -> float:
    """Value going linearly from ``start`` (iteration 0) to ``end``, then constant.

    Args:
        start: value at iteration 0.
        end: value from iteration ``end_fraction * (total - 1)`` on.
        iteration: current iteration, >= 0 (values past the end are allowed).
        total: number of iterations, >= 1 (with 1 the schedule is at ``end``).
        end_fraction: fraction of the run over which the value changes, in (0, 1].

    Returns:
        The scheduled value (float).
    """
    if isinstance(total, bool) or not isinstance(total, int) or total < 1:
        raise ValueError(f"total must be an int >= 1, got {total!r}")
    if isinstance(iteration, bool) or not isinstance(iteration, int) or iteration < 0:
        raise ValueError(f"iteration must be an int >= 0, got {iteration!r}")
    if not 0.0 < end_fraction <= 1.0:
        raise ValueError(f"end_fraction must be in (0, 1], got {end_fraction!r}")
    span = end_fraction * (total - 1)
    progress = 1.0 if span <= 0 else min(iteration / span, 1.0)
    return float(start + (end - start) * progress)


def blur_sigma_schedule(iteration: int, total: int, start_mm: float, end_fraction: float) -> float:
    """Gaussian blur of the target image, in mm: ``start_mm`` -> 0 at ``end_fraction``, then 0.

    The published values are 2.56 mm and 80 % (``optim=paper``); the default
    start of :class:`~diffam.core.config.OptimConfig` is 1.28 mm.
    """
    return linear_schedule(start_mm, 0.0, iteration, total, end_fraction=end_fraction)


# ---------------------------------------------------------------------- whole-fit schedules
@dataclass(frozen=True)
class StepSettings:
    """What one iteration uses, decided by the fit's schedule.

    Attributes:
        blur_mm: Gaussian blur of the target image, mm.
        alpha: exponent of the per-frequency step scale of the spectral modes.
        point_fraction: share of the point budget sampled this iteration, (0, 1].
        sample_sigma_mm: Gaussian noise around the surface of the image samples, mm.
        stage: index of the coarse-to-fine stage (0 for the fixed schedule).
    """

    blur_mm: float
    alpha: float
    point_fraction: float
    sample_sigma_mm: float
    stage: int = 0


class FixedSchedule:
    """The paper's protocol: exactly ``optim.iterations``, blur and alpha linear in the iteration."""

    name = "fixed"

    def __init__(self, optim: OptimConfig, shape: ShapeConfig):
        self.optim, self.shape = optim, shape

    def settings(self, iteration: int) -> StepSettings:
        total = self.optim.iterations
        return StepSettings(
            blur_mm=blur_sigma_schedule(iteration, total, self.optim.blur_start_mm,
                                        self.optim.blur_end_fraction),
            alpha=linear_schedule(self.shape.alpha_start, self.shape.alpha_end, iteration, total),
            point_fraction=1.0,
            sample_sigma_mm=self.optim.sample_sigma_mm,
        )

    def observe(self, iteration: int, total_loss: float) -> None:
        """The fixed schedule ignores the losses."""

    def finished(self, iteration: int) -> bool:
        return iteration >= self.optim.iterations

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class ConvergeSchedule:
    """Coarse to fine in ``optim.stages`` stages, each ending when its loss stops improving.

    Stage ``s`` of ``S`` blurs the target by ``blur_start_mm * (1 - s / (S - 1))``
    (the last stage sees the scan itself) and sets alpha to the same fraction
    of the way from ``alpha_start`` to ``alpha_end``. Stages with a blurred
    target sample ``coarse_point_fraction`` of the point budget; the last one
    samples all of it, in a band of ``fine_sample_sigma_mm`` around the surface.

    A stage ends after at least ``stage_min_iterations`` (and two windows)
    when the mean weighted loss of its last ``converge_window`` iterations is
    less than ``converge_tolerance`` (relative) below the mean of the window
    before, or after ``iterations // stages`` iterations; the fit ends with
    the last stage.
    """

    name = "converge"

    def __init__(self, optim: OptimConfig, shape: ShapeConfig):
        self.optim, self.shape = optim, shape
        self.num_stages = max(int(optim.stages), 1)
        self.stage_cap = max(optim.iterations // self.num_stages, 1)
        self.stage = 0
        self.stage_losses: list[float] = []
        self.done = False

    def _progress(self) -> float:
        return 1.0 if self.num_stages == 1 else self.stage / (self.num_stages - 1)

    def settings(self, iteration: int) -> StepSettings:
        progress = self._progress()
        last = self.stage == self.num_stages - 1
        optim = self.optim
        return StepSettings(
            blur_mm=optim.blur_start_mm * (1.0 - progress),
            alpha=self.shape.alpha_start + (self.shape.alpha_end - self.shape.alpha_start) * progress,
            point_fraction=1.0 if last else optim.coarse_point_fraction,
            sample_sigma_mm=optim.fine_sample_sigma_mm if last else optim.sample_sigma_mm,
            stage=self.stage,
        )

    def stage_converged(self) -> bool:
        """True when the last window's mean loss improved less than the tolerance."""
        window = self.optim.converge_window
        losses = self.stage_losses
        if len(losses) < max(self.optim.stage_min_iterations, 2 * window):
            return False
        previous = sum(losses[-2 * window:-window]) / window
        recent = sum(losses[-window:]) / window
        return previous - recent < self.optim.converge_tolerance * abs(previous)

    def observe(self, iteration: int, total_loss: float) -> None:
        """Record one iteration's weighted loss; move on to the next stage when this one is done."""
        self.stage_losses.append(float(total_loss))
        if len(self.stage_losses) >= self.stage_cap or self.stage_converged():
            if self.stage == self.num_stages - 1:
                self.done = True
            else:
                self.stage += 1
                self.stage_losses = []

    def finished(self, iteration: int) -> bool:
        return self.done or iteration >= self.optim.iterations

    def state_dict(self) -> dict:
        return {"stage": self.stage, "stage_losses": list(self.stage_losses), "done": self.done}

    def load_state_dict(self, state: dict) -> None:
        if not state:  # a checkpoint of a fixed-schedule fit
            return
        self.stage = int(state["stage"])
        self.stage_losses = list(state["stage_losses"])
        self.done = bool(state["done"])


#: The fit schedules, by the name ``optim.schedule`` gives.
SCHEDULES = {schedule.name: schedule for schedule in (FixedSchedule, ConvergeSchedule)}


def make_schedule(optim: OptimConfig, shape: ShapeConfig) -> FixedSchedule | ConvergeSchedule:
    """The schedule ``optim.schedule`` names."""
    try:
        return SCHEDULES[optim.schedule](optim, shape)
    except KeyError:
        raise ValueError(f"optim.schedule must be one of {', '.join(SCHEDULES)}, "
                         f"got {optim.schedule!r}") from None
