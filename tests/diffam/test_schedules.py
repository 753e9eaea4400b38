"""Tests of diffam.fit.schedules."""

import pytest

from diffam.core.config import OptimConfig, ShapeConfig
from diffam.fit.schedules import blur_sigma_schedule, linear_schedule


def test_alpha_schedule_published_defaults():
    shape = ShapeConfig()

    def alpha(iteration, total=3001):
        return linear_schedule(shape.alpha_start, shape.alpha_end, iteration, total)

    assert alpha(0) == pytest.approx(1.0)
    assert alpha(1500) == pytest.approx(0.7)
    assert alpha(2400) == pytest.approx(1.0 - 0.6 * 0.8)
    assert alpha(3000) == pytest.approx(0.4)
    assert alpha(5000) == pytest.approx(0.4)


def test_blur_schedule_published_values():
    optim = OptimConfig(blur_start_mm=2.56)  # the paper's (optim=paper); the default is 1.28

    def blur(iteration, total=3001):
        return blur_sigma_schedule(iteration, total, optim.blur_start_mm, optim.blur_end_fraction)

    assert blur(0) == pytest.approx(2.56)
    assert blur(1200) == pytest.approx(1.28)
    assert blur(2400) == 0.0
    assert blur(2700) == 0.0
    assert blur(3000) == 0.0


def test_linear_schedule_edges_and_errors():
    assert linear_schedule(3.0, 5.0, 0, 1) == 5.0
    assert linear_schedule(0.0, 1.0, 5, 11, end_fraction=0.5) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="total"):
        linear_schedule(0.0, 1.0, 0, 0)
    with pytest.raises(ValueError, match="iteration"):
        linear_schedule(0.0, 1.0, -1, 10)
    with pytest.raises(ValueError, match="end_fraction"):
        linear_schedule(0.0, 1.0, 0, 10, end_fraction=0.0)


# ---------------------------------------------------------------------- whole-fit schedules
def _run(schedule, loss_of_iteration, limit=10_000):
    """Drive a schedule as SpineFit.run does; returns the settings of every iteration."""
    from diffam.fit.schedules import StepSettings  # noqa: F401 (what settings() returns)

    seen, iteration = [], 0
    while not schedule.finished(iteration) and iteration < limit:
        seen.append(schedule.settings(iteration))
        iteration += 1
        schedule.observe(iteration, loss_of_iteration(iteration, seen[-1]))
    return seen


def test_fixed_schedule_is_the_papers_linear_one():
    from diffam.fit.schedules import FixedSchedule

    optim, shape = OptimConfig(schedule="fixed", iterations=101), ShapeConfig()
    seen = _run(FixedSchedule(optim, shape), lambda i, s: 1.0)
    assert len(seen) == 101
    assert [s.blur_mm for s in seen] == [
        blur_sigma_schedule(i, 101, optim.blur_start_mm, optim.blur_end_fraction)
        for i in range(101)]
    assert seen[-1].alpha == pytest.approx(shape.alpha_end)
    assert {s.point_fraction for s in seen} == {1.0}
    assert {s.sample_sigma_mm for s in seen} == {optim.sample_sigma_mm}


def test_converge_schedule_ends_flat_stages_after_the_minimum():
    from diffam.fit.schedules import ConvergeSchedule

    optim = OptimConfig(stages=3, iterations=3000, stage_min_iterations=50, converge_window=10,
                        coarse_point_fraction=0.25, fine_sample_sigma_mm=4.0)
    shape = ShapeConfig()
    seen = _run(ConvergeSchedule(optim, shape), lambda i, s: 1.0)  # never improves
    assert [sum(s.stage == k for s in seen) for k in range(3)] == [50, 50, 50]
    first, middle, last = seen[0], seen[50], seen[-1]
    assert first.blur_mm == pytest.approx(optim.blur_start_mm) and last.blur_mm == 0.0
    assert middle.blur_mm == pytest.approx(optim.blur_start_mm / 2)
    assert first.alpha == pytest.approx(shape.alpha_start)
    assert last.alpha == pytest.approx(shape.alpha_end)
    assert (first.point_fraction, last.point_fraction) == (0.25, 1.0)
    assert (first.sample_sigma_mm, last.sample_sigma_mm) == (optim.sample_sigma_mm, 4.0)


