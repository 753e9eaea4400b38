"""Bounding volume hierarchy over packed triangle meshes.

Two builders give the same layout: top-down binned SAH (the default, see
:mod:`diffsd._sah_build`), or in parallel the linear BVH (Morton codes of
face centroids, a sort, the binary radix tree of Karras 2012). Boxes and
Barnes--Hut dipoles are computed bottom-up. Several meshes share one tree,
each a subtree with a root of its own (for the LBVH, the mesh index forms
the high bits of every sort key).

Vertices move at every optimisation step while faces stay: :meth:`MeshBVH.refit`
keeps the tree and recomputes boxes and dipoles in one linear pass (nothing
when the vertices are those of the last refit).
"""

from __future__ import annotations

import numpy as np
import torch

from diffsd import _backend
from diffsd.geometry import TRAVERSAL_STACK_SIZE
from diffsd.topology import boundary_edges, closed_from_boundary
from diffsd.traversal import CAP_EDGE_SIZE, CAP_ROW_SIZE, FRAME_SIZE, ORIENTED_MAX_LEAVES
from diffsd.validation import check_faces, check_mesh_faces_first_idx, check_vertices

#: Tree builders: binned SAH (top-down, on the CPU) or the Morton-code
#: radix tree (parallel, on the tensors' device).
BUILDERS = ("sah", "lbvh")
#: CPU queries of more points than this run in Morton order of the points.
SORT_POINTS_ABOVE = 2048
#: An open mesh's boundary is split into at most this many closed groups of
#: edges (its loops, nearby loops merged beyond this count), each closed by
#: a cap for the CPU kernel's winding-number carry-over (see
#: :func:`diffsd.traversal.refit_cap_group`); every point evaluates every
#: group's cap, near or far.
MAX_CAP_GROUPS = 32
#: Bits per axis of the Morton key that orders loops before they are merged.
LOOP_ORDER_BITS = 10
#: Edges per piece of a cap (see :func:`diffsd.traversal.refit_cap_piece`):
#: near a hole, a piece farther than the opening ratio times its size is
#: one far-field term instead of this many triangles.
CAP_PIECE_EDGES = 8


def _boundary_loops(starts: list[int], ends: list[int]) -> list[list[int]]:
    """Edge indices chained end to start: the boundary's loops (or open chains
    where a vertex has several boundary edges), each in walking order. O(E)."""
    leaving: dict[int, list[int]] = {}
    for e in range(len(starts) - 1, -1, -1):
        leaving.setdefault(starts[e], []).append(e)
    used = [False] * len(starts)
    loops = []
    for first in range(len(starts)):
        if used[first]:
            continue
        loop, e = [], first
        while e >= 0:
            used[e] = True
            loop.append(e)
            candidates = leaving.get(ends[e], [])
            while candidates and used[candidates[-1]]:
                candidates.pop()
            e = candidates.pop() if candidates else -1
        loops.append(loop)
    return loops


def _is_closed_chain(rows: torch.Tensor) -> bool:
    """Whether edges (start, end, multiplicity) enter each vertex as often as they leave it."""
    balance: dict[int, int] = {}
    for start, end, multiplicity in rows.tolist():
        balance[start] = balance.get(start, 0) + multiplicity
        balance[end] = balance.get(end, 0) - multiplicity
    return not any(balance.values())


def _morton_key(point: list[float], lo: list[float], extent: list[float]) -> int:
    key = 0
    cells = [min((1 << LOOP_ORDER_BITS) - 1, int((x - l) / e * (1 << LOOP_ORDER_BITS)))
             if e > 0 else 0 for x, l, e in zip(point, lo, extent)]
    for bit in range(LOOP_ORDER_BITS - 1, -1, -1):
        for cell in cells:
            key = (key << 1) | ((cell >> bit) & 1)
    return key


