"""Out-of-view handling: samples outside the scan leave the image loss; vertebrae stay in view."""

from __future__ import annotations

import numpy as np
import torch

from diffam.core.volume import Volume
from diffam.fit import objective as L
from diffam.fit.field_of_view import FieldOfView, view_drift_penalty
from diffam.fit.interpolation import VolumeSampler


def _volume(shape=(10, 20, 30), spacing=(1.0, 2.0, 1.5)):
    return Volume(np.zeros(shape, np.float32), np.array(spacing), np.array([5.0, -3.0, 2.0]),
                  np.eye(3))


def test_depth_and_inside_match_the_box_of_voxel_centres():
    vol = _volume()
    fov = FieldOfView.of_volume(vol)
    lo = vol.index_to_world(np.zeros((1, 3)))[0]
    hi = vol.index_to_world(np.array([[29.0, 19.0, 9.0]]))[0]
    centre = torch.tensor((lo + hi) / 2)[None]
    assert torch.allclose(fov.depth(centre), torch.tensor([4.5 * 1.5], dtype=torch.float64))
    outside = torch.tensor([[lo[0] - 3.0, centre[0, 1], centre[0, 2]]])
    assert fov.depth(outside).item() == torch.tensor(-3.0, dtype=torch.float64).item()
    assert fov.inside(torch.cat([centre, outside])).tolist() == [True, False]


def test_sampler_field_of_view_equals_the_volume_one():
    vol = _volume()
    sampler = VolumeSampler.from_volume(vol)
    points = torch.randn(50, 3, dtype=torch.float64) * 20 + torch.tensor(
        vol.index_to_world(np.array([[15.0, 10.0, 5.0]]))[0])
    a = FieldOfView.of_volume(vol).depth(points)
    b = FieldOfView.of_sampler(sampler).depth(points)
    assert torch.allclose(a, b)


def test_image_loss_ignores_out_of_view_samples():
    predicted = torch.tensor([0.2, 0.4, 0.9, -3.0], requires_grad=True)
    observed = torch.tensor([0.1, 0.5, 5.0, 7.0])  # the last two: padding outside the scan
    mask = torch.tensor([True, True, False, False])
    loss = L.image_loss(predicted, observed, mask)
    assert abs(loss.item() - 0.1) < 1e-6
    loss.backward()
    assert predicted.grad[2:].abs().sum() == 0
    # changing what lies outside changes nothing
    assert L.image_loss(predicted, observed * torch.tensor([1, 1, 9, 9]), mask).item() == loss.item()
    # no sample in view: zero, still differentiable
    assert L.image_loss(predicted, observed, torch.zeros(4, dtype=torch.bool)).item() == 0.0


def test_drift_penalty_only_below_the_floor():
    vol = _volume()
    fov = FieldOfView.of_volume(vol)
    lo = vol.index_to_world(np.zeros((1, 3)))[0]
    inner = torch.tensor(lo + np.array([10.0, 20.0, 8.0]))[None]  # depth 8 mm (z)
    floor = torch.tensor([5.0], dtype=torch.float64)
    assert view_drift_penalty(inner, fov, floor, 64.0).item() == 0.0
    near = torch.tensor(lo + np.array([10.0, 20.0, 2.0]))[None].requires_grad_(True)
    penalty = view_drift_penalty(near, fov, floor, 64.0)
    assert abs(penalty.item() - (3.0 / 64) ** 2) < 1e-9
    penalty.backward()
    assert near.grad[0, 2] < 0  # descending moves it back inside (+z)
