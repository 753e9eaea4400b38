"""Peer adapters of the signed-distance benchmark (:mod:`bench_sdf`).

One small adapter per peer library: libigl (exact and fast winding number),
Open3D, pysdf, fcpw and NVIDIA Warp (CPU device). Each builds its structure
once (``build``, timed apart by the runner) and answers float64 signed
distances, negative inside, for points prepared in its own format
(``prepare_points``, not timed). A peer that is not installed, or whose
native library fails to load, is skipped with the reason.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

PEER_NAMES = ("igl", "open3d", "pysdf", "fcpw", "warp")


@dataclass
class Peer:
    """A peer library: build a structure once, then query signed distances.

    ``query`` returns float64 signed distances, negative inside (the peer's
    own convention is converted).
    """

    name: str
    label: str
    sign_note: str
    build: Callable[[np.ndarray, np.ndarray], object]
    query: Callable[[object, np.ndarray], np.ndarray]
    prepare_points: Callable[[np.ndarray], object] = staticmethod(lambda p: p)
    exact_distance: bool = True  # False: the distance is approximate by design


def _threads() -> int:
    return os.cpu_count() or 1


def make_igl_peers() -> list[Peer]:
    """libigl's signed distance with the exact and the fast winding number."""
    import igl

    def build(v, f):
        # igl.signed_distance builds its trees inside every call; time the
        # AABB tree alone as its build, and subtract it from the call.
        tree = igl.AABB()
        tree.init(v, f)
        return (v, f)

    def query_with(sign_type):
        def query(state, points):
            v, f = state
            return igl.signed_distance(points, v, f, sign_type=sign_type)[0]
        return query

    types = igl.SignedDistanceType
    return [
        Peer("igl", "libigl (winding number)",
             "exact hierarchical winding number; query = call - AABB build (rebuilt per call)",
             build, query_with(types.SIGNED_DISTANCE_TYPE_WINDING_NUMBER)),
        Peer("igl", "libigl (fast winding number)",
             "fast winding number (Barill 2018); query = call - AABB build",
             build, query_with(types.SIGNED_DISTANCE_TYPE_FAST_WINDING_NUMBER)),
    ]


def make_open3d_peer() -> list[Peer]:
    """Open3D's RaycastingScene (Embree); the sign comes from ray parity."""
    import open3d as o3d

    def build(v, f):
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(o3d.core.Tensor(v.astype(np.float32)),
                            o3d.core.Tensor(f.astype(np.uint32)))
        # Embree commits the scene lazily: force it inside the build.
        scene.compute_distance(o3d.core.Tensor(np.zeros((1, 3), np.float32)))
        return scene

    def query(scene, points):
        return scene.compute_signed_distance(points).numpy().astype(np.float64)

    return [Peer("open3d", "Open3D RaycastingScene",
                 "ray parity (1 ray; needs a watertight mesh)", build, query,
                 lambda p: o3d.core.Tensor(np.ascontiguousarray(p, np.float32)))]


def make_pysdf_peer() -> list[Peer]:
    """pysdf (sxyu/sdf), in its default robust mode."""
    import pysdf

    def build(v, f):
        return pysdf.SDF(np.ascontiguousarray(v, np.float32), np.ascontiguousarray(f, np.uint32))

    def query(sdf, points):
        return -sdf(points, n_threads=_threads()).astype(np.float64).reshape(-1)  # + inside

    return [Peer("pysdf", "pysdf",
                 "majority of 3 axis ray parities; distance approximate (faces of the nearest "
                 "vertex only)", build, query, lambda p: np.ascontiguousarray(p, np.float32),
                 exact_distance=False)]


def make_fcpw_peer() -> list[Peer]:
    """fcpw's vectorised BVH: closest points, and contains() for the sign."""
    import fcpw

    def build(v, f):
        scene = fcpw.scene_3D()
        scene.set_object_count(1)
        scene.set_object_vertices(np.ascontiguousarray(v, np.float32), 0)
        scene.set_object_triangles(np.ascontiguousarray(f, np.int32), 0)
        scene.build(fcpw.aggregate_type.bvh_surface_area, True)
        return scene

    def prepare(points):
        # fcpw 1.2's NumPy overload of contains() leaves its result array at 0;
        # its list overload works, so the points are handed over in both forms.
        points = np.ascontiguousarray(points, np.float32)
        return np.asfortranarray(points), fcpw.float_3D_list(list(points))

    def query(scene, prepared):
        points, point_list = prepared
        count = points.shape[0]
        interactions = fcpw.interaction_3D_list()
        scene.find_closest_points(points, np.full(count, np.inf, np.float32), interactions)
        inside = fcpw.uint32_list()
        scene.contains(point_list, inside)
        distance = np.fromiter((i.d for i in interactions), np.float64, count)
        return np.where(np.fromiter(inside, np.int64, count) > 0, -distance, distance)

    return [Peer("fcpw", "fcpw (SIMD BVH)",
                 "ray-cast containment (needs a watertight mesh); query includes reading the "
                 "results out of Python objects", build, query, prepare)]


def make_warp_peer() -> list[Peer]:
    """NVIDIA Warp's mesh query with the winding-number sign, on the CPU device."""
    import warp as wp

    wp.config.quiet = True
    wp.init()

    @wp.kernel
    def signed_distance_kernel(mesh: wp.uint64, points: wp.array(dtype=wp.vec3),
                               out: wp.array(dtype=float)):
        tid = wp.tid()
        p = points[tid]
        hit = wp.mesh_query_point_sign_winding_number(mesh, p, 1.0e30, 2.0, 0.5)
        if hit.result:
            closest = wp.mesh_eval_position(mesh, hit.face, hit.u, hit.v)
            out[tid] = hit.sign * wp.length(closest - p)

    def build(v, f):
        points = wp.array(np.ascontiguousarray(v, np.float32), dtype=wp.vec3, device="cpu")
        indices = wp.array(np.ascontiguousarray(f, np.int32).reshape(-1), dtype=wp.int32,
                           device="cpu")
        return wp.Mesh(points=points, indices=indices, support_winding_number=True)

    def query(mesh, points):
        out = wp.zeros(points.shape[0], dtype=float, device="cpu")
        wp.launch(signed_distance_kernel, dim=points.shape[0], inputs=[mesh.id, points, out],
                  device="cpu")
        wp.synchronize()
        return out.numpy().astype(np.float64)

    return [Peer("warp", "NVIDIA Warp (CPU)",
                 "fast winding number (accuracy 2); Warp runs CPU kernels on one thread",
                 build, query,
                 lambda p: wp.array(np.ascontiguousarray(p, np.float32), dtype=wp.vec3,
                                    device="cpu"))]


PEER_FACTORIES = {"igl": make_igl_peers, "open3d": make_open3d_peer, "pysdf": make_pysdf_peer,
                  "fcpw": make_fcpw_peer, "warp": make_warp_peer}


def load_peers(names) -> tuple[list[Peer], dict[str, str]]:
    """The requested peers that import; the others with the reason."""
    peers, missing = [], {}
    for name in names:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                peers.extend(PEER_FACTORIES[name]())
        except Exception as error:  # ImportError, or a broken native dependency
            missing[name] = f"{type(error).__name__}: {str(error).splitlines()[0][:100]}"
    return peers, missing
