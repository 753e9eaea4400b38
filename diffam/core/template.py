"""Spine template sets: one triangle mesh per vertebra, a file format, a loader and checks.

A *template set* is the prior shape of the whole method (see ``METHOD.md`` section 2):
one closed, outward-oriented, genus-1 triangle mesh per vertebra, placed in anatomical
position. Every vertebra of a set shares ONE connectivity (the same face array and
vertex count, vertex ``i`` corresponding anatomically across levels), because one
Laplace-Beltrami eigenbasis is shared by all vertebrae and meshes are compared
level to level.

Coordinates are world LPS millimetres (x = patient Left, y = Posterior,
z = Superior), as everywhere in :mod:`diffam`.

File format (``.npz``, one file per template set, written by :meth:`TemplateSet.save`):

* ``metadata``: a 0-d unicode array holding a JSON object with keys
  ``format`` (``"diffam-template"``), ``format_version`` (int), ``name``, ``units``
  (``"mm"``), ``axes`` (``"LPS"``), ``description``, ``source``, ``levels`` (list of
  level names, e.g. ``"L3"``), ``verse_ids`` (list of int, same order),
  ``shared_connectivity`` (bool) and ``eigenbasis`` (``null`` or a dict describing it).
* ``vertices_<level>``: (V, 3) float64, millimetres, for every level.
* ``faces``: (F, 3) int64 when every level has the same faces (``shared_connectivity``),
  otherwise ``faces_<level>`` for every level.
* optional ``frame_<level>``: (4, 4) float64 rigid transform from the vertebra's
  local frame (origin at the body centre, axes along the body) to world.
* optional ``eigenvalues`` (K,) float64 and ``eigenvectors`` (V, K) float64 (a
  Laplace-Beltrami basis shared by all levels; requires shared connectivity).

Example:
    >>> from diffam.core.template import load_template
    >>> tpl = load_template("lumbar")          # a built-in set from templates/
    >>> tpl.levels
    ['L1', 'L2', 'L3', 'L4', 'L5']
    >>> tpl.by_level("L3").vertices.shape      # (V, 3) mm, LPS
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from diffam.core.labels import VERSE_IDS
from diffam.core.mesh_ops import signed_volume, solid_centroid
from diffam.core.resources import template_dirs
from diffam.core.template_checks import TemplateError, check_mesh

FORMAT_NAME = "diffam-template"
FORMAT_VERSION = 1


@dataclass
class Vertebra:
    """One vertebra of a template set.

    Attributes:
        level: Level name, e.g. ``"L3"`` (see :data:`VERSE_IDS`).
        verse_id: VerSe label of the level (1..24 regular, 25 L6, 28 T13).
        vertices: (V, 3) float64 vertex positions, world LPS millimetres.
        faces: (F, 3) int64 vertex indices, counter-clockwise seen from outside
            (outward normals).
        frame: Optional (4, 4) rigid transform from the vertebra's local frame (origin
            at the centre of the vertebral body, x Left, y Posterior, z Superior along
            the body's axis) to world LPS mm: ``world = frame[:3, :3] @ local + frame[:3, 3]``.
    """

    level: str
    verse_id: int
    vertices: np.ndarray
    faces: np.ndarray
    frame: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.vertices = np.asarray(self.vertices, dtype=np.float64)
        self.faces = np.asarray(self.faces, dtype=np.int64)
        if self.frame is not None:
            self.frame = np.asarray(self.frame, dtype=np.float64)

    def local_vertices(self) -> np.ndarray:
        """(V, 3) vertices in the vertebra's local frame (requires :attr:`frame`)."""
        if self.frame is None:
            raise TemplateError(f"level {self.level} has no local frame")
        return (self.vertices - self.frame[:3, 3]) @ self.frame[:3, :3]

    def volume(self) -> float:
        """Signed enclosed volume in mm^3 (positive for an outward-oriented closed mesh)."""
        return float(signed_volume(self.vertices, self.faces))

    def centroid(self) -> np.ndarray:
        """Centroid of the enclosed solid, (3,) mm; this is what a label mask's centroid estimates."""
        return solid_centroid(self.vertices, self.faces)


