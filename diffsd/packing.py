"""Packing of several meshes into shared vertex and face tensors (PyTorch3D style)."""

from __future__ import annotations

from typing import NamedTuple

import torch


class PackedMeshes(NamedTuple):
    """M meshes concatenated.

    Attributes:
        vertices: (sum V_m, 3) vertices of all meshes.
        faces: (sum F_m, 3) int64 indices into the packed vertices.
        mesh_faces_first_idx: (M,) first face of each mesh.
        mesh_vertices_first_idx: (M,) first vertex of each mesh.
    """

    vertices: torch.Tensor
    faces: torch.Tensor
    mesh_faces_first_idx: torch.Tensor
    mesh_vertices_first_idx: torch.Tensor


def pack_meshes(vertices_list, faces_list) -> PackedMeshes:
    """Concatenate meshes, offsetting each one's face indices by its first vertex.

    Args:
        vertices_list: M tensors of shape (V_m, 3), one dtype and device.
        faces_list: M integer tensors of shape (F_m, 3), indices into their
            own mesh's vertices.
    """
    if len(vertices_list) != len(faces_list) or not vertices_list:
        raise ValueError("pack_meshes needs equally many (>= 1) vertex and face tensors")
    device = vertices_list[0].device
    vertex_counts = torch.tensor([v.shape[0] for v in vertices_list], device=device)
    face_counts = torch.tensor([f.shape[0] for f in faces_list], device=device)
    vertex_first = torch.cumsum(vertex_counts, 0) - vertex_counts
    face_first = torch.cumsum(face_counts, 0) - face_counts
    faces = torch.cat([f.to(device=device, dtype=torch.int64) + int(o)
                       for f, o in zip(faces_list, vertex_first.tolist())])
    return PackedMeshes(torch.cat(list(vertices_list)), faces, face_first, vertex_first)
