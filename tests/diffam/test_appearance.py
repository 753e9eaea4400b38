"""Tests of diffam.fit.appearance: the Fourier-feature MLP f_theta."""

import pytest
import torch

from diffam.fit.appearance import AppearanceModel
from diffam.fit.optim import appearance_optimizer


def test_shape_and_initial_value():
    torch.manual_seed(0)
    model = AppearanceModel(initial_value=0.3)
    d = torch.linspace(-0.5, 0.5, 101)
    y = model(d)
    assert y.shape == (101,)
    assert torch.allclose(y, torch.full_like(y, 0.3), atol=0.05)
    assert model(torch.zeros(4, 5)).shape == (4, 5)


def test_deterministic_under_seed():
    torch.manual_seed(123)
    a = AppearanceModel()
    torch.manual_seed(123)
    b = AppearanceModel()
    d = torch.randn(50)
    assert torch.equal(a(d), b(d))


def test_normalisation_roundtrip():
    model = AppearanceModel(intensity_scale=1000.0, intensity_offset=-1000.0)
    hu = torch.tensor([-1000.0, 0.0, 1500.0])
    assert torch.allclose(model.normalize(hu), torch.tensor([0.0, 1.0, 2.5]))
    assert torch.allclose(model.denormalize(model.normalize(hu)), hu)


def test_fits_step_profile():
    torch.manual_seed(0)
    # CT-like profile: bone (1000 HU) inside, soft tissue (50 HU) outside,
    # a 1 mm wide edge; distance in units of 64 mm.
    d_mm = torch.linspace(-20.0, 20.0, 2001)
    hu = 50.0 + 950.0 * torch.sigmoid(-d_mm / 1.0)
    model = AppearanceModel()
    target = model.normalize(hu)
    model.set_output_bias(target.mean().item())
    opt = appearance_optimizer(model.parameters())
    d = d_mm / 64.0
    for _ in range(400):
        opt.zero_grad()
        loss = (model(d) - target).abs().mean()
        loss.backward()
        opt.step()
    err_hu = (model.denormalize(model(d)) - hu).abs().detach()
    assert err_hu.mean().item() < 30.0  # of a 950 HU step
    far = d_mm.abs() > 3.0
    assert err_hu[far].max().item() < 80.0


def test_bad_input():
    with pytest.raises(ValueError, match="activation"):
        AppearanceModel(activation="tanh")
    with pytest.raises(ValueError, match="intensity_scale"):
        AppearanceModel(intensity_scale=0.0)
    with pytest.raises(ValueError, match="n_frequencies"):
        AppearanceModel(n_frequencies=-1)
    with pytest.raises(TypeError, match="signed_distance"):
        AppearanceModel()(torch.zeros(3, dtype=torch.int64))
