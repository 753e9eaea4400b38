"""Benchmark of diffsd against the naive O(P F) method and peer libraries.

One process measures, on four meshes (an icosphere of 20,480 faces, a torus,
a ~330k-face non-convex "bumpy" shape, and an open one: the icosphere with
four holes) and three point counts (10k, 100k,
1M points: half uniform in the mesh's bounding box enlarged by 10 %, half
near the surface):

- diffsd: BVH build (the default binned-SAH builder, and the parallel
  Morton-code "lbvh" one), BVH refit, forward signed distance, forward unsigned
  distance, the ``.backward()`` of ``distance.sum()`` for points and vertices,
  and one optimisation step (refit + forward + backward);
- the naive O(P F) torch implementation of :mod:`diffsd.naive` (where its
  estimated time fits under ``--max-seconds``);
- peers, each only when installed (adapters in :mod:`sdf_peers`): libigl
  (exact and fast winding number), Open3D, pysdf, fcpw and NVIDIA Warp (CPU
  device).

Every implementation's structure (BVH, AABB tree, scene) is built and timed
apart from its queries. Every timing is the median of repeated calls after a
warm-up call, and the implementations are measured in alternating rounds in
this one process (each round calls each once, in a rotated order), so that
a slow spell of a shared machine falls on all of them alike; only the naive
method, a slow reference, is timed on its own. The optimisation step at the
pipeline's size (10k points, the 20,480-face sphere: the step target) is
timed in rounds with every peer's build + forward of the same points; its
parts (refit, forward, backward) are timed back to back. Between two steps
(and two refits) the vertices move as much as in a real fit
(:data:`STEP_MOVE`), so every refit does its work. The number of rounds scales
with the calls' time: rounds go on until 1.5 s per implementation are
spent, at least 7 and at most 60 (:data:`MIN_ROUNDS`, :data:`MAX_ROUNDS`),
so that the median of a 10 ms call rests on 60 samples, not on a handful
that one busy second of a shared machine can move by tens of per cent
(a round with a call over 3 s is the last). The sign of
every method is checked against the exact winding number on a fixed subset
of the points, and its distance against diffsd's exact float64 distance. The
Numba compile time (first calls) is reported apart. The output is a markdown
table, the issue's target checks as PASS/FAIL lines, and optionally a
PNG plot of the peak memory of naive versus BVH across sizes (``--plot``).

The benchmark sets ``OMP_WAIT_POLICY=PASSIVE`` unless the environment sets
it (see the comment at the imports); the report's header says which was used.

Usage (from the repository root)::

    python benchmarks/bench_sdf.py                        # full run (minutes)
    python benchmarks/bench_sdf.py --quick                # small smoke run
    python benchmarks/bench_sdf.py --sizes 10000 --meshes sphere --peers igl,fcpw
    python benchmarks/bench_sdf.py --output results.md --plot memory.png
"""

from __future__ import annotations

import argparse
import gc
import itertools
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# Torch and Numba's OpenMP threading layer each load their own libgomp. With
# the default (active) wait policy, the threads of one runtime spin while the
# other's need the cores: on 2 cores that multiplies the time of short calls
# several fold. Passive waiting must be chosen before torch is imported; set
# OMP_WAIT_POLICY=ACTIVE in the environment to measure the default behaviour.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
try:
    import diffsd
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO_ROOT))
    import diffsd
from sdf_peers import PEER_NAMES, load_peers  # noqa: E402

from diffsd import naive, primitives  # noqa: E402

MESH_NAMES = ("sphere", "torus", "bumpy", "holes")
#: Holes cut in the open test mesh: unit directions of their centres, and their
#: angular radius (radians).
HOLE_DIRECTIONS = ((0.0, 0.0, 1.0), (1.0, 0.0, 0.0), (0.0, -1.0, 0.0), (-0.6, 0.6, -0.53))
HOLE_RADIUS = 0.35
FULL_SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (1_000, 5_000)
PIPELINE_POINTS = 10_000  # the pipeline's size for the step target
PIPELINE_FACES = 20_480
STEP_LABEL = "diffsd step"  # its key among the implementations alternated with it
#: Between two refits of the step (and of the refit row) the vertices move,
#: the farthest by this fraction of the mean diagonal of the triangles'
#: boxes: the median of a real fit (the phantom, optim=fast: 0.14-0.17). A
#: refit to unchanged vertices returns at once and would time nothing.
STEP_MOVE = 0.15
MEMORY_BUDGET_BYTES = 24 * 1024**3  # the report's GPU memory (Figure 3)
SIGN_TOLERANCE = 1e-3  # signs are checked farther than this times the diagonal


# ---------------------------------------------------------------------------
# Meshes and points


@dataclass
class Mesh:
    """An outward-oriented test mesh (float64 vertices), closed but for "holes"."""

    name: str
    description: str
    vertices: torch.Tensor
    faces: torch.Tensor

    @property
    def num_faces(self) -> int:
        return self.faces.shape[0]

    @property
    def diagonal(self) -> float:
        return float((self.vertices.amax(0) - self.vertices.amin(0)).norm())


