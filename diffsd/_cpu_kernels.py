"""CPU kernels: thin parallel loops (Numba) around the shared geometry code."""

from __future__ import annotations

import numba
import numpy as np
from numba.core import cgutils, types
from numba.extending import intrinsic

from diffsd import geometry, traversal
from diffsd._targets import compile_module_functions

# Numba calls a separately compiled function through a pointer with its own
# calling convention (nothing inlines across them), passing every array as
# its exploded struct. The small functions run per box, per triangle or per
# far-field term, and the per-node refit steps (a dozen arrays each), are
# therefore inlined into their callers, in Numba's IR; inlining everything
# instead makes the first compile of the query kernel take minutes.
_INLINED = frozenset({
    "dot3", "frame_axis_dot", "frame_distance_squared", "closest_point_on_segment", "closest_point_on_triangle",
    "leaf_distance_squared", "nearer_leaf", "triangle_solid_angle", "dipole_solid_angle",
    "quadrupole_solid_angle", "segment_frame_overlap", "segment_triangle_crossing",
    "leaf_crossing", "orthonormal_frame", "write_frame", "write_child_frame", "refit_leaf",
    "project_extents",
    "refit_internal_node", "refit_child_frames", "face_sort_key",
    "distance_gradient", "point_distance_gradient", "as_float64", "add_triangle_moments",
    "fan_edges_moments", "far_field_solid_angle", "is_far", "segment_meets_ball",
    "corner_solid_angle", "relative_corner", "corner_half_angle_terms", "add_half_angle",
    "add_corner_half_angle", "farthest_edge_end_squared",
})


def _compile_for_cpu(function):
    inline = "always" if function.__name__ in _INLINED else "never"
    return numba.njit(cache=True, nogil=True, inline=inline)(function)


_shared = compile_module_functions([geometry, traversal], _compile_for_cpu)
_closest_leaf_query = _shared.closest_leaf_query
_winding_number_query = _shared.winding_number_query
_sign_winding_number_query = _shared.sign_winding_number_query
_morton_code_30 = _shared.morton_code_30
_face_sort_key = _shared.face_sort_key
_build_internal_node = _shared.build_internal_node
_refit_leaf = _shared.refit_leaf
_refit_internal_node = _shared.refit_internal_node
_refit_child_frames = _shared.refit_child_frames
_segment_winding_change = _shared.segment_winding_change
_point_distance_gradient = _shared.point_distance_gradient
_rounding_margin = _shared.rounding_margin
_refit_cap_piece = _shared.refit_cap_piece
_refit_cap_group = _shared.refit_cap_group
_cap_winding_number = _shared.cap_winding_number
_cap_winding_change = _shared.cap_winding_change

STACK_SIZE = geometry.TRAVERSAL_STACK_SIZE
BOX_FLOAT32_LIMIT = geometry.BOX_FLOAT32_LIMIT
# Points per parallel task: large enough to amortise scheduling, small enough
# to balance uneven traversal costs across cores (see :func:`_claim_task`).
POINTS_PER_TASK = 512
# Tree levels with fewer internal nodes than this are refitted serially.
PARALLEL_LEVEL_NODES = 2048
# Internal nodes per task of the refit's oriented boxes (claimed as the
# query's points are, see :func:`_claim_task`): a node's box costs from
# nothing to ``ORIENTED_MAX_LEAVES`` triangles' projections.
FRAME_NODES_PER_TASK = 256
# Resolved points remembered per task, to carry winding numbers over from.
RECENT_POINTS = 8
#: On an open mesh the capped winding number ``N - w_C`` (see
#: :func:`_open_mesh_winding`) is recomputed with the caps summed exactly
#: when it is within this of 1/2: their far-field error (second order,
#: opening ratio 2) stays well below it.
CAP_EXACT_BAND = 0.1
#: The Barnes--Hut sum plus the caps' winding number is rounded to the
#: integer N only when it is within this of one; otherwise both are summed
#: exactly (the sum's error is ~0.05 at the default opening ratio).
CAP_ROUNDING_BAND = 0.25


@numba.njit(parallel=True, cache=True, nogil=True)
def face_keys(vertices, faces, face_mesh, mesh_lo, mesh_inverse_extent, keys):
    """:func:`diffsd.traversal.face_sort_key` of every face into ``keys`` (F,)."""
    for f in numba.prange(faces.shape[0]):
        keys[f] = _face_sort_key(f, vertices, faces, face_mesh, mesh_lo, mesh_inverse_extent)


