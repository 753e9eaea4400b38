"""CT volumes with their geometry: the :class:`Volume`, RAS interop and resampling.

A :class:`Volume` is a voxel array plus the ITK geometry that places it in
world space. World coordinates are LPS millimetres; the array is indexed
``array[k, j, i]`` for ITK index ``(i, j, k)``, so index-ordered quantities
(``spacing``, ``shape_ijk``) are the reverse of ``array.shape``.

The voxel with index ``ijk`` (a column vector) has its centre at::

    xyz = origin + direction @ diag(spacing) @ ijk

NIfTI read through nibabel (RAS world) is converted at the edge by
:func:`volume_from_nibabel`, so nibabel and SimpleITK give the same LPS
geometry. Files are read and written by :mod:`diffam.core.image`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import SimpleITK as sitk

Interpolator = Literal["linear", "nearest"]

#: RAS <-> LPS: flip the first two world axes.
_RAS_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


class ImageReadError(ValueError):
    """An input image cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class ImageSource:
    """Where a :class:`Volume` was read from (for provenance and DICOM SEG outputs).

    Attributes:
        path: the file or DICOM folder given to :func:`read_image`.
        format: ``'nifti'``, ``'metaimage'``, ``'nrrd'``, ``'dicom'`` or the
            SimpleITK ImageIO name for other formats.
        is_dicom: whether the volume came from a DICOM series.
        series_uid: DICOM SeriesInstanceUID, or ``None``.
        dicom_files: the series' files in slice order (increasing ``k``);
            empty when not DICOM.
    """

    path: Path
    format: str
    is_dicom: bool = False
    series_uid: str | None = None
    dicom_files: tuple[Path, ...] = ()


