"""What every template mesh must satisfy: closed, outward, finite, of the expected genus."""

from __future__ import annotations

import numpy as np

from diffam.core.mesh_ops import genus as mesh_genus
from diffam.core.mesh_ops import signed_volume


class TemplateError(ValueError):
    """A template file or template set is malformed or violates a mesh requirement."""


def check_mesh(
    vertices: np.ndarray, faces: np.ndarray, *, genus: int | None = 1, what: str = "mesh"
) -> None:
    """Check that a triangle mesh is a closed, oriented 2-manifold enclosing positive volume.

    Args:
        vertices: (V, 3) float vertex positions.
        faces: (F, 3) int vertex indices.
        genus: Required genus (``None``: do not check genus and connectedness).
        what: Name used in error messages.

    Raises:
        TemplateError: With a message naming the first violated requirement.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    v = np.asarray(vertices)
    f = np.asarray(faces)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) < 4:
        raise TemplateError(f"{what}: vertices must be (V>=4, 3), got {v.shape}")
    if not np.issubdtype(v.dtype, np.floating) or not np.all(np.isfinite(v)):
        raise TemplateError(f"{what}: vertices must be finite floats")
    if f.ndim != 2 or f.shape[1] != 3 or len(f) < 4 or not np.issubdtype(f.dtype, np.integer):
        raise TemplateError(
            f"{what}: faces must be an (F>=4, 3) int array, got {f.shape} {f.dtype}"
        )
    f = f.astype(np.int64)
    if f.min() < 0 or f.max() >= len(v):
        raise TemplateError(f"{what}: face indices out of range [0, {len(v)})")
    if np.any((f[:, 0] == f[:, 1]) | (f[:, 1] == f[:, 2]) | (f[:, 2] == f[:, 0])):
        raise TemplateError(f"{what}: degenerate faces (repeated vertex index)")
    if len(np.unique(f)) != len(v):
        raise TemplateError(
            f"{what}: {len(v) - len(np.unique(f))} vertices are not used by any face"
        )
    nv = len(v)
    he = f[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)  # directed half-edges, 3 per face
    he_key = he[:, 0] * nv + he[:, 1]
    uniq_he, he_count = np.unique(he_key, return_counts=True)
    und = np.sort(he, axis=1)
    und_key = und[:, 0] * nv + und[:, 1]
    _, und_count = np.unique(und_key, return_counts=True)
    if np.any(und_count == 1):
        raise TemplateError(f"{what}: not closed ({int(np.sum(und_count == 1))} boundary edges)")
    if np.any(und_count > 2):
        raise TemplateError(
            f"{what}: non-manifold ({int(np.sum(und_count > 2))} edges shared by >2 faces)"
        )
    if np.any(he_count > 1):
        raise TemplateError(
            f"{what}: inconsistent face orientation ({int(np.sum(he_count > 1))} edges traversed "
            "twice in the same direction)"
        )
    # Vertex manifoldness: the corners around each vertex must form one fan.
    # Corner c = 3*face + i. Half-edge (u->w) of face f and its twin (w->u) of face g
    # link the corner of u in f with the corner of u in g.
    corner_of_tail = np.arange(3 * len(f))  # half-edge k = 3*face + i starts at corner k
    twin_key = he[:, 1] * nv + he[:, 0]
    pos = np.searchsorted(uniq_he, twin_key)
    order = np.argsort(he_key)
    twin = order[pos]  # index of the twin half-edge
    # corner of u in g: twin half-edge (w->u) ends at u, which is corner (i+1)%3 of g
    g = twin // 3
    j = (twin % 3 + 1) % 3
    other = 3 * g + j
    n_c = 3 * len(f)
    adj = coo_matrix((np.ones(n_c), (corner_of_tail, other)), shape=(n_c, n_c))
    n_comp, _ = connected_components(adj, directed=False)
    if n_comp != nv:
        raise TemplateError(
            f"{what}: non-manifold vertices ({n_comp - nv} extra fans meeting at a vertex)"
        )
    vol = signed_volume(v, f)
    if not vol > 0:
        raise TemplateError(
            f"{what}: negative or zero enclosed volume ({vol:.3g} mm^3): faces are oriented inward"
        )
    if genus is not None:
        fa = coo_matrix((np.ones(len(und)), (und[:, 0], und[:, 1])), shape=(nv, nv))
        n_parts, _ = connected_components(fa, directed=False)
        if n_parts != 1:
            raise TemplateError(f"{what}: {n_parts} connected components, expected 1")
        g_ = mesh_genus(f)
        if g_ != genus:
            raise TemplateError(f"{what}: genus {g_}, expected {genus}")