@numba.njit(cache=True, nogil=True)
def all_within(values, limit):
    """Whether every entry of a 2-D array is at most ``limit`` in magnitude (not NaN)."""
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if not abs(values[i, j]) <= limit:
                return False
    return True


#: Bits sorted per pass of :func:`radix_order` (two passes cover 30-bit keys).
RADIX_BITS = 15


@numba.njit(cache=True, nogil=True)
def radix_order(keys):
    """Stable argsort of non-negative keys below 2**30: two counting-sort passes.

    O(n) (plus 2 x 32768 buckets), several times faster than a comparison
    sort for the Morton codes of a query's points.
    """
    n = keys.shape[0]
    buckets = 1 << RADIX_BITS
    mask = buckets - 1
    order = np.arange(n)
    scratch = np.empty(n, np.int64)
    counts = np.empty(buckets + 1, np.int64)
    for shift in (0, RADIX_BITS):
        counts[:] = 0
        for i in range(n):
            counts[((keys[i] >> shift) & mask) + 1] += 1
        for b in range(buckets):
            counts[b + 1] += counts[b]
        for k in range(n):
            i = order[k]
            bucket = (keys[i] >> shift) & mask
            scratch[counts[bucket]] = i
            counts[bucket] += 1
        order, scratch = scratch, order
    return order


@numba.njit(parallel=True, cache=True, nogil=True)
def point_morton_order(points):
    """Order of the points along the Morton curve of their bounding box.

    One pass for the box, one (parallel) for the 30-bit codes, then
    :func:`radix_order`: no temporaries beyond the codes.
    """
    n = points.shape[0]
    lo_x = lo_y = lo_z = np.inf
    hi_x = hi_y = hi_z = -np.inf
    for i in numba.prange(n):
        lo_x = min(lo_x, np.float64(points[i, 0]))
        lo_y = min(lo_y, np.float64(points[i, 1]))
        lo_z = min(lo_z, np.float64(points[i, 2]))
        hi_x = max(hi_x, np.float64(points[i, 0]))
        hi_y = max(hi_y, np.float64(points[i, 1]))
        hi_z = max(hi_z, np.float64(points[i, 2]))
    scale_x = 1.0 / (hi_x - lo_x) if hi_x > lo_x else 0.0
    scale_y = 1.0 / (hi_y - lo_y) if hi_y > lo_y else 0.0
    scale_z = 1.0 / (hi_z - lo_z) if hi_z > lo_z else 0.0
    keys = np.empty(n, np.int64)
    for i in numba.prange(n):
        keys[i] = _morton_code_30((points[i, 0] - lo_x) * scale_x, (points[i, 1] - lo_y) * scale_y,
                                  (points[i, 2] - lo_z) * scale_z)
    return radix_order(keys)


@numba.njit(parallel=True, cache=True, nogil=True)
def build_internal_nodes(keys, child_left, child_right, parent, range_first, range_last):
    n = keys.shape[0]
    for i in numba.prange(n - 1):
        _build_internal_node(i, keys, n, child_left, child_right, parent, range_first, range_last)


@numba.njit(cache=True, nogil=True)
def bottom_up_order(child_left, child_right, roots, num_nodes):
    """Internal nodes ordered children-first, the start of each depth level in
    that order, and the tree's greatest depth.

    Breadth-first from the roots, then reversed: the order is by decreasing
    depth, so the nodes of one level can be refitted in parallel once the
    deeper levels are done. Serial: it runs once per build.
    """
    num_internal = child_left.shape[0]
    order = np.empty(num_internal, np.int64)
    depth = np.zeros(num_nodes, np.int64)
    count = 0
    for r in range(roots.shape[0]):
        if roots[r] < num_internal:
            order[count] = roots[r]
            count += 1
    head = 0
    max_depth = 0
    while head < count:
        node = order[head]
        head += 1
        for child in (child_left[node], child_right[node]):
            depth[child] = depth[node] + 1
            if depth[child] > max_depth:
                max_depth = depth[child]
            if child < num_internal:
                order[count] = child
                count += 1
    order = order[:count][::-1].copy()
    level_starts = np.empty(max_depth + 2, np.int64)
    levels = 0
    for k in range(count):
        if k == 0 or depth[order[k]] != depth[order[k - 1]]:
            level_starts[levels] = k
            levels += 1
    level_starts[levels] = count
    return order, level_starts[:levels + 1].copy(), max_depth


