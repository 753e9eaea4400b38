"""diffsd: differentiable signed distance to triangle meshes, on the CPU and on CUDA.

Public API:
    signed_distance, unsigned_distance, winding_number: the queries.
    MeshBVH: the acceleration structure, to build once and refit per step.
    pack_meshes: concatenate a list of meshes into the packed form.
    SIGN_MODES: the ``sign_mode`` values of signed_distance.
    primitives: analytic test meshes (icosphere, torus, box).
"""

from diffsd import primitives
from diffsd.bvh import MeshBVH
from diffsd.packing import PackedMeshes, pack_meshes
from diffsd.signed_distance import (
    EXACT_WINDING,
    FAST_WINDING,
    SIGN_MODES,
    SignedDistance,
    signed_distance,
    unsigned_distance,
    winding_number,
)

__all__ = [
    "EXACT_WINDING",
    "FAST_WINDING",
    "SIGN_MODES",
    "MeshBVH",
    "PackedMeshes",
    "SignedDistance",
    "pack_meshes",
    "primitives",
    "signed_distance",
    "unsigned_distance",
    "winding_number",
]
