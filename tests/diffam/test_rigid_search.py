"""Coarse rigid search: vertebrae started 15 mm and 15 degrees off land on their own bone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffam.core.centroids import centroids_from_label_map
from diffam.core.config import SegmentationConfig
from diffam.core.image import read_image
from diffam.core.template import load_template, solid_centroid
from diffam.fit.deformation import InitialTransform
from diffam.fit.interpolation import VolumeSampler
from diffam.fit.model import initial_placement
from diffam.fit.pipeline import select_template
from diffam.fit.rigid_search import rigid_search
from diffam.fit.roi import processing_volume

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]


def _rotation(axis, degrees):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    a = np.radians(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def _angle(a, b):
    return np.degrees(np.arccos(np.clip((np.trace(a @ b.T) - 1) / 2, -1, 1)))


@pytest.fixture(scope="module")
def verse008(shared_data):
    folder = shared_data / "ct" / "verse008_t12_l5_crop"
    image = read_image(folder / "ct.nii.gz")
    centroids = centroids_from_label_map(read_image(folder / "labels_verse.nii.gz"))
    template = select_template(load_template("spine"), centroids, None)
    target = np.stack([centroids[v.verse_id] for v in template.vertebrae])
    return image, template, target, initial_placement(template, target, SegmentationConfig())


def _perturb(placement, vertices, moves):
    """Rotate vertebra k by moves[k] = (axis, degrees, shift mm) about its centre, then shift."""
    rotation, translation = placement.rotation.numpy().copy(), placement.translation.numpy().copy()
    centres = placement.apply(torch.as_tensor(vertices)).numpy().mean(1)
    for k, (axis, degrees, shift) in moves.items():
        r = _rotation(axis, degrees)
        rotation[k] = r @ rotation[k]
        translation[k] = r @ (translation[k] - centres[k]) + centres[k] + np.asarray(shift)
    return InitialTransform(torch.as_tensor(rotation), torch.as_tensor(translation),
                            placement.scale.clone())


def _search(image, template, start):
    placed = start.apply(torch.as_tensor(template.stacked_vertices())).numpy().reshape(-1, 3)
    roi = processing_volume(image, placed.min(0) - 40, placed.max(0) + 40, 1.5)
    sampler = VolumeSampler.from_volume(roi, outside_value=float(np.median(roi.array)))
    return rigid_search(sampler, template.stacked_vertices(), template.faces, start)


def _errors(template, placement, target, reference):
    """Distance of each placed vertebra's centroid to its own true centroid, and its rotation error.

    Also checks that each lies nearer its own true centroid than any other (its own bone).
    """
    vertices = placement.apply(torch.as_tensor(template.stacked_vertices())).numpy()
    found = np.stack([solid_centroid(v, template.faces) for v in vertices])
    distance = np.linalg.norm(found[:, None] - target[None], axis=2)
    assert np.all(distance.argmin(1) == np.arange(len(target))), distance.round(1)
    shift = distance.diagonal()
    turn = [_angle(a, b) for a, b in zip(placement.rotation.numpy(), reference.rotation.numpy())]
    return np.array(shift), np.array(turn)


def test_one_vertebra_15_mm_and_15_degrees_off_lands_on_its_bone(verse008):
    image, template, target, truth = verse008
    m = len(target) // 2
    direction = np.array([0.3, 0.2, 1.0])  # mostly along the spine: toward its neighbour
    start = _perturb(truth, template.stacked_vertices(),
                     {m: ([0.0, 1.0, 0.2], 15.0, 15.0 * direction / np.linalg.norm(direction))})
    before, _ = _errors(template, start, target, truth)
    assert before[m] > 14.0
    shift, turn = _errors(template, _search(image, template, start), target, truth)
    assert shift[m] < 5.0 and turn[m] < 10.0, (shift, turn)
    assert np.all(shift < 10.0), shift  # the others stay on their bone


def test_whole_column_15_mm_and_15_degrees_off(verse008):
    image, template, target, truth = verse008
    moves = {k: ([1.0, 0.0, 0.0], 15.0, [0.0, -15.0, 0.0]) for k in range(len(target))}
    start = _perturb(truth, template.stacked_vertices(), moves)
    shift, turn = _errors(template, _search(image, template, start), target, truth)
    # on its own bone: within 10 mm of its own centre (the spacing here is ~35 mm)
    assert np.all(shift < 10.0), shift
    assert turn.mean() < 10.0, turn  # started 15 degrees off