@numba.njit(parallel=True, cache=True, nogil=True)
def frame_vertex_lists(faces, leaf_face, range_first, range_last, num_vertices, max_leaves,
                       num_parts):
    """The distinct vertices of the triangles below every internal node over
    at most ``max_leaves`` triangles, in CSR form: ``(first (num_internal + 1,),
    vertex (int32))``, node c's in ``vertex[first[c]:first[c + 1]]`` (none for
    larger nodes), in order of first use. The refit projects these instead
    of every corner (a vertex is a corner of ~6 triangles: 2.8x fewer on the
    benchmark's sphere and torus). Runs once per build: each of ``num_parts``
    parallel parts lists its nodes into their room for every corner, with a
    mark per vertex of its own; then the lists are packed."""
    num_internal = range_first.shape[0]
    room = np.zeros(num_internal + 1, np.int64)
    for node in range(num_internal):
        corners = 0
        if range_last[node] - range_first[node] < max_leaves:
            corners = 3 * (range_last[node] - range_first[node] + 1)
        room[node + 1] = room[node] + corners
    listed = np.empty(room[num_internal], np.int32)
    count = np.zeros(num_internal, np.int64)
    part_size = (num_internal + num_parts - 1) // num_parts
    for part in numba.prange(num_parts):
        seen = np.full(num_vertices, -1, np.int32)  # the last node that listed the vertex
        for node in range(part * part_size, min(num_internal, (part + 1) * part_size)):
            k = room[node]
            if k == room[node + 1]:
                continue
            for leaf in range(range_first[node], range_last[node] + 1):
                for j in range(3):
                    v = faces[leaf_face[leaf], j]
                    if seen[v] != node:
                        seen[v] = node
                        listed[k] = v
                        k += 1
            count[node] = k - room[node]
    first = np.zeros(num_internal + 1, np.int64)
    for node in range(num_internal):
        first[node + 1] = first[node] + count[node]
    vertex = np.empty(first[num_internal], np.int32)
    for node in numba.prange(num_internal):
        for k in range(count[node]):
            vertex[first[node] + k] = listed[room[node] + k]
    return first, vertex


@numba.njit(parallel=True, cache=True, nogil=True)
def refit(vertices, faces, leaf_face, bottom_up, level_starts, child_left, child_right,
          frame_vertex_first, frame_vertex, leaf_vertices, node_box, child_frame,
          node_center, node_normal, node_moment, node_area, node_radius, num_workers):
    """Boxes, dipoles and oriented boxes of every node for the vertices given.
    ``num_workers``: Numba's current thread count (see :func:`query`)."""
    num_internal = child_left.shape[0]
    for leaf in numba.prange(leaf_face.shape[0]):
        _refit_leaf(leaf, num_internal, vertices, faces, leaf_face, leaf_vertices, node_box,
                    node_center, node_normal, node_moment, node_area, node_radius)
    # Level by level, deepest first; the nodes of a level are independent.
    # A level too small to repay a parallel launch runs serially.
    for level in range(level_starts.shape[0] - 1):
        first = level_starts[level]
        last = level_starts[level + 1]
        if last - first < PARALLEL_LEVEL_NODES:
            for k in range(first, last):
                _refit_internal_node(bottom_up[k], child_left, child_right, node_box,
                                     node_center, node_normal, node_moment, node_area,
                                     node_radius)
        else:
            for k in numba.prange(first, last):
                _refit_internal_node(bottom_up[k], child_left, child_right, node_box,
                                     node_center, node_normal, node_moment, node_area,
                                     node_radius)
    # The oriented boxes need the finished boxes and dipoles; nodes are then independent.
    num_tasks = (num_internal + FRAME_NODES_PER_TASK - 1) // FRAME_NODES_PER_TASK
    next_task = np.zeros(1, np.int64)
    for _worker in numba.prange(min(num_workers, num_tasks)):
        task = _claim_task(next_task)
        while task < num_tasks:
            for node in range(task * FRAME_NODES_PER_TASK,
                              min(num_internal, (task + 1) * FRAME_NODES_PER_TASK)):
                _refit_child_frames(node, child_left, child_right, vertices,
                                    frame_vertex_first, frame_vertex, leaf_vertices, node_box,
                                    node_center, node_normal, node_area, child_frame)
            task = _claim_task(next_task)


