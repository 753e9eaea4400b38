"""Linear schedules of the DiffAM optimisation (coarse to fine).

Iterations are counted 0 .. total - 1; a schedule reaches its end value at
iteration ``end_fraction * (total - 1)`` and keeps it afterwards.
"""

from __future__ import annotations


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

    The published values (2.56 mm, 80 %) are the defaults of
    :class:`~diffam.core.config.OptimConfig`.
    """
    return linear_schedule(start_mm, 0.0, iteration, total, end_fraction=end_fraction)
