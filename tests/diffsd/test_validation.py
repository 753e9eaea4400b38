"""Bad input gets a clear error naming the argument."""

from __future__ import annotations

import pytest
import torch

from diffsd import MeshBVH, signed_distance, winding_number
from diffsd.primitives import icosphere

V, F = icosphere(1)
P = torch.zeros(4, 3, dtype=torch.float64)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"vertices": V[:, :2]}, ValueError, r"vertices must have shape \(N, 3\)"),
        ({"vertices": V.long()}, TypeError, "vertices must be float32 or float64"),
        ({"vertices": V.numpy()}, TypeError, "vertices must be a torch.Tensor"),
        ({"faces": F[:, :2]}, ValueError, r"faces must have shape \(F, 3\)"),
        ({"faces": F.double()}, TypeError, "faces must be int32 or int64"),
        ({"faces": F[:0]}, ValueError, "faces is empty"),
        ({"faces": F + 100}, ValueError, "faces index vertices"),
        ({"faces": F - 1}, ValueError, "faces index vertices"),
        ({"points": P[:, :1]}, ValueError, r"points must have shape \(N, 3\)"),
        ({"points": P.float()}, TypeError, "points is torch.float32 but the mesh vertices are"),
        ({"points": torch.full((2, 3), float("nan"), dtype=torch.float64)}, ValueError,
         "points contains NaN"),
        ({"vertices": torch.cat([V[:-1], torch.tensor([[float("inf"), 0, 0]],
                                                        dtype=torch.float64)])},
         ValueError, "vertices contains NaN or infinite"),
        ({"points": torch.zeros(3, 4, dtype=torch.float64).index_fill_(1, torch.tensor([2]),
                                                                       float("-inf")).t()},
         ValueError, "points contains NaN or infinite"),
        ({"vertices": V[:0]}, ValueError, "vertices is empty"),
        ({"backend": "metal"}, ValueError, "backend must be one of"),
        ({"point_mesh": torch.zeros(3, dtype=torch.int64)}, ValueError,
         r"point_mesh must have shape \(4,\)"),
        ({"point_mesh": torch.ones(4, dtype=torch.int64)}, ValueError,
         r"point_mesh values must lie in 0..0"),
        ({"mesh_faces_first_idx": torch.tensor([0, 0])}, ValueError, "strictly increasing"),
        ({"mesh_faces_first_idx": torch.tensor([1])}, ValueError, "must start at 0"),
    ],
)
def test_bad_input_is_named(kwargs, error, match):
    arguments = {"vertices": V, "faces": F, "points": P, **kwargs}
    vertices, faces, points = arguments.pop("vertices"), arguments.pop("faces"), arguments.pop(
        "points")
    with pytest.raises(error, match=match):
        signed_distance(vertices, faces, points, **arguments)


def test_several_meshes_need_point_mesh():
    with pytest.raises(ValueError, match="pass point_mesh"):
        winding_number(V, F, P, mesh_faces_first_idx=torch.tensor([0, 10]))


def test_bvh_for_other_faces_is_refused():
    bvh = MeshBVH(V, F)
    with pytest.raises(ValueError, match="bvh was built for other faces"):
        signed_distance(V, F.flip(1), P, bvh=bvh)
    with pytest.raises(TypeError, match="bvh must be a diffsd.MeshBVH"):
        signed_distance(V, F, P, bvh="tree")


def test_cuda_backend_on_cpu_tensors_without_simulator(monkeypatch):
    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "0")
    with pytest.raises(ValueError, match="NUMBA_ENABLE_CUDASIM"):
        signed_distance(V, F, P, backend="cuda")
