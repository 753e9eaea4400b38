"""Coarse to fine in resolution: the unblurred end of the fit samples a finer grid."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from diffam.core.config import OptimConfig
from diffam.core.volume import Volume
from diffam.fit.field_of_view import FieldOfView
from diffam.fit.model import SpineFit
from diffam.fit.roi import fit_samplers

SCAN_SPACING_MM = (0.7, 0.7, 2.5)


def _linear_scan(spacing_mm=SCAN_SPACING_MM) -> Volume:
    """An oblique-free scan whose HU are a linear function of the world position."""
    k, j, i = np.meshgrid(np.arange(40), np.arange(60), np.arange(60), indexing="ij")
    spacing = np.array(spacing_mm)
    origin = np.array([-20.0, 10.0, 30.0])
    x, y, z = (origin[a] + spacing[a] * idx for a, idx in enumerate((i, j, k)))
    array = (3.0 * x - 2.0 * y + 5.0 * z).astype(np.float32)
    return Volume(array, spacing, origin, np.eye(3))


def _samplers(fine_mm: float, scan_spacing_mm=SCAN_SPACING_MM):
    optim = OptimConfig(processing_spacing_mm=1.5, fine_spacing_mm=fine_mm)
    lo, hi = np.array([-10.0, 20.0, 50.0]), np.array([15.0, 45.0, 110.0])
    return fit_samplers(_linear_scan(scan_spacing_mm), lo, hi, optim, torch.device("cpu"))


def test_fine_sampler_only_when_finer_than_the_processing_grid():
    assert _samplers(0.0)[1] is None
    assert _samplers(1.5)[1] is None
    assert _samplers(2.0)[1] is None
    coarse, fine = _samplers(1.0)
    assert coarse.spacing == (1.5, 1.5, 1.5)
    assert fine.spacing == (1.0, 1.0, 1.0)


def test_fine_grid_is_never_finer_than_the_scan():
    # 0.5 mm asked of a scan whose finest spacing is 0.7 mm: 0.7 mm
    assert _samplers(0.5)[1].spacing == (0.7, 0.7, 0.7)
    # a 1.5 mm scan has nothing finer to give: no fine sampler
    assert _samplers(1.0, (1.5, 1.5, 1.5))[1] is None
    assert _samplers(1.0, (1.2, 1.5, 2.0))[1].spacing == (1.2, 1.2, 1.2)


def test_fine_and_coarse_samplers_cover_the_same_box_and_agree_on_a_linear_field():
    coarse, fine = _samplers(1.0)
    coarse_view, fine_view = FieldOfView.of_sampler(coarse), FieldOfView.of_sampler(fine)
    points = torch.tensor([[0.0, 30.0, 70.0], [5.0, 40.0, 100.0], [-5.0, 25.0, 60.0]])
    assert bool(coarse_view.inside(points).all()) and bool(fine_view.inside(points).all())
    # the two boxes differ by less than one coarse voxel on every side
    corners = torch.tensor([[-10.0, 20.0, 50.0], [15.0, 45.0, 110.0]])
    assert float((coarse_view.depth(corners) - fine_view.depth(corners)).abs().max()) < 1.5
    x, y, z = points.double().T
    expected = 3.0 * x - 2.0 * y + 5.0 * z
    for sampler in (coarse, fine):
        assert torch.allclose(sampler.sample(points).double(), expected, atol=1e-2)


def test_fit_samples_the_fine_grid_only_once_the_blur_is_zero():
    coarse, fine = _samplers(1.0)
    fit = SimpleNamespace(sampler=coarse, fine_sampler=fine, coarse_view="coarse box",
                          fine_view="fine box", data_view=None)
    blurred = SpineFit.target_sampler(fit, 0.64)
    assert blurred is not coarse and blurred is not fine and blurred.sigma_mm > 0
    assert fit.data_view == "coarse box"
    assert SpineFit.target_sampler(fit, 0.0) is fine
    assert fit.data_view == "fine box"
    # a blur that rounds to 0 is no blur: the fine grid too
    assert SpineFit.target_sampler(fit, 0.3 * coarse.sigma_step_mm) is fine
    SpineFit.target_sampler(fit, 0.64)
    assert fit.data_view == "coarse box"
    fit.fine_sampler = None
    assert SpineFit.target_sampler(fit, 0.0) is coarse
    assert fit.data_view == "coarse box"
