"""Quality-control pictures of a run (PNG, matplotlib Agg).

* ``qc/sagittal.png`` and ``qc/coronal.png``: planes along the world axes
  through the spine (the median of the fitted vertebrae's centroids), the CT
  in a bone window (W 1500, L 450 HU) with each label's contour and level
  name in the colours of :mod:`diffam.export.colortables`. Sagittal: anterior on
  the left, superior up; coronal: the patient's right on the left (radiological),
  superior up.
* ``qc/losses.png``: every loss over the iterations (log scale).

Planes are resampled from the scan's own grid (linear for the CT, nearest for
the labels), so they look the same whatever the scan's orientation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from diffam.core.atomic import atomic_path
from diffam.core.volume import Volume
from diffam.export.colortables import LabelEntry

#: Bone window (HU).
WINDOW_WIDTH, WINDOW_LEVEL = 1500.0, 450.0
#: Margin around the fitted spine shown in the views, mm.
MARGIN_MM = 60.0
#: Largest picture side in pixels (the pixel size grows for larger fields).
MAX_PIXELS = 900


def figure_on_canvas(size: tuple[float, float]):
    """A figure on the Agg canvas, without pyplot (no global state, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _plane_grid(
    bounds: np.ndarray, fixed_axis: int, fixed_value: float, pixel_mm: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World points of a plane normal to ``fixed_axis``; horizontal and vertical coordinates.

    Horizontal is the first remaining LPS axis (y for sagittal, x for coronal),
    vertical is z. Returns (points (H, W, 3), horizontal (W,), vertical (H,)).
    """
    horizontal_axis = 1 if fixed_axis == 0 else 0
    span = bounds[1] - bounds[0]
    pixel_mm = max(pixel_mm, float(max(span[horizontal_axis], span[2])) / MAX_PIXELS)
    horizontal = np.arange(bounds[0, horizontal_axis], bounds[1, horizontal_axis], pixel_mm)
    vertical = np.arange(bounds[0, 2], bounds[1, 2], pixel_mm)
    points = np.zeros((len(vertical), len(horizontal), 3))
    points[..., fixed_axis] = fixed_value
    points[..., horizontal_axis] = horizontal[None, :]
    points[..., 2] = vertical[:, None]
    return points, horizontal, vertical


def sample_volume(volume: Volume, points: np.ndarray, order: int, outside: float) -> np.ndarray:
    """``volume`` at LPS mm ``points`` (H, W, 3) on its own grid: order 1 linear, 0 nearest."""
    from scipy.ndimage import map_coordinates

    ijk = volume.world_to_index(points.reshape(-1, 3))
    array = volume.array if order == 0 else volume.array.astype(np.float32, copy=False)
    values = map_coordinates(array, ijk[:, ::-1].T, order=order, mode="constant", cval=outside)
    return values.reshape(points.shape[:2])


def view_bounds(image: Volume, vertices: np.ndarray, margin_mm: float = MARGIN_MM) -> np.ndarray:
    """``(2, 3)`` LPS box shown: the fitted spine plus a margin, inside the image."""
    flat = np.asarray(vertices).reshape(-1, 3)
    box = np.stack([flat.min(0) - margin_mm, flat.max(0) + margin_mm])
    image_box = image.bounds_world
    return np.stack([np.maximum(box[0], image_box[0]), np.minimum(box[1], image_box[1])])


def plane_images(
    image: Volume, labels: Volume, vertices: np.ndarray, view: str, pixel_mm: float | None = None
) -> dict:
    """CT and labels resampled on a sagittal or coronal plane through the spine.

    Returns:
        dict with ``ct`` and ``labels`` (H, W) arrays (row 0 inferior),
        ``extent`` (left, right, bottom, top) mm, the plane's ``fixed_value``
        mm and ``axis`` name.
    """
    if view not in ("sagittal", "coronal"):
        raise ValueError(f"view must be sagittal or coronal, got {view!r}")
    fixed_axis = 0 if view == "sagittal" else 1
    centroids = np.asarray(vertices).mean(axis=1)
    fixed_value = float(np.median(centroids[:, fixed_axis]))
    bounds = view_bounds(image, vertices)
    pixel_mm = pixel_mm or float(np.clip(image.spacing.min(), 0.5, 1.0))
    points, horizontal, vertical = _plane_grid(bounds, fixed_axis, fixed_value, pixel_mm)
    half = (horizontal[1] - horizontal[0]) / 2 if len(horizontal) > 1 else 0.5
    return {
        "ct": sample_volume(image, points, order=1, outside=-1024.0),
        "labels": sample_volume(labels, points, order=0, outside=0),
        "extent": (
            horizontal[0] - half,
            horizontal[-1] + half,
            vertical[0] - half,
            vertical[-1] + half,
        ),
        "fixed_value": fixed_value,
        "axis": "x" if fixed_axis == 0 else "y",
    }


def write_plane_png(
    image: Volume,
    labels: Volume,
    vertices: np.ndarray,
    entries: Sequence[LabelEntry],
    view: str,
    path: Path,
    *,
    overwrite: bool = False,
    title: str = "",
) -> Path:
    """Draw one QC view (CT in the bone window, label contours and names) to ``path``."""
    import matplotlib.patheffects as effects

    plane = plane_images(image, labels, vertices, view)
    ct, label_plane, extent = plane["ct"], plane["labels"], plane["extent"]
    width_mm, height_mm = extent[1] - extent[0], extent[3] - extent[2]
    scale = 9.0 / max(width_mm, height_mm)
    figure, axes = figure_on_canvas(
        (max(4.0, width_mm * scale) + 0.4, max(4.0, height_mm * scale) + 0.8))
    low, high = WINDOW_LEVEL - WINDOW_WIDTH / 2, WINDOW_LEVEL + WINDOW_WIDTH / 2
    axes.imshow(
        ct,
        cmap="gray",
        vmin=low,
        vmax=high,
        origin="lower",
        extent=extent,
        interpolation="bilinear",
    )
    by_value = {e.value: e for e in entries}
    horizontal = np.linspace(extent[0], extent[1], ct.shape[1])
    vertical = np.linspace(extent[2], extent[3], ct.shape[0])
    outline = [effects.withStroke(linewidth=2.5, foreground="black")]
    for value in sorted(int(v) for v in np.unique(label_plane) if v != 0):
        entry = by_value.get(value)
        color = np.array(entry.rgb) / 255.0 if entry else (1.0, 1.0, 1.0)
        name = entry.name if entry else str(value)
        mask = label_plane == value
        axes.contour(
            horizontal, vertical, mask.astype(float), levels=[0.5], colors=[color], linewidths=1.2
        )
        rows, cols = np.nonzero(mask)
        if view == "sagittal":  # names in front of (left of) the vertebral bodies
            x, ha = horizontal[cols.min()] - 4.0, "right"
        else:  # names to the patient's left of the vertebra (right of the picture)
            x, ha = horizontal[cols.max()] + 4.0, "left"
        axes.text(
            x,
            vertical[int(np.median(rows))],
            name,
            color=color,
            fontsize=10,
            fontweight="bold",
            ha=ha,
            va="center",
            path_effects=outline,
        )
    letters = {"sagittal": ("A", "P"), "coronal": ("R", "L")}[view]
    for text, x_pos, ha in ((letters[0], 0.01, "left"), (letters[1], 0.99, "right")):
        axes.text(
            x_pos,
            0.5,
            text,
            transform=axes.transAxes,
            color="yellow",
            ha=ha,
            va="center",
            fontsize=12,
            path_effects=outline,
        )
    for text, y_pos, va in (("S", 0.99, "top"), ("I", 0.01, "bottom")):
        axes.text(
            0.5,
            y_pos,
            text,
            transform=axes.transAxes,
            color="yellow",
            ha="center",
            va=va,
            fontsize=12,
            path_effects=outline,
        )
    axis_name = "y (posterior +)" if view == "sagittal" else "x (patient's left +)"
    axes.set_xlabel(f"LPS {axis_name}, mm")
    axes.set_ylabel("LPS z (superior +), mm")
    heading = (
        f"{view.capitalize()} at {plane['axis']} = {plane['fixed_value']:.1f} mm, "
        f"bone window W {WINDOW_WIDTH:.0f} L {WINDOW_LEVEL:.0f}"
    )
    axes.set_title(f"{title}\n{heading}" if title else heading, fontsize=10)
    figure.tight_layout()
    with atomic_path(path, overwrite=overwrite) as temporary:
        figure.savefig(temporary, format="png")
    return Path(path)


def write_loss_png(
    history: Sequence[dict], path: Path, *, overwrite: bool = False, title: str = ""
) -> Path | None:
    """Plot every loss over the iterations (log scale); None when there is no history."""
    if not history:
        return None
    iterations = np.array([h["iteration"] for h in history])
    names = [k for k in history[-1] if k not in ("iteration", "blur_mm", "alpha")]
    figure, axes = figure_on_canvas((9.5, 4.5))
    for name in names:
        values = np.array([h.get(name, np.nan) for h in history], dtype=float)
        values[values <= 0] = np.nan
        if np.isfinite(values).any():
            axes.plot(
                iterations,
                values,
                label=name if name != "total" else "total (weighted)",
                linewidth=2.0 if name == "total" else 1.0,
                color="black" if name == "total" else None,
            )
    blur = np.array([h.get("blur_mm", 0.0) for h in history])
    if (blur > 0).any() and (blur == 0).any():
        end = iterations[np.argmax(blur == 0)]
        axes.axvline(end, color="gray", linestyle="--", linewidth=0.8)
        axes.text(
            end,
            0.98,
            " blur reaches 0",
            transform=axes.get_xaxis_transform(),
            color="gray",
            va="top",
            fontsize=8,
        )
    axes.set_yscale("log")
    axes.set_xlabel("iteration")
    axes.set_ylabel("loss (raw values; total is the weighted sum)")
    axes.set_title(title or "Losses over the iterations", fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    figure.tight_layout()
    with atomic_path(path, overwrite=overwrite) as temporary:
        figure.savefig(temporary, format="png")
    return Path(path)