def _closed_groups(edges: torch.Tensor, vertices: torch.Tensor) -> list[list[int]]:
    """One mesh's boundary edges (E, 3) in at most ``MAX_CAP_GROUPS`` groups,
    each a closed chain (so that a cap closes it), as lists of edge indices.

    The groups are the boundary's loops. A walk that did not close (a
    vertex with several boundary edges, or unequal multiplicities) joins
    the others like it: together they are closed, since the whole boundary
    of a mesh is. Beyond ``MAX_CAP_GROUPS``, loops next to each other along
    the Morton curve of their centres are merged (a union of closed chains
    is closed).
    """
    loops = _boundary_loops(edges[:, 0].tolist(), edges[:, 1].tolist())
    closed = [loop for loop in loops if _is_closed_chain(edges[loop])]
    rest = [e for loop in loops if not _is_closed_chain(edges[loop]) for e in loop]
    if rest:
        closed.append(rest)
    if len(closed) <= MAX_CAP_GROUPS:
        return closed
    centres = [vertices[edges[loop, 0]].mean(0).tolist() for loop in closed]
    lo = [min(c[k] for c in centres) for k in range(3)]
    extent = [max(c[k] for c in centres) - lo[k] for k in range(3)]
    order = sorted(range(len(closed)), key=lambda i: _morton_key(centres[i], lo, extent))
    per_group = -(-len(closed) // MAX_CAP_GROUPS)
    return [[e for i in order[start:start + per_group] for e in closed[i]]
            for start in range(0, len(order), per_group)]


def _pieces(edges: torch.Tensor, group: list[int]) -> list[list[int]]:
    """A group's edges (in walk order) cut into pieces for the caps: chains
    of at most ``CAP_PIECE_EDGES`` consecutive edges of one multiplicity
    that visit no vertex twice (so no fan triangle of a piece, and no chord,
    is degenerate by construction)."""
    starts, ends, multiplicity = (edges[group, k].tolist() for k in range(3))
    pieces: list[list[int]] = []
    visited: set[int] = set()
    for k, e in enumerate(group):
        if (pieces and len(pieces[-1]) < CAP_PIECE_EDGES and ends[k - 1] == starts[k]
                and multiplicity[k - 1] == multiplicity[k] and ends[k] not in visited):
            pieces[-1].append(e)
        else:
            pieces.append([e])
            visited = {starts[k]}
        visited.add(ends[k])
    return pieces


class MeshBVH:
    """A BVH over one or more triangle meshes packed into shared tensors.

    Args:
        vertices: (V, 3) float32 or float64 vertex positions of all meshes.
        faces: (F, 3) integer vertex indices into ``vertices``.
        mesh_faces_first_idx: (M,) first face of each mesh in ``faces``
            (faces of mesh m are ``first[m] .. first[m+1]-1``); None for one mesh.
        backend: ``"auto"`` (the tensors' device), ``"cpu"`` or ``"cuda"``.
        builder: ``"sah"`` (default): each node split by the binned surface
            area heuristic, built on the CPU (the top serially, subtrees in
            parallel; then moved to the device); its queries are 5-40 %
            faster. ``"lbvh"``: the Morton-code radix tree, built in
            parallel on the device, 1.4-2.3x faster to build. Distances are
            the same; the reported face may differ where several are exactly
            equally near, and on open meshes the Barnes--Hut winding number
            differs within its approximation (not with ``sign_mode="exact_winding"``).

    All tree arrays live on the vertices' device, in their dtype.
    """

    def __init__(self, vertices: torch.Tensor, faces: torch.Tensor,
                 mesh_faces_first_idx: torch.Tensor | None = None, backend: str = "auto",
                 builder: str = "sah"):
        vertices = check_vertices(vertices)
        if vertices.shape[0] == 0:
            raise ValueError("vertices is empty: the mesh needs at least three vertices")
        faces = check_faces(faces, vertices.shape[0]).to(vertices.device)
        device = vertices.device
        self.backend = _backend.resolve_backend(backend, device)
        if builder not in BUILDERS:
            raise ValueError(f"builder must be one of {', '.join(map(repr, BUILDERS))}, got {builder!r}")
        self.builder = builder
        self.device = device
        self.dtype = vertices.dtype
        self.faces = faces.contiguous()
        self.max_vertex_index = int(self.faces.max())
        self.mesh_faces_first_idx = check_mesh_faces_first_idx(
            mesh_faces_first_idx, faces.shape[0], device)
        self.num_meshes = self.mesh_faces_first_idx.shape[0]
        edges, mesh_edge_first = boundary_edges(self.faces, self.mesh_faces_first_idx,
                                                vertices.shape[0])
        #: (M,) whether each mesh is closed (exact integer winding numbers).
        self.mesh_closed = closed_from_boundary(mesh_edge_first, self.mesh_faces_first_idx,
                                                self.faces.shape[0]).to(torch.uint8)
        self._group_boundary(vertices.detach(), edges, mesh_edge_first)
        self._build(vertices.detach().contiguous())

    # ------------------------------------------------------------------ build
    def _group_boundary(self, vertices: torch.Tensor, edges: torch.Tensor,
                        mesh_edge_first: torch.Tensor) -> None:
        """Caps over each open mesh's holes (see
        :func:`diffsd.traversal.refit_cap_piece` and ``refit_cap_group``), for
        the CPU kernel's winding-number carry-over.

        Sets ``boundary_edge`` (E, 3) (start, end, multiplicity, by group and
        piece), ``piece_first_edge`` (P + 1,), ``group_first_piece`` (G + 1,),
        ``mesh_group_first`` (M + 1,), and ``cap_edge`` (E, 7), ``cap_piece``
        (P, 16), ``cap_group`` (G, 16) float64 (filled by each CPU refit; the
        CUDA kernel sums Barnes--Hut at every point instead).
        """
        edges = edges.cpu()
        mesh_edge_first = mesh_edge_first.cpu().tolist()
        points = vertices.detach().cpu().double()
        ordered, piece_first, group_first, mesh_group_first = [], [0], [0], [0]
        for m in range(self.num_meshes):
            own = edges[mesh_edge_first[m]:mesh_edge_first[m + 1]]
            if own.shape[0]:
                for group in _closed_groups(own, points):
                    for piece in _pieces(own, group):
                        ordered.append(own[piece])
                        piece_first.append(piece_first[-1] + len(piece))
                    group_first.append(len(piece_first) - 1)
            mesh_group_first.append(len(group_first) - 1)
        device = self.device

        def index(values):
            return torch.tensor(values, dtype=torch.int64, device=device)

        self.boundary_edge = (torch.cat(ordered) if ordered else edges).contiguous().to(device)
        self.piece_first_edge = index(piece_first)
        self.group_first_piece = index(group_first)
        self.mesh_group_first = index(mesh_group_first)
        self.cap_edge = torch.zeros((self.boundary_edge.shape[0], CAP_EDGE_SIZE),
                                    dtype=torch.float64, device=device)
        self.cap_piece = torch.zeros((len(piece_first) - 1, CAP_ROW_SIZE), dtype=torch.float64,
                                     device=device)
        self.cap_group = torch.zeros((len(group_first) - 1, CAP_ROW_SIZE), dtype=torch.float64,
                                     device=device)
        #: Whether any mesh is open: the CPU signed distance then runs the
        #: kernel with the caps' carry-over (closed meshes keep the lean one).
        self.has_open_mesh = len(group_first) > 1

    def _build(self, vertices: torch.Tensor) -> None:
        n = self.faces.shape[0]
        num_internal = n - 1
        device, dtype = self.device, self.dtype
        if self.builder == "sah":
            self._build_sah_topology(vertices)
        else:
            self._build_lbvh_topology(vertices)

        # Children-first order of internal nodes for the CPU refit; also
        # bounds the depth that traversal stacks must hold.
        import numba  # loaded with the CPU kernels

        from diffsd import _cpu_kernels

        bottom_up, level_starts, max_depth = _cpu_kernels.bottom_up_order(
            self.child_left.cpu().numpy(), self.child_right.cpu().numpy(),
            self.mesh_root.cpu().numpy(), 2 * n - 1)
        if max_depth >= TRAVERSAL_STACK_SIZE:
            raise ValueError(
                f"BVH depth {max_depth} exceeds the traversal stack ({TRAVERSAL_STACK_SIZE}); "
                "this happens only with very many coincident triangles: remove duplicate faces"
            )
        self.max_depth = int(max_depth)
        # Topology only (faces do not change): the vertices each oriented box projects.
        frame_vertex_first, frame_vertex = _cpu_kernels.frame_vertex_lists(
            self.faces.cpu().numpy(), self.leaf_face.cpu().numpy(),
            self.range_first.cpu().numpy(), self.range_last.cpu().numpy(),
            vertices.shape[0], ORIENTED_MAX_LEAVES, numba.get_num_threads())
        self.frame_vertex_first = torch.from_numpy(frame_vertex_first).to(device)
        self.frame_vertex = torch.from_numpy(frame_vertex).to(device)
        self.bottom_up = torch.from_numpy(bottom_up).to(device)
        self.level_starts = torch.from_numpy(level_starts)

        num_nodes = 2 * n - 1
        # Zeros, not uninitialised memory: in a BVH over several meshes the nodes
        # that join the meshes' trees are never refitted (queries start at each
        # mesh's root), and garbage there made two identical runs hash differently.
        self.leaf_vertices = torch.zeros((n, 9), dtype=dtype, device=device)
        self.node_box = torch.zeros((num_nodes, 6), dtype=dtype, device=device)  # lo, hi
        # Both children's oriented boxes in their parent's row, for the traversals.
        self.child_frame = torch.zeros((max(num_internal, 0), 2 * FRAME_SIZE), dtype=dtype,
                                       device=device)
        self.node_center = torch.zeros((num_nodes, 3), dtype=dtype, device=device)
        self.node_normal = torch.zeros((num_nodes, 3), dtype=dtype, device=device)
        self.node_moment = torch.zeros((num_nodes, 9), dtype=dtype, device=device)
        self.node_area = torch.zeros(num_nodes, dtype=dtype, device=device)
        self.node_radius = torch.zeros(num_nodes, dtype=dtype, device=device)
        #: The vertices the tree was last refitted to (a copy: callers move
        #: theirs in place), so that a refit to the same ones costs O(V).
        self._refit_vertices: torch.Tensor | None = None
        self._refit(vertices)

    def _build_lbvh_topology(self, vertices: torch.Tensor) -> None:
        """Morton codes of the face centroids, a sort, the radix tree of Karras 2012 (parallel)."""
        kernels = _backend.kernels(self.backend)
        arr = _backend.as_kernel_array
        n = self.faces.shape[0]
        device, dtype = self.device, self.dtype
        first = self.mesh_faces_first_idx
        counts = torch.diff(torch.cat([first, first.new_tensor([n])]))
        face_mesh = torch.repeat_interleave(torch.arange(self.num_meshes, device=device), counts)

        # Morton codes are taken relative to each mesh's own centroid box.
        centroids = vertices[self.faces].mean(dim=1)
        mesh_lo = torch.full((self.num_meshes, 3), torch.inf, dtype=dtype, device=device)
        mesh_hi = torch.full((self.num_meshes, 3), -torch.inf, dtype=dtype, device=device)
        index = face_mesh[:, None].expand(-1, 3)
        mesh_lo.scatter_reduce_(0, index, centroids, "amin")
        mesh_hi.scatter_reduce_(0, index, centroids, "amax")
        extent = mesh_hi - mesh_lo
        inverse_extent = torch.where(extent > 0, 1.0 / extent.clamp_min(1e-300), 0.0).to(dtype)

        keys = torch.empty(n, dtype=torch.int64, device=device)
        self._run(kernels.face_keys, n, arr(vertices), arr(self.faces), arr(face_mesh),
                  arr(mesh_lo), arr(inverse_extent), arr(keys))
        keys, order = torch.sort(keys, stable=True)
        self.leaf_face = order.contiguous()

        num_internal = n - 1
        self.child_left = torch.empty(num_internal, dtype=torch.int64, device=device)
        self.child_right = torch.empty(num_internal, dtype=torch.int64, device=device)
        self.parent = torch.full((2 * n - 1,), -1, dtype=torch.int64, device=device)
        # First and last leaf below each internal node.
        self.range_first = torch.empty(num_internal, dtype=torch.int64, device=device)
        self.range_last = torch.empty(num_internal, dtype=torch.int64, device=device)
        if num_internal > 0:
            self._run(kernels.build_internal_nodes, num_internal, arr(keys),
                      arr(self.child_left), arr(self.child_right), arr(self.parent),
                      arr(self.range_first), arr(self.range_last))

        # Root of mesh m: the node spanning exactly its leaves (a leaf for a
        # one-triangle mesh).
        last = first + counts - 1
        mesh_root = num_internal + first
        if num_internal > 0:
            mesh_of_node = face_mesh[self.range_first]
            is_root = ((self.range_first == first[mesh_of_node])
                       & (self.range_last == last[mesh_of_node]))
            mesh_root = mesh_root.clone()
            mesh_root[mesh_of_node[is_root]] = torch.nonzero(is_root).flatten()
        self.mesh_root = mesh_root.contiguous()
        self.parent[self.mesh_root] = -1

    def _build_sah_topology(self, vertices: torch.Tensor) -> None:
        """Binned SAH on the CPU (:mod:`diffsd._sah_build`); the tree then moves to the device."""
        from diffsd import _sah_build

        n = self.faces.shape[0]
        device = self.device
        num_internal = n - 1
        child_left = np.empty(num_internal, np.int64)
        child_right = np.empty(num_internal, np.int64)
        parent = np.empty(2 * n - 1, np.int64)
        range_first = np.empty(num_internal, np.int64)
        range_last = np.empty(num_internal, np.int64)
        mesh_root = np.empty(self.num_meshes, np.int64)
        order = _sah_build.sah_topology(
            vertices.cpu().numpy(), self.faces.cpu().numpy(),
            self.mesh_faces_first_idx.cpu().numpy(), child_left, child_right, parent,
            range_first, range_last, mesh_root)
        for name, array in (("leaf_face", order), ("child_left", child_left),
                            ("child_right", child_right), ("parent", parent),
                            ("range_first", range_first), ("range_last", range_last),
                            ("mesh_root", mesh_root)):
            setattr(self, name, torch.from_numpy(array).to(device))

    # ------------------------------------------------------------------ refit
    def refit(self, vertices: torch.Tensor) -> MeshBVH:
        """Recompute boxes and dipoles for new vertex positions; the tree stays.

        A refit to vertices equal to the last refit's (the same values, as
        when a fit evaluates several terms at one step) returns at once:
        everything in the tree is a function of the vertices.

        Args:
            vertices: (V, 3) new positions, same count, dtype and device as
                at build time. The tree stays valid (the results exact); only
                its quality for pruning degrades if vertices move far.

        Returns:
            self, for chaining.
        """
        vertices = check_vertices(vertices, self.dtype)
        if vertices.device != self.device:
            raise ValueError(f"vertices are on {vertices.device}, the BVH on {self.device}")
        self._refit(vertices.detach().contiguous())
        return self

    def _refit(self, vertices: torch.Tensor) -> None:
        if self.max_vertex_index >= vertices.shape[0]:
            raise ValueError(
                f"vertices has {vertices.shape[0]} rows but the faces index up to "
                f"{self.max_vertex_index}: refit needs the vertex count used at build time"
            )
        if self._refit_vertices is not None and torch.equal(vertices, self._refit_vertices):
            return
        self._refit_vertices = None  # until this refit has finished
        self._refit_now(vertices)
        self._refit_vertices = vertices.clone()

    def _refit_now(self, vertices: torch.Tensor) -> None:
        arr = _backend.as_kernel_array
        n = self.faces.shape[0]
        dipoles = (arr(self.node_center), arr(self.node_normal), arr(self.node_moment),
                   arr(self.node_area), arr(self.node_radius))
        frames = (arr(self.child_left), arr(self.child_right), arr(vertices),
                  arr(self.frame_vertex_first), arr(self.frame_vertex),
                  arr(self.leaf_vertices), arr(self.node_box),
                  arr(self.node_center), arr(self.node_normal), arr(self.node_area),
                  arr(self.child_frame))
        if self.backend == "cpu":
            import numba

            from diffsd import _cpu_kernels

            _cpu_kernels.refit(arr(vertices), arr(self.faces), arr(self.leaf_face),
                               arr(self.bottom_up), arr(self.level_starts),
                               arr(self.child_left), arr(self.child_right),
                               arr(self.frame_vertex_first), arr(self.frame_vertex),
                               arr(self.leaf_vertices), arr(self.node_box),
                               arr(self.child_frame), *dipoles, numba.get_num_threads())
            if self.has_open_mesh:
                _cpu_kernels.refit_caps(arr(vertices), arr(self.boundary_edge),
                                        arr(self.piece_first_edge), arr(self.group_first_piece),
                                        arr(self.cap_edge), arr(self.cap_piece),
                                        arr(self.cap_group))
            return
        kernels = _backend.kernels("cuda")
        self._run(kernels.refit_leaves, n, arr(vertices), arr(self.faces), arr(self.leaf_face),
                  n - 1, arr(self.leaf_vertices), arr(self.node_box), *dipoles)
        if n > 1:
            arrivals = torch.zeros(n - 1, dtype=torch.int32, device=self.device)
            self._run(kernels.refit_internal_nodes, n, arr(self.parent), arr(arrivals),
                      arr(self.child_left), arr(self.child_right), arr(self.node_box), *dipoles,
                      n)
            self._run(kernels.refit_child_frames, n - 1, *frames)

    # ------------------------------------------------------------------ query
    def query(self, points: torch.Tensor, point_mesh: torch.Tensor, *, closest: bool,
              winding: bool, beta: float):
        """Run the per-point traversal kernel; see :func:`diffsd.signed_distance`.

        Args:
            points: (P, 3) query points in the BVH's dtype, on its device.
            point_mesh: (P,) int64 mesh of every point, or empty for one mesh.
            closest: find the closest triangle.
            winding: evaluate the winding number.
            beta: Barnes--Hut opening ratio (> 0); ``math.inf`` sums every
                triangle exactly.

        Returns:
            (distance (P,), face (P,) int64, barycentric (P, 3),
            closest_point (P, 3), winding (P,)), in the BVH's dtype, with
            empty tensors for what was not asked; nothing is differentiable.

        Raises:
            TypeError: if the points' dtype is not the BVH's.
        """
        if points.dtype != self.dtype:
            raise TypeError(
                f"points are {points.dtype} but the BVH was built from {self.dtype} vertices; "
                f"convert the points with .to({self.dtype}) or build the MeshBVH from "
                f"{points.dtype} vertices")
        arr = _backend.as_kernel_array
        num_points = points.shape[0]
        device, dtype = self.device, self.dtype
        size = num_points if closest else 0
        distance = torch.empty(size, dtype=dtype, device=device)
        face = torch.empty(size, dtype=torch.int64, device=device)
        barycentric = torch.empty((size, 3), dtype=dtype, device=device)
        closest_point = torch.empty((size, 3), dtype=dtype, device=device)
        winding_number = torch.empty(num_points if winding else 0, dtype=dtype, device=device)
        outputs = (distance, face, barycentric, closest_point, winding_number)
        if num_points == 0:
            return outputs
        # On the CPU, large calls visit the points in Morton order: they walk
        # the same nodes one after another, so the tree stays in cache (2-3x
        # on large meshes), and each answer seeds the next search.
        order = torch.empty(0, dtype=torch.int64, device=device)
        if self.backend == "cpu" and num_points >= SORT_POINTS_ABOVE:
            order = self._morton_order(points)
        args = (arr(points.detach().contiguous()), arr(order), arr(point_mesh),
                arr(self.mesh_root), arr(self.mesh_closed), arr(self.child_left),
                arr(self.child_right), arr(self.child_frame),
                arr(self.leaf_vertices), arr(self.leaf_face), arr(self.node_center),
                arr(self.node_normal), arr(self.node_moment), arr(self.node_radius), float(beta),
                bool(closest), bool(winding), self.mesh_magnitude(), self.relative_margin,
                *(arr(t) for t in outputs))
        kernels = _backend.kernels(self.backend)
        if self.backend == "cuda":
            self._run(kernels.query, num_points, *args)
            return outputs
        import numba  # loaded with the CPU kernels

        threads = numba.get_num_threads()
        # One task of the kernel's loop: a second thread would have nothing to
        # do, yet be woken and waited for (1-3 ms on a busy 2-core machine).
        workers = 1 if num_points <= kernels.POINTS_PER_TASK else threads
        numba.set_num_threads(workers)
        try:
            if winding and closest and self.has_open_mesh:
                kernels.query_open(*args, arr(self.mesh_group_first),
                                   arr(self.group_first_piece), arr(self.piece_first_edge),
                                   arr(self.cap_edge), arr(self.cap_piece), arr(self.cap_group),
                                   workers)
            else:
                kernels.query(*args, workers)
        finally:
            numba.set_num_threads(threads)
        return outputs

    #: Rounding allowance of the kernels' box distances and projections, in
    #: ulps of the larger of a point's largest coordinate and the mesh's
    #: (see :func:`diffsd.traversal.rounding_margin`): the closest-triangle
    #: search prunes a node only when its box is farther than the best
    #: triangle by more than this, and the CPU winding-number carry-over
    #: shrinks its surface-free balls by it.
    MARGIN_ULPS = 64

    @property
    def relative_margin(self) -> float:
        return self.MARGIN_ULPS * torch.finfo(self.dtype).eps

    def mesh_magnitude(self) -> float:
        """Largest absolute coordinate of the meshes' boxes (on CUDA: one sync)."""
        return float(self.node_box[self.mesh_root].abs().max())

    @staticmethod
    def _morton_order(points: torch.Tensor) -> torch.Tensor:
        from diffsd import _cpu_kernels

        return torch.from_numpy(_cpu_kernels.point_morton_order(points.detach().contiguous().numpy()))

    def _run(self, kernel, count: int, *args) -> None:
        if self.backend == "cpu":
            kernel(*args)
        else:
            _backend.launch(kernel, count, self.device, *args)

    @property
    def num_faces(self) -> int:
        return self.faces.shape[0]

    def __repr__(self) -> str:
        return (f"MeshBVH(meshes={self.num_meshes}, faces={self.num_faces}, depth={self.max_depth}, "
                f"dtype={self.dtype}, device={self.device}, backend={self.backend!r}, "
                f"builder={self.builder!r})")