def test_converge_schedule_runs_an_improving_stage_to_its_cap():
    from diffam.fit.schedules import ConvergeSchedule

    optim = OptimConfig(stages=2, iterations=400, stage_min_iterations=20, converge_window=10,
                        converge_tolerance=0.01)
    # 5 % better every iteration while in stage 0, flat afterwards.
    seen = _run(ConvergeSchedule(optim, ShapeConfig()),
                lambda i, s: 0.95 ** i if s.stage == 0 else 1.0)
    assert sum(s.stage == 0 for s in seen) == 200  # iterations // stages
    assert sum(s.stage == 1 for s in seen) == 20


def test_converge_schedule_stops_at_a_slow_improvement():
    from diffam.fit.schedules import ConvergeSchedule

    optim = OptimConfig(stages=1, iterations=10_000, stage_min_iterations=0, converge_window=10,
                        converge_tolerance=0.01)
    # Loss 1 + 100 / i: window means are about 1 + 100 / (i - 15) and 1 + 100 / (i - 5)
    # after iteration i, so the relative gain falls below 1 % where
    # 1000 / ((i - 15)(i - 5)) = 0.01 (1 + 100 / (i - 15)), i.e. (i - 5)(i + 85) = 1e5: i = 279.4.
    seen = _run(ConvergeSchedule(optim, ShapeConfig()), lambda i, s: 1.0 + 100.0 / i)
    assert 275 <= len(seen) <= 285


def test_converge_schedule_state_round_trip():
    from diffam.fit.schedules import ConvergeSchedule

    optim = OptimConfig(stages=3, stage_min_iterations=5, converge_window=2)
    first = ConvergeSchedule(optim, ShapeConfig())
    _run(first, lambda i, s: 1.0, limit=7)
    second = ConvergeSchedule(optim, ShapeConfig())
    second.load_state_dict(first.state_dict())
    assert second.settings(7) == first.settings(7) and second.stage == 1
    assert second.stage_losses == first.stage_losses


def test_schedule_chosen_by_name():
    from diffam.fit.schedules import SCHEDULES, make_schedule

    assert set(SCHEDULES) == {"fixed", "converge"}
    assert make_schedule(OptimConfig(schedule="fixed"), ShapeConfig()).name == "fixed"
    with pytest.raises(ValueError, match="optim.schedule must be one of"):
        make_schedule(OptimConfig(schedule="slow"), ShapeConfig())


def test_point_budgets_per_vertebra_or_per_scan():
    from diffam.fit.model import point_budgets

    optim = OptimConfig(image_points_per_vertebra=700, surface_points_per_vertebra=300)
    assert point_budgets(optim, 24) == (700 * 24, 300 * 24)
    optim = OptimConfig(image_points_per_vertebra=0, surface_points_per_vertebra=0,
                        num_image_points=1234, num_surface_points=99)
    assert point_budgets(optim, 24) == (1234, 99)


def test_stage_timer_counts_nested_stages_once(monkeypatch):
    """Outer stage 10 s of which 4 s inside an inner stage: 6 s + 4 s (a fake clock)."""
    from types import SimpleNamespace

    import torch

    import diffam.fit.model as model

    clock = iter([0.0, 3.0, 7.0, 10.0])  # outer start, inner start, inner end, outer end
    monkeypatch.setattr(model.time, "perf_counter", lambda: next(clock))
    fit = SimpleNamespace(time_stages=True, device=torch.device("cpu"), stage_seconds={},
                          _timer_stack=[])
    with model.SpineFit.stage_timer(fit, "losses"):
        with model.SpineFit.stage_timer(fit, "image_lookup"):
            pass
    assert fit.stage_seconds == {"losses": 6.0, "image_lookup": 4.0}


def test_settings_check_names_the_schedules():
    from diffam.cli.settings_check import SettingsError, check_segment_settings

    with pytest.raises(SettingsError, match="optim.schedule='slow'.*converge"):
        check_segment_settings({"optim": {"schedule": "slow"}})
    with pytest.raises(SettingsError, match="optim.coarse_point_fraction=0"):
        check_segment_settings({"optim": {"coarse_point_fraction": 0.0}})
