"""Per-vertebra fit score: how well the fitted appearance explains the scan near each surface.

The fit predicts the CT intensity at a point from its signed distance to the
spine's surface through the learned appearance function (``FitResult.
appearance_profile``: signed distance mm -> predicted HU). Near a well fitted
vertebra, prediction and scan agree; a vertebra fitted onto the wrong
structure (a disc, a neighbour, soft tissue) leaves a large residual there.

The fit score of a vertebra compares the intensity the fitted appearance
predicts with the scan at points within ``band_mm`` (3 mm) of its surface:
points are taken along the vertex normals at offsets in ``[-band, band]``,
their signed distance to the union of all fitted meshes is computed with
diffsd (as in the fit), and the scan is sampled trilinearly on its own grid.
The measures (:class:`VertebraScore`):

* ``residual_hu``: the mean absolute residual ``|predicted - observed|``, HU;
* ``correlation``: Pearson's correlation between predicted and observed
  intensities, i.e. how much of the intensity change across the surface the
  fitted surface explains (independent of the HU scale and contrast);
* ``in_view``: the part of the band inside the scan;
* ``edge_contrast``, ``overlap``, ``moved``: see :class:`VertebraScore`.

The score (:func:`combined_score`) is the correlation, lowered by
``SCORE_WEIGHTS`` for a vertebra partly out of view and for one that ended
far from its initial centroid; below ``ExportConfig.fit_score_threshold``
(0.40) the vertebra is flagged doubtful. It is computed from the fitted
meshes, the appearance function and the image only (plus the initial
centroids for ``moved``), whatever the optimiser did to get there.

Calibration (``benchmarks/calibrate_fit_score.py``, ``optim=fast``, CPU,
2026-12-06): the five labelled scans of ``../shared/data/ct`` fitted from
centroids made from their label maps, as they are, with deliberate failures
(a vertebra started at the upper border of the scan, one started one level
off, one 12 mm off) and cut 9 mm into their highest vertebra: 102 vertebrae,
22 of them below 70 % Dice. Weights and threshold were chosen on chest,
verse005 and verse008 (72 vertebrae, 17 failed): ROC AUC for "Dice < 70 %"
0.984 there, 0.920 on the held-out verse007 and l3_crop (30, 5 failed),
0.943 on all; the correlation alone 0.921 / 0.952 / 0.903, the residual
alone 0.860 / 0.672 / 0.822 (on real CT it is dominated by trabecular
texture and noise that a function of distance cannot predict), edge
contrast 0.888 / 0.856 / 0.884, overlap about 0.6 (the overlap loss keeps
fitted vertebrae apart even when one starts on its neighbour). The
threshold maximises sensitivity + specificity on the tuning scans (0.397:
17/17 failed and 4/55 good vertebrae flagged). On the held-out scans it
flags 5/5 failed vertebrae but also 12 of 25 good ones: their correlations
run lower (verse007 0.39-0.52 on a normal run, against 0.43-0.62 on the
chest CT's good vertebrae), and the l3_crop's vertebrae are all cut by its
borders. A doubtful flag asks for a look at ``qc/vertebrae.png``; it is not
a verdict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from diffam.core.config import ExportConfig
from diffam.core.mesh_ops import signed_volume, solid_centroid, vertex_normals
from diffam.core.volume import Volume

#: Combined score below which a vertebra is flagged as doubtful (see the module notes);
#: the one place it is set is ``ExportConfig.fit_score_threshold``.
DEFAULT_THRESHOLD = ExportConfig.fit_score_threshold
#: The inner shell tested for overlap starts this deep inside the surface, mm.
OVERLAP_DEPTH_MM = 1.0
#: Shells inside and outside the surface compared by ``edge_contrast``, mm from the surface.
EDGE_SHELL_MM = (0.5, 2.0)


#: Weights of the combined score (:func:`combined_score`), chosen by
#: ``benchmarks/calibrate_fit_score.py --search`` on its tuning scans.
SCORE_WEIGHTS = {"moved": 0.1, "out_of_view": 1.0}
#: ``moved`` counts up to this many vertebra sizes (a vertebra lost far away is lost).
MOVED_CAP = 2.0


def combined_score(features: Mapping[str, float],
                   weights: Mapping[str, float] = SCORE_WEIGHTS) -> float:
    """The fit score of one vertebra from its measures (higher is better; NaN: not scorable).

    ``correlation - w_moved * min(moved, MOVED_CAP) - w_out * (1 - in_view)``:
    the correlation of predicted and observed intensity near the surface,
    lowered for a vertebra that ended far from where it started (it may
    have slid onto a neighbour or a disc) and for one partly out of the
    scan (its fit rests on less image). ``moved`` is left out when unknown.
    """
    correlation = features["correlation"]
    if not np.isfinite(correlation):
        return float("nan")
    moved = features.get("moved", float("nan"))
    moved = min(moved, MOVED_CAP) if np.isfinite(moved) else 0.0
    in_view = features.get("in_view", 1.0)
    in_view = in_view if np.isfinite(in_view) else 0.0
    return float(correlation - weights.get("moved", 0.0) * moved
                 - weights.get("out_of_view", 0.0) * (1.0 - in_view))


@dataclass
class VertebraScore:
    """Fit score of one vertebra and the measures it is made of.

    Attributes:
        level: level name.
        residual_hu: mean absolute residual near the surface, HU (NaN: no point in the image).
        correlation: correlation of predicted and observed HU near the surface.
        points: number of sample points used.
        doubtful: ``score`` below the threshold (or not computable).
        in_view: fraction of the band points around the surface inside the scan.
        edge_contrast: observed HU just inside the surface minus just outside,
            over the same difference of the fitted appearance (1: the scan's
            edge is where the surface is; 0: no edge there).
        overlap: fraction of the vertebra's inner shell (points
            ``OVERLAP_DEPTH_MM`` to ``band_mm`` inside its surface, along the
            normals) that lies inside a neighbouring fitted vertebra.
        moved: distance from the initial centroid to the fitted solid
            centroid, in vertebra sizes (cube root of the fitted volume); NaN
            without initial centroids.
        score: the combined score (:func:`combined_score`; higher is better).
    """

    level: str
    residual_hu: float
    correlation: float
    points: int
    doubtful: bool
    in_view: float = float("nan")
    edge_contrast: float = float("nan")
    overlap: float = float("nan")
    moved: float = float("nan")
    score: float = float("nan")

    def features(self) -> dict[str, float]:
        """The measures the score is made of, by name."""
        return {name: float(getattr(self, name)) for name in FEATURES}

    def as_dict(self) -> dict:
        return {
            "level": self.level,
            **{name: _finite(value) for name, value in self.features().items()},
            "score": _finite(self.score),
            "points": self.points,
            "doubtful": self.doubtful,
        }


#: The measures of :class:`VertebraScore` that :func:`combined_score` combines.
FEATURES = ("correlation", "residual_hu", "in_view", "edge_contrast", "overlap", "moved")


def _finite(value: float) -> float | None:
    return None if not np.isfinite(value) else round(float(value), 4)


def sample_image(image: Volume, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Trilinear HU at LPS mm points ``(N, 3)``; returns (values, inside mask)."""
    from scipy.ndimage import map_coordinates

    ijk = image.world_to_index(points)
    inside = image.contains_world(points, margin_voxels=-0.5)
    values = map_coordinates(
        image.array.astype(np.float32, copy=False), ijk[:, ::-1].T, order=1, mode="nearest"
    )
    return values.astype(np.float64), inside


