"""Tests of diffam.fit.schedules."""

import pytest

from diffam.fit.schedules import alpha_schedule, blur_sigma_schedule, linear_schedule


def test_alpha_schedule():
    total = 3001
    assert alpha_schedule(0, total) == pytest.approx(1.0)
    assert alpha_schedule(1500, total) == pytest.approx(0.7)
    assert alpha_schedule(2400, total) == pytest.approx(1.0 - 0.6 * 0.8)
    assert alpha_schedule(3000, total) == pytest.approx(0.4)
    assert alpha_schedule(5000, total) == pytest.approx(0.4)


def test_blur_schedule():
    total = 3001
    assert blur_sigma_schedule(0, total) == pytest.approx(2.56)
    assert blur_sigma_schedule(1200, total) == pytest.approx(1.28)
    assert blur_sigma_schedule(2400, total) == 0.0
    assert blur_sigma_schedule(2700, total) == 0.0
    assert blur_sigma_schedule(3000, total) == 0.0


def test_linear_schedule_edges_and_errors():
    assert linear_schedule(3.0, 5.0, 0, 1) == 5.0
    assert linear_schedule(0.0, 1.0, 5, 11, end_fraction=0.5) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="total"):
        linear_schedule(0.0, 1.0, 0, 0)
    with pytest.raises(ValueError, match="iteration"):
        linear_schedule(0.0, 1.0, -1, 10)
    with pytest.raises(ValueError, match="end_fraction"):
        linear_schedule(0.0, 1.0, 0, 10, end_fraction=0.0)