@numba.njit(parallel=True, cache=True, nogil=True)
def refit_caps(vertices, boundary_edge, piece_first_edge, group_first_piece, cap_edge,
               cap_piece, cap_group):
    """:func:`diffsd.traversal.refit_cap_piece` of every piece of the open
    meshes' caps, then ``refit_cap_group`` of every group."""
    for piece in numba.prange(cap_piece.shape[0]):
        _refit_cap_piece(piece, vertices, boundary_edge, piece_first_edge, cap_edge, cap_piece)
    for group in numba.prange(cap_group.shape[0]):
        _refit_cap_group(group, group_first_piece, piece_first_edge, cap_edge, cap_piece,
                         cap_group)


@intrinsic
def _claim_task(typingctx, next_task):
    """The next task of a parallel loop: ``next_task[0]`` (an int64 array)
    before one is added to it, atomically.

    Numba's OpenMP layer splits a ``prange`` evenly between its threads
    before any runs, so a call lasts as long as its slowest thread: one
    woken late after the cores idled (as between the calls of a benchmark
    that alternates with single-threaded peers), one sharing its core with
    another process, or one given the costlier points. The query loops
    (and the refit's oriented boxes) instead run one worker per thread,
    each claiming tasks until none are left: the threads that run take the
    work of those that do not yet.
    """
    if not (isinstance(next_task, types.Array) and next_task.dtype == types.int64):
        return None

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        array = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, array_type, array,
                                           [context.get_constant(types.intp, 0)])
        return builder.atomic_rmw("add", pointer, context.get_constant(types.int64, 1),
                                  "monotonic")

    return types.int64(next_task), codegen


@numba.njit(cache=True, nogil=True, inline="always")
def _task_scratch():
    """One query task's traversal stacks and its ring of recent points (see
    :func:`_remember`): (stack, stack_distance, point, distance, margin,
    winding, root)."""
    return (np.empty(STACK_SIZE, np.int64), np.empty(STACK_SIZE, np.float64),
            np.empty((RECENT_POINTS, 3), np.float64), np.zeros(RECENT_POINTS, np.float64),
            np.zeros(RECENT_POINTS, np.float64), np.empty(RECENT_POINTS, np.float64),
            np.full(RECENT_POINTS, -1, np.int64))


@numba.njit(cache=True, nogil=True, inline="always")
def _closest_into(i, points, px, py, pz, root, num_internal, child_left, child_right,
                  child_frame, leaf_vertices, leaf_face, margin, hint_leaf, stack,
                  stack_distance, box_margin, out_distance, out_face, out_barycentric,
                  out_closest):
    """Closest triangle of point i written to the outputs: (distance, leaf).

    The box distances are evaluated in the points' dtype (see
    :func:`diffsd.traversal.closest_leaf_query`): ``box_margin`` is a
    one-element scratch array of that dtype, to hold ``margin`` in it."""
    if max(abs(px), max(abs(py), abs(pz))) <= BOX_FLOAT32_LIMIT:
        box_margin[0] = margin
        d2, leaf, w0, w1, w2 = _closest_leaf_query(
            px, py, pz, points[i, 0], points[i, 1], points[i, 2], root, num_internal,
            child_left, child_right, child_frame, leaf_vertices, box_margin[0], hint_leaf,
            stack, stack_distance)
    else:  # its squared box distances would overflow float32
        d2, leaf, w0, w1, w2 = _closest_leaf_query(
            px, py, pz, px, py, pz, root, num_internal, child_left, child_right, child_frame,
            leaf_vertices, margin, hint_leaf, stack, stack_distance)
    distance = np.sqrt(d2)
    out_distance[i] = distance
    out_face[i] = leaf_face[leaf]
    out_barycentric[i, 0] = w0
    out_barycentric[i, 1] = w1
    out_barycentric[i, 2] = w2
    for axis in range(3):
        out_closest[i, axis] = (w0 * leaf_vertices[leaf, axis]
                                + w1 * leaf_vertices[leaf, 3 + axis]
                                + w2 * leaf_vertices[leaf, 6 + axis])
    return distance, leaf


