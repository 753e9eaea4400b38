"""The axial tether (diffam.fit.tether): dead zone, axis, tracked centre, given centroids only."""

from __future__ import annotations

import math

import numpy as np
import torch

from diffam.fit import objective as L
from diffam.fit.tether import build_tether, tether_loss


def test_tether_loss_is_free_in_the_dead_zone_and_quadratic_beyond():
    axial = torch.tensor([0.5, -2.0, 3.0, -0.9])
    active = torch.tensor([True, True, False, True])
    # only the second is active and beyond 1 mm, by 1 mm: (1/64)^2 averaged over 3 active
    expected = (1.0 / 64.0) ** 2 / 3
    assert math.isclose(float(tether_loss(axial, active, 1.0, 64.0)), expected, rel_tol=1e-6)
    assert float(tether_loss(axial, torch.zeros(4, dtype=torch.bool), 1.0, 64.0)) == 0.0
    # beyond the dead zone it grows with the square of the excess
    two = float(tether_loss(torch.tensor([3.0]), torch.tensor([True]), 1.0, 64.0))
    one = float(tether_loss(torch.tensor([2.0]), torch.tensor([True]), 1.0, 64.0))
    assert math.isclose(two, 4 * one, rel_tol=1e-6)


def _two_vertebrae(shift: torch.Tensor):
    """Two 'vertebrae' of four vertices each; the first two vertices are the 'body'."""
    base = torch.tensor([[0.0, -10, 0], [0, -10, 4], [0, 10, 0], [0, 10, 4]])
    placed = torch.stack([base, base + torch.tensor([0.0, 0, 30])])
    mask = np.array([True, True, False, False])
    centres = np.array([[0.0, -12, 2], [0.0, -12, 32]])  # where the placement put the body centres
    targets = centres + np.array([[0.0, 0, 0.5], [0.0, 0, 0]])  # the first starts 0.5 mm low
    axes = np.array([[0.0, 0, 1], [0, 0, 1]])
    tether = build_tether(placed.numpy(), centres, targets, axes, [True, True], mask, 1.0,
                          torch.device("cpu"))
    return tether, placed + shift


def test_tracked_centre_follows_the_body_along_the_axis_only():
    shift = torch.zeros(2, 4, 3)
    shift[0, :2, 2] = 3.0     # the first body slides 3 mm up, its arch stays
    shift[1, :, 0] = 5.0      # the second moves sideways: not along the axis
    tether, vertices = _two_vertebrae(shift)
    offsets = tether.axial_offsets_mm(vertices)
    assert torch.allclose(offsets, torch.tensor([2.5, 0.0]), atol=1e-5)


def test_tether_term_pulls_a_slid_body_back_down():
    from types import SimpleNamespace

    shift = torch.zeros(2, 4, 3)
    shift[0, :2, 2] = 3.0
    tether, vertices = _two_vertebrae(shift)
    vertices = vertices.clone().requires_grad_(True)
    fit = SimpleNamespace(tether=tether, unit=64.0)
    samples = L.StepSamples(vertices=vertices, packed=vertices.reshape(-1, 3), points=None,
                            union=None, target_sampler=None)
    value = L._tether_term(fit, samples)
    assert math.isclose(float(value.detach()), (1.5 / 64) ** 2 / 2, rel_tol=1e-5)
    value.backward()
    assert float(vertices.grad[0, :2, 2].sum()) > 0       # descent moves the body down
    assert float(vertices.grad[0, 2:].abs().sum()) == 0   # the arch is not tracked
    assert float(vertices.grad[1].abs().sum()) == 0       # within the dead zone


def test_tether_is_registered_off_by_default():
    from diffam.core.config import LossWeights, OptimConfig

    assert "tether" in L.LOSS_TERMS
    assert LossWeights().tether == 0.0
    assert OptimConfig().tether_free_mm > 0


def test_pipeline_tethers_only_the_given_centroids_and_starts_each_on_its_centroid(monkeypatch):
    """Guards (extrapolated centroids) are not tethered; each tethered vertebra's tracked
    centre starts on its given centroid, for both kinds of centroid."""
    from diffam.authoring.phantom import PhantomConfig, make_phantom
    from diffam.core.body_centre import body_centres_from_label_map
    from diffam.core.config import SegmentationConfig
    from diffam.core.template import load_template
    from diffam.fit import pipeline

    template = load_template("lumbar")
    phantom = make_phantom(template, PhantomConfig(levels=("L1", "L2", "L3", "L4"),
                                                   spacing_mm=(2.0, 2.0, 2.0), seed=1))
    l2, l3 = phantom.verse_ids[1:3]
    seen = {}
    build = pipeline.tether_to_given

    def spy(fit, *args, **kwargs):
        tether = build(fit, *args, **kwargs)
        with torch.no_grad():
            seen["offsets"] = tether.axial_offsets_mm(fit.shape()).numpy()
        seen["active"] = tether.active.tolist()
        return tether

    monkeypatch.setattr(pipeline, "tether_to_given", spy)
    config = SegmentationConfig(template="lumbar", device="cpu", seed=0)
    config.optim.iterations = 2
    config.losses.tether = 1000.0
    bodies = body_centres_from_label_map(phantom.labels)
    for kind, centres in (("vertebra", phantom.centroids), ("body", bodies)):
        given = {v: centres[v] for v in (l2, l3)}
        result = pipeline.segment(phantom.image, config, centroids=given, template=template,
                                  centroids_kind=kind)
        assert sorted(result.drawn_from.verse_ids) == [l2 - 1, l2, l3, l3 + 1]
        assert seen["active"] == [False, True, True, False], kind
        assert np.abs(seen["offsets"][1:3]).max() < 0.1, (kind, seen["offsets"])
