"""Curved planar reformations along the spine (diffam.export.qc_curved), against analytic cases.

* A straight centreline through voxel centres: the sagittal and coronal CPRs
  must be the volume's own slices, voxel for voxel.
* A circular-arc centreline (a kyphosis of radius R in the sagittal plane)
  on a volume whose value is the distance from the arc's axis: the coronal
  CPR must read R everywhere, the sagittal one R + offset (posterior is
  outward on this arc), and consecutive rows must be one step apart along
  the arc.
"""

from __future__ import annotations

import numpy as np
import pytest

from diffam.core.volume import Volume
from diffam.export.qc import sample_volume
from diffam.export.qc_curved import curved_plane_points, fit_centreline, section_points


def test_straight_centreline_gives_the_volume_slices_voxel_for_voxel():
    rng = np.random.default_rng(0)
    array = rng.normal(0.0, 100.0, (60, 50, 40)).astype(np.float32)  # (z, y, x)
    volume = Volume(array, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3))
    x0, y0 = 20.0, 25.0
    centroids = np.array([[x0, y0, z] for z in (15.0, 25.0, 35.0, 45.0)])[::-1]  # head to tail
    line = fit_centreline(centroids, 1.0, extension_mm=10.0)
    np.testing.assert_allclose(line.points[:, :2], [[x0, y0]] * len(line.points), atol=1e-6)
    np.testing.assert_allclose(line.points[:, 2], np.arange(5.0, 55.0 + 1e-9), atol=1e-6)
    np.testing.assert_allclose(line.tangent, [[0.0, 0.0, 1.0]] * len(line.points), atol=1e-9)
    z = np.arange(5, 56)
    sagittal = sample_volume(volume, curved_plane_points(line, "sagittal", 20.0, 1.0)[0], 1, 0.0)
    # columns: posterior (+y) offsets -20..20 from y0; rows: z upward
    np.testing.assert_allclose(sagittal, array[z][:, 5:46, 20], atol=1e-4)
    coronal = sample_volume(volume, curved_plane_points(line, "coronal", 15.0, 1.0)[0], 1, 0.0)
    # columns: the patient's left (+x) offsets -15..15 from x0
    np.testing.assert_allclose(coronal, array[z][:, 25, 5:36], atol=1e-4)
    # the axial thumbnail's plane through a centroid (left across, anterior up)
    axial, offsets = section_points(np.array([x0, y0, 30.0]), line.left[0], line.anterior[0],
                                    10.0, 1.0)
    values = sample_volume(volume, axial, 1, 0.0)
    np.testing.assert_allclose(values, array[30, 35:14:-1, 10:31], atol=1e-4)


@pytest.mark.parametrize("radius", [80.0, 150.0])
def test_circular_arc_centreline_follows_the_arc(radius):
    spacing = 0.8
    shape = (int(2.6 * radius / spacing), int(2.6 * radius / spacing), 40)  # z, y, x
    centre_y = centre_z = 1.3 * radius
    origin = (-16.0, 0.0, 0.0)
    k, j = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    distance = np.hypot(j * spacing - centre_y, k * spacing - centre_z)  # from the arc's axis
    array = np.repeat(distance[:, :, None], shape[2], axis=2).astype(np.float32)
    volume = Volume(array, (spacing, spacing, spacing), origin, np.eye(3))
    angles = np.linspace(-0.45, 0.45, 9)  # the arc bulges posteriorly (+y)
    centroids = np.stack([np.zeros_like(angles), centre_y + radius * np.cos(angles),
                          centre_z + radius * np.sin(angles)], axis=1)
    line = fit_centreline(centroids, 1.0, extension_mm=0.0, smoothing_mm=0.0)
    on_arc = np.hypot(line.points[:, 1] - centre_y, line.points[:, 2] - centre_z)
    np.testing.assert_allclose(on_arc, radius, atol=0.05)
    steps = np.linalg.norm(np.diff(line.points, axis=0), axis=1)
    np.testing.assert_allclose(steps, 1.0, atol=0.01)
    assert line.arc_mm[-1] == pytest.approx(0.9 * radius, abs=1.0)
    half = 12.0
    coronal = sample_volume(volume, curved_plane_points(line, "coronal", half, 1.0)[0], 1, 0.0)
    np.testing.assert_allclose(coronal, radius, atol=0.1)
    points, offsets = curved_plane_points(line, "sagittal", half, 1.0)
    sagittal = sample_volume(volume, points, 1, 0.0)
    np.testing.assert_allclose(sagittal, np.broadcast_to(radius + offsets, sagittal.shape),
                               atol=0.1)