@numba.njit(parallel=True, cache=True, nogil=True)
def query(points, point_order, point_mesh, mesh_root, mesh_closed, child_left, child_right,
          child_frame, leaf_vertices, leaf_face, node_center, node_normal, node_moment,
          node_radius, beta, want_closest, want_winding, mesh_magnitude, relative_margin,
          out_distance, out_face, out_barycentric, out_closest, out_winding, num_workers):
    """Closest triangle and/or winding number of every point against its mesh.

    Points are visited in ``point_order`` (all of them; empty: in their own
    order), the Morton order for large calls, so consecutive points are near
    each other: the previous answer seeds the next closest-triangle search,
    and on closed meshes the winding number is carried over, exactly, from
    a recent point instead of summed again (see :func:`_closed_mesh_winding`);
    on open ones it is the Barnes--Hut sum refined near 1/2
    (:func:`diffsd.traversal.sign_winding_number_query`; signed distances
    to open meshes run :func:`query_open` instead).
    Results are written at each point's own index. Coordinates are taken
    to float64 first, so nothing overflows or loses the triangles' scale
    to their distance from the origin in float32; ``mesh_magnitude`` and
    ``relative_margin`` give each point's rounding margin (see
    :func:`diffsd.traversal.rounding_margin`). ``num_workers``: Numba's current
    thread count (see :func:`_claim_task`; asked for outside, as a cached
    kernel cannot call it).
    """
    num_points = points.shape[0]
    num_internal = child_left.shape[0]
    num_tasks = (num_points + POINTS_PER_TASK - 1) // POINTS_PER_TASK
    next_task = np.zeros(1, np.int64)
    for _worker in numba.prange(min(num_workers, num_tasks)):
        (stack, stack_distance, recent_point, recent_distance, recent_margin, recent_winding,
         recent_root) = _task_scratch()
        box_margin = np.empty(1, points.dtype)
        task = _claim_task(next_task)
        while task < num_tasks:
            # Each task starts afresh, so results do not depend on the worker that ran it.
            recent_root[:] = -1
            recent_next = 0
            end = min(num_points, (task + 1) * POINTS_PER_TASK)
            hint_leaf = -1
            hint_root = -1
            for k in range(task * POINTS_PER_TASK, end):
                i, mesh, root, px, py, pz, margin = _task_point(
                    k, point_order, point_mesh, mesh_root, points, mesh_magnitude,
                    relative_margin)
                distance = 0.0
                if want_closest:
                    if root != hint_root:
                        hint_leaf = -1
                    distance, hint_leaf = _closest_into(
                        i, points, px, py, pz, root, num_internal, child_left, child_right,
                        child_frame, leaf_vertices, leaf_face, margin, hint_leaf, stack,
                        stack_distance, box_margin, out_distance, out_face, out_barycentric,
                        out_closest)
                    hint_root = root
                if not want_winding:
                    continue
                if not mesh_closed[mesh]:
                    out_winding[i] = _sign_winding_number_query(
                        px, py, pz, root, num_internal, child_left, child_right, leaf_vertices,
                        node_center, node_normal, node_moment, node_radius, beta, stack)
                    continue
                winding = _closed_mesh_winding(
                    px, py, pz, distance, want_closest, root, num_internal, child_left,
                    child_right, child_frame, leaf_vertices, node_center, node_normal,
                    node_moment, node_radius, beta, margin, recent_point, recent_distance,
                    recent_margin, recent_winding, recent_root, stack)
                out_winding[i] = winding
                recent_next = _remember(recent_next, px, py, pz, distance, margin, winding, root,
                                        recent_point, recent_distance, recent_margin,
                                        recent_winding, recent_root)
            task = _claim_task(next_task)


