"""Tests of diffam.fit.optim: VectorAdam and the per-frequency step scale."""

import math

import pytest
import torch

from diffam.fit.optim import VectorAdam, appearance_optimizer, frequency_step_scale


def _random_rotation(seed):
    q, _ = torch.linalg.qr(
        torch.randn(3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    )
    return q * torch.sign(torch.linalg.det(q))


def test_converges_on_quadratic():
    torch.manual_seed(0)
    target = torch.randn(50, 3, dtype=torch.float64)
    scales = torch.rand(50, 3, dtype=torch.float64) * 10 + 0.1
    x = torch.nn.Parameter(torch.zeros(50, 3, dtype=torch.float64))
    opt = VectorAdam([x], lr=0.05, betas=(0.9, 0.99))
    for _ in range(1500):
        opt.zero_grad()
        ((x - target) ** 2 * scales).sum().backward()
        opt.step()
    assert torch.allclose(x, target, atol=1e-2)


def _run(opt_cls, grads, **kw):
    x = torch.nn.Parameter(torch.zeros_like(grads[0]))
    opt = opt_cls([x], lr=0.1, betas=(0.9, 0.9), **kw)
    for g in grads:
        x.grad = g.clone()
        opt.step()
    return x.detach()


def test_rotation_equivariance():
    gen = torch.Generator().manual_seed(1)
    grads = [torch.randn(20, 3, generator=gen, dtype=torch.float64) for _ in range(5)]
    r = _random_rotation(2)
    rotated = [g @ r.T for g in grads]
    x = _run(VectorAdam, grads)
    xr = _run(VectorAdam, rotated)
    assert torch.allclose(xr, x @ r.T, atol=1e-12)
    # Plain Adam (per-coordinate second moment) is not equivariant.
    a = _run(torch.optim.Adam, grads)
    ar = _run(torch.optim.Adam, rotated)
    assert not torch.allclose(ar, a @ r.T, atol=1e-3)


def test_first_step_is_unit_length_per_row():
    x = torch.nn.Parameter(torch.zeros(4, 3))
    opt = VectorAdam([x], lr=0.5, eps=0.0)
    x.grad = torch.tensor([[1.0, 0, 0], [0, 3, 4], [1, 1, 1], [0, 0, -2]])
    opt.step()
    assert torch.allclose(x.norm(dim=1), torch.full((4,), 0.5))


def test_frequency_scale_group():
    coeffs = torch.nn.Parameter(torch.zeros(2, 4, 3))
    other = torch.nn.Parameter(torch.zeros(2, 3))
    opt = VectorAdam(
        [{"name": "affine", "params": [other]}, {"name": "spectral", "params": [coeffs]}],
        lr=1.0,
        eps=0.0,
    )
    scale = torch.tensor([1.0, 0.5, 0.25, 0.125])
    opt.set_frequency_scale(scale)
    coeffs.grad = torch.ones(2, 4, 3)
    other.grad = torch.ones(2, 3)
    opt.step()
    row_norm = coeffs.detach().norm(dim=-1)
    assert torch.allclose(row_norm, scale.expand(2, 4))
    assert torch.allclose(other.detach().norm(dim=-1), torch.ones(2))
    with pytest.raises(ValueError, match="broadcast"):
        opt.set_frequency_scale(torch.ones(5))
    with pytest.raises(ValueError, match="named"):
        opt.set_frequency_scale(scale, group="nope")
    opt.set_frequency_scale(None)
    assert opt.param_groups[1]["frequency_scale"] is None


def test_frequency_step_scale():
    lam = torch.tensor([1e-12, 2.0, 2.0, 6.0, 12.0], dtype=torch.float64)
    s = frequency_step_scale(lam, 1.0)
    assert torch.allclose(s, torch.tensor([1.0, 1.0, 1.0, 1 / 3, 1 / 6], dtype=torch.float64))
    s04 = frequency_step_scale(lam, 0.4)
    assert s04[-1].item() == pytest.approx(6.0**-0.4)
    assert torch.all(torch.isfinite(s04))
    with pytest.raises(ValueError, match="eigenvalues"):
        frequency_step_scale(torch.ones(2, 2), 1.0)


def test_bad_hyperparameters_and_appearance_adam():
    p = torch.nn.Parameter(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="lr"):
        VectorAdam([p], lr=-1.0)
    with pytest.raises(ValueError, match="betas"):
        VectorAdam([p], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="params"):
        VectorAdam([torch.nn.Parameter(torch.tensor(1.0))])
    adam = appearance_optimizer([p])
    assert adam.defaults["lr"] == 0.01 and adam.defaults["betas"] == (0.9, 0.9)
    assert math.isfinite(adam.defaults["eps"])