def _signed_distance(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Signed distance (mm, negative inside) of ``points`` to the union of meshes ``(K, V, 3)``."""
    import torch

    import diffsd

    k, v = vertices.shape[:2]
    packed_faces = np.concatenate([faces + i * v for i in range(k)])
    return diffsd.signed_distance(
        torch.as_tensor(vertices.reshape(-1, 3)),
        torch.as_tensor(packed_faces),
        torch.as_tensor(points),
    ).distance.numpy()


def _overlap(vertices: np.ndarray, faces: np.ndarray, index: int, inner: np.ndarray) -> float:
    """Fraction of vertebra ``index``'s inner shell points ``inner`` (N, 3) inside its neighbours."""
    neighbours = [n for n in (index - 1, index + 1) if 0 <= n < len(vertices)]
    if not neighbours or not len(inner):
        return 0.0
    return float(np.mean(_signed_distance(vertices[neighbours], faces, inner) < 0))


def _moved(vertices: np.ndarray, faces: np.ndarray, initial: np.ndarray | None) -> float:
    if initial is None or not np.all(np.isfinite(initial)):
        return float("nan")
    volume = abs(signed_volume(vertices, faces))
    if volume <= 0:
        return float("nan")
    return float(np.linalg.norm(solid_centroid(vertices, faces) - initial) / volume ** (1 / 3))


def _edge_contrast(distance: np.ndarray, observed: np.ndarray, predicted: np.ndarray) -> float:
    """(observed inside - outside) / (predicted inside - outside) in the edge shells."""
    inner = (distance > -EDGE_SHELL_MM[1]) & (distance < -EDGE_SHELL_MM[0])
    outer = (distance > EDGE_SHELL_MM[0]) & (distance < EDGE_SHELL_MM[1])
    if inner.sum() < 10 or outer.sum() < 10:
        return float("nan")
    expected = predicted[inner].mean() - predicted[outer].mean()
    if abs(expected) < 1e-6:
        return float("nan")
    return float((observed[inner].mean() - observed[outer].mean()) / expected)


def fit_scores(
    vertices: np.ndarray,
    faces: np.ndarray,
    levels: list[str],
    appearance_profile: np.ndarray,
    image: Volume,
    *,
    initial_centroids: np.ndarray | None = None,
    band_mm: float = 3.0,
    steps: int = 13,
    max_vertices: int = 1500,
    threshold: float = DEFAULT_THRESHOLD,
    seed: int = 0,
) -> list[VertebraScore]:
    """Score every fitted vertebra against the scan.

    Args:
        vertices: ``(M, V, 3)`` fitted vertices, LPS mm.
        faces: ``(F, 3)`` shared faces.
        levels: the M level names.
        appearance_profile: ``(2, S)`` signed distance mm (increasing) and predicted HU.
        image: the scan in HU (its own grid).
        initial_centroids: ``(M, 3)`` whole-vertebra centroids the fit started
            from, LPS mm (for ``moved``); None leaves ``moved`` out of the score.
        band_mm: half width of the band around the surface.
        steps: offsets per vertex along its normal.
        max_vertices: vertices used per vertebra (a random subset beyond).
        threshold: combined score below which a vertebra is doubtful.

    Returns:
        One :class:`VertebraScore` per vertebra, in the given order.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    m, v = vertices.shape[:2]
    distance_axis, predicted_hu = np.asarray(appearance_profile, dtype=np.float64)
    rng = np.random.default_rng(seed)
    offsets = np.linspace(-band_mm, band_mm, steps)
    points, owner, inner_shells = [], [], []
    inward = offsets[offsets <= -OVERLAP_DEPTH_MM]
    for index in range(m):
        normals = vertex_normals(vertices[index], faces)
        chosen = np.arange(v) if v <= max_vertices else rng.choice(v, max_vertices, replace=False)
        inner_shells.append((vertices[index][chosen, None, :]
                             + inward[None, :, None] * normals[chosen, None, :]).reshape(-1, 3))
        p = vertices[index][chosen, None, :] + offsets[None, :, None] * normals[chosen, None, :]
        points.append(p.reshape(-1, 3))
        owner.append(np.full(p.shape[0] * p.shape[1], index))
    points, owner = np.concatenate(points), np.concatenate(owner)
    distance = _signed_distance(vertices, faces, points)
    observed, inside = sample_image(image, points)
    predicted = np.interp(distance, distance_axis, predicted_hu)
    near = np.abs(distance) < band_mm
    keep = inside & near
    residual = np.abs(predicted - observed)
    initial = None if initial_centroids is None else np.asarray(initial_centroids, np.float64)
    scores = []
    for index, level in enumerate(levels):
        mine = owner == index
        mask = keep & mine
        score = VertebraScore(
            level,
            float(residual[mask].mean()) if mask.any() else float("nan"),
            _correlation(predicted[mask], observed[mask]),
            int(mask.sum()),
            True,
            in_view=float(inside[mine & near].mean()) if (mine & near).any() else 0.0,
            edge_contrast=_edge_contrast(distance[mask], observed[mask], predicted[mask]),
            overlap=_overlap(vertices, faces, index, inner_shells[index]),
            moved=_moved(vertices[index], faces, None if initial is None else initial[index]),
        )
        score.score = combined_score(score.features())
        score.doubtful = bool(not np.isfinite(score.score) or score.score < threshold)
        scores.append(score)
    return scores


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's correlation; NaN for fewer than 10 points or a constant input."""
    if a.size < 10 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])