@dataclass(eq=False)
class Volume:
    """A 3D scalar image with its geometry.

    Attributes:
        array: voxel values, shape ``(Z, Y, X)`` = ``(n_k, n_j, n_i)``;
            ``array[k, j, i]`` is the voxel with ITK index ``(i, j, k)``.
        spacing: ``(3,)`` voxel size in mm, in index order ``(i, j, k)``.
        origin: ``(3,)`` LPS world position in mm of the centre of voxel
            ``(0, 0, 0)``.
        direction: ``(3, 3)``; column ``c`` is the LPS world direction (unit
            vector) of index axis ``c`` (``i``, ``j``, ``k``).
        source: where the volume was read from, or ``None`` for volumes made
            in memory.

    Volumes compare by identity; use :meth:`same_grid` and the arrays to
    compare contents.
    """

    array: np.ndarray
    spacing: np.ndarray
    origin: np.ndarray
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    source: ImageSource | None = None

    def __post_init__(self) -> None:
        self.array = np.asarray(self.array)
        if self.array.ndim != 3:
            raise ValueError(f"Volume.array must be 3D (Z, Y, X); got shape {self.array.shape}")
        self.spacing = np.asarray(self.spacing, dtype=np.float64).reshape(-1)
        self.origin = np.asarray(self.origin, dtype=np.float64).reshape(-1)
        self.direction = np.asarray(self.direction, dtype=np.float64)
        if self.spacing.shape != (3,) or not np.all(self.spacing > 0):
            raise ValueError(
                f"Volume.spacing must be 3 positive mm values in (i, j, k) order; got {self.spacing}"
            )
        if self.origin.shape != (3,) or not np.all(np.isfinite(self.origin)):
            raise ValueError(f"Volume.origin must be 3 finite mm values; got {self.origin}")
        if self.direction.size == 9:
            self.direction = self.direction.reshape(3, 3)
        if self.direction.shape != (3, 3) or abs(np.linalg.det(self.direction)) < 1e-6:
            raise ValueError(
                "Volume.direction must be an invertible 3x3 matrix whose columns are the LPS "
                f"directions of index axes i, j, k; got {self.direction.tolist()}"
            )

    # ------------------------------------------------------------------ geometry
    @property
    def shape_ijk(self) -> tuple[int, int, int]:
        """Number of voxels along index axes ``(i, j, k)`` (the reverse of ``array.shape``)."""
        z, y, x = self.array.shape
        return (x, y, z)

    @property
    def affine_lps(self) -> np.ndarray:
        """``(4, 4)`` homogeneous matrix mapping index ``(i, j, k, 1)`` to LPS mm."""
        affine = np.eye(4)
        affine[:3, :3] = self.direction * self.spacing[None, :]
        affine[:3, 3] = self.origin
        return affine

    @property
    def world_to_index_affine(self) -> np.ndarray:
        """``(4, 4)`` inverse of :attr:`affine_lps`: LPS mm to continuous index."""
        return np.linalg.inv(self.affine_lps)

    @property
    def affine_ras(self) -> np.ndarray:
        """``(4, 4)`` index ``(i, j, k, 1)`` to RAS mm (the NIfTI/nibabel affine)."""
        return lps_to_ras_affine(self.affine_lps)

    def index_to_world(self, ijk: np.ndarray) -> np.ndarray:
        """Continuous index ``(N, 3)`` in ``(i, j, k)`` order -> LPS mm ``(N, 3)``.

        A single point of shape ``(3,)`` gives ``(3,)``.
        """
        ijk = np.asarray(ijk, dtype=np.float64)
        a = self.affine_lps
        return ijk @ a[:3, :3].T + a[:3, 3]

    def world_to_index(self, xyz: np.ndarray) -> np.ndarray:
        """LPS mm ``(N, 3)`` -> continuous index ``(N, 3)`` in ``(i, j, k)`` order.

        Integer values are voxel centres; a single point ``(3,)`` gives ``(3,)``.
        """
        xyz = np.asarray(xyz, dtype=np.float64)
        a = self.world_to_index_affine
        return xyz @ a[:3, :3].T + a[:3, 3]

    def corners_world(self, *, edges: bool = True) -> np.ndarray:
        """``(8, 3)`` LPS mm corners of the image box.

        Args:
            edges: ``True`` for the outer faces of the border voxels (index
                ``-0.5`` and ``n - 0.5``), ``False`` for the centres of the
                corner voxels.
        """
        n = np.asarray(self.shape_ijk, dtype=np.float64)
        lo, hi = (-0.5 * np.ones(3), n - 0.5) if edges else (np.zeros(3), n - 1.0)
        corners = np.array(
            [
                [(lo, hi)[a][0], (lo, hi)[b][1], (lo, hi)[c][2]]
                for a in (0, 1)
                for b in (0, 1)
                for c in (0, 1)
            ]
        )
        return self.index_to_world(corners)

    @property
    def bounds_world(self) -> np.ndarray:
        """``(2, 3)`` LPS mm ``[min, max]`` of the axis-aligned box around the image (voxel edges)."""
        corners = self.corners_world(edges=True)
        return np.stack([corners.min(axis=0), corners.max(axis=0)])

    def contains_world(self, xyz: np.ndarray, *, margin_voxels: float = 0.0) -> np.ndarray:
        """Whether LPS mm points ``(N, 3)`` lie inside the image (voxel edges included).

        Args:
            xyz: ``(N, 3)`` or ``(3,)`` points in LPS mm.
            margin_voxels: extra tolerance in voxels on every side.

        Returns:
            Boolean array ``(N,)`` (or a scalar for a single point).
        """
        ijk = self.world_to_index(xyz)
        n = np.asarray(self.shape_ijk, dtype=np.float64)
        tol = 0.5 + margin_voxels
        return np.all((ijk >= -tol) & (ijk <= n - 1 + tol), axis=-1)

    def orientation_code(self) -> str:
        """Three-letter anatomical code of the index axes, e.g. ``'LPS'`` or ``'PIR'``.

        Each letter names the direction in which the index increases (the
        nibabel ``aff2axcodes`` convention): L/R, P/A, S/I.
        """
        letters = (("L", "R"), ("P", "A"), ("S", "I"))
        code = ""
        used: set[int] = set()
        for c in range(3):
            col = np.abs(self.direction[:, c]).copy()
            col[list(used)] = -1.0
            axis = int(np.argmax(col))
            used.add(axis)
            code += letters[axis][0 if self.direction[axis, c] > 0 else 1]
        return code

    def same_grid(self, other: Volume, *, atol: float = 1e-4) -> bool:
        """Whether ``other`` has the same shape, spacing, origin and direction."""
        return (
            self.array.shape == other.array.shape
            and np.allclose(self.spacing, other.spacing, atol=atol)
            and np.allclose(self.origin, other.origin, atol=atol)
            and np.allclose(self.direction, other.direction, atol=atol)
        )

    def with_array(self, array: np.ndarray) -> Volume:
        """A volume with the same geometry and source and a new array of the same shape."""
        array = np.asarray(array)
        if array.shape != self.array.shape:
            raise ValueError(
                f"with_array needs an array of shape {self.array.shape} (Z, Y, X); got {array.shape}"
            )
        return Volume(
            array, self.spacing.copy(), self.origin.copy(), self.direction.copy(), self.source
        )

    # ------------------------------------------------------------------ SimpleITK
    def to_sitk(self) -> sitk.Image:
        """The volume as a SimpleITK image (array copied; geometry identical)."""
        array = self.array
        if array.dtype == np.bool_:
            array = array.astype(np.uint8)
        image = sitk.GetImageFromArray(np.ascontiguousarray(array), isVector=False)
        image.SetSpacing([float(s) for s in self.spacing])
        image.SetOrigin([float(o) for o in self.origin])
        image.SetDirection([float(d) for d in self.direction.reshape(-1)])
        return image

    @classmethod
    def from_sitk(cls, image: sitk.Image, source: ImageSource | None = None) -> Volume:
        """A volume from a 3D scalar SimpleITK image (array copied)."""
        if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
            raise ValueError(
                f"Volume.from_sitk needs a 3D scalar image; got dimension {image.GetDimension()} "
                f"with {image.GetNumberOfComponentsPerPixel()} components per voxel"
            )
        return cls(
            array=sitk.GetArrayFromImage(image),
            spacing=np.array(image.GetSpacing()),
            origin=np.array(image.GetOrigin()),
            direction=np.array(image.GetDirection()).reshape(3, 3),
            source=source,
        )


