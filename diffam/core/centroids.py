"""Vertebra centroids for initialisation: VerSe JSON, CSV and label maps.

All functions return ``dict[int, np.ndarray]``: VerSe id -> ``(3,)`` LPS mm.

Formats:
    * VerSe centroid JSON: a list whose first entry is
      ``{"direction": ["P", "I", "R"]}`` and whose other entries are
      ``{"label": 20, "X": 41.2, "Y": 60.0, "Z": 33.9}``. ``X, Y, Z`` are
      voxel indices of the scan's grid reoriented (axes permuted and flipped,
      no resampling) to the orientation code in ``direction``; each letter
      names the anatomical direction in which that index increases (nibabel
      ``aff2axcodes`` convention). A flipped axis of ``n`` voxels maps index
      ``c`` to ``n - 1 - c`` (voxel centres; the original VerSe scripts used
      ``n - c``, half a voxel to one voxel off).
    * CSV: header ``label,x,y,z``; ``label`` a VerSe id or a level name
      (``L1``, ``T12``, ``sacrum``); ``x, y, z`` LPS mm.

What a centroid means (its *kind*, :func:`centroids_kind`):
    * ``body``: the centre of the vertebral BODY. VerSe ``*_ctd.json`` files
      give these (on VerSe scans 11-15 mm anterior of the whole vertebra's
      centre of mass); a JSON file is read as body centres by default.
    * ``vertebra``: the centre of mass of the whole vertebra (a label mask's
      centroid, :func:`centroids_from_label_map`); a CSV file is read as
      whole-vertebra centres by default.
    The setting ``centroids_kind=auto|vertebra|body`` of ``scripts/segment.py``
    and ``kind=`` of ``scripts/make_centroids.py`` override the default.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from diffam.core.atomic import atomic_path
from diffam.core.labels import level_name, totalsegmentator_to_verse, verse_id
from diffam.core.volume import Volume

Centroids = dict[int, np.ndarray]

_AXIS_OF_LETTER = {"L": 0, "R": 0, "P": 1, "A": 1, "S": 2, "I": 2}
_POSITIVE = {"L", "P", "S"}  # letters whose direction is +x, +y, +z in LPS


class CentroidError(ValueError):
    """Centroids cannot be read or do not fit the image; the message names the fix."""


def _parse_code(direction: Sequence[str], where: str) -> tuple[str, str, str]:
    code = tuple(str(d).upper() for d in direction)
    axes = sorted(_AXIS_OF_LETTER.get(c, -1) for c in code)
    if len(code) != 3 or axes != [0, 1, 2]:
        raise CentroidError(
            f"{where}: direction {list(direction)} is not an orientation code; use three letters "
            "naming one of L/R, A/P, S/I each, e.g. ['P', 'I', 'R']"
        )
    return code  # type: ignore[return-value]


def _code_to_index(coords: np.ndarray, code: Sequence[str], volume: Volume) -> np.ndarray:
    """Voxel coordinates ``(N, 3)`` in the grid reoriented to ``code`` -> ITK index of ``volume``."""
    vol_code = volume.orientation_code()
    n = np.asarray(volume.shape_ijk, dtype=np.float64)
    out = np.empty_like(coords, dtype=np.float64)
    for a, letter in enumerate(code):
        b = next(b for b, v in enumerate(vol_code) if _AXIS_OF_LETTER[v] == _AXIS_OF_LETTER[letter])
        out[:, b] = coords[:, a] if vol_code[b] == letter else n[b] - 1.0 - coords[:, a]
    return out


def _index_to_code(index: np.ndarray, code: Sequence[str], volume: Volume) -> np.ndarray:
    vol_code = volume.orientation_code()
    n = np.asarray(volume.shape_ijk, dtype=np.float64)
    out = np.empty_like(index, dtype=np.float64)
    for a, letter in enumerate(code):
        b = next(b for b, v in enumerate(vol_code) if _AXIS_OF_LETTER[v] == _AXIS_OF_LETTER[letter])
        out[:, a] = index[:, b] if vol_code[b] == letter else n[b] - 1.0 - index[:, b]
    return out


def check_inside(
    centroids: Mapping[int, np.ndarray],
    volume: Volume,
    *,
    margin_voxels: float = 0.0,
    where: str = "",
) -> None:
    """Raise :class:`CentroidError` for any centroid outside ``volume``.

    Args:
        centroids: VerSe id -> ``(3,)`` LPS mm.
        volume: the image the centroids belong to.
        margin_voxels: tolerance beyond the border voxels' outer faces.
        where: file name for the message.
    """
    for label, xyz in centroids.items():
        if not bool(volume.contains_world(np.asarray(xyz), margin_voxels=margin_voxels)):
            ijk = volume.world_to_index(np.asarray(xyz))
            lo, hi = volume.bounds_world
            raise CentroidError(
                f"{where + ': ' if where else ''}centroid of label {label} ({level_name(label)}) at "
                f"LPS {np.round(xyz, 2).tolist()} mm (index {np.round(ijk, 2).tolist()}) lies outside "
                f"the image (index 0..{[s - 1 for s in volume.shape_ijk]}, LPS box "
                f"{np.round(lo, 1).tolist()}..{np.round(hi, 1).tolist()} mm); check that the "
                "centroid file belongs to this scan and uses the expected coordinate convention"
            )


def read_verse_json(
    path: str | os.PathLike,
    volume: Volume,
    *,
    direction: Sequence[str] | None = None,
    check: bool = True,
) -> Centroids:
    """Read a VerSe centroid JSON and convert it to LPS mm on ``volume``.

    Args:
        path: the ``*_ctd.json`` file.
        volume: the scan the centroids were annotated on (its grid defines the
            voxel coordinates).
        direction: orientation code to use when the file has no
            ``{"direction": ...}`` entry (or to override it).
        check: raise when a centroid lies outside the image.

    Returns:
        VerSe id -> ``(3,)`` LPS mm.

    Raises:
        CentroidError: unreadable file, missing orientation, bad entries, or
            centroids outside the image.
    """
    path = Path(path)
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise CentroidError(f"centroid file {path} does not exist") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CentroidError(
            f"{path} is not a JSON file ({err}); give a VerSe centroid JSON"
        ) from err
    if isinstance(entries, dict):  # some tools wrap the list
        entries = entries.get("centroids", entries.get("data", [entries]))
    if not isinstance(entries, list):
        raise CentroidError(f"{path}: a VerSe centroid JSON is a list of entries")
    code = None
    labels, coords = [], []
    for entry in entries:
        if not isinstance(entry, dict):
            raise CentroidError(f"{path}: entry {entry!r} is not an object")
        if "direction" in entry:
            code = entry["direction"]
            continue
        if "label" not in entry:
            continue
        try:
            label = verse_id(entry["label"])
            coords.append([float(entry[k]) for k in ("X", "Y", "Z")])
        except (KeyError, TypeError, ValueError) as err:
            raise CentroidError(
                f"{path}: bad centroid entry {entry!r} ({err}); expected label, X, Y, Z"
            ) from err
        if label in labels:
            raise CentroidError(f"{path}: label {label} ({level_name(label)}) appears twice; "
                                "keep one entry per vertebra")
        labels.append(label)
    if direction is not None:
        code = direction
    if code is None:
        raise CentroidError(
            f"{path} has no {{'direction': [...]}} entry; pass direction=['P', 'I', 'R'] (or the "
            "orientation code the coordinates use)"
        )
    code = _parse_code(code, str(path))
    if not labels:
        return {}
    index = _code_to_index(np.asarray(coords, dtype=np.float64), code, volume)
    world = volume.index_to_world(index)
    centroids = {label: world[n] for n, label in enumerate(labels)}
    if check:
        check_inside(centroids, volume, where=str(path))
    return centroids


def read_centroids_csv(path: str | os.PathLike, volume: Volume | None = None) -> Centroids:
    """Read a ``label,x,y,z`` CSV of LPS mm centroids.

    Args:
        path: the CSV file (header row required).
        volume: when given, centroids outside it raise.

    Returns:
        VerSe id -> ``(3,)`` LPS mm.
    """
    path = Path(path)
    if not path.is_file():
        raise CentroidError(f"centroid file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise CentroidError(
            f"{path} is not a UTF-8 text file ({err.reason} at byte {err.start}); give a CSV "
            "with the columns label,x,y,z"
        ) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if not {"label", "x", "y", "z"} <= set(header):
        raise CentroidError(
            f"{path}: header {reader.fieldnames} must name the columns label,x,y,z "
            "(LPS mm); add the header row"
        )
    centroids: Centroids = {}
    for line, row in enumerate(reader, start=2):
        row = {k.strip().lower(): v for k, v in row.items() if k is not None}
        try:
            label = verse_id(row["label"])
            xyz = np.array([float(row[k]) for k in ("x", "y", "z")])
        except (TypeError, ValueError) as err:
            raise CentroidError(f"{path}, line {line}: {err}") from err
        if label in centroids:
            raise CentroidError(f"{path}, line {line}: label {label} appears twice")
        centroids[label] = xyz
    if volume is not None:
        check_inside(centroids, volume, where=str(path))
    return centroids


#: Two centroids closer than this (mm) cannot be two vertebrae.
MIN_CENTROID_DISTANCE_MM = 1.0


def check_usable(centroids: Mapping[int, np.ndarray], where: str) -> None:
    """Refuse no centroid at all, a coordinate that is not finite, or two at one point."""
    if not centroids:
        raise CentroidError(
            f"{where} holds no centroid; add one entry per vertebra, or leave centroids= out "
            "to find the vertebrae automatically")
    labels = sorted(centroids)
    points = np.stack([np.asarray(centroids[k], dtype=np.float64).reshape(3) for k in labels])
    bad = [level_name(k) for k, p in zip(labels, points) if not np.all(np.isfinite(p))]
    if bad:
        raise CentroidError(f"{where}: the centroid of {', '.join(bad)} is not a finite point")
    if len(points) > 1:
        distance = np.linalg.norm(points[:, None] - points[None], axis=-1)
        distance[np.diag_indices(len(points))] = np.inf
        a, b = np.unravel_index(np.argmin(distance), distance.shape)
        if distance[a, b] < MIN_CENTROID_DISTANCE_MM:
            raise CentroidError(
                f"{where}: the centroids of {level_name(labels[a])} and {level_name(labels[b])} "
                f"are {distance[a, b]:.1f} mm apart (less than {MIN_CENTROID_DISTANCE_MM:g} mm): "
                "two labels at one point; fix the file (one point per vertebra centre)")


CENTROID_KINDS = ("vertebra", "body")


def centroids_kind(path: str | os.PathLike, setting: str = "auto") -> str:
    """What the centroids in ``path`` are: ``body`` or ``vertebra`` (see the module docstring).

    ``auto`` reads a VerSe JSON as body centres and a CSV as whole-vertebra centres.
    """
    setting = str(setting or "auto").lower()
    if setting in CENTROID_KINDS:
        return setting
    if setting != "auto":
        raise CentroidError(f"centroids_kind must be auto, vertebra or body, got {setting!r}")
    return "body" if Path(path).suffix.lower() == ".json" else "vertebra"


def read_centroids(path: str | os.PathLike, volume: Volume | None = None) -> Centroids:
    """Read centroids from a VerSe JSON (needs ``volume``) or a CSV, by suffix.

    Raises:
        CentroidError: unreadable file, no centroid, a repeated label, two
            labels at one point, or a centroid outside ``volume``.
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".json":
        if volume is None:
            raise CentroidError(
                f"{path}: VerSe JSON centroids are voxel coordinates; pass the volume"
            )
        centroids = read_verse_json(path, volume)
    elif suffix == ".csv":
        centroids = read_centroids_csv(path, volume)
    else:
        raise CentroidError(
            f"{path}: unknown centroid format {suffix!r}; use .json (VerSe) or .csv")
    check_usable(centroids, str(path))
    return centroids