@numba.njit(parallel=True, cache=True, nogil=True)
def query_open(points, point_order, point_mesh, mesh_root, mesh_closed, child_left,
               child_right, child_frame, leaf_vertices, leaf_face, node_center, node_normal,
               node_moment, node_radius, beta, want_closest, want_winding, mesh_magnitude,
               relative_margin, out_distance, out_face, out_barycentric, out_closest,
               out_winding, mesh_group_first, group_first_piece, piece_first_edge, cap_edge,
               cap_piece, cap_group, num_workers):
    """:func:`query` for signed distances (``want_closest`` and ``want_winding``
    must be set) when some mesh is open: there the winding number of the
    mesh closed by its caps is carried over as on closed meshes (see
    :func:`_open_mesh_winding`). ``mesh_group_first``, ``group_first_piece``,
    ``piece_first_edge``, ``cap_edge``, ``cap_piece``, ``cap_group``: the
    caps (see :func:`refit_caps`); ``num_workers`` as in :func:`query`."""
    num_points = points.shape[0]
    num_internal = child_left.shape[0]
    num_tasks = (num_points + POINTS_PER_TASK - 1) // POINTS_PER_TASK
    next_task = np.zeros(1, np.int64)
    for _worker in numba.prange(min(num_workers, num_tasks)):
        (stack, stack_distance, recent_point, recent_distance, recent_margin, recent_winding,
         recent_root) = _task_scratch()
        box_margin = np.empty(1, points.dtype)
        task = _claim_task(next_task)
        while task < num_tasks:
            # Each task starts afresh, so results do not depend on the worker that ran it.
            recent_root[:] = -1
            recent_next = 0
            end = min(num_points, (task + 1) * POINTS_PER_TASK)
            hint_leaf = -1
            hint_root = -1
            for k in range(task * POINTS_PER_TASK, end):
                i, mesh, root, px, py, pz, margin = _task_point(
                    k, point_order, point_mesh, mesh_root, points, mesh_magnitude,
                    relative_margin)
                if root != hint_root:
                    hint_leaf = -1
                distance, hint_leaf = _closest_into(
                    i, points, px, py, pz, root, num_internal, child_left, child_right,
                    child_frame, leaf_vertices, leaf_face, margin, hint_leaf, stack,
                    stack_distance, box_margin, out_distance, out_face, out_barycentric,
                    out_closest)
                hint_root = root
                if mesh_closed[mesh]:
                    carried = _closed_mesh_winding(
                        px, py, pz, distance, True, root, num_internal, child_left, child_right,
                        child_frame, leaf_vertices, node_center, node_normal, node_moment,
                        node_radius, beta, margin, recent_point, recent_distance, recent_margin,
                        recent_winding, recent_root, stack)
                    winding = carried
                else:
                    winding, carried = _open_mesh_winding(
                        px, py, pz, distance, root, num_internal, child_left, child_right,
                        child_frame, leaf_vertices, node_center, node_normal, node_moment,
                        node_radius, beta, margin, mesh_group_first[mesh],
                        mesh_group_first[mesh + 1], group_first_piece, piece_first_edge,
                        cap_edge, cap_piece, cap_group, recent_point, recent_distance,
                        recent_margin, recent_winding, recent_root, stack)
                out_winding[i] = winding
                recent_next = _remember(recent_next, px, py, pz, distance, margin, carried, root,
                                        recent_point, recent_distance, recent_margin,
                                        recent_winding, recent_root)
            task = _claim_task(next_task)


@numba.njit(cache=True, nogil=True, inline="always")
def _task_point(k, point_order, point_mesh, mesh_root, points, mesh_magnitude,
                relative_margin):
    """The k-th point of a task's run: ``(i, mesh, root, px, py, pz, margin)``, its
    index (through ``point_order`` when given), mesh, the mesh's root node, its
    coordinates in float64 and its rounding margin."""
    i = k
    if point_order.shape[0] != 0:
        i = point_order[k]
    mesh = 0
    if point_mesh.shape[0] != 0:
        mesh = point_mesh[i]
    px = np.float64(points[i, 0])
    py = np.float64(points[i, 1])
    pz = np.float64(points[i, 2])
    return (i, mesh, mesh_root[mesh], px, py, pz,
            _rounding_margin(px, py, pz, mesh_magnitude, relative_margin))


@numba.njit(cache=True, nogil=True, inline="always")
def _remember(recent_next, px, py, pz, distance, margin, winding, root, recent_point,
              recent_distance, recent_margin, recent_winding, recent_root):
    """Store a resolved point in the ring of recent ones; the next slot."""
    recent_point[recent_next, 0] = px
    recent_point[recent_next, 1] = py
    recent_point[recent_next, 2] = pz
    recent_distance[recent_next] = distance
    recent_margin[recent_next] = margin
    recent_winding[recent_next] = winding
    recent_root[recent_next] = root
    return (recent_next + 1) % RECENT_POINTS