# ---------------------------------------------------------------------- RAS interop
def ras_to_lps_affine(affine_ras: np.ndarray) -> np.ndarray:
    """``(4, 4)`` index->RAS affine (NIfTI, nibabel) -> index->LPS affine."""
    return _RAS_LPS @ np.asarray(affine_ras, dtype=np.float64)


def lps_to_ras_affine(affine_lps: np.ndarray) -> np.ndarray:
    """``(4, 4)`` index->LPS affine -> index->RAS affine (NIfTI, nibabel)."""
    return _RAS_LPS @ np.asarray(affine_lps, dtype=np.float64)


def ras_to_lps_points(xyz: np.ndarray) -> np.ndarray:
    """Points ``(N, 3)`` in RAS mm -> LPS mm (and back: the map is its own inverse)."""
    xyz = np.array(xyz, dtype=np.float64)
    xyz[..., :2] *= -1.0
    return xyz


lps_to_ras_points = ras_to_lps_points


def volume_from_affine(
    array_zyx: np.ndarray, affine_lps: np.ndarray, source: ImageSource | None = None
) -> Volume:
    """A volume from a ``(Z, Y, X)`` array and a ``(4, 4)`` index->LPS affine.

    The affine's columns are split into spacing (their norms) and direction
    (the unit columns).
    """
    affine_lps = np.asarray(affine_lps, dtype=np.float64)
    linear = affine_lps[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    if np.any(spacing <= 0):
        raise ValueError(f"affine has a zero column (zero voxel size): {affine_lps.tolist()}")
    return Volume(array_zyx, spacing, affine_lps[:3, 3].copy(), linear / spacing[None, :], source)


def volume_from_nibabel(img, source: ImageSource | None = None) -> Volume:
    """A :class:`Volume` (LPS) from a 3D nibabel image (RAS affine, ``(i, j, k)`` data).

    Uses ``img.affine`` (nibabel's choice between sform and qform) and the
    scaled data (``scl_slope``/``scl_inter`` applied, as SimpleITK does).

    Args:
        img: a nibabel spatial image, e.g. ``nibabel.load("ct.nii.gz")``.
        source: provenance to attach.
    """
    data = np.asanyarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ImageReadError(
            f"nibabel image has shape {data.shape}; a 3D volume is needed (split 4D series first)"
        )
    return volume_from_affine(
        np.ascontiguousarray(data.transpose(2, 1, 0)), ras_to_lps_affine(img.affine), source
    )


def volume_to_nibabel(volume: Volume):
    """A ``nibabel.Nifti1Image`` (RAS affine, ``(i, j, k)`` data) of ``volume``.

    Both sform and qform are set (code 1, scanner) to the same affine.
    """
    import nibabel as nib

    array = volume.array.astype(np.uint8) if volume.array.dtype == np.bool_ else volume.array
    img = nib.Nifti1Image(np.ascontiguousarray(array.transpose(2, 1, 0)), volume.affine_ras)
    img.set_sform(volume.affine_ras, code=1)
    img.set_qform(volume.affine_ras, code=1)
    return img


# ---------------------------------------------------------------------- resampling
_INTERPOLATORS = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor}


