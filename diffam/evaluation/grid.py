"""Reading label images and bringing a prediction onto the ground-truth grid.

Uses SimpleITK directly (LPS world, arrays (Z, Y, X)) so that evaluation has
no dependency on the rest of the package.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import SimpleITK as sitk

log = logging.getLogger(__name__)

#: Tolerances to call two grids equal: mm for origin and spacing, unitless for direction.
GRID_ATOL = 1e-3


def read_label_image(path: str | Path) -> sitk.Image:
    """Read a label image (NIfTI, MHA, NRRD, ...) with SimpleITK.

    Args:
        path: Image file.

    Returns:
        The 3-D image, geometry in LPS mm.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label image {path} not found")
    from diffam.core.image_checks import check_file, check_geometry

    check_file(path)  # truncated or damaged data would be read as background
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as e:
        raise ValueError(
            f"could not read {path} as an image ({e}); give a NIfTI, MHA or NRRD label map"
        ) from None
    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(
            f"{path}: expected a 3-D scalar label map, got dimension "
            f"{img.GetDimension()} with {img.GetNumberOfComponentsPerPixel()} "
            "component(s)"
        )
    check_geometry(img.GetSpacing(), img.GetDirection(), str(path))
    return img


def same_grid(a: sitk.Image, b: sitk.Image, atol: float = GRID_ATOL) -> bool:
    """True when two images share size, spacing, origin and direction.

    Args:
        a: First image.
        b: Second image.
        atol: Absolute tolerance (mm for spacing and origin).

    Returns:
        Whether voxel (i, j, k) of ``a`` and ``b`` is the same point in space.
    """
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=atol)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=atol)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=atol)
    )


def world_bounds(img: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned world bounding box of an image's voxels (outer faces).

    Args:
        img: A 3-D image.

    Returns:
        ``(lo, hi)``: shape (3,) each, (x, y, z) LPS mm.
    """
    size = np.asarray(img.GetSize(), dtype=np.float64)
    corners = [
        img.TransformContinuousIndexToPhysicalPoint(
            tuple(float(-0.5 + c * s) for c, s in zip(bits, size, strict=True))
        )
        for bits in np.ndindex(2, 2, 2)
    ]
    pts = np.asarray(corners)
    return pts.min(axis=0), pts.max(axis=0)


def align_to_reference(pred: sitk.Image, ref: sitk.Image, name: str = "prediction") -> sitk.Image:
    """Return ``pred`` on the grid of ``ref``, resampling with nearest neighbour if needed.

    Args:
        pred: Predicted label image.
        ref: Ground-truth label image whose grid is kept.
        name: Name used in messages (e.g. the case stem).

    Returns:
        ``pred`` itself when the grids match, else ``pred`` resampled
        (nearest neighbour, background 0) onto ``ref`` with a logged warning.

    Raises:
        ValueError: When the world bounding boxes do not overlap.
    """
    if same_grid(pred, ref):
        return pred
    lo_p, hi_p = world_bounds(pred)
    lo_r, hi_r = world_bounds(ref)
    overlap = np.minimum(hi_p, hi_r) - np.maximum(lo_p, lo_r)
    if np.any(overlap <= 0):
        raise ValueError(
            f"{name}: prediction and ground truth do not overlap in world space "
            f"(prediction spans {_pt(lo_p)}..{_pt(hi_p)} mm, ground truth "
            f"{_pt(lo_r)}..{_pt(hi_r)} mm, LPS). Check that the files belong "
            "to the same scan and that the prediction kept the scan's origin and direction."
        )
    log.warning(
        "%s: prediction grid (size %s, spacing %s, origin %s) differs from ground truth "
        "(size %s, spacing %s, origin %s); resampling the prediction onto the ground-truth "
        "grid with nearest neighbour",
        name,
        pred.GetSize(),
        _r(pred.GetSpacing()),
        _r(pred.GetOrigin()),
        ref.GetSize(),
        _r(ref.GetSpacing()),
        _r(ref.GetOrigin()),
    )
    return sitk.Resample(
        pred, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, pred.GetPixelID()
    )


def _pt(v: np.ndarray) -> str:
    return "(" + ", ".join(f"{float(x):.1f}" for x in v) + ")"


def _r(v: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(round(float(x), 3) for x in v)


def geometry(img: sitk.Image) -> tuple[tuple[float, float, float], tuple[float, ...], np.ndarray]:
    """Spacing in array order and the world frame of an image.

    Args:
        img: A 3-D image.

    Returns:
        ``(spacing_zyx, origin_xyz, direction)``: spacing (sz, sy, sx) mm,
        origin (x, y, z) LPS mm, direction 3x3.
    """
    sx, sy, sz = img.GetSpacing()
    return (sz, sy, sx), img.GetOrigin(), np.asarray(img.GetDirection()).reshape(3, 3)