def bumpy_shape(subdivisions: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-convex, watertight "bunny-like" blob: a radially displaced icosphere.

    Every direction u of the unit sphere is moved to ``r(u) u`` with
    ``r > 0`` (ripples, two long "ears" and a dent), then the shape is
    stretched anisotropically. A positive radial function keeps the surface
    embedded (no self-intersections), so the mesh stays closed and
    consistently oriented; at 7 subdivisions it has 327,680 faces.
    """
    unit, faces = primitives.icosphere(subdivisions)
    x, y, z = unit.unbind(1)

    def bump(direction, width, height):
        d = torch.tensor(direction, dtype=unit.dtype)
        d = d / d.norm()
        return height * torch.exp(-((unit - d) ** 2).sum(1) / width)

    radius = (1.0
              + 0.18 * torch.sin(4 * x + 0.5) * torch.sin(3 * y + 1.0) * torch.sin(5 * z + 1.5)
              + 0.05 * torch.sin(11 * x) * torch.sin(13 * y)
              + bump((0.3, 0.35, 1.0), 0.02, 0.9)  # ears
              + bump((-0.3, 0.35, 1.0), 0.02, 0.9)
              - bump((0.0, -1.0, 0.2), 0.1, 0.35))  # dent
    assert float(radius.min()) > 0.1
    vertices = unit * radius[:, None] * torch.tensor([1.0, 0.8, 0.9], dtype=unit.dtype)
    return vertices, faces


def sphere_with_holes(subdivisions: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """An open mesh: an icosphere with round holes (faces removed) around
    :data:`HOLE_DIRECTIONS`, where the winding number is not an integer."""
    vertices, faces = primitives.icosphere(subdivisions)
    centroid = vertices[faces].mean(1)
    centroid = centroid / centroid.norm(dim=1, keepdim=True)
    keep = torch.ones(faces.shape[0], dtype=torch.bool)
    for direction in HOLE_DIRECTIONS:
        axis = torch.tensor(direction, dtype=vertices.dtype)
        axis = axis / axis.norm()
        keep &= (centroid @ axis) < math.cos(HOLE_RADIUS)
    return vertices, faces[keep]


def make_meshes(names, quick: bool) -> list[Mesh]:
    """The benchmark's meshes (smaller ones with ``quick``)."""
    meshes = []
    for name in names:
        if name == "sphere":
            level = 3 if quick else 5
            v, f = primitives.icosphere(level)
            meshes.append(Mesh(name, f"icosphere({level})", v, f))
        elif name == "torus":
            major, minor = (32, 16) if quick else (256, 64)
            v, f = primitives.torus(1.0, 0.35, major, minor)
            meshes.append(Mesh(name, f"torus {major}x{minor}", v, f))
        elif name == "bumpy":
            level = 4 if quick else 7
            v, f = bumpy_shape(level)
            meshes.append(Mesh(name, f"bumpy icosphere({level})", v, f))
        elif name == "holes":
            level = 3 if quick else 5
            v, f = sphere_with_holes(level)
            meshes.append(Mesh(name, f"icosphere({level}) with {len(HOLE_DIRECTIONS)} holes "
                                     f"(open)", v, f))
        else:
            raise ValueError(f"unknown mesh {name!r}; choose from {MESH_NAMES}")
    return meshes


def moved_vertices(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """The vertices scaled about their centre so that the farthest moves by
    :data:`STEP_MOVE` times the mean diagonal of the triangles' boxes."""
    corners = vertices[faces]
    diagonal = (corners.amax(1) - corners.amin(1)).norm(dim=1).mean()
    centre = vertices.mean(0)
    reach = (vertices - centre).norm(dim=1).max()
    return centre + (vertices - centre) * (1 + STEP_MOVE * diagonal / reach)


def sample_points(mesh: Mesh, count: int, seed: int) -> torch.Tensor:
    """Query points: half uniform in the bounding box enlarged by 10 %, half near the surface.

    Near-surface points are area-weighted samples on the triangles offset by
    Gaussian noise of std 1 % of the bounding-box diagonal. The two halves are
    shuffled together, so every prefix of the result has the same mix (the
    smaller point sets are prefixes of the largest).
    """
    generator = torch.Generator().manual_seed(seed)
    v, f = mesh.vertices, mesh.faces
    lo, hi = v.amin(0), v.amax(0)
    center, half = (lo + hi) / 2, (hi - lo) / 2 * 1.1
    num_uniform = count // 2
    uniform = center + half * (torch.rand((num_uniform, 3), dtype=v.dtype, generator=generator) * 2 - 1)
    tri = v[f]
    areas = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=1).norm(dim=1)
    num_near = count - num_uniform
    face = torch.multinomial(areas, num_near, replacement=True, generator=generator)
    a, b = torch.rand((2, num_near, 1), dtype=v.dtype, generator=generator)
    flip = (a + b) > 1
    a, b = torch.where(flip, 1 - a, a), torch.where(flip, 1 - b, b)
    t = tri[face]
    near = t[:, 0] + a * (t[:, 1] - t[:, 0]) + b * (t[:, 2] - t[:, 0])
    near = near + 0.01 * mesh.diagonal * torch.randn(near.shape, dtype=v.dtype, generator=generator)
    points = torch.cat([uniform, near])
    return points[torch.randperm(count, generator=generator)].contiguous()


# ---------------------------------------------------------------------------
# Timing


@dataclass
class Timing:
    """Median of repeated wall-clock measurements, in seconds."""

    median: float
    repeats: int
    samples: list[float] = field(default_factory=list)


class _GarbageCollectionPaused:
    """Collect once, then keep Python's garbage collector off while timing.

    A full collection costs ~0.2 s with torch, Numba and the peers loaded
    (unless :func:`gc.freeze` was called), far more than many of the calls
    timed here, so it is never run per repeat.
    """

    def __enter__(self):
        gc.collect()
        self.was_enabled = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc):
        if self.was_enabled:
            gc.enable()


def _repeat(run_once: Callable[[], float], budget: float, max_repeats: int, min_repeats: int,
            long_call: float) -> list[float]:
    """Call ``run_once`` (which returns its own duration) until the budget is spent."""
    samples: list[float] = []
    with _GarbageCollectionPaused():
        while True:
            samples.append(run_once())
            if samples[-1] > long_call or len(samples) >= max_repeats:
                break
            if len(samples) >= min_repeats and sum(samples) > budget:
                break
    return samples


def measure(function: Callable[[], object], *, warmup: bool = True, budget: float = 1.5,
            max_repeats: int = 7, min_repeats: int = 3, long_call: float = 3.0) -> Timing:
    """Median wall time of ``function()``.

    One untimed warm-up call (unless ``warmup`` is False), then repeats until
    ``budget`` seconds are spent (at least ``min_repeats``, at most
    ``max_repeats``); a call longer than ``long_call`` seconds ends the
    repeats.
    """
    if warmup:
        function()

    def run_once() -> float:
        start = time.perf_counter()
        function()
        return time.perf_counter() - start

    samples = _repeat(run_once, budget, max_repeats, min_repeats, long_call)
    return Timing(statistics.median(samples), len(samples), samples)


def measure_parts(function: Callable[[], dict[str, float]], *, budget: float = 1.5,
                  max_repeats: int = 7, min_repeats: int = 3,
                  long_call: float = 3.0) -> dict[str, float]:
    """Like :func:`measure` for a function that times its own parts.

    Returns:
        The median of every part, and of their sum under ``"total"``.
    """
    function()
    runs: list[dict[str, float]] = []

    def run_once() -> float:
        parts = function()
        parts["total"] = sum(parts.values())
        runs.append(parts)
        return parts["total"]

    _repeat(run_once, budget, max_repeats, min_repeats, long_call)
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


#: Rounds of :func:`measure_alternating`: at least this many, so that a median
#: is never that of a handful of samples ...
MIN_ROUNDS = 7
#: ... and at most this many, reached by calls under ``budget / MAX_ROUNDS``
#: (25 ms at the default budget), whose medians need the most samples on a
#: shared machine.
MAX_ROUNDS = 60


