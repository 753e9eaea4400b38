"""Differentiable signed distance from points to triangle meshes.

``d(M, p) = sgn(0.5 - WN(M, p)) * min_f dist(f, p)``: the unsigned distance by
BVH traversal, the sign by the fast winding number over the same BVH. On
closed meshes the winding number is an integer constant off the surface, and
the CPU kernel carries it over exactly between nearby points (overlapping
surface-free balls, or counted crossings of the segment between them), so
most points need no Barnes--Hut sum at all; on open meshes it carries over the
integer winding number of the mesh closed by caps over its holes and takes
the caps' own winding number from it. The
backward pass is analytic (no autograd through the traversal):
``dd/dp = sgn(d) (p - p*) / |p - p*|`` and ``dd/dv_i = -w_i dd/dp`` for the
vertices of the closest triangle, ``w_i`` the barycentrics of the closest
point ``p*``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from diffsd import _backend
from diffsd.bvh import MeshBVH
from diffsd.validation import check_faces, check_point_mesh, check_points, check_vertices

#: How the sign is found: ``"fast_winding"``, the Barnes--Hut winding number
#: (opening ratio ``beta``); ``"exact_winding"``, the exact sum of every
#: triangle's solid angle (O(F) per point off closed meshes).
FAST_WINDING = "fast_winding"
EXACT_WINDING = "exact_winding"
SIGN_MODES = (FAST_WINDING, EXACT_WINDING)
#: Barnes--Hut opening ratio: a BVH node is summed as its far-field expansion
#: from points farther than ``beta`` times its radius.
DEFAULT_BETA = 2.0
#: A point within this many ulps of its closest face's longest edge of the
#: face takes the face's normal as its gradient: the direction to the
#: closest point is rounding noise there (the barycentrics are stored in the
#: points' dtype).
ON_SURFACE_ULPS = 64


class SignedDistance(NamedTuple):
    """Result of :func:`signed_distance` for P query points.

    Attributes:
        distance: (P,) signed distance, negative inside; differentiable with
            respect to points and vertices.
        closest_face: (P,) int64 index of the closest face in the packed faces.
        barycentric: (P, 3) weights of the closest point on that face's
            vertices, in the face's vertex order.
        closest_point: (P, 3) the closest point on the mesh; differentiable
            with respect to the vertices (barycentrics held fixed).
        winding_number: (P,) generalised winding number that gave the sign;
            on a closed mesh (every edge used once in each direction) the
            exact integer (1 inside, 2 where two components overlap), on an
            open one the Barnes--Hut value (refined where it is near 1/2) or,
            on the CPU, the exact integer winding number of the mesh closed
            by caps over its holes, carried over from a nearby point, less
            the caps' own winding number (far-field or exact; exact near
            1/2; see :func:`diffsd._cpu_kernels._open_mesh_winding`). Empty
            for :func:`unsigned_distance`. Not differentiable.
    """

    distance: torch.Tensor
    closest_face: torch.Tensor
    barycentric: torch.Tensor
    closest_point: torch.Tensor
    winding_number: torch.Tensor


class _DistanceFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, vertices, points, bvh, faces, point_mesh, beta, signed):
        distance, face, barycentric, closest_point, winding = bvh.query(
            points, point_mesh, closest=True, winding=signed, beta=beta)
        if signed:
            distance = torch.where(winding > 0.5, -distance, distance)
        ctx.save_for_backward(vertices.detach(), points.detach(), barycentric, face, distance)
        ctx.faces = faces
        ctx.backend = bvh.backend
        ctx.mark_non_differentiable(face, barycentric, winding)
        return distance, face, barycentric, closest_point, winding

    @staticmethod
    def backward(ctx, grad_distance, _grad_face, _grad_barycentric, grad_closest_point,
                 _grad_winding):
        """On the CPU one kernel, the points' gradient
        (:func:`diffsd.traversal.distance_gradient`) and its scatter to the
        closest faces' vertices in one pass; on CUDA a kernel for the
        points' gradient, then the scatter in torch."""
        vertices, points, barycentric, face, distance = ctx.saved_tensors
        if grad_distance is None and grad_closest_point is None:
            return None, None, None, None, None, None, None

        def arr(tensor):
            return _backend.as_kernel_array(tensor.contiguous())

        points = points.contiguous()
        grad_point = torch.zeros_like(points)
        on_surface_ratio = float(ON_SURFACE_ULPS * torch.finfo(points.dtype).eps)
        want_vertices = ctx.needs_input_grad[0]
        grad_vertices = grad_points = None
        if ctx.backend == "cpu":
            import numba

            from diffsd import _cpu_kernels

            no_rows = points.new_empty((0, 3))
            scattered = (torch.zeros_like(vertices, memory_format=torch.contiguous_format)
                         if want_vertices else no_rows)
            _cpu_kernels.point_and_vertex_gradients(
                arr(points), arr(barycentric), arr(distance),
                arr(grad_distance if grad_distance is not None else points.new_empty(0)),
                on_surface_ratio, arr(vertices), arr(ctx.faces), arr(face), arr(grad_point),
                arr(grad_closest_point if grad_closest_point is not None else no_rows),
                arr(scattered), numba.get_num_threads())
            if want_vertices:
                grad_vertices = scattered
        else:
            if grad_distance is not None:
                _backend.launch(_backend.kernels(ctx.backend).distance_backward,
                                points.shape[0], points.device, arr(points), arr(barycentric),
                                arr(distance), arr(grad_distance), on_surface_ratio,
                                arr(vertices), arr(ctx.faces), arr(face), arr(grad_point))
            if want_vertices:
                grad_vertices = _vertex_gradient(vertices, barycentric, face, ctx.faces,
                                                 grad_point, grad_closest_point)
        if ctx.needs_input_grad[1]:
            grad_points = grad_point
        return grad_vertices, grad_points, None, None, None, None, None