def write_centroids_csv(
    centroids: Mapping[int, np.ndarray], path: str | os.PathLike, *, overwrite: bool = False
) -> Path:
    """Write ``label,x,y,z`` (VerSe id, LPS mm) atomically; rows sorted by label."""
    with atomic_path(path, overwrite=overwrite) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["label", "x", "y", "z"])
        for label in sorted(centroids):
            xyz = np.asarray(centroids[label], dtype=np.float64).reshape(3)
            writer.writerow([int(label), *(f"{v:.4f}" for v in xyz)])
    return Path(path)


def write_verse_json(
    centroids: Mapping[int, np.ndarray],
    volume: Volume,
    path: str | os.PathLike,
    *,
    direction: Sequence[str] = ("P", "I", "R"),
    overwrite: bool = False,
) -> Path:
    """Write VerSe centroid JSON (voxel coordinates of ``volume`` in ``direction``) atomically."""
    code = _parse_code(direction, str(path))
    labels = sorted(centroids)
    entries: list[dict] = [{"direction": list(code)}]
    if labels:
        world = np.stack([np.asarray(centroids[k], dtype=np.float64).reshape(3) for k in labels])
        coords = _index_to_code(volume.world_to_index(world), code, volume)
        for label, (x, y, z) in zip(labels, coords):
            entries.append(
                {
                    "label": int(label),
                    "X": round(float(x), 3),
                    "Y": round(float(y), 3),
                    "Z": round(float(z), 3),
                }
            )
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(entries, indent=1), encoding="utf-8")
    return Path(path)