def measure_alternating(functions: dict[str, Callable[[], object]], *, warmup: bool = True,
                        budget: float = 1.5, max_rounds: int = MAX_ROUNDS,
                        min_rounds: int = MIN_ROUNDS,
                        long_call: float = 3.0) -> dict[str, Timing]:
    """Median wall time of every function, measured in alternating rounds.

    One untimed warm-up call of each (unless ``warmup`` is False), then
    rounds in which every function runs once, the order rotated by one per
    round: a slow spell of a shared machine (another process, frequency
    scaling) then falls on all implementations alike instead of on whichever
    was being measured. Rounds go on until ``budget`` seconds per function
    are spent (at least ``min_rounds``, at most ``max_rounds``), so their
    number scales with the calls' time: short calls, whose medians a busy
    moment moves most, get the most samples. A round with a call longer
    than ``long_call`` seconds is the last.
    """
    names = list(functions)
    if warmup:
        for name in names:
            functions[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    spent = 0.0
    with _GarbageCollectionPaused():
        for round_index in range(max_rounds):
            shift = round_index % len(names)
            longest = 0.0
            for name in names[shift:] + names[:shift]:
                start = time.perf_counter()
                functions[name]()
                elapsed = time.perf_counter() - start
                samples[name].append(elapsed)
                spent += elapsed
                longest = max(longest, elapsed)
            if longest > long_call:
                break
            if round_index + 1 >= min_rounds and spent > budget * len(names):
                break
    return {name: Timing(statistics.median(times), len(times), times)
            for name, times in samples.items()}


# ---------------------------------------------------------------------------
# Results


@dataclass
class Row:
    """One line of the results table (times in seconds; None: not measured)."""

    mesh: str
    points: int | None
    method: str
    build: float | None = None
    query: float | None = None
    wrong_sign: float | None = None  # fraction of checked points
    distance_error: float | None = None  # max abs error / diagonal
    notes: str = ""
    kind: str = "other"  # "diffsd", "peer", "naive", "other"
    ratio: float | None = None
    exact_distance: bool = True

    @property
    def rate(self) -> float | None:
        if self.query is None or not self.points:
            return None
        return self.points / self.query


@dataclass
class Accuracy:
    """Sign and distance errors of one method on the reference subset."""

    wrong_sign: float
    distance_error: float


@dataclass
class Reference:
    """Exact distance and winding-number sign on the first points of a mesh's set."""

    points: torch.Tensor  # float64
    distance: torch.Tensor  # exact unsigned distance
    inside: torch.Tensor  # exact winding number > 1/2
    checked: torch.Tensor  # farther than SIGN_TOLERANCE * diagonal from the surface
    diagonal: float

    def score(self, signed: np.ndarray | torch.Tensor) -> Accuracy:
        signed = torch.as_tensor(np.asarray(signed, dtype=np.float64)).reshape(-1)
        wrong = ((signed < 0) != self.inside) & self.checked
        error = (signed.abs() - self.distance).abs().max() / self.diagonal
        return Accuracy(float(wrong.sum()) / max(int(self.checked.sum()), 1), float(error))


def make_reference(mesh: Mesh, points: torch.Tensor, pair_budget: float) -> Reference:
    """Exact reference on a prefix of ``points`` (at most ``pair_budget / F`` points).

    The distance is diffsd's exact BVH distance in float64 (tested against
    brute force), the sign the exact winding number summed over all faces.
    """
    count = int(min(points.shape[0], max(200, pair_budget // mesh.num_faces)))
    subset = points[:count]
    v, f = mesh.vertices, mesh.faces
    distance = diffsd.unsigned_distance(v, f, subset).distance
    inside = diffsd.winding_number(v, f, subset, mode="exact_winding") > 0.5
    checked = distance > SIGN_TOLERANCE * mesh.diagonal
    return Reference(subset, distance, inside, checked, mesh.diagonal)


# ---------------------------------------------------------------------------
# The benchmark


@dataclass
class Options:
    """Settings of one benchmark run (see :func:`parse_args`)."""

    sizes: tuple[int, ...]
    meshes: tuple[str, ...]
    peers: tuple[str, ...]
    dtype: torch.dtype
    max_seconds: float
    sign_pairs: float
    seed: int
    quick: bool
    naive: bool
    budget: float  # seconds of repeats per measurement


class Benchmark:
    """Runs every measurement and collects :class:`Row` objects."""

    def __init__(self, options: Options):
        self.options = options
        self.rows: list[Row] = []
        self.steps: dict[tuple[str, int], Row] = {}
        #: (mesh, points) -> peer label -> build+forward (s), timed in rounds with the step.
        self.step_rivals: dict[tuple[str, int], dict[str, float]] = {}
        self.notes: list[str] = []
        self.rates: dict[tuple[str, str], float] = {}  # (mesh, method) -> points/s
        self.face_counts: dict[str, int] = {}
        self.peers, self.missing_peers = [], {}
        self.started = time.perf_counter()

    def log(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.started:6.1f} s] {message}", file=sys.stderr,
              flush=True)

    # -- helpers ------------------------------------------------------------
    def too_slow(self, mesh: Mesh, method: str, count: int) -> str | None:
        """A note when the estimated time of this call exceeds --max-seconds."""
        rate = self.rates.get((mesh.name, method))
        if rate is None:
            return None
        estimate = count / rate
        if estimate > self.options.max_seconds:
            return f"n/a: est. {estimate:.0f} s > --max-seconds {self.options.max_seconds:.0f}"
        return None

    def remember_rate(self, mesh: Mesh, method: str, count: int, seconds: float) -> None:
        self.rates[(mesh.name, method)] = count / max(seconds, 1e-9)

    # -- diffsd and the peers, alternated ---------------------------------------
    def run_mesh(self, mesh: Mesh, points: torch.Tensor, reference: Reference) -> None:
        """Builds, then queries at every size, of diffsd and every peer.

        Every structure (diffsd's BVH with either builder and its refit, each
        peer's) is built once untimed, as the warm-up, then all builds are
        timed in alternating rounds (:func:`measure_alternating`); the
        queries of every size likewise, after a warm-up call each. diffsd's
        backward and optimisation step, which no peer has, are timed after
        each size's round (the step at the pipeline's size again in rounds
        with the peers' build + forward, see :meth:`time_step_against_peers`).
        """
        o = self.options
        tag = "f32" if o.dtype == torch.float32 else "f64"
        v = mesh.vertices.to(o.dtype)
        f = mesh.faces
        bvh = diffsd.MeshBVH(v, f)
        morton_bvh = diffsd.MeshBVH(v, f, builder="lbvh")
        poses = itertools.cycle([moved_vertices(v, f), v])
        builds = {"diffsd": lambda: diffsd.MeshBVH(v, f),
                  "diffsd lbvh": lambda: diffsd.MeshBVH(v, f, builder="lbvh"),
                  "diffsd refit": lambda: bvh.refit(next(poses))}
        peers = self.ready_peers(mesh, reference, builds)
        self.log(f"  builds of {mesh.name}: {', '.join(builds)}")
        build = measure_alternating(builds, warmup=False, budget=o.budget)
        sah_build = build["diffsd"].median
        self.rows.append(Row(mesh.name, None, "diffsd BVH build", build=sah_build, kind="other",
                             notes=f"{mesh.num_faces:,} faces, binned SAH (default), depth "
                                   f"{bvh.max_depth}"))
        self.rows.append(Row(mesh.name, None, "diffsd BVH build (lbvh)",
                             build=build["diffsd lbvh"].median, kind="other",
                             notes=f"Morton radix tree, parallel, depth {morton_bvh.max_depth}"))
        refit = build["diffsd refit"].median
        self.rows.append(Row(mesh.name, None, "diffsd BVH refit", build=refit, kind="other",
                             notes=f"{100 * refit / sah_build:.0f} % of a build"))
        sub = reference.points.to(o.dtype)
        signed_accuracy = reference.score(diffsd.signed_distance(v, f, sub, bvh=bvh).distance)
        unsigned_accuracy = reference.score(diffsd.unsigned_distance(v, f, sub, bvh=bvh).distance)
        signed = f"diffsd signed ({tag})"
        unsigned = f"diffsd unsigned ({tag})"
        over_lbvh = f"diffsd signed over lbvh ({tag})"

        for count in o.sizes:
            queries: dict[str, Callable[[], object]] = {}
            p = points[:count].to(o.dtype)
            skip = self.too_slow(mesh, signed, count)
            if skip:
                self.rows.append(Row(mesh.name, count, signed, kind="diffsd", notes=skip))
            else:
                queries[signed] = lambda p=p: diffsd.signed_distance(v, f, p, bvh=bvh, refit=False)
                queries[unsigned] = lambda p=p: diffsd.unsigned_distance(v, f, p, bvh=bvh,
                                                                         refit=False)
                queries[over_lbvh] = lambda p=p: diffsd.signed_distance(v, f, p, bvh=morton_bvh,
                                                                        refit=False)
            for peer, state, dtype, _ in peers:
                skip = self.too_slow(mesh, peer.label, count)
                if skip:
                    self.rows.append(Row(mesh.name, count, peer.label, kind="peer", notes=skip))
                    continue
                prepared = peer.prepare_points(points[:count].numpy().astype(dtype))
                queries[peer.label] = (
                    lambda peer=peer, state=state, prepared=prepared: peer.query(state, prepared))
            if not queries:
                continue
            self.log(f"  {mesh.name} {count:,} points, alternating: {', '.join(queries)}")
            timing = measure_alternating(queries, budget=o.budget)
            if signed in timing:
                forward = timing[signed].median
                self.remember_rate(mesh, signed, count, forward)
                self.rows.append(Row(mesh.name, count, signed, sah_build, forward,
                                     signed_accuracy.wrong_sign, signed_accuracy.distance_error,
                                     "sign: winding number, carried over between points (exactly on closed meshes; on open ones that of the mesh closed by caps, less the caps'), Barnes-Hut beta 2 where it cannot be, refined near 1/2", "diffsd"))
                self.rows.append(Row(mesh.name, count, unsigned, sah_build,
                                     timing[unsigned].median, None,
                                     unsigned_accuracy.distance_error, "no sign", "diffsd"))
                self.rows.append(Row(mesh.name, count, over_lbvh, build["diffsd lbvh"].median,
                                     timing[over_lbvh].median, notes=(
                                         "the same query over the Morton-code tree "
                                         "(builder='lbvh')"), kind="diffsd-alternative"))
                parts = self.time_step(v, f, p, bvh, o.budget)
                backward_share = parts["backward"] / forward
                self.rows.append(Row(mesh.name, count, "diffsd backward", None, parts["backward"],
                                     notes=f"{100 * backward_share:.0f} % of the forward",
                                     kind="diffsd"))
                step_time = parts["total"]
                step_notes = (f"refit {1e3 * parts['refit']:.1f} + fwd "
                              f"{1e3 * parts['forward']:.1f} + bwd "
                              f"{1e3 * parts['backward']:.1f} ms")
                if count == PIPELINE_POINTS and mesh.num_faces == PIPELINE_FACES:
                    rounds = self.time_step_against_peers(v, f, p, bvh, points[:count], peers,
                                                          builds, o.budget)
                    step_time = rounds.pop(STEP_LABEL).median
                    self.step_rivals[(mesh.name, count)] = {
                        label: timing.median for label, timing in rounds.items()}
                    step_notes = (f"alternated with the peers' build+forward; its parts "
                                  f"back to back: {step_notes}")
                step = Row(mesh.name, count, "diffsd step: refit+fwd+bwd", None, step_time,
                           notes=step_notes, kind="diffsd")
                self.rows.append(step)
                self.steps[(mesh.name, count)] = step
            for peer, _, _, accuracy in peers:
                if peer.label not in timing:
                    continue
                call = timing[peer.label].median
                peer_build = build[peer.label].median
                query_time = call
                if peer.name == "igl":  # its call rebuilds the AABB tree
                    query_time = max(call - peer_build, 1e-9)
                self.remember_rate(mesh, peer.label, count, call)
                self.rows.append(Row(mesh.name, count, peer.label, peer_build, query_time,
                                     accuracy.wrong_sign, accuracy.distance_error,
                                     peer.sign_note, "peer",
                                     exact_distance=peer.exact_distance))

    def ready_peers(self, mesh: Mesh, reference: Reference,
                    builds: dict[str, Callable[[], object]]) -> list[tuple]:
        """Build every peer's structure once (its warm-up) and score it on the reference.

        Adds each working peer's build to ``builds`` (under its label) and
        records an error row for each failing one.

        Returns:
            ``(peer, state, coordinate dtype, accuracy)`` of every working peer.
        """
        ready = []
        for peer in self.peers:
            dtype = np.float64 if peer.name == "igl" else np.float32
            v = np.ascontiguousarray(mesh.vertices.numpy(), dtype)
            f = np.ascontiguousarray(mesh.faces.numpy(), np.int64)
            try:
                state = peer.build(v, f)
                # Warm-up (kernel compilation) and accuracy on the reference subset.
                reference_points = peer.prepare_points(reference.points.numpy().astype(dtype))
                accuracy = reference.score(peer.query(state, reference_points))
                self.remember_rate(mesh, peer.label, reference.points.shape[0],
                                   measure(lambda peer=peer, state=state,
                                           points=reference_points: peer.query(state, points),
                                           warmup=False, max_repeats=1, min_repeats=1).median)
            except Exception as error:
                self.rows.append(Row(mesh.name, None, peer.label, kind="peer",
                                     notes=f"error: {type(error).__name__}: {error}"[:120]))
                continue
            builds[peer.label] = lambda peer=peer, v=v, f=f: peer.build(v, f)
            ready.append((peer, state, dtype, accuracy))
        return ready

    @staticmethod
    def time_step(vertices, faces, points, bvh, budget: float) -> dict[str, float]:
        """Median refit, forward and backward times of one optimisation step
        (the vertices moving between steps, see :data:`STEP_MOVE`)."""
        poses = itertools.cycle([moved_vertices(vertices, faces).requires_grad_(True),
                                 vertices.clone().requires_grad_(True)])
        p = points.clone().requires_grad_(True)

        def step():
            v = next(poses)
            start = time.perf_counter()
            bvh.refit(v.detach())
            after_refit = time.perf_counter()
            total = diffsd.signed_distance(v, faces, p, bvh=bvh, refit=False).distance.sum()
            after_forward = time.perf_counter()
            total.backward()
            end = time.perf_counter()
            v.grad = p.grad = None
            return {"refit": after_refit - start, "forward": after_forward - after_refit,
                    "backward": end - after_forward}

        return measure_parts(step, budget=budget)

    def time_step_against_peers(self, vertices, faces, points, bvh, float_points, peers,
                                builds, budget: float) -> dict[str, Timing]:
        """One optimisation step (refit + forward + backward) and every peer's
        build + forward of the same points, timed in alternating rounds
        (:func:`measure_alternating`), as the forward is: the step target
        compares them, so a busy spell must not fall on one side only.

        Returns:
            Timings under :data:`STEP_LABEL` and each peer's label.
        """
        poses = itertools.cycle([moved_vertices(vertices, faces).requires_grad_(True),
                                 vertices.clone().requires_grad_(True)])
        p = points.clone().requires_grad_(True)

        def step():
            v = next(poses)
            bvh.refit(v.detach())
            diffsd.signed_distance(v, faces, p, bvh=bvh, refit=False).distance.sum().backward()
            v.grad = p.grad = None

        rivals: dict[str, Callable[[], object]] = {STEP_LABEL: step}
        for peer, _, dtype, _ in peers:
            prepared = peer.prepare_points(float_points.numpy().astype(dtype))
            rivals[peer.label] = (lambda peer=peer, prepared=prepared:
                                  peer.query(builds[peer.label](), prepared))
        self.log(f"  step, alternating with build+forward: {', '.join(rivals)}")
        return measure_alternating(rivals, budget=budget)

    # -- naive --------------------------------------------------------------
    def run_naive(self, mesh: Mesh, points: torch.Tensor) -> None:
        """The chunked brute force of :mod:`diffsd.naive`, where its estimate fits."""
        o = self.options
        v = mesh.vertices.to(o.dtype)
        f = mesh.faces
        # Chunk so that one chunk's (chunk, F, 3) temporaries stay near 0.5 GB.
        chunk = max(1, int(5e8 // (400 * mesh.num_faces)))
        method = "naive O(PF) torch"
        calibration = min(points.shape[0], max(chunk, 64))
        start = time.perf_counter()
        naive.naive_signed_distance(v, f, points[:calibration].to(o.dtype), chunk=chunk)
        self.remember_rate(mesh, method, calibration, time.perf_counter() - start)
        for count in o.sizes:
            skip = self.too_slow(mesh, method, count)
            if skip:
                self.rows.append(Row(mesh.name, count, method, kind="naive", notes=skip))
                continue
            self.log(f"  naive {mesh.name} {count:,} points")
            p = points[:count].to(o.dtype)
            timing = measure(lambda p=p: naive.naive_signed_distance(v, f, p, chunk=chunk),
                             warmup=False, budget=o.budget, max_repeats=3, min_repeats=1)
            self.remember_rate(mesh, method, count, timing.median)
            self.rows.append(Row(mesh.name, count, method, None, timing.median, 0.0, 0.0,
                                 f"exact sign; chunks of {chunk} points", "naive"))

    # -- all ----------------------------------------------------------------
    def run(self) -> None:
        """Every measurement on every mesh; fills :attr:`rows`."""
        o = self.options
        meshes = make_meshes(o.meshes, o.quick)
        self.peers, self.missing_peers = load_peers(o.peers)
        # Move everything imported so far out of the collector's sight: the
        # collections before each measurement then cost milliseconds.
        gc.collect()
        gc.freeze()
        for mesh in meshes:
            self.face_counts[mesh.name] = mesh.num_faces
            self.log(f"mesh {mesh.name}: {mesh.description}, {mesh.num_faces:,} faces")
            points = sample_points(mesh, max(o.sizes), o.seed)
            start = time.perf_counter()
            reference = make_reference(mesh, points, o.sign_pairs)
            self.log(f"  exact reference on {reference.points.shape[0]:,} points "
                     f"({time.perf_counter() - start:.1f} s)")
            self.notes.append(
                f"{mesh.name}: {mesh.description}, {mesh.num_faces:,} faces; signs checked on "
                f"{int(reference.checked.sum()):,} of the first {reference.points.shape[0]:,} "
                f"points (those farther than {SIGN_TOLERANCE:g} x diagonal from the surface)")
            self.run_mesh(mesh, points, reference)
            if o.naive:
                self.run_naive(mesh, points)
        self.compute_ratios()

    def best_peer(self, mesh: str, count: int, exact_only: bool = False) -> Row | None:
        """The peer row with the most points per second (query only) at this size;
        with ``exact_only``, among those with exact distances and no wrong sign."""
        candidates = [r for r in self.rows if r.kind == "peer" and r.mesh == mesh
                      and r.points == count and r.rate is not None
                      and (not exact_only or (r.exact_distance and r.wrong_sign == 0))]
        return max(candidates, key=lambda r: r.rate, default=None)

    def diffsd_signed(self, mesh: str, count: int) -> Row | None:
        """diffsd's forward signed-distance row at this size."""
        return next((r for r in self.rows if r.mesh == mesh and r.points == count
                     and r.kind == "diffsd" and r.method.startswith("diffsd signed")
                     and r.rate is not None), None)

    def compute_ratios(self) -> None:
        """diffsd rows: rate / best peer's rate; others: diffsd signed rate / rate."""
        for row in self.rows:
            if row.rate is None:
                continue
            if row.kind in ("diffsd", "diffsd-alternative") and row.method.startswith(
                    "diffsd signed"):
                best = self.best_peer(row.mesh, row.points)
                row.ratio = row.rate / best.rate if best else None
            elif row.kind in ("peer", "naive"):
                signed = self.diffsd_signed(row.mesh, row.points)
                row.ratio = signed.rate / row.rate if signed else None


# ---------------------------------------------------------------------------
# Targets


def target_lines(bench: Benchmark) -> list[str]:
    """The issue's targets as PASS/FAIL/SKIP lines with the measured numbers."""
    lines = []
    rows = [r for r in bench.rows if r.kind == "diffsd" and r.method.startswith("diffsd signed")
            and r.rate is not None]
    compared = [(r, bench.best_peer(r.mesh, r.points)) for r in rows]
    compared = [(r, best) for r, best in compared if best is not None]
    if compared:
        worst, worst_best = min(compared, key=lambda rb: rb[0].ratio)
        failing = [f"{r.mesh}/{r.points:,}: {r.ratio:.2f}x vs {b.method}"
                   for r, b in compared if r.ratio < 2]
        wrong = [f"{r.mesh}: {100 * r.wrong_sign:.3f} %" for r in rows if r.wrong_sign]
        ok = not failing and not wrong
        lines.append(
            f"{'PASS' if ok else 'FAIL'} forward >= 2x the fastest peer on every mesh and size, "
            f"no wrong signs: min ratio {worst.ratio:.2f}x ({worst.mesh}, {worst.points:,} points, "
            f"vs {worst_best.method}); {len(compared) - len(failing)}/{len(compared)} "
            f"configurations >= 2x; wrong signs: {', '.join(wrong) if wrong else 'none'}"
            + (f"; below 2x: {'; '.join(failing)}" if failing else ""))
        exact = [(r, bench.best_peer(r.mesh, r.points, exact_only=True)) for r in rows]
        exact = [(r.rate / b.rate, r, b) for r, b in exact if b is not None]
        if exact:
            low = min(exact, key=lambda x: x[0])
            below = [f"{r.mesh}/{r.points:,}: {ratio:.2f}x vs {b.method}"
                     for ratio, r, b in exact if ratio < 3]
            lines.append(
                f"{'PASS' if not below else 'FAIL'} forward >= 3x the fastest exact, "
                f"correct-sign peer (exact distance, no wrong sign on the checked points): "
                f"min {low[0]:.2f}x ({low[1].mesh}, {low[1].points:,}, vs {low[2].method}); "
                f"{len(exact) - len(below)}/{len(exact)} configurations >= 3x"
                + (f"; below 3x: {'; '.join(below)}" if below else ""))
    else:
        lines.append("SKIP forward >= 2x the fastest peer: no peer measured")

    key = next(((m, c) for (m, c) in bench.steps
                if bench.face_counts.get(m) == PIPELINE_FACES and c == PIPELINE_POINTS), None)
    if key is None:
        lines.append(f"SKIP one step (refit+forward+backward) >= 3x faster than the fastest "
                     f"peer's build+forward: needs the {PIPELINE_FACES:,}-face sphere at "
                     f"{PIPELINE_POINTS:,} points")
    else:
        step = bench.steps[key]
        peers = [r for r in bench.rows if r.kind == "peer" and r.mesh == key[0]
                 and r.points == key[1] and r.query is not None and r.build is not None]
        rivals = bench.step_rivals.get(key, {})
        if not peers:
            lines.append("SKIP one step >= 3x faster than the fastest peer: no peer measured")
        elif rivals:
            label, peer_time = min(rivals.items(), key=lambda item: item[1])
            ratio = peer_time / step.query
            lines.append(
                f"{'PASS' if ratio >= 3 else 'FAIL'} one step at {key[1]:,} points / "
                f"{PIPELINE_FACES:,} faces (refit+forward+backward {1e3 * step.query:.1f} ms) "
                f">= 3x faster than the fastest peer's build+forward ({label}: "
                f"{1e3 * peer_time:.1f} ms, in rounds with the step): {ratio:.2f}x")
        else:
            fastest = min(peers, key=lambda r: r.build + r.query)
            peer_time = fastest.build + fastest.query
            ratio = peer_time / step.query
            lines.append(
                f"{'PASS' if ratio >= 3 else 'FAIL'} one step at {key[1]:,} points / "
                f"{PIPELINE_FACES:,} faces (refit+forward+backward {1e3 * step.query:.1f} ms) "
                f">= 3x faster than the fastest peer's build+forward ({fastest.method}: "
                f"{1e3 * fastest.build:.1f} + {1e3 * fastest.query:.1f} ms): {ratio:.2f}x")

    shares = []
    for r in bench.rows:
        if r.method == "diffsd backward" and r.query is not None:
            forward = bench.diffsd_signed(r.mesh, r.points)
            if forward is not None:
                shares.append((r.query / forward.query, r))
    if shares:
        worst_share, worst_row = max(shares, key=lambda s: s[0])
        lines.append(
            f"{'PASS' if worst_share <= 0.2 else 'FAIL'} backward <= 20 % of the forward: "
            f"max {100 * worst_share:.0f} % ({worst_row.mesh}, {worst_row.points:,} points); "
            f"{sum(s <= 0.2 for s, _ in shares)}/{len(shares)} configurations within 20 %")
    else:
        lines.append("SKIP backward <= 20 % of the forward: not measured")
    return lines


# ---------------------------------------------------------------------------
# Table


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    ms = 1e3 * seconds
    return f"{ms:,.0f}" if ms >= 100 else f"{ms:.2f}" if ms < 10 else f"{ms:.1f}"


def _rate(rate: float | None) -> str:
    if rate is None:
        return "-"
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if rate >= scale:
            return f"{rate / scale:.3g}{suffix}"
    return f"{rate:.3g}"


def markdown_table(rows: list[Row]) -> str:
    """The results as a markdown table."""
    header = ("| mesh | points | method | build ms | query ms | points/s | diffsd x | "
              "wrong sign % | max dist err / diag | notes |")
    lines = [header, "|" + "---|" * 10]
    for r in rows:
        points = f"{r.points:,}" if r.points else "-"
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else "-"
        wrong = f"{100 * r.wrong_sign:.3f}" if r.wrong_sign is not None else "-"
        error = f"{r.distance_error:.1e}" if r.distance_error is not None else "-"
        lines.append(f"| {r.mesh} | {points} | {r.method} | {_ms(r.build)} | {_ms(r.query)} | "
                     f"{_rate(r.rate)} | {ratio} | {wrong} | {error} | {r.notes} |")
    return "\n".join(lines)


def order_rows(rows: list[Row], meshes, sizes) -> list[Row]:
    """Rows grouped by mesh, then point count (mesh-level rows first), then
    diffsd, naive and peers."""
    kinds = {"naive": 1, "peer": 2}

    def key(row: Row):
        mesh = meshes.index(row.mesh) if row.mesh in meshes else len(meshes)
        count = -1 if row.points is None else row.points
        return (mesh, count, kinds.get(row.kind, 0))
    return sorted(rows, key=key)  # stable: keeps the method order


LEGEND = """\
Legend: times are medians of repeated calls after a warm-up, the implementations
alternated in rounds, on {threads} CPU threads.
"query ms" excludes the build (peers' "build ms" is their structure's build; diffsd's
is the BVH build). "diffsd x": on diffsd signed rows, its points/s divided by the
fastest peer's; on peer and naive rows, diffsd signed points/s divided by theirs
(above 1: diffsd is faster). "wrong sign %": against the exact winding number, on a
fixed subset of the points away from the surface. "max dist err / diag": largest
error of |distance| against the exact float64 distance, relative to the bounding-box
diagonal."""


# ---------------------------------------------------------------------------
# Numba compile time


COMPILE_PROBE = r"""
import time, sys, torch
t0 = time.perf_counter()
import diffsd
from diffsd import primitives
t_import = time.perf_counter() - t0
dtype = getattr(torch, sys.argv[1])
v, f = primitives.icosphere(2)
v = v.to(dtype)
p = (torch.rand(100, 3) * 2 - 1).to(dtype)
times = {}
t = time.perf_counter(); bvh = diffsd.MeshBVH(v, f); times["BVH build + refit"] = time.perf_counter() - t
t = time.perf_counter(); diffsd.signed_distance(v, f, p, bvh=bvh, refit=False); times["signed query"] = time.perf_counter() - t
t = time.perf_counter(); diffsd.unsigned_distance(v, f, p, bvh=bvh, refit=False); times["unsigned query"] = time.perf_counter() - t
t = time.perf_counter(); bvh.refit(v); times["refit (again)"] = time.perf_counter() - t
for k, s in times.items():
    print(f"{k}\t{s}")
"""


def compile_times(dtype: torch.dtype, cold: bool) -> tuple[dict[str, float], str]:
    """First-call times of the diffsd kernels in a fresh process.

    With ``cold``, the package is copied to a temporary folder without its
    Numba cache, so the times are true compile times; otherwise they are the
    times to load the on-disk cache (or to compile, when it is stale).
    """
    with tempfile.TemporaryDirectory() as folder:
        env = dict(os.environ)
        if cold:
            shutil.copytree(Path(diffsd.__file__).parent, Path(folder) / "diffsd",
                            ignore=shutil.ignore_patterns("__pycache__"))
            env["PYTHONPATH"] = folder
            how = "cold compile (fresh copy of the package, empty Numba cache)"
        else:
            env["PYTHONPATH"] = str(Path(diffsd.__file__).parent.parent)
            how = "first calls with the on-disk Numba cache"
        # cwd: `python -c` puts the working directory first on sys.path.
        result = subprocess.run([sys.executable, "-c", COMPILE_PROBE, str(dtype).split(".")[1]],
                                env=env, cwd=folder, capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            return {}, f"{how}: failed ({result.stderr.strip().splitlines()[-1:]})"
        times = dict(line.split("\t") for line in result.stdout.strip().splitlines())
        return {k: float(s) for k, s in times.items()}, how


# ---------------------------------------------------------------------------
# Memory


def _status_kib(field_name: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise KeyError(field_name)


def _libc():
    """glibc, for :func:`peak_memory`; None elsewhere."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim, libc.mallopt  # noqa: B018  (both must exist)
        return libc
    except (OSError, AttributeError):
        return None


_M_MMAP_THRESHOLD = -3


def peak_memory(function: Callable[[], object]) -> int:
    """Peak resident memory added while ``function`` runs, in bytes (Linux).

    Resets the kernel's high-water mark (``/proc/self/clear_refs``), runs the
    function and reads ``VmHWM`` back: no third-party package needed. glibc
    is told to serve every block of 64 KiB or more with its own mapping and
    to hand freed memory back first, so that pages left resident by an
    earlier, larger call do not hide this call's allocations.
    """
    libc = _libc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, 64 * 1024)
    gc.collect()
    if libc is not None:
        libc.malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    before = _status_kib("VmRSS")
    function()
    return max(0, _status_kib("VmHWM") - before) * 1024


def memory_supported() -> bool:
    """Whether :func:`peak_memory` works here (Linux with /proc/self/clear_refs)."""
    try:
        peak_memory(lambda: None)
        return True
    except OSError:
        return False


@dataclass
class MemoryPoint:
    """Peak memory (bytes) of both methods at one (faces, points) size."""

    faces: int
    points: int
    naive_bytes: float | None  # measured
    naive_estimate: float  # bytes_per_pair * P * F
    bvh_bytes: float


def measure_memory(meshes: list[Mesh], sizes, dtype, naive_cap: float) -> tuple[list[MemoryPoint], float]:
    """Peak memory of the all-pairs naive method and of diffsd across sizes.

    The naive method (the report's parallel version, materialising (P, F)
    matrices) runs only where its predicted peak is below ``naive_cap``
    bytes; beyond, its peak is extrapolated from the measured bytes per pair.
    diffsd is measured for a whole call without a prebuilt BVH (build +
    query), so its figure holds the O(F) tree and the O(P) outputs.
    """
    calibration_mesh = min(meshes, key=lambda m: m.num_faces)
    v = calibration_mesh.vertices.to(dtype)
    p = sample_points(calibration_mesh, 400, 1).to(dtype)
    pairs = p.shape[0] * calibration_mesh.num_faces
    bytes_per_pair = peak_memory(
        lambda: naive.naive_signed_distance_all_pairs(v, calibration_mesh.faces, p)) / pairs
    results = []
    for mesh in meshes:
        v = mesh.vertices.to(dtype)
        points = sample_points(mesh, max(sizes), 2).to(dtype)
        for count in sorted(set(sizes) | {100, 1_000}):
            q = points[:count]
            estimate = bytes_per_pair * count * mesh.num_faces
            bvh_bytes = peak_memory(
                lambda q=q, v=v, mesh=mesh: diffsd.signed_distance(v, mesh.faces, q))
            naive_bytes = None
            if estimate < naive_cap:
                naive_bytes = peak_memory(
                    lambda q=q, v=v, mesh=mesh: naive.naive_signed_distance_all_pairs(v, mesh.faces, q))
            results.append(MemoryPoint(mesh.num_faces, count, naive_bytes, estimate, bvh_bytes))
    # The slope of the largest naive run is the most precise: small runs carry
    # a fixed O(F) part that would inflate the bytes per pair.
    measured = [m for m in results if m.naive_bytes is not None]
    if measured:
        largest = max(measured, key=lambda m: m.points * m.faces)
        bytes_per_pair = largest.naive_bytes / (largest.points * largest.faces)
        for m in results:
            m.naive_estimate = bytes_per_pair * m.points * m.faces
    return results, bytes_per_pair


def _mib(size: float) -> str:
    return "< 1 MiB" if size < 2**20 else f"{size / 2**20:,.0f} MiB"


def memory_table(points: list[MemoryPoint]) -> str:
    """The memory measurements as a markdown table."""
    lines = ["| faces | points | P x F | naive all-pairs peak | diffsd (BVH build + query) peak |",
             "|---|---|---|---|---|"]
    for m in points:
        naive_text = (_mib(m.naive_bytes) if m.naive_bytes is not None
                      else f"~{m.naive_estimate / 2**30:,.0f} GiB (extrapolated, not run)")
        lines.append(f"| {m.faces:,} | {m.points:,} | {m.points * m.faces:.1e} | {naive_text} | "
                     f"{_mib(m.bvh_bytes)} |")
    return "\n".join(lines)


def plot_memory(points: list[MemoryPoint], bytes_per_pair: float, path: Path) -> None:
    """Log-log plot of peak memory against P x F, with the 24 GiB budget.

    Peaks below 1 MiB (the resolution of the resident-set measurement once
    the heap is warm) are drawn at 1 MiB.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mib = 2.0**20
    figure, axes = plt.subplots(figsize=(7.5, 5))
    pairs = np.array([m.points * m.faces for m in points], dtype=float)
    crossing = MEMORY_BUDGET_BYTES / bytes_per_pair
    line = np.logspace(np.log10(pairs.min()), np.log10(max(pairs.max(), 10 * crossing)), 50)
    axes.plot(line, bytes_per_pair * line / mib, "--", color="tab:red",
              label=f"naive all-pairs, extrapolated ({bytes_per_pair:.0f} B per pair)")
    measured = [(m.points * m.faces, m.naive_bytes) for m in points if m.naive_bytes is not None]
    if measured:
        x, y = zip(*measured)
        axes.plot(x, np.maximum(np.array(y), mib) / mib, "o", color="tab:red",
                  label="naive all-pairs, measured")
    for faces in sorted({m.faces for m in points}):
        series = sorted((m.points * m.faces, m.bvh_bytes) for m in points if m.faces == faces)
        x, y = zip(*series)
        axes.plot(x, np.maximum(np.array(y), mib) / mib, "s-",
                  label=f"diffsd BVH, measured ({faces:,} faces)")
    axes.axhline(MEMORY_BUDGET_BYTES / mib, color="k", linestyle=":", label="24 GiB budget")
    axes.axvline(crossing, color="gray", linewidth=0.8)
    axes.annotate(f"naive needs > 24 GiB\nbeyond P x F = {crossing:.1e}",
                  (crossing, MEMORY_BUDGET_BYTES / mib), textcoords="offset points",
                  xytext=(8, -40), fontsize=8)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("points x faces (P x F)")
    axes.set_ylabel("peak resident memory added by the call (MiB)")
    axes.set_title("Signed distance: memory of naive O(PF) versus BVH")
    axes.legend(fontsize=7, loc="upper left")
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


# ---------------------------------------------------------------------------
# Command line


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small meshes and sizes (CI smoke run, well under a minute)")
    parser.add_argument("--sizes", type=str, default=None,
                        help="comma-separated point counts (default 10000,100000,1000000; "
                             "--quick: 1000,5000)")
    parser.add_argument("--meshes", type=str, default=",".join(MESH_NAMES),
                        help=f"comma-separated meshes among {','.join(MESH_NAMES)}")
    parser.add_argument("--peers", type=str, default="all",
                        help=f"comma-separated peers among {','.join(PEER_NAMES)}, 'all' or 'none'")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                        help="diffsd's dtype (default float32, as most peers)")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="skip (n/a) a call whose estimated time exceeds this (default 30; "
                             "--quick: 1)")
    parser.add_argument("--sign-pairs", type=float, default=None,
                        help="points x faces budget of the exact winding-number reference "
                             "(default 1e9, i.e. 10k points up to 100k faces; --quick: 1e7)")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive method")
    parser.add_argument("--cold-compile", action=argparse.BooleanOptionalAction, default=None,
                        help="also time a cold Numba compile in a subprocess (default: on, "
                             "off with --quick)")
    parser.add_argument("--output", type=Path, default=None, help="write the report (markdown)")
    parser.add_argument("--plot", type=Path, default=None,
                        help="PNG of naive versus BVH peak memory across sizes")
    parser.add_argument("--naive-memory-cap-gb", type=float, default=2.0,
                        help="run the all-pairs naive method for the memory plot only below "
                             "this predicted peak (default 2 GiB; beyond it is extrapolated)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def options_from(args: argparse.Namespace) -> Options:
    """Options from the parsed command line, with the --quick defaults applied."""
    if args.sizes:
        sizes = tuple(int(s) for s in args.sizes.split(","))
    else:
        sizes = QUICK_SIZES if args.quick else FULL_SIZES
    meshes = tuple(m.strip() for m in args.meshes.split(",") if m.strip())
    for name in meshes:
        if name not in MESH_NAMES:
            raise SystemExit(f"unknown mesh {name!r}; choose from {', '.join(MESH_NAMES)}")
    if args.peers == "all":
        peers = PEER_NAMES
    elif args.peers == "none":
        peers = ()
    else:
        peers = tuple(p.strip() for p in args.peers.split(",") if p.strip())
        for name in peers:
            if name not in PEER_NAMES:
                raise SystemExit(f"unknown peer {name!r}; choose from {', '.join(PEER_NAMES)}")
    return Options(
        sizes=sizes, meshes=meshes, peers=peers, dtype=getattr(torch, args.dtype),
        max_seconds=args.max_seconds or (1.0 if args.quick else 30.0),
        sign_pairs=args.sign_pairs or (1e7 if args.quick else 1e9), seed=args.seed,
        quick=args.quick, naive=not args.no_naive, budget=0.2 if args.quick else 1.5)


def main(argv=None) -> int:
    """Run the benchmark and print (and optionally write) the report."""
    args = parse_args(argv)
    options = options_from(args)
    warnings.filterwarnings("ignore", category=UserWarning, module="numba")
    try:
        from numba.core.errors import NumbaWarning

        warnings.filterwarnings("ignore", category=NumbaWarning)
    except ImportError:  # pragma: no cover
        pass
    report: list[str] = []

    def emit(text: str = "") -> None:
        print(text, flush=True)
        report.append(text)

    started = time.perf_counter()
    load_start = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    cold = args.cold_compile if args.cold_compile is not None else not args.quick
    warm_times, warm_how = compile_times(options.dtype, cold=False)
    cold_times, cold_how = compile_times(options.dtype, cold=True) if cold else ({}, "")

    bench = Benchmark(options)
    bench.run()
    rows = order_rows(bench.rows, list(options.meshes), options.sizes)

    emit("## diffsd signed distance benchmark")
    emit()
    emit(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU threads, "
         f"torch {torch.__version__}, diffsd dtype {str(options.dtype).split('.')[1]}, "
         f"sizes {', '.join(f'{s:,}' for s in options.sizes)}")
    emit(f"load average at start {load_start}, at end "
         f"{', '.join(f'{x:.1f}' for x in os.getloadavg())} (the cores may be shared)")
    emit(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, NUMBA_NUM_THREADS="
         f"{os.environ.get('NUMBA_NUM_THREADS', 'unset')}, torch threads {torch.get_num_threads()}")
    emit(f"peers: {', '.join(sorted({p.label for p in bench.peers})) or 'none'}")
    for name, reason in bench.missing_peers.items():
        emit(f"peer {name} skipped: {reason}")
    emit()
    emit(markdown_table(rows))
    emit()
    emit(LEGEND.format(threads=os.cpu_count()))
    emit()
    for note in bench.notes:
        emit(f"- {note}")
    emit()
    emit("### Numba compile time (separate from the table)")
    emit()
    columns = [(warm_how, warm_times)] + ([(cold_how, cold_times)] if cold else [])
    emit("| first call of | " + " | ".join(how for how, _ in columns) + " |")
    emit("|---|" + "---|" * len(columns))
    for key in dict.fromkeys([k for _, times in columns for k in times]):
        cells = [f"{1e3 * times[key]:,.0f} ms" if key in times else "-" for _, times in columns]
        emit(f"| {key} | " + " | ".join(cells) + " |")
    emit()
    emit("### Targets")
    emit()
    for line in target_lines(bench):
        emit(line)

    if args.plot is not None:
        emit()
        emit("### Memory: naive all-pairs versus BVH")
        emit()
        if not memory_supported():
            emit("memory measurement needs Linux /proc/self/clear_refs: skipped")
        else:
            meshes = make_meshes(options.meshes, options.quick)
            memory, bytes_per_pair = measure_memory(meshes, options.sizes, options.dtype,
                                                    args.naive_memory_cap_gb * 2**30)
            emit(memory_table(memory))
            emit()
            emit(f"naive all-pairs: {bytes_per_pair:.0f} bytes per (point, face) pair, so it "
                 f"exceeds 24 GiB beyond P x F = {MEMORY_BUDGET_BYTES / bytes_per_pair:.1e}")
            args.plot.parent.mkdir(parents=True, exist_ok=True)
            plot_memory(memory, bytes_per_pair, args.plot)
            emit(f"plot: {args.plot}")
    emit()
    emit(f"total benchmark time {time.perf_counter() - started:.0f} s")
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text("\n".join(report) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