def _vertex_gradient(vertices, barycentric, face, faces, grad_point, grad_closest_point):
    """(V, 3): ``d/dv_k = w_k (grad_closest - grad_point)`` summed over the points
    whose closest face has vertex k (d distance / d v_k = -w_k d distance / d p,
    d closest / d v_k = w_k I); the CPU computes the same in
    :func:`diffsd._cpu_kernels.point_and_vertex_gradients`."""
    contributions = -barycentric[:, :, None] * grad_point[:, None, :]  # (P, 3, 3)
    if grad_closest_point is not None:
        contributions = contributions + barycentric[:, :, None] * grad_closest_point[:, None, :]
    grad_vertices = torch.zeros_like(vertices)
    grad_vertices.index_add_(0, faces[face].reshape(-1), contributions.reshape(-1, 3))
    return grad_vertices


def _opening_ratio(mode: str, beta: float, exact_sign: bool = False) -> float:
    """The kernels' opening ratio for a sign mode: ``beta``, or infinite (exact)."""
    if mode not in SIGN_MODES:
        raise ValueError(f"sign mode must be one of {SIGN_MODES}, got {mode!r}")
    beta = float(beta)
    if not (0.0 < beta < math.inf):
        raise ValueError(
            f"beta is the Barnes--Hut opening ratio and must be positive and finite, got {beta}; "
            f"for the exact sum pass {EXACT_WINDING!r} as the sign mode")
    if exact_sign or mode == EXACT_WINDING:
        return math.inf
    return beta


def _prepare(vertices, faces, points, point_mesh, mesh_faces_first_idx, bvh, backend, refit):
    vertices = check_vertices(vertices)
    points = check_points("points", points, vertices.dtype)
    if points.device != vertices.device:
        raise ValueError(f"points are on {points.device} but vertices on {vertices.device}")
    if bvh is None:
        bvh = MeshBVH(vertices, faces, mesh_faces_first_idx, backend=backend)
    else:
        if not isinstance(bvh, MeshBVH):
            raise TypeError(f"bvh must be a diffsd.MeshBVH, got {type(bvh).__name__}")
        if bvh.dtype != vertices.dtype:
            raise TypeError(
                f"bvh was built from {bvh.dtype} vertices but vertices and points are "
                f"{vertices.dtype}; build the MeshBVH from vertices of the dtype you query with")
        # The BVH's own faces were validated at build time; anything else is
        # checked and compared (O(F)), which the hot path of a fit avoids.
        if faces is not bvh.faces:
            faces = check_faces(faces, vertices.shape[0]).to(vertices.device)
            if faces.shape != bvh.faces.shape or not torch.equal(faces, bvh.faces):
                raise ValueError(
                    "bvh was built for other faces: build a new MeshBVH for these faces")
        if refit:
            bvh.refit(vertices)
    point_mesh = check_point_mesh(point_mesh, points.shape[0], bvh.num_meshes, vertices.device)
    return vertices, points, point_mesh, bvh


