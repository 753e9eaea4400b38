"""Tests of diffam.localize: naming, frames, clear errors (detection accuracy: see report)."""

from __future__ import annotations

import numpy as np
import pytest

from diffam.image import Volume, read_image
from diffam.localize import LocalizationError, localize_vertebrae
from diffam.localize.centerline import fit_centerline
from diffam.localize.naming import name_levels
from diffam.localize.orientation import local_frame


def test_name_levels_from_lowest_and_highest():
    ids, how = name_levels(3, hint_lowest="L5")
    assert ids == [24, 23, 22]
    assert "levels.lowest=L5" in how
    ids, how = name_levels(2, hint_highest="T11")
    assert ids == [19, 18]
    assert "levels.highest=T11" in how


def test_name_levels_without_hint_says_what_to_pass():
    with pytest.raises(
        LocalizationError, match=r"levels\.lowest=L5.*levels\.highest=T10.*centroids"
    ):
        name_levels(4)


def test_name_levels_rejects_inconsistent_or_impossible_hints():
    with pytest.raises(LocalizationError, match="span"):
        name_levels(3, hint_lowest="L5", hint_highest="L1")
    with pytest.raises(LocalizationError, match="past C1 or L5"):
        name_levels(4, hint_lowest="C2")
    with pytest.raises(LocalizationError, match="levels.lowest"):
        name_levels(2, hint_lowest="Q9")


def test_local_frame_is_a_rotation_and_upright_for_a_vertical_spine():
    frame = local_frame(np.array([0.0, 0.0, 1.0]))
    np.testing.assert_allclose(frame, np.eye(3), atol=1e-12)
    tilted = local_frame(np.array([0.0, -0.5, 1.0]))
    np.testing.assert_allclose(tilted.T @ tilted, np.eye(3), atol=1e-12)
    assert np.linalg.det(tilted) == pytest.approx(1.0)
    np.testing.assert_allclose(tilted[:, 2], np.array([0.0, -0.5, 1.0]) / np.sqrt(1.25))


def test_centerline_is_smooth_ordered_and_uniform():
    z = np.linspace(0, 100, 60)
    pts = np.stack([np.zeros_like(z), 5 * np.sin(z / 30), z], 1)[::-1]
    pts[10] = np.nan
    cl = fit_centerline(pts)
    assert cl.points[0, 2] < cl.points[-1, 2]  # inferior to superior
    np.testing.assert_allclose(np.diff(cl.arc_mm), 1.0, atol=0.05)
    np.testing.assert_allclose(np.linalg.norm(cl.tangents, axis=1), 1.0)


def test_scan_without_spine_raises_a_clear_error():
    rng = np.random.default_rng(0)
    soft = (40 + 10 * rng.normal(size=(30, 40, 40))).astype(np.float32)
    with pytest.raises(LocalizationError, match=r"no spinal column.*levels\.lowest=L5"):
        localize_vertebrae(Volume(soft, [1.5] * 3, [0, 0, 0]))


def test_short_real_scan_needs_a_hint(shared_data):
    volume = read_image(shared_data / "ct" / "dicom_t11_t12")
    with pytest.raises(LocalizationError, match=r"levels\.lowest=L5|levels\.highest=T10"):
        localize_vertebrae(volume)