def _interpolator(name: str) -> int:
    if name not in _INTERPOLATORS:
        raise ValueError(f"interpolator must be 'linear' or 'nearest', not {name!r}")
    return _INTERPOLATORS[name]


def _output_pixel_type(volume: Volume, interpolator: str) -> int:
    if interpolator == "linear" and volume.array.dtype != np.float64:
        return sitk.sitkFloat32
    return sitk.sitkUnknown  # keep the input type


def resample(
    volume: Volume,
    spacing_mm: float | Sequence[float],
    *,
    interpolator: Interpolator = "linear",
    default_value: float = 0.0,
) -> Volume:
    """Resample to a new voxel size on the same origin and direction.

    The new grid starts at the same voxel-centre origin and covers the same
    extent: ``n_new = max(1, round(n * spacing / spacing_mm))`` voxels per axis.

    Args:
        volume: input volume.
        spacing_mm: new voxel size in mm, one value or ``(3,)`` in ``(i, j, k)``
            order.
        interpolator: ``'linear'`` (output float32) for intensities,
            ``'nearest'`` (type kept) for label maps.
        default_value: value outside the input.

    Returns:
        The resampled volume (same source).
    """
    new_spacing = np.broadcast_to(np.asarray(spacing_mm, dtype=np.float64), (3,)).copy()
    if not np.all(new_spacing > 0):
        raise ValueError(f"spacing_mm must be positive; got {spacing_mm}")
    size = np.asarray(volume.shape_ijk, dtype=np.float64)
    new_size = np.maximum(1, np.round(size * volume.spacing / new_spacing)).astype(int)
    image = sitk.Resample(
        volume.to_sitk(),
        [int(s) for s in new_size],
        sitk.Transform(),
        _interpolator(interpolator),
        [float(o) for o in volume.origin],
        [float(s) for s in new_spacing],
        [float(d) for d in volume.direction.reshape(-1)],
        float(default_value),
        _output_pixel_type(volume, interpolator),
    )
    return Volume.from_sitk(image, volume.source)


def resample_like(
    volume: Volume,
    reference: Volume,
    *,
    interpolator: Interpolator = "nearest",
    default_value: float = 0.0,
) -> Volume:
    """Resample ``volume`` onto the grid of ``reference`` (shape, spacing, origin, direction).

    Used to write outputs back on the input grid. The default ``'nearest'``
    suits label maps.

    Returns:
        A volume with ``reference``'s geometry and source.
    """
    ref = reference.with_array(np.zeros(reference.array.shape, dtype=np.uint8)).to_sitk()
    image = sitk.Resample(
        volume.to_sitk(),
        ref,
        sitk.Transform(),
        _interpolator(interpolator),
        float(default_value),
        _output_pixel_type(volume, interpolator),
    )
    return Volume.from_sitk(image, reference.source)
