"""diffsd: differentiable signed distance to triangle meshes, on the CPU and on CUDA.

Public API:
    signed_distance, unsigned_distance, winding_number: the queries.
    MeshBVH: the acceleration structure, to build once and refit per step.
    pack_meshes: concatenate a list of meshes into the packed form.
"""

from diffsd.bvh import MeshBVH
from diffsd.packing import PackedMeshes, pack_meshes
from diffsd.signed_distance import (
    SignedDistance,
    signed_distance,
    unsigned_distance,
    winding_number,
)

__all__ = [
    "MeshBVH",
    "PackedMeshes",
    "SignedDistance",
    "pack_meshes",
    "signed_distance",
    "unsigned_distance",
    "winding_number",
]
