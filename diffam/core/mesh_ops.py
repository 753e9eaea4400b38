"""Elementary triangle-mesh operations: edges, normals, areas, surface sampling, topology.

Differentiable quantities (normals, areas, sampled points, volume) are torch
functions of the vertices; topological checks work on the faces alone and
accept torch tensors or NumPy arrays.

Lengths are in the unit of the vertices (areas in that unit squared, volumes
cubed); faces are (F, 3) integer indices, counter-clockwise seen from outside
for outward normals.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import connected_components


def _faces_numpy(faces) -> np.ndarray:
    """Faces as a (F, 3) int64 NumPy array; raises on a bad shape."""
    if isinstance(faces, torch.Tensor):
        faces = faces.detach().cpu().numpy()
    faces = np.asarray(faces)
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must have shape (F, 3), got {faces.shape}")
    if faces.size and not np.issubdtype(faces.dtype, np.integer):
        raise TypeError(f"faces must hold integers, got dtype {faces.dtype}")
    return faces.astype(np.int64, copy=False)


def _check_vertices_faces(vertices: torch.Tensor, faces: torch.Tensor) -> None:
    if not isinstance(vertices, torch.Tensor):
        raise TypeError(f"vertices must be a torch.Tensor, got {type(vertices).__name__}")
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"vertices must have shape (V, 3), got {tuple(vertices.shape)}")
    if not isinstance(faces, torch.Tensor):
        raise TypeError(f"faces must be a torch.Tensor, got {type(faces).__name__}")
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must have shape (F, 3), got {tuple(faces.shape)}")


def unique_edges(faces):
    """Undirected edges of a triangle mesh, each once.

    Args:
        faces: (F, 3) integer torch tensor or NumPy array.

    Returns:
        (E, 2) edges with ``edges[:, 0] < edges[:, 1]``, sorted
        lexicographically; same kind (torch, on the faces' device, or NumPy)
        as ``faces``.
    """
    f = _faces_numpy(faces)
    edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    edges = np.unique(np.sort(edges, axis=1), axis=0)
    if isinstance(faces, torch.Tensor):
        return torch.from_numpy(edges).to(faces.device)
    return edges


def _face_cross(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(F, 3) cross product (v1 - v0) x (v2 - v0): twice the area times the unit normal."""
    _check_vertices_faces(vertices, faces)
    faces = faces.to(device=vertices.device, dtype=torch.int64)
    v0, v1, v2 = (vertices[faces[:, i]] for i in range(3))
    return torch.cross(v1 - v0, v2 - v0, dim=-1)


def face_areas(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Triangle areas, (F,), in squared vertex units; differentiable."""
    cross = _face_cross(vertices, faces)
    # sqrt has an infinite derivative at 0: guard degenerate triangles.
    sq = (cross * cross).sum(-1)
    return 0.5 * torch.sqrt(sq.clamp_min(torch.finfo(sq.dtype).tiny))


def face_normals(vertices: torch.Tensor, faces: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Unit face normals (right-hand rule on the face order), (F, 3); differentiable.

    Degenerate (zero-area) faces get a zero-length normal.
    """
    cross = _face_cross(vertices, faces)
    return cross / cross.norm(dim=-1, keepdim=True).clamp_min(eps)


def sample_surface(
    vertices: torch.Tensor, faces: torch.Tensor, n: int, generator: torch.Generator | None = None
):
    """Uniform random points on the surface (area-weighted), differentiable in the vertices.

    Faces are drawn with probability proportional to their (detached) area and
    a point uniformly inside each drawn face (square-root barycentric trick);
    ``points = sum_i barycentric[:, i] * vertices[faces[face_idx, i]]`` so
    gradients flow to the vertices.

    Args:
        vertices: (V, 3) float tensor.
        faces: (F, 3) integer tensor.
        n: number of points (>= 0).
        generator: torch random generator on the vertices' device (None: the
            global one).

    Returns:
        points (n, 3), face_idx (n,) int64, barycentric (n, 3) (rows sum to 1).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    with torch.no_grad():
        areas = 0.5 * _face_cross(vertices.detach(), faces).norm(dim=-1)
    if areas.numel() == 0 or not bool(areas.sum() > 0):
        raise ValueError("faces: the mesh has zero total area, cannot sample its surface")
    faces = faces.to(device=vertices.device, dtype=torch.int64)
    face_idx = torch.multinomial(areas, int(n), replacement=True, generator=generator)
    r = torch.rand((int(n), 2), generator=generator, device=vertices.device, dtype=vertices.dtype)
    s = torch.sqrt(r[:, 0])
    bary = torch.stack([1.0 - s, s * (1.0 - r[:, 1]), s * r[:, 1]], dim=-1)
    corners = vertices[faces[face_idx]]  # (n, 3, 3)
    points = (bary.unsqueeze(-1) * corners).sum(1)
    return points, face_idx, bary


def _edge_face_incidence(f: np.ndarray):
    """Per half-edge (3F of them): sorted undirected key index and owning face."""
    half = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    _, key, counts = np.unique(
        np.sort(half, axis=1), axis=0, return_inverse=True, return_counts=True
    )
    return half, key.reshape(-1), counts


def is_closed_manifold(faces, check_orientation: bool = True) -> bool:
    """Whether the faces form a closed 2-manifold (optionally consistently oriented).

    Checks: no degenerate faces (repeated indices), every undirected edge in
    exactly two faces (closed, edge-manifold), the faces around every vertex
    form one fan (vertex-manifold) and, with ``check_orientation``, each
    directed edge occurs once (neighbouring faces agree on orientation).

    Args:
        faces: (F, 3) integer torch tensor or NumPy array.
        check_orientation: also require a consistent orientation.
    """
    f = _faces_numpy(faces)
    if f.shape[0] == 0:
        return False
    if np.any((f[:, 0] == f[:, 1]) | (f[:, 1] == f[:, 2]) | (f[:, 2] == f[:, 0])):
        return False
    half, key, counts = _edge_face_incidence(f)
    if np.any(counts != 2):
        return False
    if check_orientation and np.unique(half, axis=0).shape[0] != half.shape[0]:
        return False
    # Vertex manifoldness: corners (face, vertex) at the same vertex are joined
    # across each shared edge; every vertex must give one connected fan.
    n_faces = f.shape[0]
    face_of_half = np.tile(np.arange(n_faces), 3)
    order = np.argsort(key, kind="stable")
    first, second = order[0::2], order[1::2]  # the two half-edges of each edge
    fa, fb = face_of_half[first], face_of_half[second]
    rows, cols = [], []
    for end in (0, 1):
        vert = half[first, end]
        ca = fa * 3 + np.argmax(f[fa] == vert[:, None], axis=1)
        cb = fb * 3 + np.argmax(f[fb] == vert[:, None], axis=1)
        rows.append(ca)
        cols.append(cb)
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    graph = sp.coo_matrix((np.ones(rows.size), (rows, cols)), shape=(3 * n_faces, 3 * n_faces))
    n_fans, _ = connected_components(graph, directed=False)
    return n_fans == np.unique(f).size


def euler_characteristic(faces, n_vertices: int | None = None) -> int:
    """Euler characteristic V - E + F.

    Args:
        faces: (F, 3) integer torch tensor or NumPy array.
        n_vertices: vertex count V; None counts the vertices the faces
            reference (isolated vertices would otherwise add 1 each).
    """
    f = _faces_numpy(faces)
    v = np.unique(f).size if n_vertices is None else int(n_vertices)
    return int(v - unique_edges(f).shape[0] + f.shape[0])


def connected_component_count(faces) -> int:
    """Number of connected components of the mesh (vertices joined by edges)."""
    f = _faces_numpy(faces)
    if f.shape[0] == 0:
        return 0
    used, inv = np.unique(f, return_inverse=True)
    g = inv.reshape(-1, 3)
    e = np.concatenate([g[:, [0, 1]], g[:, [1, 2]]])
    graph = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(used.size, used.size))
    return int(connected_components(graph, directed=False)[0])


def genus(faces) -> int:
    """Total genus of a closed orientable mesh (sum over its components).

    genus = (2 C - chi) / 2 with C components and chi the Euler
    characteristic (0 for a sphere, 1 for a torus).

    Raises:
        ValueError: if ``faces`` is not a closed, consistently oriented manifold.
    """
    if not is_closed_manifold(faces, check_orientation=True):
        raise ValueError("faces: genus needs a closed, consistently oriented manifold mesh")
    chi = euler_characteristic(faces)
    return (2 * connected_component_count(faces) - chi) // 2


# ---------------------------------------------------------------------- NumPy measures
def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Signed volume (cubed vertex units) enclosed by a closed mesh; positive when outward.

    Args:
        vertices: (V, 3) float.
        faces: (F, 3) int.
    """
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def solid_centroid(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Centroid (3,) of the solid enclosed by a closed mesh (divergence theorem)."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    vol6 = np.einsum("ij,ij->i", a, np.cross(b, c))
    total = vol6.sum()
    if abs(total) < 1e-12:
        return v.mean(axis=0)
    return ((a + b + c) * vol6[:, None]).sum(axis=0) / (4.0 * total)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals ``(V, 3)`` of a mesh ``(V, 3)``, ``(F, 3)``."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    a, b, c = (v[f[:, i]] for i in range(3))
    face_normal = np.cross(b - a, c - a)
    normals = np.zeros_like(v)
    for i in range(3):
        np.add.at(normals, f[:, i], face_normal)
    return normals / np.linalg.norm(normals, axis=1, keepdims=True).clip(1e-15)


def largest_component(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The connected component with the most faces, unused vertices dropped (trimesh)."""
    import trimesh

    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    parts = mesh.split(only_watertight=False)
    if len(parts) > 1:
        mesh = max(parts, key=lambda part: len(part.faces))
    mesh.remove_unreferenced_vertices()
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64)