@dataclass
class TemplateSet:
    """A named set of vertebra meshes in anatomical position.

    Attributes:
        name: Short name of the set (e.g. ``"lumbar"``).
        vertebrae: The vertebrae, cranio-caudal order.
        units: Length unit of the vertices; only ``"mm"`` is supported.
        axes: World axes; only ``"LPS"`` is supported.
        description: Free text.
        source: Where the shapes come from (method, citations).
        eigenvalues: Optional (K,) Laplace-Beltrami eigenvalues shared by all levels.
        eigenvectors: Optional (V, K) eigenvectors matching ``eigenvalues``.
        eigenbasis_info: Optional description of the eigenbasis (JSON-serialisable dict).
    """

    name: str
    vertebrae: list[Vertebra]
    units: str = "mm"
    axes: str = "LPS"
    description: str = ""
    source: str = ""
    eigenvalues: np.ndarray | None = None
    eigenvectors: np.ndarray | None = None
    eigenbasis_info: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ access
    @property
    def levels(self) -> list[str]:
        """Level names in the order of :attr:`vertebrae`."""
        return [v.level for v in self.vertebrae]

    @property
    def verse_ids(self) -> list[int]:
        """VerSe labels in the order of :attr:`vertebrae`."""
        return [v.verse_id for v in self.vertebrae]

    def __len__(self) -> int:
        return len(self.vertebrae)

    def __iter__(self):
        return iter(self.vertebrae)

    def by_level(self, level: str | int) -> Vertebra:
        """The vertebra of one level.

        Args:
            level: Level name (``"L3"``) or VerSe id (22).

        Raises:
            KeyError: The set has no such level.
        """
        for v in self.vertebrae:
            if v.level == level or (isinstance(level, int | np.integer) and v.verse_id == level):
                return v
        raise KeyError(f"template set {self.name!r} has no level {level!r}; it has {self.levels}")

    @property
    def shared_connectivity(self) -> bool:
        """True when every vertebra has the same vertex count and the same face array."""
        if not self.vertebrae:
            return True
        f0 = self.vertebrae[0].faces
        n0 = len(self.vertebrae[0].vertices)
        return all(len(v.vertices) == n0 and np.array_equal(v.faces, f0) for v in self.vertebrae)

    @property
    def faces(self) -> np.ndarray:
        """The shared (F, 3) face array.

        Raises:
            TemplateError: The vertebrae do not share one connectivity.
        """
        if not self.vertebrae:
            raise TemplateError(f"template set {self.name!r} is empty")
        if not self.shared_connectivity:
            raise TemplateError(f"template set {self.name!r} has no shared connectivity")
        return self.vertebrae[0].faces

    def stacked_vertices(self) -> np.ndarray:
        """All vertices as one (L, V, 3) float64 array (requires shared connectivity)."""
        _ = self.faces
        return np.stack([v.vertices for v in self.vertebrae])

    def centroids(self) -> dict[int, np.ndarray]:
        """Solid centroid of every vertebra, VerSe id -> (3,) float64 mm (LPS)."""
        return {v.verse_id: v.centroid() for v in self.vertebrae}

    def mean_local_shape(self) -> np.ndarray:
        """(V, 3) mean of the vertebrae in their local frames (shared connectivity and
        frames required): the "average vertebra" on which one Laplace-Beltrami basis
        for all levels can be computed."""
        _ = self.faces
        return np.mean([v.local_vertices() for v in self.vertebrae], axis=0)

    def subset(self, levels: Iterable[str | int]) -> TemplateSet:
        """A new set holding only some levels (in this set's order; arrays are copied).

        Args:
            levels: Level names or VerSe ids.

        Raises:
            KeyError: A requested level is not in the set.
        """
        wanted = [self.by_level(lv).level for lv in levels]
        verts = [
            Vertebra(
                v.level,
                v.verse_id,
                v.vertices.copy(),
                v.faces.copy(),
                None if v.frame is None else v.frame.copy(),
            )
            for v in self.vertebrae
            if v.level in wanted
        ]
        return TemplateSet(
            name=self.name,
            vertebrae=verts,
            units=self.units,
            axes=self.axes,
            description=self.description,
            source=self.source,
            eigenvalues=None if self.eigenvalues is None else self.eigenvalues.copy(),
            eigenvectors=None if self.eigenvectors is None else self.eigenvectors.copy(),
            eigenbasis_info=dict(self.eigenbasis_info),
        )

    # ------------------------------------------------------------------ checks
    def validate(self, *, genus: int | None = 1, require_shared_connectivity: bool = True) -> None:
        """Check the set; raise :class:`TemplateError` naming the first problem found.

        Checks: units/axes, known and unique level names with matching VerSe ids,
        array shapes and dtypes, finite coordinates, face indices in range, no
        degenerate faces, closed edge- and vertex-manifold meshes, consistent
        orientation, positive (outward) volume, one connected component of the
        given genus, shared connectivity and eigenbasis shapes.

        Args:
            genus: Required genus of every mesh (1: the vertebral foramen);
                ``None`` skips the genus and connectivity-component check.
            require_shared_connectivity: Require one face array for all levels.

        Raises:
            TemplateError: The set violates a requirement.
        """
        if self.units != "mm":
            raise TemplateError(f"units must be 'mm', got {self.units!r}")
        if self.axes != "LPS":
            raise TemplateError(f"axes must be 'LPS', got {self.axes!r}")
        if not self.vertebrae:
            raise TemplateError(f"template set {self.name!r} has no vertebrae")
        seen: set[str] = set()
        for v in self.vertebrae:
            if v.level not in VERSE_IDS:
                raise TemplateError(
                    f"unknown level name {v.level!r}; expected one of {', '.join(VERSE_IDS)}"
                )
            if v.level in seen:
                raise TemplateError(f"level {v.level!r} appears twice")
            seen.add(v.level)
            if int(v.verse_id) != VERSE_IDS[v.level]:
                raise TemplateError(
                    f"level {v.level!r} has VerSe id {v.verse_id}, expected {VERSE_IDS[v.level]}"
                )
            check_mesh(v.vertices, v.faces, genus=genus, what=f"level {v.level}")
            if v.frame is not None:
                fr = np.asarray(v.frame)
                if fr.shape != (4, 4) or not np.all(np.isfinite(fr)):
                    raise TemplateError(f"level {v.level}: frame must be a finite (4, 4) matrix")
                rot = fr[:3, :3]
                if not np.allclose(rot.T @ rot, np.eye(3), atol=1e-6) or np.linalg.det(rot) < 0:
                    raise TemplateError(f"level {v.level}: frame rotation is not a proper rotation")
                if not np.allclose(fr[3], [0, 0, 0, 1]):
                    raise TemplateError(f"level {v.level}: frame's last row must be (0, 0, 0, 1)")
        if require_shared_connectivity and not self.shared_connectivity:
            n = {v.level: len(v.vertices) for v in self.vertebrae}
            raise TemplateError(
                "vertebrae must share one connectivity (same vertex count and faces); "
                f"vertex counts: {n}"
            )
        if (self.eigenvalues is None) != (self.eigenvectors is None):
            raise TemplateError("eigenvalues and eigenvectors must be given together")
        if self.eigenvalues is not None:
            ev = np.asarray(self.eigenvalues)
            evec = np.asarray(self.eigenvectors)
            nv = len(self.vertebrae[0].vertices)
            if ev.ndim != 1 or evec.ndim != 2 or evec.shape != (nv, ev.shape[0]):
                raise TemplateError(
                    f"eigenbasis shapes {ev.shape}, {evec.shape} do not match (K,) and (V={nv}, K)"
                )
            if not (np.all(np.isfinite(ev)) and np.all(np.isfinite(evec))):
                raise TemplateError("eigenbasis holds non-finite values")

    # ------------------------------------------------------------------ I/O
    def save(self, path: str | os.PathLike) -> Path:
        """Write the set to one compressed ``.npz`` file (format in the module docstring).

        Args:
            path: Destination; ``.npz`` is appended when missing.

        Returns:
            The path written.
        """
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(path.suffix + ".npz")
        shared = self.shared_connectivity
        arrays: dict[str, np.ndarray] = {}
        for v in self.vertebrae:
            arrays[f"vertices_{v.level}"] = np.asarray(v.vertices, dtype=np.float64)
            if not shared:
                arrays[f"faces_{v.level}"] = np.asarray(v.faces, dtype=np.int64)
            if v.frame is not None:
                arrays[f"frame_{v.level}"] = np.asarray(v.frame, dtype=np.float64)
        if shared and self.vertebrae:
            arrays["faces"] = np.asarray(self.vertebrae[0].faces, dtype=np.int64)
        eig = None
        if self.eigenvalues is not None and self.eigenvectors is not None:
            arrays["eigenvalues"] = np.asarray(self.eigenvalues, dtype=np.float64)
            arrays["eigenvectors"] = np.asarray(self.eigenvectors, dtype=np.float64)
            eig = {"k": int(len(self.eigenvalues)), **self.eigenbasis_info}
        meta = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "units": self.units,
            "axes": self.axes,
            "description": self.description,
            "source": self.source,
            "levels": self.levels,
            "verse_ids": [int(i) for i in self.verse_ids],
            "shared_connectivity": bool(shared),
            "eigenbasis": eig,
        }
        arrays["metadata"] = np.array(json.dumps(meta))
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, *, validate: bool = True) -> TemplateSet:
        """Read a set written by :meth:`save`.

        Args:
            path: The ``.npz`` file.
            validate: Run :meth:`validate` (with its defaults) after reading.

        Raises:
            FileNotFoundError: No such file.
            TemplateError: The file is not a valid template file.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"template file not found: {path}")
        try:
            npz = np.load(path, allow_pickle=False)
        except Exception as exc:  # zip/npy errors come in many types
            raise TemplateError(f"{path}: not a readable .npz file ({exc})") from exc
        with npz:
            tpl = _from_arrays({k: npz[k] for k in npz.files}, where=str(path))
        if validate:
            try:
                tpl.validate()
            except TemplateError as exc:
                raise TemplateError(f"{path}: {exc}") from exc
        return tpl


def _from_arrays(arrays: dict[str, np.ndarray], where: str) -> TemplateSet:
    """Build a :class:`TemplateSet` from the arrays of a template file."""
    if "metadata" not in arrays:
        raise TemplateError(f"{where}: missing the 'metadata' array (not a diffam template file)")
    try:
        meta = json.loads(str(arrays["metadata"][()]))
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise TemplateError(f"{where}: metadata is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise TemplateError(f"{where}: metadata 'format' must be {FORMAT_NAME!r}")
    version = meta.get("format_version")
    if not isinstance(version, int) or version < 1 or version > FORMAT_VERSION:
        raise TemplateError(
            f"{where}: unsupported format_version {version!r} (this diffam reads 1..{FORMAT_VERSION})"
        )
    for key in ("name", "units", "axes", "levels", "verse_ids"):
        if key not in meta:
            raise TemplateError(f"{where}: metadata lacks {key!r}")
    levels, ids = meta["levels"], meta["verse_ids"]
    if not isinstance(levels, list) or not isinstance(ids, list) or len(levels) != len(ids):
        raise TemplateError(
            f"{where}: metadata 'levels' and 'verse_ids' must be lists of equal length"
        )
    shared_faces = arrays.get("faces")
    vertebrae = []
    for level, vid in zip(levels, ids):
        vkey, fkey = f"vertices_{level}", f"faces_{level}"
        if vkey not in arrays:
            raise TemplateError(f"{where}: missing array {vkey!r}")
        faces = arrays.get(fkey, shared_faces)
        if faces is None:
            raise TemplateError(f"{where}: missing array {fkey!r} (and no shared 'faces')")
        verts = arrays[vkey]
        if verts.ndim != 2 or verts.shape[1] != 3 or not np.issubdtype(verts.dtype, np.floating):
            raise TemplateError(
                f"{where}: {vkey} must be a (V, 3) float array, got {verts.shape} {verts.dtype}"
            )
        if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
            raise TemplateError(
                f"{where}: faces of {level} must be a (F, 3) int array, got {faces.shape} {faces.dtype}"
            )
        if not isinstance(vid, int):
            raise TemplateError(f"{where}: VerSe id of {level} must be an int, got {vid!r}")
        frame = arrays.get(f"frame_{level}")
        if frame is not None and frame.shape != (4, 4):
            raise TemplateError(f"{where}: frame_{level} must be (4, 4), got {frame.shape}")
        vertebrae.append(Vertebra(str(level), int(vid), verts, faces, frame))
    eigval, eigvec = arrays.get("eigenvalues"), arrays.get("eigenvectors")
    info = meta.get("eigenbasis") or {}
    return TemplateSet(
        name=str(meta["name"]),
        vertebrae=vertebrae,
        units=str(meta["units"]),
        axes=str(meta["axes"]),
        description=str(meta.get("description", "")),
        source=str(meta.get("source", "")),
        eigenvalues=None if eigval is None else np.asarray(eigval, dtype=np.float64),
        eigenvectors=None if eigvec is None else np.asarray(eigvec, dtype=np.float64),
        eigenbasis_info={k: v for k, v in info.items() if k != "k"}
        if isinstance(info, dict)
        else {},
    )


# ---------------------------------------------------------------------- built-ins
def available_templates() -> list[str]:
    """Names of the built-in template sets found in :func:`template_dirs`."""
    names: set[str] = set()
    for d in template_dirs():
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.npz"))
    return sorted(names)


def load_template(name_or_path: str | os.PathLike, *, validate: bool = True) -> TemplateSet:
    """Load a template set by built-in name (``"lumbar"``, ``"spine"``) or by file path.

    Args:
        name_or_path: A built-in name (file ``<name>.npz`` in one of
            :func:`template_dirs`) or the path of a ``.npz`` template file.
        validate: Run :meth:`TemplateSet.validate` after reading.

    Raises:
        FileNotFoundError: Neither a file nor a built-in template of that name.
        TemplateError: The file is malformed or fails validation.
    """
    p = Path(name_or_path)
    if p.is_file():
        return TemplateSet.load(p, validate=validate)
    looks_like_path = p.suffix == ".npz" or len(p.parts) > 1
    if not looks_like_path:
        for d in template_dirs():
            cand = d / f"{p.name}.npz"
            if cand.is_file():
                return TemplateSet.load(cand, validate=validate)
    raise FileNotFoundError(
        f"no template file {str(name_or_path)!r} and no built-in template of that name; "
        f"built-in: {available_templates()} (searched {[str(d) for d in template_dirs()]})"
    )