def centroids_from_label_map(
    volume: Volume, convention: Literal["verse", "totalsegmentator"] = "verse"
) -> Centroids:
    """Centre of mass of each vertebra's voxels, in LPS mm.

    Args:
        volume: label map.
        convention: ``'verse'`` ids or ``'totalsegmentator'`` v2 ids (relabelled
            to VerSe first; non-vertebra classes ignored, S1 merged into sacrum).

    Returns:
        VerSe id -> ``(3,)`` LPS mm, for every vertebra present.
    """
    if convention == "totalsegmentator":
        labels = totalsegmentator_to_verse(volume.array)
    elif convention == "verse":
        labels = np.asarray(volume.array)
        if labels.dtype.kind not in "iub":
            labels = np.rint(labels).astype(np.int64)
    else:
        raise ValueError(f"convention must be 'verse' or 'totalsegmentator', not {convention!r}")
    k, j, i = np.nonzero(labels)
    values = labels[k, j, i].astype(np.int64)
    if values.size == 0:
        return {}
    counts = np.bincount(values)
    present = np.nonzero(counts)[0]
    index = np.stack(
        [
            np.bincount(values, weights=axis.astype(np.float64))[present] / counts[present]
            for axis in (i, j, k)
        ],
        axis=1,
    )
    world = volume.index_to_world(index)
    result = {}
    for n, label in enumerate(present.tolist()):
        try:
            verse_id(label)
        except ValueError:
            continue  # not a vertebra id (e.g. sub-regions)
        result[label] = world[n]
    return result
