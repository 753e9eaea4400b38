"""Voxel refinement of the label map (diffam.fit.refine) on phantoms of known geometry.

Meshes are made from the true label map, then deliberately grown or moved;
the refinement must pull the labels back to the truth from the phantom's
intensities, keep the boundary between neighbours and stay on the grid.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from diffam.core.config import RefineConfig
from diffam.evaluation.metrics import dice
from diffam.fit.rasterize import rasterize_meshes
from diffam.fit.refine import refine_labels
from tests.diffam.phantom_spine import spine_phantom

VALUES = (20, 21)


@pytest.fixture(scope="module")
def phantom():
    labels, ct, _ = spine_phantom(anterior_heights=(25.0, 22.0), values=VALUES,
                                  spacing=(1.0, 1.0, 1.0), noise_hu=20.0)
    return labels, ct


def _meshes(labels, mask_of):
    """Closed outward meshes (world mm) of ``mask_of(label_mask)`` per label."""
    from skimage.measure import marching_cubes

    meshes = []
    for value in VALUES:
        mask = np.pad(mask_of(labels.array == value), 1)
        verts_kji, faces, _, _ = marching_cubes(mask.astype(np.float32), level=0.5)
        world = labels.index_to_world(verts_kji[:, ::-1] - 1.0)
        a, b, c = (world[faces[:, n]] for n in range(3))
        if np.einsum("ij,ij->i", a, np.cross(b, c)).sum() < 0:  # inward: flip
            faces = faces[:, ::-1]
        meshes.append((world, np.ascontiguousarray(faces)))
    return meshes


def _mean_dice(pred, truth):
    return 100 * np.mean([dice(pred == v, truth == v) for v in VALUES])


def _grown(mask, mm=1.5):
    return ndimage.distance_transform_edt(~mask) <= mm


def _moved(mask, voxels=(0, 2, 2)):
    return ndimage.shift(mask.astype(np.uint8), voxels, order=0).astype(bool)


@pytest.mark.parametrize("distort", [_grown, _moved], ids=["grown_1.5mm", "moved_2mm"])
def test_distorted_meshes_are_pulled_back_to_the_bone(phantom, distort):
    """The statistics come from shells 1-3 mm either side of the fitted surfaces, so a
    fit off by up to about 1.5 mm everywhere is corrected (at 2 mm everywhere the
    shells hold as much tissue as bone and the gain is smaller)."""
    labels, ct = phantom
    meshes = _meshes(labels, distort)
    plain = rasterize_meshes(meshes, VALUES, ct)[0]
    refined = refine_labels(ct, meshes, VALUES, RefineConfig(method="likelihood", band_mm=3.0))
    before, after = _mean_dice(plain, labels.array), _mean_dice(refined, labels.array)
    assert before < 90, before  # the distortion is large enough to matter
    assert after >= 95, (before, after)
    assert refined.shape == labels.array.shape and refined.dtype == np.int32


def test_exact_meshes_stay_exact_and_none_is_the_plain_rasterisation(phantom):
    labels, ct = phantom
    meshes = _meshes(labels, lambda m: m)
    plain = rasterize_meshes(meshes, VALUES, ct)[0]
    none = refine_labels(ct, meshes, VALUES, RefineConfig(method="none"))
    np.testing.assert_array_equal(none, plain)
    refined = refine_labels(ct, meshes, VALUES, RefineConfig(method="likelihood"))
    assert _mean_dice(refined, labels.array) >= 95


def test_bone_goes_to_the_nearest_fitted_vertebra(phantom):
    """Both meshes moved 2 mm towards the disc between them: each vertebra's bone comes
    back to it, none to its neighbour, and nothing far from the bone is labelled."""
    labels, ct = phantom
    upper, lower = VALUES  # spine_phantom lists the top vertebra first
    meshes = _meshes(labels, lambda m: m)
    shift = {upper: -2.0, lower: 2.0}  # world z (LPS: superior) mm: towards each other
    meshes = [(v + np.array([0.0, 0.0, shift[value]]), f) for (v, f), value in zip(meshes, VALUES)]
    plain = rasterize_meshes(meshes, VALUES, ct)[0]
    refined = refine_labels(ct, meshes, VALUES, RefineConfig(method="likelihood"))
    for value in VALUES:
        truth = labels.array == value
        assert dice(refined == value, truth) >= 0.95, value
        assert dice(refined == value, truth) > dice(plain == value, truth) + 0.03, value
        other = [v for v in VALUES if v != value][0]
        assert not (refined[truth] == other).any(), value
    far = ndimage.distance_transform_edt(labels.array == 0) > 3.0
    assert not (refined[far] > 0).any()


def test_unknown_method_is_refused(phantom):
    labels, ct = phantom
    with pytest.raises(ValueError, match="refine.method"):
        refine_labels(ct, _meshes(labels, lambda m: m), VALUES, RefineConfig(method="graphcut"))




def test_potts_sweeps_fill_the_holes_of_a_noisy_scan():
    """Noise of 100 HU and meshes moved 2 mm up and 2 mm back: decided voxel by voxel,
    the band fills with holes and specks of bone (hundreds of pieces); with the Potts
    sweeps (the default) the holes are nearly all filled, the specks fewer (those
    whose HU alone says bone stay) and the label map closer to the phantom's."""
    labels, ct, _ = spine_phantom(anterior_heights=(25.0, 22.0), values=VALUES,
                                  spacing=(1.0, 1.0, 1.0), noise_hu=100.0)
    meshes = _meshes(labels, _moved)
    alone = refine_labels(ct, meshes, VALUES, RefineConfig(method="likelihood", mrf_sweeps=0))
    default = refine_labels(ct, meshes, VALUES, RefineConfig())
    assert RefineConfig().mrf_sweeps > 0

    def holes(labels_):
        return ndimage.label(labels_ == 0)[1]

    def specks(labels_):
        return ndimage.label(labels_ > 0)[1]

    assert holes(alone) > holes(labels.array) + 50, (holes(alone), holes(labels.array))
    assert holes(default) <= holes(labels.array) + 10, (holes(default), holes(labels.array))
    assert specks(default) < specks(alone) / 2, (specks(default), specks(alone))
    assert _mean_dice(default, labels.array) > _mean_dice(alone, labels.array) + 0.5