def signed_distance(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    points: torch.Tensor,
    *,
    point_mesh: torch.Tensor | None = None,
    mesh_faces_first_idx: torch.Tensor | None = None,
    bvh: MeshBVH | None = None,
    refit: bool = True,
    sign_mode: str = FAST_WINDING,
    beta: float = DEFAULT_BETA,
    exact_sign: bool = False,
    backend: str = "auto",
) -> SignedDistance:
    """Signed distance from points to one or more triangle meshes.

    Args:
        vertices: (V, 3) float32 or float64 vertex positions (all meshes,
            packed). Gradients flow to them.
        faces: (F, 3) int32/int64 vertex indices, consistently oriented with
            outward normals (right-hand rule) for the sign convention below.
        points: (P, 3) query points, same dtype and device as ``vertices``.
            Gradients flow to them.
        point_mesh: (P,) mesh index of every point when several meshes are
            packed; None for a single mesh.
        mesh_faces_first_idx: (M,) first face of each mesh in ``faces``;
            None for a single mesh. Ignored when ``bvh`` is given.
        bvh: a :class:`MeshBVH` over these faces to reuse across calls.
        refit: refit ``bvh`` to ``vertices`` first (O(F)); pass False only
            when it already matches them.
        sign_mode: how the winding number that gives the sign is found:
            ``"fast_winding"`` (Barnes--Hut, opening ratio ``beta``) or
            ``"exact_winding"`` (the exact solid angle of every triangle,
            O(F) per point). On closed meshes both give the exact integer
            wherever the CPU kernel can carry it over between points.
        beta: Barnes--Hut opening ratio (> 0) of ``"fast_winding"``; larger
            is more accurate and slower.
        exact_sign: True is the same as ``sign_mode="exact_winding"`` (the
            older spelling, kept for existing callers).
        backend: ``"auto"`` (the tensors' device), ``"cpu"`` or ``"cuda"``.

    Returns:
        :class:`SignedDistance` (distance (P,), closest_face (P,),
        barycentric (P, 3), closest_point (P, 3)) on the input device, in
        its dtype. Distances are negative inside (winding number above 1/2).

    Raises:
        TypeError: if ``bvh`` was built from vertices of another dtype.
        ValueError: for an unknown ``sign_mode`` or a ``beta`` not > 0.
    """
    opening_ratio = _opening_ratio(sign_mode, beta, exact_sign)
    vertices, points, point_mesh, bvh = _prepare(
        vertices, faces, points, point_mesh, mesh_faces_first_idx, bvh, backend, refit)
    return _run(vertices, points, bvh, point_mesh, opening_ratio, signed=True)


def unsigned_distance(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    points: torch.Tensor,
    *,
    point_mesh: torch.Tensor | None = None,
    mesh_faces_first_idx: torch.Tensor | None = None,
    bvh: MeshBVH | None = None,
    refit: bool = True,
    backend: str = "auto",
) -> SignedDistance:
    """Unsigned distance (no winding number); arguments as :func:`signed_distance`.

    Returns:
        :class:`SignedDistance` whose ``distance`` is >= 0.
    """
    vertices, points, point_mesh, bvh = _prepare(
        vertices, faces, points, point_mesh, mesh_faces_first_idx, bvh, backend, refit)
    return _run(vertices, points, bvh, point_mesh, math.inf, signed=False)


def winding_number(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    points: torch.Tensor,
    *,
    point_mesh: torch.Tensor | None = None,
    mesh_faces_first_idx: torch.Tensor | None = None,
    bvh: MeshBVH | None = None,
    refit: bool = True,
    mode: str = FAST_WINDING,
    beta: float = DEFAULT_BETA,
    backend: str = "auto",
) -> torch.Tensor:
    """Generalised winding number (1 inside a closed mesh, 0 outside).

    Arguments as :func:`signed_distance`; ``mode`` is its ``sign_mode``:
    ``"fast_winding"`` (Barnes--Hut, opening ratio ``beta``) or
    ``"exact_winding"`` (every triangle summed).

    Returns:
        (P,) winding numbers (not differentiable).
    """
    opening_ratio = _opening_ratio(mode, beta)
    vertices, points, point_mesh, bvh = _prepare(
        vertices, faces, points, point_mesh, mesh_faces_first_idx, bvh, backend, refit)
    return bvh.query(points, point_mesh, closest=False, winding=True, beta=opening_ratio)[4]


def _run(vertices, points, bvh, point_mesh, beta, signed):
    distance, face, barycentric, closest_point, winding = _DistanceFunction.apply(
        vertices, points, bvh, bvh.faces, point_mesh, float(beta), signed)
    return SignedDistance(distance, face, barycentric, closest_point, winding)