@numba.njit(cache=True, nogil=True, inline="always")
def _recent_neighbour(px, py, pz, distance, have_distance, margin, root, recent_point,
                      recent_distance, recent_margin, recent_root):
    """The recent point of the same mesh to carry a winding number from:
    ``(k, crossed)``, ``k = -1`` for none.

    The first whose surface-free ball (radius: its distance, less the
    larger rounding margin) overlaps p's: no surface between them,
    ``crossed = False``. Otherwise the nearest, whose segment to p may
    cross the surface (``crossed = True``).
    """
    nearest = -1
    nearest_separation2 = np.inf
    for k in range(RECENT_POINTS):
        if recent_root[k] != root:
            continue
        ox = px - recent_point[k, 0]
        oy = py - recent_point[k, 1]
        oz = pz - recent_point[k, 2]
        separation2 = ox * ox + oy * oy + oz * oz
        if have_distance:
            reach = 0.999 * (distance + recent_distance[k]) - max(margin, recent_margin[k])
            if reach > 0.0 and separation2 < reach * reach:
                return k, False
        if separation2 < nearest_separation2:
            nearest_separation2 = separation2
            nearest = k
    return nearest, True


@numba.njit(cache=True, nogil=True)
def _closed_mesh_winding(px, py, pz, distance, have_distance, root, num_internal, child_left,
                         child_right, child_frame, leaf_vertices, node_center, node_normal,
                         node_moment, node_radius, beta, margin, recent_point,
                         recent_distance, recent_margin, recent_winding, recent_root, stack):
    """Winding number at p on a closed mesh, where it is an exact integer.

    It is constant off the surface, so it is carried over, exactly, from a
    recent point q of the same mesh (see :func:`_recent_neighbour`): as it
    is when no surface lies between them, else across the segment q->p by
    counting its crossings. Only when no recent point qualifies or a
    crossing is ambiguous is the Barnes--Hut sum evaluated (and rounded).
    """
    k, crossed = _recent_neighbour(px, py, pz, distance, have_distance, margin, root,
                                   recent_point, recent_distance, recent_margin, recent_root)
    if k >= 0:
        if not crossed:
            return recent_winding[k]
        change, ok = _segment_winding_change(
            recent_point[k, 0], recent_point[k, 1], recent_point[k, 2], px, py, pz, root,
            num_internal, child_left, child_right, child_frame, leaf_vertices,
            max(margin, recent_margin[k]), stack)
        if ok:
            return recent_winding[k] + change
    winding = _winding_number_query(
        px, py, pz, root, num_internal, child_left, child_right, leaf_vertices, node_center,
        node_normal, node_moment, node_radius, beta, stack)
    return np.floor(winding + 0.5)


@numba.njit(cache=True, nogil=True)
def _open_mesh_winding(px, py, pz, distance, root, num_internal, child_left, child_right,
                       child_frame, leaf_vertices, node_center, node_normal, node_moment,
                       node_radius, beta, margin, first_group, last_group, group_first_piece,
                       piece_first_edge, cap_edge, cap_piece, cap_group, recent_point,
                       recent_distance, recent_margin, recent_winding, recent_root, stack):
    """Winding number at p on an open mesh S, and the integer N it came from: (w, N).

    Closed by its caps C (see :func:`diffsd.traversal.refit_cap_group`), the
    mesh has the integer winding number ``N = w_S + w_C``, constant off S
    and C: it is carried over from a recent point q as on closed meshes,
    counting the crossings of both S and C along q->p (see
    :func:`_recent_neighbour`). Then ``w_S = N - w_C``, where the caps'
    winding number is their far-field expansion or their exact sum
    (:func:`diffsd.traversal.cap_winding_number`), and exact where the
    result is within ``CAP_EXACT_BAND`` of 1/2, so its side of 1/2, the
    sign, is that of the exact sum. With no recent point, or an ambiguous
    crossing, N is the rounded Barnes--Hut sum over S plus ``w_C``.
    """
    k, crossed = _recent_neighbour(px, py, pz, distance, True, margin, root, recent_point,
                                   recent_distance, recent_margin, recent_root)
    cap = _cap_winding_number(px, py, pz, first_group, last_group, group_first_piece,
                              piece_first_edge, cap_edge, cap_piece, cap_group, beta)
    found = False
    carried = 0.0
    if k >= 0:
        qx = recent_point[k, 0]
        qy = recent_point[k, 1]
        qz = recent_point[k, 2]
        change = 0
        ok = True
        if crossed:
            change, ok = _segment_winding_change(
                qx, qy, qz, px, py, pz, root, num_internal, child_left, child_right,
                child_frame, leaf_vertices, max(margin, recent_margin[k]), stack)
        if ok:
            cap_change, ok = _cap_winding_change(qx, qy, qz, px, py, pz, first_group,
                                                 last_group, group_first_piece,
                                                 piece_first_edge, cap_edge, cap_piece,
                                                 cap_group)
            if ok:
                carried = recent_winding[k] + change + cap_change
                found = True
    if not found:
        summed = _sign_winding_number_query(
            px, py, pz, root, num_internal, child_left, child_right, leaf_vertices, node_center,
            node_normal, node_moment, node_radius, beta, stack) + cap
        carried = np.floor(summed + 0.5)
        if abs(summed - carried) > CAP_ROUNDING_BAND:
            summed = _winding_number_query(
                px, py, pz, root, num_internal, child_left, child_right, leaf_vertices,
                node_center, node_normal, node_moment, node_radius, np.inf, stack)
            summed += _cap_winding_number(px, py, pz, first_group, last_group,
                                          group_first_piece, piece_first_edge, cap_edge,
                                          cap_piece, cap_group, np.inf)
            carried = np.floor(summed + 0.5)
    winding = carried - cap
    if beta < np.inf and abs(winding - 0.5) < CAP_EXACT_BAND:
        winding = carried - _cap_winding_number(px, py, pz, first_group, last_group,
                                                group_first_piece, piece_first_edge, cap_edge,
                                          cap_piece, cap_group, np.inf)
    return winding, carried


