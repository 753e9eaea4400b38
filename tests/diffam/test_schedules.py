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


def test_blur_schedule_published_defaults():
    optim = OptimConfig()

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
