"""Checks of user input, with errors that name the argument and the fix."""

from __future__ import annotations

import torch

FLOAT_DTYPES = (torch.float32, torch.float64)
INDEX_DTYPES = (torch.int32, torch.int64)


def check_tensor(name: str, value) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


#: Largest coordinate magnitude accepted for query points: the kernels work
#: in float64, where the solid angle's cubed lengths overflow past ~1e102.
POINT_LIMIT = 1e100
#: Largest vertex coordinate per dtype: the refit forms edge cross products
#: in the vertices' dtype, which overflow float32 past ~1e19.
VERTEX_LIMIT = {torch.float32: 1e18, torch.float64: 1e100}


def check_points(name: str, points, dtype: torch.dtype | None = None,
                 limit: float = POINT_LIMIT) -> torch.Tensor:
    """A float tensor of shape (N, 3) with finite values at most ``limit`` in magnitude."""
    points = check_tensor(name, points)
    if points.dim() != 2 or points.shape[1] != 3:
        raise ValueError(f"{name} must have shape (N, 3), got {tuple(points.shape)}")
    if points.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {points.dtype}")
    if dtype is not None and points.dtype != dtype:
        raise TypeError(
            f"{name} is {points.dtype} but the mesh vertices are {dtype}; convert one of them "
            f"with .to({dtype})"
        )
    if points.numel() and not _all_within(points, limit):
        if not bool(torch.isfinite(points).all()):
            raise ValueError(f"{name} contains NaN or infinite coordinates")
        raise ValueError(
            f"{name} has coordinates up to {float(points.abs().max()):.3g}, beyond the "
            f"{limit:.0e} that {points.dtype} {name} may reach here without overflow; "
            "translate and scale the problem towards the origin")
    return points


def check_vertices(vertices, dtype: torch.dtype | None = None) -> torch.Tensor:
    """:func:`check_points` for mesh vertices, with their dtype's ``VERTEX_LIMIT``."""
    vertices = check_tensor("vertices", vertices)
    return check_points("vertices", vertices, dtype, VERTEX_LIMIT.get(vertices.dtype, POINT_LIMIT))


def _all_within(values: torch.Tensor, limit: float) -> bool:
    if values.device.type == "cpu":
        # One pass without temporaries; torch's isfinite().all() allocates
        # a mask and takes three times as long (10k points).
        from diffsd._cpu_kernels import all_within

        return bool(all_within(values.detach().numpy(), float(limit)))
    return bool((values.abs() <= limit).all())


def check_faces(faces, num_vertices: int) -> torch.Tensor:
    """An integer tensor of shape (F, 3), F > 0, indices in [0, num_vertices)."""
    faces = check_tensor("faces", faces)
    if faces.dim() != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must have shape (F, 3), got {tuple(faces.shape)}")
    if faces.dtype not in INDEX_DTYPES:
        raise TypeError(f"faces must be int32 or int64, got {faces.dtype}")
    if faces.shape[0] == 0:
        raise ValueError("faces is empty: the mesh needs at least one triangle")
    low = int(faces.min())
    high = int(faces.max())
    if low < 0 or high >= num_vertices:
        raise ValueError(
            f"faces index vertices {low}..{high} but there are {num_vertices} vertices "
            f"(valid indices 0..{num_vertices - 1})"
        )
    return faces.to(torch.int64)


def check_mesh_faces_first_idx(first_idx, num_faces: int, device) -> torch.Tensor:
    """(M,) int64: first face of each mesh in the packed faces, strictly increasing from 0."""
    if first_idx is None:
        return torch.zeros(1, dtype=torch.int64, device=device)
    first_idx = check_tensor("mesh_faces_first_idx", first_idx)
    if first_idx.dim() != 1 or first_idx.numel() == 0:
        raise ValueError(
            f"mesh_faces_first_idx must have shape (M,) with M >= 1, got {tuple(first_idx.shape)}"
        )
    if first_idx.dtype not in INDEX_DTYPES:
        raise TypeError(f"mesh_faces_first_idx must be int32 or int64, got {first_idx.dtype}")
    first_idx = first_idx.to(device=device, dtype=torch.int64)
    if int(first_idx[0]) != 0:
        raise ValueError("mesh_faces_first_idx must start at 0")
    ends = torch.cat([first_idx[1:], first_idx.new_tensor([num_faces])])
    if bool((ends <= first_idx).any()):
        raise ValueError(
            "mesh_faces_first_idx must be strictly increasing and below the number of faces: "
            "every mesh needs at least one triangle"
        )
    return first_idx


def check_point_mesh(point_mesh, num_points: int, num_meshes: int, device) -> torch.Tensor:
    """(P,) int64 mesh id per point; may be None for a single mesh."""
    if point_mesh is None:
        if num_meshes != 1:
            raise ValueError(
                f"the BVH holds {num_meshes} meshes: pass point_mesh, the (P,) mesh index of "
                "every point"
            )
        return torch.zeros(0, dtype=torch.int64, device=device)
    point_mesh = check_tensor("point_mesh", point_mesh)
    if point_mesh.shape != (num_points,):
        raise ValueError(
            f"point_mesh must have shape ({num_points},), one mesh index per point, got "
            f"{tuple(point_mesh.shape)}"
        )
    if point_mesh.dtype not in INDEX_DTYPES:
        raise TypeError(f"point_mesh must be int32 or int64, got {point_mesh.dtype}")
    if num_points and (int(point_mesh.min()) < 0 or int(point_mesh.max()) >= num_meshes):
        raise ValueError(f"point_mesh values must lie in 0..{num_meshes - 1}")
    return point_mesh.to(device=device, dtype=torch.int64)
