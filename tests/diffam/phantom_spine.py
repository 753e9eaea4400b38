"""Analytic vertebra phantoms of exactly known geometry and HU, voxelised on any grid.

A vertebra in its local frame ``(x, a, s)`` mm (x: left-right, a: anterior,
s: superior; origin on the posterior wall of the body, mid-height):

* body: ``|x| <= W/2``, ``0 <= a <= D``, ``-Hp/2 <= s <= -Hp/2 + h(a)`` with
  ``h(a) = Hp + (Ha - Hp) a / D`` (a wedge when ``Ha < Hp``: the upper
  endplate sinks anteriorly); cortical shell of ``SHELL_MM`` at ``CORTEX_HU``,
  trabecular interior at ``TRABECULAR_HU``;
* posterior elements (``POSTERIOR_HU``): pedicles beside a canal of
  ``2 * CANAL_HALF_WIDTH`` mm, lamina, spinous and transverse processes.

The world position is ``centre + R @ (x, -a, s)`` (LPS: anterior is -y).
"""

from __future__ import annotations

import numpy as np

from diffam.core.volume import Volume

W, D, HP = 40.0, 32.0, 25.0
SHELL_MM = 1.5
CORTEX_HU, TRABECULAR_HU, POSTERIOR_HU, TISSUE_HU = 900.0, 150.0, 600.0, 30.0
CANAL_HALF_WIDTH = 8.0
PITCH = 34.0  # body height plus disc

#: Boxes of the posterior elements: (x_lo, x_hi, a_lo, a_hi, s_lo, s_hi), mirrored in x.
POSTERIOR_BOXES = (
    (CANAL_HALF_WIDTH, 14.0, -15.0, 0.5, -5.0, 8.0),   # pedicles (reach into the body wall)
    (0.0, 14.0, -22.0, -15.0, -6.0, 10.0),             # lamina
    (0.0, 3.0, -45.0, -22.0, -12.0, 6.0),              # spinous process
    (14.0, 35.0, -18.0, -12.0, -3.0, 5.0),             # transverse processes
)


def height(a, ha: float, hp: float = HP):
    """Body height (mm) at depth ``a`` mm anterior of the posterior wall."""
    return hp + (ha - hp) * np.asarray(a) / D


def rotation(angles_deg) -> np.ndarray:
    a, b, c = np.radians(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _vertebra(x, a, s, ha: float):
    """(body, trabecular, posterior) bool arrays at local points."""
    top = -HP / 2 + height(np.clip(a, 0, D), ha)
    body = (np.abs(x) <= W / 2) & (a >= 0) & (a <= D) & (s >= -HP / 2) & (s <= top)
    tilt = np.cos(np.arctan((HP - ha) / D))
    depth = np.minimum.reduce([W / 2 - np.abs(x), a, D - a, s + HP / 2, (top - s) * tilt])
    trabecular = body & (depth >= SHELL_MM)
    posterior = np.zeros(x.shape, bool)
    for x0, x1, a0, a1, s0, s1 in POSTERIOR_BOXES:
        posterior |= ((np.abs(x) >= x0) & (np.abs(x) <= x1) & (a >= a0) & (a <= a1)
                      & (s >= s0) & (s <= s1))
    return body, trabecular, posterior & ~body


def spine_phantom(
    anterior_heights=(HP, 0.7 * HP, HP),
    values=(20, 21, 22),
    *,
    spacing=(0.5, 0.5, 0.5),
    direction=None,
    tilt_deg=(0.0, 0.0, 0.0),
    noise_hu: float = 20.0,
    crop_top_mm: float = 0.0,
    seed: int = 0,
):
    """A stack of vertebrae (top first) on a grid holding all of them.

    Returns:
        ``(labels, ct, truth)``: label Volume (uint8), CT Volume (float32 HU,
        with Gaussian noise) and per label value the noise-free HU of the
        labelled voxels (``"hu"``), the same with the noise (``"hu_noisy"``) and
        the trabecular voxel count.
    """
    direction = np.eye(3) if direction is None else np.asarray(direction, float)
    spacing = np.asarray(spacing, float)
    rot = rotation(tilt_deg)
    n = len(values)
    offset = np.array([0.113, 0.171, 0.207])  # no voxel centre on a face of the phantom
    centres = [rot @ np.array([0.0, 0.0, PITCH * ((n - 1) / 2 - i)]) + offset for i in range(n)]
    # world bounding box of all vertebrae, then the grid covering it
    half = np.array([36.0, 48.0, PITCH * n / 2 + 2])
    corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
    world = (corners * half) @ rot.T + np.array([0.0, 6.0, 0.0]) @ rot.T
    index_corners = world @ np.linalg.inv(direction).T / spacing
    lo, hi = index_corners.min(0), index_corners.max(0)
    if crop_top_mm:
        # move the grid's upper end down (along whichever index axis is superior)
        axis = int(np.argmax(np.abs(direction[2])))
        if direction[2, axis] > 0:
            hi[axis] -= crop_top_mm / spacing[axis]
        else:
            lo[axis] += crop_top_mm / spacing[axis]
    shape_ijk = np.ceil(hi - lo).astype(int) + 1
    origin = direction @ (lo * spacing)
    volume = Volume(np.zeros(shape_ijk[::-1], np.uint8), spacing, origin, direction)

    k, j, i = np.meshgrid(*(np.arange(m) for m in shape_ijk[::-1]), indexing="ij")
    points = volume.index_to_world(np.stack([i, j, k], -1).reshape(-1, 3).astype(np.float32))
    labels = np.zeros(len(points), np.uint8)
    hu = np.full(len(points), TISSUE_HU, np.float32)
    truth = {}
    for centre, ha, value in zip(centres, anterior_heights, values):
        near = np.flatnonzero(np.abs((points - centre) @ rot[:, 2]) <= PITCH / 2)
        local = (points[near] - centre) @ rot  # rot^T (p - c)
        x, a, s = local[:, 0], -local[:, 1], local[:, 2]
        body, trabecular, posterior = _vertebra(x, a, s, ha)
        inside = body | posterior
        labels[near[inside]] = value
        hu[near[body]] = CORTEX_HU
        hu[near[trabecular]] = TRABECULAR_HU
        hu[near[posterior]] = POSTERIOR_HU
        truth[value] = {"index": near[inside], "hu": hu[near[inside]].astype(float),
                        "trabecular_voxels": int(trabecular.sum())}
    rng = np.random.default_rng(seed)
    noisy = hu + rng.normal(0.0, noise_hu, hu.shape).astype(np.float32)
    for entry in truth.values():
        entry["hu_noisy"] = noisy[entry.pop("index")].astype(float)
    shape = tuple(shape_ijk[::-1])
    return (volume.with_array(labels.reshape(shape)),
            volume.with_array(noisy.reshape(shape)), truth)
