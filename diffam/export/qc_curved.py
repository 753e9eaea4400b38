"""Review pictures that show every vertebra: curved planar reformations and a thumbnail strip.

A flat coronal plane leaves out whole vertebrae of a curved spine (kyphosis
takes the thoracic bodies out of a plane that fits the lumbar ones). These
pictures follow the spine instead:

* ``qc/curved_sagittal.png``, ``qc/curved_coronal.png``: curved planar
  reformations (CPR) along the fitted centreline, a smoothing spline through
  the fitted vertebrae's centroids (solid centroids of the meshes), extended
  straight beyond the end vertebrae. Each picture row is one point of the
  centreline (vertical axis: arc length along it, superior up); each column
  an offset from it along a direction perpendicular to the centreline:
  posterior for the sagittal CPR (anterior on the left, as the flat sagittal
  view), the patient's left for the coronal one (radiological: the patient's
  right on the left). Every vertebra's centroid lies on the centreline, so
  every vertebra is in both pictures; each is outlined in its level's colour
  and named beside its centroid's row.
* ``qc/vertebrae.png``: per vertebra, an axial and a sagittal section through
  its centroid (axial: perpendicular to the centreline, anterior up, the
  patient's right on the left; sagittal: as the CPR), its contour, and its
  fit score beside it (:mod:`diffam.fit.quality`; doubtful ones in red).

Directions along the centreline: ``tangent`` (superior), ``anterior`` (LPS -y
made perpendicular to the tangent) and ``left`` (``tangent x anterior``, the
patient's left, LPS +x for an upright spine). All coordinates are world LPS
mm; the CT is sampled trilinearly, the labels by nearest voxel, on their own
grids (:func:`diffam.export.qc.sample_volume`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffam.core.atomic import atomic_path
from diffam.core.volume import Volume
from diffam.export.colortables import LabelEntry
from diffam.export.qc import WINDOW_LEVEL, WINDOW_WIDTH, figure_on_canvas, sample_volume

#: Half width of the CPR pictures across the centreline, mm.
CPR_HALF_WIDTH_MM = 70.0
#: Straight extension of the centreline beyond the end centroids, mm (about
#: half a lumbar vertebra's height plus a margin, so the end vertebrae are whole).
CENTRELINE_EXTENSION_MM = 30.0
#: Smoothing of the spline through the centroids: RMS distance allowed from them, mm.
CENTRELINE_SMOOTHING_MM = 2.0
#: Half side of each thumbnail, mm (a thoracic vertebra with its transverse processes).
THUMBNAIL_HALF_MM = 40.0
#: Thumbnails (vertebrae) per row of the strip.
THUMBNAILS_PER_ROW = 6
#: Lower limit of the pixel size, mm (a finer scan is shown at this size).
MIN_PIXEL_MM = 0.5
#: World anterior in LPS.
_ANTERIOR = np.array([0.0, -1.0, 0.0])


@dataclass
class Centreline:
    """Points of a centreline, evenly spaced along it, with a frame at each.

    Attributes:
        points: ``(N, 3)`` LPS mm, inferior to superior.
        arc_mm: ``(N,)`` arc length from the first point, mm.
        tangent, anterior, left: ``(N, 3)`` unit vectors (see the module notes).
    """

    points: np.ndarray
    arc_mm: np.ndarray
    tangent: np.ndarray
    anterior: np.ndarray
    left: np.ndarray

    def arc_of(self, point: np.ndarray) -> float:
        """Arc length (mm) of the centreline point nearest to ``point``."""
        return float(self.arc_mm[np.argmin(np.linalg.norm(self.points - point, axis=1))])


def _frames(tangent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    anterior = _ANTERIOR - (tangent @ _ANTERIOR)[:, None] * tangent
    anterior /= np.linalg.norm(anterior, axis=1, keepdims=True).clip(1e-9)
    return anterior, np.cross(tangent, anterior)


def fit_centreline(
    centroids: np.ndarray,
    step_mm: float,
    *,
    extension_mm: float = CENTRELINE_EXTENSION_MM,
    smoothing_mm: float = CENTRELINE_SMOOTHING_MM,
) -> Centreline:
    """Smoothing spline through ``centroids`` ``(M, 3)`` (in order along the spine), resampled.

    The spline (cubic for four or more centroids, lower order below) passes
    within about ``smoothing_mm`` of the centroids; beyond the ends it goes
    on straight along the end tangents for ``extension_mm``. Returned points
    are ``step_mm`` apart along the curve, inferior to superior.
    """
    from scipy.interpolate import splev, splprep

    centroids = np.asarray(centroids, dtype=np.float64).reshape(-1, 3)
    if len(centroids) == 0:
        raise ValueError("a centreline needs at least one centroid")
    if len(centroids) >= 2 and centroids[0, 2] > centroids[-1, 2]:
        centroids = centroids[::-1]  # inferior to superior
    if len(centroids) == 1:
        dense = centroids.copy()
        tangents = np.array([[0.0, 0.0, 1.0]])
    else:
        degree = min(3, len(centroids) - 1)
        chord = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(centroids, axis=0), axis=1))]
        tck, _ = splprep(centroids.T, u=chord / chord[-1], k=degree,
                         s=len(centroids) * smoothing_mm**2)
        u = np.linspace(0.0, 1.0, max(200, int(chord[-1] / (0.25 * step_mm))))
        dense = np.stack(splev(u, tck), axis=1)
        tangents = np.stack(splev(u, tck, der=1), axis=1)
        tangents /= np.linalg.norm(tangents, axis=1, keepdims=True).clip(1e-12)
    arc = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(dense, axis=0), axis=1))]
    length = arc[-1]
    samples = np.arange(-extension_mm, length + extension_mm + 1e-9, step_mm)
    points = np.empty((len(samples), 3))
    tangent = np.empty((len(samples), 3))
    inside = (samples >= 0) & (samples <= length)
    for axis in range(3):
        points[inside, axis] = np.interp(samples[inside], arc, dense[:, axis])
        tangent[inside, axis] = np.interp(samples[inside], arc, tangents[:, axis])
    below, above = samples < 0, samples > length
    points[below] = dense[0] + samples[below, None] * tangents[0]
    tangent[below] = tangents[0]
    points[above] = dense[-1] + (samples[above, None] - length) * tangents[-1]
    tangent[above] = tangents[-1]
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True).clip(1e-12)
    anterior, left = _frames(tangent)
    return Centreline(points, samples + extension_mm, tangent, anterior, left)


def curved_plane_points(line: Centreline, view: str, half_width_mm: float,
                        step_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """World points ``(H, W, 3)`` of a CPR (row: centreline point; column: offset) and offsets (W,).

    ``view``: ``sagittal`` (offsets along posterior) or ``coronal`` (along the
    patient's left).
    """
    if view not in ("sagittal", "coronal"):
        raise ValueError(f"view must be sagittal or coronal, got {view!r}")
    across = -line.anterior if view == "sagittal" else line.left
    offsets = np.arange(-half_width_mm, half_width_mm + 1e-9, step_mm)
    return line.points[:, None, :] + offsets[None, :, None] * across[:, None, :], offsets


def section_points(centre: np.ndarray, horizontal: np.ndarray, vertical: np.ndarray,
                   half_mm: float, step_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """A square plane section ``(H, W, 3)`` around ``centre`` spanned by two unit vectors."""
    offsets = np.arange(-half_mm, half_mm + 1e-9, step_mm)
    points = (centre + offsets[None, :, None] * horizontal
              + offsets[:, None, None] * vertical)
    return points, offsets


def _outline():
    import matplotlib.patheffects as effects

    return [effects.withStroke(linewidth=2.5, foreground="black")]


def _draw_labels(axes, label_plane: np.ndarray, horizontal: np.ndarray, vertical: np.ndarray,
                 by_value: dict, linewidth: float = 1.2) -> None:
    for value in sorted(int(v) for v in np.unique(label_plane) if v != 0):
        entry = by_value.get(value)
        color = np.array(entry.rgb) / 255.0 if entry else (1.0, 1.0, 1.0)
        mask = (label_plane == value).astype(float)
        axes.contour(horizontal, vertical, mask, levels=[0.5], colors=[color],
                     linewidths=linewidth)


def _show_ct(axes, ct: np.ndarray, extent) -> None:
    low, high = WINDOW_LEVEL - WINDOW_WIDTH / 2, WINDOW_LEVEL + WINDOW_WIDTH / 2
    axes.imshow(ct, cmap="gray", vmin=low, vmax=high, origin="lower", extent=extent,
                interpolation="bilinear")


def _pixel_mm(image: Volume) -> float:
    return float(np.clip(image.spacing.min(), MIN_PIXEL_MM, 1.0))


def write_curved_png(
    image: Volume,
    labels: Volume,
    centroids: np.ndarray,
    levels: Sequence[str],
    label_values: Sequence[int],
    entries: Sequence[LabelEntry],
    view: str,
    path: Path,
    *,
    overwrite: bool = False,
    title: str = "",
    anterior_shift_mm: float = 0.0,
) -> Path:
    """One CPR along the centreline through ``centroids`` (M, 3), contours and level names.

    ``anterior_shift_mm`` moves the centreline anteriorly: through the
    vertebral bodies for the coronal CPR (a coronal surface through the whole
    vertebra's centroid cuts the thoracic vertebrae through their canal and
    pedicles).
    """
    step = _pixel_mm(image)
    line = fit_centreline(centroids, step)
    line.points = line.points + anterior_shift_mm * line.anterior
    points, offsets = curved_plane_points(line, view, CPR_HALF_WIDTH_MM, step)
    ct = sample_volume(image, points, order=1, outside=-1024.0)
    label_plane = sample_volume(labels, points, order=0, outside=0)
    half = step / 2
    extent = (offsets[0] - half, offsets[-1] + half, line.arc_mm[0] - half, line.arc_mm[-1] + half)
    width_mm, height_mm = extent[1] - extent[0], extent[3] - extent[2]
    scale = 11.0 / max(width_mm, height_mm)
    figure, axes = figure_on_canvas((max(4.5, width_mm * scale) + 1.6,
                                     max(4.0, height_mm * scale) + 0.9))
    _show_ct(axes, ct, extent)
    by_value = {e.value: e for e in entries}
    _draw_labels(axes, label_plane, offsets, line.arc_mm, by_value)
    for centroid, level, value in zip(np.asarray(centroids), levels, label_values):
        entry = by_value.get(int(value))
        color = np.array(entry.rgb) / 255.0 if entry else (1.0, 1.0, 1.0)
        # the name outside the picture's left edge, at the row of the vertebra's centroid
        axes.annotate(level, xy=(extent[0], line.arc_of(centroid)), xytext=(-6, 0),
                      textcoords="offset points", color=color, fontsize=10, fontweight="bold",
                      ha="right", va="center", annotation_clip=False, path_effects=_outline())
    letters = {"sagittal": ("A", "P"), "coronal": ("R", "L")}[view]
    for text, x_pos, ha in ((letters[0], 0.01, "left"), (letters[1], 0.99, "right")):
        axes.text(x_pos, 0.5, text, transform=axes.transAxes, color="yellow", ha=ha,
                  va="center", fontsize=12, path_effects=_outline())
    for text, y_pos, va in (("S", 0.99, "top"), ("I", 0.01, "bottom")):
        axes.text(0.5, y_pos, text, transform=axes.transAxes, color="yellow", ha="center",
                  va=va, fontsize=12, path_effects=_outline())
    across = "posterior +" if view == "sagittal" else "patient's left +"
    axes.set_xlabel(f"offset from the centreline ({across}), mm")
    axes.yaxis.tick_right()  # the level names take the left side
    axes.yaxis.set_label_position("right")
    axes.set_ylabel("along the spine centreline (superior up), mm")
    heading = (f"Curved {view} reformation along the fitted centreline, "
               f"bone window W {WINDOW_WIDTH:.0f} L {WINDOW_LEVEL:.0f}")
    axes.set_title(f"{title}\n{heading}" if title else heading, fontsize=10)
    figure.tight_layout()
    with atomic_path(path, overwrite=overwrite) as temporary:
        figure.savefig(temporary, format="png")
    return Path(path)


def _score_text(score) -> tuple[str, str]:
    """Caption of a vertebra's fit score and its colour (red when doubtful)."""
    if score is None:
        return "fit score: -", "white"
    value = score.score
    text = "no score" if not np.isfinite(value) else f"fit score {value:.2f}"
    return (text + (" DOUBTFUL" if score.doubtful else ""),
            "red" if score.doubtful else "lightgreen")


def write_vertebra_strip_png(
    image: Volume,
    labels: Volume,
    centroids: np.ndarray,
    levels: Sequence[str],
    label_values: Sequence[int],
    entries: Sequence[LabelEntry],
    path: Path,
    *,
    scores: Sequence | None = None,
    overwrite: bool = False,
    title: str = "",
) -> Path:
    """Axial and sagittal section through every vertebra's centroid, with its fit score."""
    step = _pixel_mm(image)
    centroids = np.asarray(centroids, dtype=np.float64)
    line = fit_centreline(centroids, step)
    by_value = {e.value: e for e in entries}
    by_level = {s.level: s for s in scores or ()}
    count = len(levels)
    columns = min(THUMBNAILS_PER_ROW, max(count, 1))
    rows = int(np.ceil(count / columns)) if count else 1
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(columns * 3.0, rows * 1.9 + 0.5), dpi=100, facecolor="black")
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(rows, columns * 2, wspace=0.04, hspace=0.32)
    for n, (centroid, level, value) in enumerate(zip(centroids, levels, label_values)):
        row, column = divmod(n, columns)
        nearest = int(np.argmin(np.linalg.norm(line.points - centroid, axis=1)))
        tangent, anterior, left = line.tangent[nearest], line.anterior[nearest], line.left[nearest]
        entry = by_value.get(int(value))
        color = np.array(entry.rgb) / 255.0 if entry else (1.0, 1.0, 1.0)
        # axial: the patient's left to the right of the picture, anterior up (radiological)
        # sagittal: posterior to the right (anterior on the left), superior up
        for k, (horizontal, vertical) in enumerate(((left, anterior), (-anterior, tangent))):
            axes = figure.add_subplot(grid[row, 2 * column + k])
            points, offsets = section_points(centroid, horizontal, vertical,
                                             THUMBNAIL_HALF_MM, step)
            half = step / 2
            extent = (offsets[0] - half, offsets[-1] + half, offsets[0] - half, offsets[-1] + half)
            _show_ct(axes, sample_volume(image, points, order=1, outside=-1024.0), extent)
            _draw_labels(axes, sample_volume(labels, points, order=0, outside=0), offsets,
                         offsets, by_value, linewidth=0.8)
            axes.set_xticks([])
            axes.set_yticks([])
            axes.text(0.03, 0.97, ("axial", "sagittal")[k], transform=axes.transAxes,
                      color="yellow", fontsize=7, va="top", ha="left")
            if k == 0:
                import matplotlib.patheffects as effects

                axes.set_title(level, color=color, fontsize=11, fontweight="bold", loc="left",
                               pad=2, path_effects=[effects.withStroke(linewidth=2,
                                                                       foreground="0.6")])
            else:
                text, text_color = _score_text(by_level.get(level))
                axes.set_title(text, color=text_color, fontsize=8, loc="right", pad=3)
    heading = (f"Every fitted vertebra: axial (perpendicular to the centreline, anterior up) "
               f"and sagittal sections through its centroid, {2 * THUMBNAIL_HALF_MM:.0f} mm wide")
    figure.suptitle(f"{title}: {heading}" if title else heading, color="white", fontsize=9)
    figure.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=1.0 - 0.45 / (rows * 1.9 + 0.5))
    with atomic_path(path, overwrite=overwrite) as temporary:
        figure.savefig(temporary, format="png", facecolor="black")
    return Path(path)
