"""Which packed meshes are closed, the condition for exact integer winding
numbers, and the boundary edges of those that are not."""

from __future__ import annotations

import torch


def closed_meshes(faces: torch.Tensor, mesh_faces_first_idx: torch.Tensor,
                  num_vertices: int) -> torch.Tensor:
    """Whether each mesh is closed: every edge used as often in each direction.

    That is the boundary of the mesh's triangles, as a chain, vanishing; it
    holds for any watertight, consistently oriented mesh, also one that
    intersects itself or has several components, and is what makes the
    winding number an integer that changes only across the surface. Edges
    whose two ends are the same vertex are left out (they bound nothing).

    Args:
        faces: (F, 3) int64 vertex indices.
        mesh_faces_first_idx: (M,) first face of each mesh.
        num_vertices: number of vertices V (all faces index below it).

    Returns:
        (M,) bool on the faces' device.

    Raises:
        ValueError: if ``(M + 1) V^2`` overflows the int64 edge keys.
    """
    _, mesh_edge_first = boundary_edges(faces, mesh_faces_first_idx, num_vertices)
    return closed_from_boundary(mesh_edge_first, mesh_faces_first_idx, faces.shape[0])


def closed_from_boundary(mesh_edge_first: torch.Tensor, mesh_faces_first_idx: torch.Tensor,
                         num_faces: int) -> torch.Tensor:
    """(M,) bool: the meshes with faces and no boundary edges (see :func:`boundary_edges`)."""
    counts = torch.diff(torch.cat([mesh_faces_first_idx,
                                   mesh_faces_first_idx.new_tensor([num_faces])]))
    return (torch.diff(mesh_edge_first) == 0) & (counts > 0)


def boundary_edges(faces: torch.Tensor, mesh_faces_first_idx: torch.Tensor,
                   num_vertices: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The boundary of each mesh: its edges used more often in one direction.

    Args:
        faces: (F, 3) int64 vertex indices.
        mesh_faces_first_idx: (M,) first face of each mesh.
        num_vertices: number of vertices V.

    Returns:
        ``edges`` (E, 3) int64 rows (start vertex, end vertex, multiplicity:
        how many more times the edge is used one way than the other),
        grouped by mesh, and ``mesh_edge_first`` (M + 1,): mesh m's edges
        are rows ``mesh_edge_first[m] .. mesh_edge_first[m + 1] - 1`` (none
        for a closed mesh). On the faces' device.

    Raises:
        ValueError: if ``(M + 1) V^2`` overflows the int64 edge keys.
    """
    num_faces = faces.shape[0]
    num_meshes = mesh_faces_first_idx.shape[0]
    if (num_meshes + 1) * num_vertices**2 >= 2**62:
        raise ValueError(
            f"{num_vertices} vertices in {num_meshes} meshes are more than the 64-bit edge keys "
            "hold; split the meshes into several MeshBVH")
    device = faces.device
    counts = torch.diff(torch.cat([mesh_faces_first_idx,
                                   mesh_faces_first_idx.new_tensor([num_faces])]))
    face_mesh = torch.repeat_interleave(torch.arange(num_meshes, device=device), counts)
    start = faces.reshape(-1)
    end = faces[:, [1, 2, 0]].reshape(-1)
    edge_mesh = face_mesh.repeat_interleave(3)
    proper = start != end
    start, end, edge_mesh = start[proper], end[proper], edge_mesh[proper]
    # One int64 key per undirected edge and mesh, +1 when used from its
    # lower vertex, -1 from its higher: a closed mesh sums to zero on each.
    lower = torch.minimum(start, end)
    higher = torch.maximum(start, end)
    keys = (edge_mesh * num_vertices + lower) * num_vertices + higher
    direction = torch.where(start < end, 1, -1)
    keys, order = torch.sort(keys)
    keys, inverse = torch.unique_consecutive(keys, return_inverse=True)
    balance = torch.zeros(keys.shape[0], dtype=torch.int64, device=device)
    balance.scatter_add_(0, inverse, direction[order])
    open_keys = keys[balance != 0]
    balance = balance[balance != 0]
    mesh = open_keys // (num_vertices * num_vertices)
    lower = (open_keys // num_vertices) % num_vertices
    higher = open_keys % num_vertices
    # Keys sort by mesh first, so the rows are grouped by mesh.
    edges = torch.stack([torch.where(balance > 0, lower, higher),
                         torch.where(balance > 0, higher, lower), balance.abs()], 1)
    per_mesh = torch.bincount(mesh, minlength=num_meshes)
    mesh_edge_first = torch.cat([per_mesh.new_zeros(1), torch.cumsum(per_mesh, 0)])
    return edges.contiguous(), mesh_edge_first
