"""CUDA kernels: thin loops (Numba CUDA) around the shared geometry code.

Imported only when a CUDA tensor is seen (or under the CUDA simulator,
``NUMBA_ENABLE_CUDASIM=1``, which the tests use on machines without a GPU).
"""

from __future__ import annotations

import math

from numba import cuda, float64, int64

from diffsd import geometry, traversal
from diffsd._targets import compile_module_functions

_shared = compile_module_functions([geometry, traversal], cuda.jit(device=True))
_closest_leaf_query = _shared.closest_leaf_query
_winding_number_query = _shared.winding_number_query
_sign_winding_number_query = _shared.sign_winding_number_query
_face_sort_key = _shared.face_sort_key
_build_internal_node = _shared.build_internal_node
_refit_leaf = _shared.refit_leaf
_refit_internal_node = _shared.refit_internal_node
_refit_child_frames = _shared.refit_child_frames
_rounding_margin = _shared.rounding_margin
_point_distance_gradient = _shared.point_distance_gradient

STACK_SIZE = geometry.TRAVERSAL_STACK_SIZE
BOX_FLOAT32_LIMIT = geometry.BOX_FLOAT32_LIMIT
THREADS_PER_BLOCK = 128


def blocks_for(count: int) -> int:
    return max(1, (count + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK)


@cuda.jit
def face_keys(vertices, faces, face_mesh, mesh_lo, mesh_inverse_extent, keys):
    """:func:`diffsd.traversal.face_sort_key` of every face into ``keys`` (F,)."""
    f = cuda.grid(1)
    if f < faces.shape[0]:
        keys[f] = _face_sort_key(f, vertices, faces, face_mesh, mesh_lo, mesh_inverse_extent)


@cuda.jit
def build_internal_nodes(keys, child_left, child_right, parent, range_first, range_last):
    i = cuda.grid(1)
    n = keys.shape[0]
    if i < n - 1:
        _build_internal_node(i, keys, n, child_left, child_right, parent, range_first, range_last)


@cuda.jit
def refit_leaves(vertices, faces, leaf_face, num_internal, leaf_vertices, node_box, node_center,
                 node_normal, node_moment, node_area, node_radius):
    leaf = cuda.grid(1)
    if leaf < leaf_face.shape[0]:
        _refit_leaf(leaf, num_internal, vertices, faces, leaf_face, leaf_vertices, node_box,
                    node_center, node_normal, node_moment, node_area, node_radius)


@cuda.jit
def refit_internal_nodes(parent, arrivals, child_left, child_right, node_box, node_center,
                         node_normal, node_moment, node_area, node_radius, num_leaves):
    """Bottom-up sweep: the second child to arrive at a node refits it (Karras 2012)."""
    leaf = cuda.grid(1)
    if leaf >= num_leaves:
        return
    num_internal = num_leaves - 1
    node = parent[num_internal + leaf]
    while node >= 0:
        cuda.threadfence()
        if cuda.atomic.add(arrivals, node, 1) == 0:
            return
        _refit_internal_node(node, child_left, child_right, node_box, node_center, node_normal,
                             node_moment, node_area, node_radius)
        node = parent[node]


@cuda.jit
def refit_child_frames(child_left, child_right, vertices, frame_vertex_first, frame_vertex,
                       leaf_vertices, node_box, node_center, node_normal, node_area, child_frame):
    """After the bottom-up sweep: each internal node's children's oriented boxes."""
    node = cuda.grid(1)
    if node < child_left.shape[0]:
        _refit_child_frames(node, child_left, child_right, vertices, frame_vertex_first,
                            frame_vertex, leaf_vertices, node_box, node_center, node_normal,
                            node_area, child_frame)


@cuda.jit
def query(points, point_order, point_mesh, mesh_root, mesh_closed, child_left, child_right,
          child_frame, leaf_vertices, leaf_face, node_center, node_normal, node_moment,
          node_radius, beta, want_closest, want_winding, mesh_magnitude, relative_margin,
          out_distance, out_face, out_barycentric, out_closest, out_winding):
    """One thread per point (``point_order`` is ignored). Winding numbers of closed meshes are
    rounded to the integer they are (the CPU kernel's carry-over between
    neighbouring points needs a serial loop, so each thread here sums its
    own). Coordinates are taken to float64 first, as
    on the CPU."""
    i = cuda.grid(1)
    if i >= points.shape[0]:
        return
    stack = cuda.local.array(STACK_SIZE, int64)
    stack_distance = cuda.local.array(STACK_SIZE, float64)
    num_internal = child_left.shape[0]
    mesh = 0
    if point_mesh.shape[0] != 0:
        mesh = point_mesh[i]
    root = mesh_root[mesh]
    px = float64(points[i, 0])
    py = float64(points[i, 1])
    pz = float64(points[i, 2])
    if want_closest:
        margin = _rounding_margin(px, py, pz, mesh_magnitude, relative_margin)
        if max(abs(px), max(abs(py), abs(pz))) <= BOX_FLOAT32_LIMIT:
            d2, leaf, w0, w1, w2 = _closest_leaf_query(
                px, py, pz, points[i, 0], points[i, 1], points[i, 2], root, num_internal,
                child_left, child_right, child_frame, leaf_vertices, margin, -1, stack,
                stack_distance)
        else:  # its box projections would overflow float32
            d2, leaf, w0, w1, w2 = _closest_leaf_query(
                px, py, pz, px, py, pz, root, num_internal, child_left, child_right,
                child_frame, leaf_vertices, margin, -1, stack, stack_distance)
        out_distance[i] = math.sqrt(d2)
        out_face[i] = leaf_face[leaf]
        out_barycentric[i, 0] = w0
        out_barycentric[i, 1] = w1
        out_barycentric[i, 2] = w2
        for axis in range(3):
            out_closest[i, axis] = (w0 * leaf_vertices[leaf, axis]
                                    + w1 * leaf_vertices[leaf, 3 + axis]
                                    + w2 * leaf_vertices[leaf, 6 + axis])
    if want_winding:
        if mesh_closed[mesh]:
            winding = math.floor(_winding_number_query(
                px, py, pz, root, num_internal, child_left, child_right, leaf_vertices,
                node_center, node_normal, node_moment, node_radius, beta, stack) + 0.5)
        else:
            winding = _sign_winding_number_query(
                px, py, pz, root, num_internal, child_left, child_right, leaf_vertices,
                node_center, node_normal, node_moment, node_radius, beta, stack)
        out_winding[i] = winding


@cuda.jit
def distance_backward(points, barycentric, distance, grad_distance, on_surface_ratio, vertices,
                      faces, face, grad_point):
    """One thread per point: :func:`diffsd.traversal.distance_gradient`, as on the CPU."""
    i = cuda.grid(1)
    if i < points.shape[0]:
        _point_distance_gradient(i, points, barycentric, distance, grad_distance,
                                 on_surface_ratio, vertices, faces, face, grad_point)