#: The parallel backward gives each extra thread a private copy of the
#: vertices' gradient when that costs at most this many vertices per point.
SCATTER_COPY_VERTICES_PER_POINT = 4


@numba.njit(parallel=True, cache=True, nogil=True)
def point_and_vertex_gradients(points, barycentric, distance, grad_distance, on_surface_ratio,
                               vertices, faces, face, grad_point, grad_closest, grad_vertices,
                               num_threads):
    """The backward pass of the distances, in one parallel loop over the points.

    Where ``grad_distance`` is not empty, ``grad_point[i]`` becomes d loss /
    d p of point i (:func:`diffsd.traversal.point_distance_gradient`);
    otherwise ``grad_point`` is read as given. Where ``grad_vertices`` is not
    empty, ``grad_vertices[v_k] += w_k (grad_closest - grad_point)`` over
    every point's closest face, in the same pass (``grad_closest`` may be
    empty: no gradient reached the closest points). Faces share vertices,
    so the points are split into parts that scatter into private copies of
    the gradient, summed at the end; only as many parts as the copies are
    cheap next to the points (one: serial, which is also the order of the
    sums). ``num_threads``: Numba's current thread count (asked for
    outside, as a cached kernel cannot call it).
    """
    num_points = face.shape[0]
    num_vertices = grad_vertices.shape[0]
    with_distance = grad_distance.shape[0] != 0
    with_closest = grad_closest.shape[0] != 0
    num_parts = num_threads
    if num_vertices != 0:
        num_parts = min(num_threads,
                        1 + SCATTER_COPY_VERTICES_PER_POINT * num_points // num_vertices)
    num_parts = max(num_parts, 1)
    copies = np.zeros((num_parts - 1, num_vertices, 3), grad_vertices.dtype)
    part_size = (num_points + num_parts - 1) // num_parts
    for part in numba.prange(num_parts):
        target = grad_vertices
        if part > 0:
            target = copies[part - 1]
        for i in range(part * part_size, min(num_points, (part + 1) * part_size)):
            if with_distance:
                _point_distance_gradient(i, points, barycentric, distance, grad_distance,
                                         on_surface_ratio, vertices, faces, face, grad_point)
            if num_vertices == 0:
                continue
            for k in range(3):
                v = faces[face[i], k]
                w = barycentric[i, k]
                for axis in range(3):
                    g = -grad_point[i, axis]
                    if with_closest:
                        g += grad_closest[i, axis]
                    target[v, axis] += w * g
    if num_parts > 1 and num_vertices != 0:
        for v in numba.prange(num_vertices):
            for copy in range(num_parts - 1):
                for axis in range(3):
                    grad_vertices[v, axis] += copies[copy, v, axis]
