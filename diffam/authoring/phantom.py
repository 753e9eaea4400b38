"""Synthetic CT phantoms with exact ground truth.

A template set is placed under a known smooth deformation and rendered as a
CT volume with realistic intensities: cancellous bone inside a cortical shell,
soft tissue with fatty inhomogeneities around, partial-volume blur and noise,
on a grid of chosen spacing and orientation. The exact label map and meshes
come with it: the ground truth of the recovery tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from scipy.spatial.transform import Rotation

import diffsd
from diffam.authoring import pelvis, rib_bars
from diffam.core.labels import verse_id
from diffam.core.template import TemplateSet
from diffam.core.volume import Volume
from diffam.fit.rasterize import rasterize_meshes


@dataclass
class PhantomConfig:
    """How a phantom is made. Intensities in HU, lengths in mm, angles in degrees."""

    levels: tuple[str, ...] = ("L1", "L2", "L3")
    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)
    #: Columns: LPS directions of index axes i, j, k (None: identity).
    direction: tuple[tuple[float, ...], ...] | None = None
    margin_mm: float = 25.0
    rotation_deg: float = 4.0
    translation_mm: float = 2.0
    scale_range: tuple[float, float] = (0.95, 1.05)
    warp_amplitude_mm: float = 2.0
    warp_wavelength_mm: float = 60.0
    cortical_thickness_mm: float = 1.5
    hu_cortical: float = 900.0
    hu_cancellous: float = 250.0
    hu_soft_tissue: float = 40.0
    hu_fat: float = -90.0
    partial_volume_sigma_mm: float = 0.6
    noise_hu: float = 20.0
    seed: int = 0
    #: A sacrum below the lowest level (:mod:`diffam.authoring.pelvis`), labelled 26.
    sacrum: bool = False
    #: The iliac bones beside the sacrum (needs ``sacrum``); not labelled.
    pelvis: bool = False
    #: Levels that carry a rib pair (:mod:`diffam.authoring.rib_bars`); not labelled.
    ribs: tuple[str, ...] = ()
    #: A sixth lumbar vertebra (VerSe id 25, a transitional spine): a copy of the
    #: lowest level one period below it (from its neighbour above); the sacrum goes below it.
    lumbar_six: bool = False


@dataclass
class Phantom:
    """A synthetic scan and its exact ground truth.

    Attributes:
        image: CT volume in HU.
        labels: label map (VerSe ids) on the image grid.
        meshes: per level, the true (vertices (V, 3) LPS mm, faces (F, 3)).
        centroids: VerSe id -> (3,) world mm centroid of the true label.
        verse_ids: VerSe id of each mesh, in template order.
    """

    image: Volume
    labels: Volume
    meshes: list[tuple[np.ndarray, np.ndarray]]
    centroids: dict[int, np.ndarray]
    verse_ids: list[int]


def _smooth_warp(
    points: np.ndarray, amplitude: float, wavelength: float, rng: np.random.Generator
) -> np.ndarray:
    """A smooth displacement field (sum of random plane waves), (N, 3) mm."""
    displacement = np.zeros_like(points)
    for _ in range(4):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        phase = rng.uniform(0, 2 * np.pi)
        amplitude_vector = rng.normal(size=3)
        amplitude_vector *= amplitude / 2 / np.linalg.norm(amplitude_vector)
        wave = np.sin(points @ direction * (2 * np.pi / wavelength) + phase)
        displacement += wave[:, None] * amplitude_vector[None, :]
    return displacement


def deform_template(
    template: TemplateSet, config: PhantomConfig, rng: np.random.Generator
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The template's vertebrae under a random similarity each plus one smooth warp."""
    meshes = []
    warp_rng = np.random.default_rng(rng.integers(1 << 31))
    for vertebra in template.vertebrae:
        v = vertebra.vertices
        centroid = v.mean(0)
        rotation = Rotation.from_rotvec(
            np.deg2rad(config.rotation_deg) * rng.uniform(-1, 1) * _unit(rng.normal(size=3))
        )
        scale = rng.uniform(*config.scale_range)
        translation = config.translation_mm * rng.uniform(-1, 1, size=3)
        placed = scale * rotation.apply(v - centroid) + centroid + translation
        meshes.append((placed, vertebra.faces))
    all_points = np.concatenate([m[0] for m in meshes])
    warped = all_points + _smooth_warp(
        all_points, config.warp_amplitude_mm, config.warp_wavelength_mm, warp_rng
    )
    out, start = [], 0
    for v, f in meshes:
        out.append((warped[start : start + len(v)], f))
        start += len(v)
    return out


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def make_phantom(template: TemplateSet, config: PhantomConfig | None = None) -> Phantom:
    """Render a synthetic CT of ``config.levels`` of ``template``.

    Args:
        template: a template set holding at least ``config.levels``.
        config: the phantom's parameters (default :class:`PhantomConfig`).

    Returns:
        the :class:`Phantom` (image in HU, exact labels, meshes, centroids).
    """
    config = config or PhantomConfig()
    rng = np.random.default_rng(config.seed)
    chosen = template.subset(list(config.levels))
    meshes = deform_template(chosen, config, rng)
    verse_ids = [v.verse_id for v in chosen.vertebrae]
    if config.lumbar_six:
        (low, faces), above = meshes[-1], meshes[-2][0]
        meshes.append((low + (low.mean(0) - above.mean(0)), faces))
        verse_ids.append(L6_ID)
    rib_centroids = [meshes[verse_ids.index(verse_id(level))][0].mean(0) for level in config.ribs]

    # Grid covering the meshes plus a margin, in the requested orientation.
    direction = np.eye(3) if config.direction is None else np.asarray(config.direction, float)
    spacing = np.asarray(config.spacing_mm, dtype=np.float64)
    all_vertices = np.concatenate([m[0] for m in meshes])
    frame = None
    if config.sacrum or config.pelvis:
        frame = pelvis.sacral_frame(meshes[int(np.argmax(verse_ids))][0])
        all_vertices = np.concatenate([all_vertices, pelvis.extent_points(frame, config.pelvis)])
    if rib_centroids:
        all_vertices = np.concatenate([all_vertices, rib_bars.extent_points(rib_centroids)])
    local = all_vertices @ direction  # coordinates along the index axes
    lo = local.min(0) - config.margin_mm
    hi = local.max(0) + config.margin_mm
    size = np.ceil((hi - lo) / spacing).astype(int) + 1
    origin = direction @ lo
    reference = Volume(np.zeros(size[::-1], dtype=np.float32), spacing, origin, direction)

    labels, _ = rasterize_meshes(meshes, verse_ids, reference)

    # Signed distance to the union of all vertebrae at every voxel centre.
    packed = diffsd.pack_meshes(
        [torch.as_tensor(v) for v, _ in meshes], [torch.as_tensor(f) for _, f in meshes]
    )
    k, j, i = np.meshgrid(*(np.arange(n) for n in size[::-1]), indexing="ij")
    index = np.stack([i.ravel(), j.ravel(), k.ravel()], 1).astype(np.float64)
    world = reference.index_to_world(index)
    bvh = diffsd.MeshBVH(packed.vertices, packed.faces)
    # Only the sign and the depth within the cortical shell matter, so with a
    # pelvis (a grid several times the spine's) the distance is computed near
    # the vertebrae only; elsewhere it is any positive value.
    near = np.ones(len(world), bool)
    if frame is not None or rib_centroids:
        vertices = np.concatenate([m[0] for m in meshes])
        near = np.all((world >= vertices.min(0) - 5.0) & (world <= vertices.max(0) + 5.0), axis=1)
    distance = np.full(len(world), 5.0)
    distance[near] = diffsd.signed_distance(
        packed.vertices, packed.faces, torch.as_tensor(world[near]), bvh=bvh, refit=False
    ).distance.numpy()
    distance = distance.reshape(size[::-1])

    if frame is not None or rib_centroids:
        distance = _with_bone(distance, labels, frame, rib_centroids, world, reference,
                              config.pelvis)

    # Soft tissue with smooth fatty regions, then bone by depth below the surface.
    fat = ndimage.gaussian_filter(rng.normal(size=size[::-1]), sigma=12.0 / spacing[::-1])
    fat = np.clip((fat - fat.mean()) / (fat.std() + 1e-9), 0, None)
    background = config.hu_soft_tissue + (config.hu_fat - config.hu_soft_tissue) * np.clip(
        fat - 0.5, 0, 1
    )
    texture = ndimage.gaussian_filter(rng.normal(size=size[::-1]), sigma=1.5 / spacing[::-1])
    cancellous = config.hu_cancellous + 40.0 * texture / (texture.std() + 1e-9)
    image = np.where(
        distance > 0,
        background,
        np.where(distance > -config.cortical_thickness_mm, config.hu_cortical, cancellous),
    )
    if config.partial_volume_sigma_mm > 0:
        image = ndimage.gaussian_filter(image, sigma=config.partial_volume_sigma_mm / spacing[::-1])
    image = image + config.noise_hu * rng.normal(size=image.shape)

    label_volume = reference.with_array(
        labels.astype(np.uint8 if max(verse_ids) < 256 else np.int16)
    )
    centroids = {}
    for value in verse_ids:
        ijk = np.argwhere(labels == value)[:, ::-1].astype(np.float64)
        if len(ijk):
            centroids[value] = reference.index_to_world(ijk).mean(0)
    return Phantom(
        reference.with_array(image.astype(np.float32)), label_volume, meshes, centroids, verse_ids
    )


#: VerSe id of the sacrum in the label map.
SACRUM_ID = 26


#: VerSe id of a sixth lumbar vertebra.
L6_ID = 25


def _with_bone(distance, labels, frame, rib_centroids, world, reference: Volume,
               with_ilium: bool):
    """The signed distance with the sacrum, ilia and ribs added; labels the sacrum in place.

    Inside the analytic bone the depth below its surface comes from a
    Euclidean distance transform of its mask on the grid, so the cortical
    shell is as thick as the vertebrae's.
    """
    sacrum = ilium = np.zeros(len(world), bool)
    if frame is not None:
        sacrum, ilium = pelvis.pelvis_bone(frame, world, with_ilium)
    ribs = rib_bars.rib_bone(rib_centroids, world) if rib_centroids else ilium
    bone = (sacrum | ilium | ribs).reshape(distance.shape) & (distance > 0)
    depth = ndimage.distance_transform_edt(bone, sampling=reference.spacing[::-1])
    labels[sacrum.reshape(labels.shape) & (labels == 0)] = SACRUM_ID
    # The transform counts to the nearest outside voxel centre; the surface lies half a voxel nearer.
    return np.where(bone, 0.5 * reference.spacing.min() - depth, distance)
