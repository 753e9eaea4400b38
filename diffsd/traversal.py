"""Per-point queries and per-node updates over a linear BVH, shared by all targets.

Like :mod:`diffsd.geometry`, these are plain scalar Python functions compiled
for the CPU and for CUDA by :mod:`diffsd._targets`. The kernels around them
only loop over points or nodes.

Tree layout (Karras 2012): for ``n`` leaves there are ``n - 1`` internal
nodes, numbered ``0 .. n-2``; leaf ``k`` is node ``n - 1 + k``. So a node id
``>= num_internal`` is a leaf. ``leaf_vertices[k]`` holds the nine
coordinates of leaf ``k``'s triangle (stored in tree order for locality),
``node_box`` the axis-aligned boxes of all ``2n - 1`` nodes (lo then hi),
``child_frame`` the oriented boxes of both children of each internal node in
one row (see :func:`write_child_frame`), which the traversals read, and
``node_center``/``node_normal``/``node_area``/``node_radius`` the
Barnes--Hut dipole of each node.
"""

import math

from diffsd.geometry import (
    CROSSING_AMBIGUOUS,
    add_half_angle,
    as_float64,
    closest_point_on_triangle,
    corner_half_angle_terms,
    count_leading_zeros_64,
    cross3,
    dipole_solid_angle,
    dot3,
    frame_distance_squared,
    morton_code_30,
    orthonormal_frame,
    quadrupole_solid_angle,
    segment_frame_overlap,
    segment_triangle_crossing,
    triangle_solid_angle,
)

#: Floats per child in a ``child_frame`` row: axes (9), centre (3), half
#: extents (3), padding (1), so that a row of two is two cache lines (float32).
FRAME_SIZE = 16
#: Internal nodes over more triangles than this get an axis-aligned frame:
#: an oriented box's extents are found from all of its triangles' vertices
#: at every refit, and high in the tree boxes are opened anyway.
ORIENTED_MAX_LEAVES = 256


def leaf_distance_squared(px, py, pz, leaf, leaf_vertices):
    """Squared distance from p to leaf's triangle and the closest point's (w0, w1, w2).

    In float64, relative to the triangle's first vertex: the rounding is
    that of the triangle's size and p's distance to it, not of their
    distance from the origin.
    """
    ax = as_float64(leaf_vertices[leaf, 0])
    ay = as_float64(leaf_vertices[leaf, 1])
    az = as_float64(leaf_vertices[leaf, 2])
    bx = as_float64(leaf_vertices[leaf, 3])
    by = as_float64(leaf_vertices[leaf, 4])
    bz = as_float64(leaf_vertices[leaf, 5])
    cx = as_float64(leaf_vertices[leaf, 6])
    cy = as_float64(leaf_vertices[leaf, 7])
    cz = as_float64(leaf_vertices[leaf, 8])
    w0, w1, w2 = closest_point_on_triangle(px, py, pz, ax, ay, az, bx, by, bz, cx, cy, cz)
    dx = (ax - px) + w1 * (bx - ax) + w2 * (cx - ax)
    dy = (ay - py) + w1 * (by - ay) + w2 * (cy - ay)
    dz = (az - pz) + w1 * (bz - az) + w2 * (cz - az)
    return dx * dx + dy * dy + dz * dz, w0, w1, w2


def distance_gradient(px, py, pz, ax, ay, az, bx, by, bz, cx, cy, cz, w1, w2, inside,
                      on_surface_ratio):
    """Unit gradient of the signed distance at p, whose closest point on
    triangle abc has barycentrics (1 - w1 - w2, w1, w2): ``sgn(d) (p - p*) / |p - p*|``.

    ``p - p*`` is formed relative to a, in float64 (the caller converts), so
    its rounding is that of the triangle's size, not of its distance from
    the origin. Within
    ``on_surface_ratio`` times the longest edge of the triangle, where that
    direction is rounding noise, the unit normal is returned instead (the
    limit from either side); a zero-area triangle then gives zero.
    ``inside``: whether the distance is negative.
    """
    e1x = bx - ax
    e1y = by - ay
    e1z = bz - az
    e2x = cx - ax
    e2y = cy - ay
    e2z = cz - az
    dx = (px - ax) - w1 * e1x - w2 * e2x
    dy = (py - ay) - w1 * e1y - w2 * e2y
    dz = (pz - az) - w1 * e1z - w2 * e2z
    length2 = dot3(dx, dy, dz, dx, dy, dz)
    longest2 = max(dot3(e1x, e1y, e1z, e1x, e1y, e1z),
                   max(dot3(e2x, e2y, e2z, e2x, e2y, e2z),
                       dot3(e2x - e1x, e2y - e1y, e2z - e1z, e2x - e1x, e2y - e1y, e2z - e1z)))
    sign = 1.0
    if length2 <= on_surface_ratio * on_surface_ratio * longest2:
        dx, dy, dz = cross3(e1x, e1y, e1z, e2x, e2y, e2z)
        length2 = dot3(dx, dy, dz, dx, dy, dz)
    elif inside:
        sign = -1.0
    scale = 0.0
    if length2 > 0.0:
        scale = sign / math.sqrt(length2)
    return scale * dx, scale * dy, scale * dz


def point_distance_gradient(i, points, barycentric, distance, grad_distance, on_surface_ratio,
                            vertices, faces, face, grad_point):
    """``grad_point[i] = grad_distance[i] *`` :func:`distance_gradient` of point i."""
    a = faces[face[i], 0]
    b = faces[face[i], 1]
    c = faces[face[i], 2]
    gx, gy, gz = distance_gradient(
        as_float64(points[i, 0]), as_float64(points[i, 1]), as_float64(points[i, 2]), as_float64(vertices[a, 0]),
        as_float64(vertices[a, 1]), as_float64(vertices[a, 2]), as_float64(vertices[b, 0]),
        as_float64(vertices[b, 1]), as_float64(vertices[b, 2]), as_float64(vertices[c, 0]),
        as_float64(vertices[c, 1]), as_float64(vertices[c, 2]), as_float64(barycentric[i, 1]),
        as_float64(barycentric[i, 2]), distance[i] < 0.0, on_surface_ratio)
    grad_point[i, 0] = grad_distance[i] * gx
    grad_point[i, 1] = grad_distance[i] * gy
    grad_point[i, 2] = grad_distance[i] * gz


def nearer_leaf(px, py, pz, leaf, leaf_vertices, best, best_leaf, best_w0, best_w1, best_w2):
    """The best answer so far, or leaf's triangle if it is nearer to p.

    At exactly the same distance the lower leaf wins (a deterministic
    tie-break).
    """
    d2, w0, w1, w2 = leaf_distance_squared(px, py, pz, leaf, leaf_vertices)
    if d2 < best or (d2 == best and leaf < best_leaf):
        return d2, leaf, w0, w1, w2
    return best, best_leaf, best_w0, best_w1, best_w2


def rounding_margin(px, py, pz, mesh_magnitude, relative_margin):
    """Rounding allowance (world units) of the box distances and projections at p.

    They are accurate to a few ulps of the larger of p's largest coordinate
    and the mesh's (``mesh_magnitude``); ``relative_margin`` is that many
    ulps of the tree's dtype. Per point, so that one far point does not
    loosen the pruning of all the others.
    """
    return relative_margin * max(mesh_magnitude, max(abs(px), max(abs(py), abs(pz))))


def first_leaf_below(node, num_internal, child_left):
    """The leftmost leaf below ``node`` (a leaf id, not a node id)."""
    while node < num_internal:
        node = child_left[node]
    return node - num_internal


def closest_leaf_query(px, py, pz, qx, qy, qz, root, num_internal, child_left, child_right,
                       child_frame, leaf_vertices, margin, hint_leaf, stack_node, stack_distance):
    """Nearest triangle to p below ``root``: (squared distance, leaf, w0, w1, w2).

    Depth-first, nearer child first, pruning every node whose oriented box
    (``child_frame``, both children of a node in one row) is farther than
    the best triangle so far; a leaf's box is flat in its triangle's plane,
    so few triangles need their closest point. A node waiting on the stack
    keeps its box distance, so a pop reads none. Among triangles at exactly
    the same distance (p on a shared edge or vertex) the lowest leaf wins,
    so the answer is the same whatever the search order. ``hint_leaf`` (or
    -1 for none) is a leaf below ``root`` likely to be near p, such as the
    answer for the previous of a run of nearby points: its triangle bounds
    the search from the start, so fewer nodes are opened; the answer does
    not depend on it.

    p is given twice: ``(px, py, pz)`` in float64, for the triangles'
    closest points, and ``(qx, qy, qz)``, the same point in the tree's
    dtype (the query points' own) or in float64, for the box distances,
    which are evaluated in the type of q and ``margin``: float32 for a
    float32 tree is faster on the CPU than converting every frame entry to
    float64 (see :func:`diffsd.geometry.frame_distance_squared`; callers
    pass q in float64 beyond ``BOX_FLOAT32_LIMIT``). ``margin``: the
    rounding allowance of the box distances (see
    :func:`rounding_margin`); in float32 the evaluation adds under 10 ulps
    of the larger of p's and the mesh's largest coordinate to the frames'
    own rounding, within the allowance's 64. ``stack_node`` and
    ``stack_distance`` are scratch space of ``TRAVERSAL_STACK_SIZE``
    entries.
    """
    if hint_leaf < 0:
        hint_leaf = first_leaf_below(root, num_internal, child_left)
    best, best_w0, best_w1, best_w2 = leaf_distance_squared(px, py, pz, hint_leaf, leaf_vertices)
    best_leaf = hint_leaf
    if root >= num_internal:
        return best, best_leaf, best_w0, best_w1, best_w2
    node = root
    top = 0
    while True:
        near = child_left[node]
        far = child_right[node]
        d_near = frame_distance_squared(qx, qy, qz, child_frame, node, 0, margin)
        d_far = frame_distance_squared(qx, qy, qz, child_frame, node, FRAME_SIZE, margin)
        if d_far < d_near:
            swap = near
            near = far
            far = swap
            d_swap = d_near
            d_near = d_far
            d_far = d_swap
        next_node = -1
        if d_near <= best:
            if near >= num_internal:
                best, best_leaf, best_w0, best_w1, best_w2 = nearer_leaf(
                    px, py, pz, near - num_internal, leaf_vertices, best, best_leaf, best_w0,
                    best_w1, best_w2)
            else:
                next_node = near
            if d_far <= best:
                if far >= num_internal:
                    best, best_leaf, best_w0, best_w1, best_w2 = nearer_leaf(
                        px, py, pz, far - num_internal, leaf_vertices, best, best_leaf, best_w0,
                        best_w1, best_w2)
                elif next_node < 0:
                    next_node = far
                else:
                    stack_node[top] = far
                    stack_distance[top] = d_far
                    top += 1
        if next_node >= 0:
            node = next_node
            continue
        # Pop the next node that can still hold a nearer triangle.
        while top > 0:
            top -= 1
            if stack_distance[top] <= best:
                next_node = stack_node[top]
                break
        if next_node < 0:
            break
        node = next_node
    return best, best_leaf, best_w0, best_w1, best_w2


def winding_number_query(px, py, pz, root, num_internal, child_left, child_right, leaf_vertices,
                         node_center, node_normal, node_moment, node_radius, beta, stack):
    """Generalised winding number at p of the triangles below ``root``.

    Barnes--Hut: a node whose dipole centre is farther than ``beta`` times
    its radius contributes its far-field expansion to second order (dipole
    plus the first-moment term of Barill et al. 2018); nearer nodes are
    opened and leaves contribute their exact solid angle. ``beta = inf``
    opens every node: the exact sum over all triangles.
    """
    total = 0.0
    node = root
    top = 0
    beta2 = beta * beta
    while True:
        if node >= num_internal:
            leaf = node - num_internal
            total += triangle_solid_angle(
                px, py, pz,
                leaf_vertices[leaf, 0], leaf_vertices[leaf, 1], leaf_vertices[leaf, 2],
                leaf_vertices[leaf, 3], leaf_vertices[leaf, 4], leaf_vertices[leaf, 5],
                leaf_vertices[leaf, 6], leaf_vertices[leaf, 7], leaf_vertices[leaf, 8])
        else:
            cx = node_center[node, 0]
            cy = node_center[node, 1]
            cz = node_center[node, 2]
            dx = cx - px
            dy = cy - py
            dz = cz - pz
            r = node_radius[node]
            if dx * dx + dy * dy + dz * dz > beta2 * r * r:
                total += dipole_solid_angle(
                    px, py, pz, cx, cy, cz,
                    node_normal[node, 0], node_normal[node, 1], node_normal[node, 2])
                total += quadrupole_solid_angle(
                    px, py, pz, cx, cy, cz,
                    node_moment[node, 0], node_moment[node, 1], node_moment[node, 2],
                    node_moment[node, 3], node_moment[node, 4], node_moment[node, 5],
                    node_moment[node, 6], node_moment[node, 7], node_moment[node, 8])
            else:
                stack[top] = child_right[node]
                top += 1
                node = child_left[node]
                continue
        if top == 0:
            break
        top -= 1
        node = stack[top]
    return total / (4.0 * math.pi)


#: The Barnes--Hut winding number (second order, opening ratio 2) is off by
#: up to ~0.05 on open test meshes (next to the surface), ~0.03 where the
#: exact value is near 1/2; where it decides the sign of an open mesh's
#: distance and falls within ``SIGN_REFINE_BAND`` of 1/2 it is taken again
#: with ``SIGN_REFINE_BETA_FACTOR`` times the opening ratio (errors shrink
#: as its cube), and exactly if it is still within ``SIGN_EXACT_BAND``.
SIGN_REFINE_BAND = 0.1
SIGN_REFINE_BETA_FACTOR = 4.0
SIGN_EXACT_BAND = 0.01


def sign_winding_number_query(px, py, pz, root, num_internal, child_left, child_right,
                              leaf_vertices, node_center, node_normal, node_moment, node_radius,
                              beta, stack):
    """:func:`winding_number_query` that decides the side of 1/2 as the exact sum would.

    Near 1/2 (see ``SIGN_REFINE_BAND``) the Barnes--Hut sum is refined, so
    its approximation does not flip the sign of an open mesh's distance;
    elsewhere it is the plain Barnes--Hut value.
    """
    winding = winding_number_query(px, py, pz, root, num_internal, child_left, child_right,
                                   leaf_vertices, node_center, node_normal, node_moment,
                                   node_radius, beta, stack)
    if beta < math.inf and abs(winding - 0.5) < SIGN_REFINE_BAND:
        winding = winding_number_query(px, py, pz, root, num_internal, child_left, child_right,
                                       leaf_vertices, node_center, node_normal, node_moment,
                                       node_radius, SIGN_REFINE_BETA_FACTOR * beta, stack)
        if abs(winding - 0.5) < SIGN_EXACT_BAND:
            winding = winding_number_query(px, py, pz, root, num_internal, child_left,
                                           child_right, leaf_vertices, node_center, node_normal,
                                           node_moment, node_radius, math.inf, stack)
    return winding


def leaf_crossing(ax, ay, az, bx, by, bz, leaf, leaf_vertices):
    """:func:`segment_triangle_crossing` of the segment a->b with leaf's triangle."""
    return segment_triangle_crossing(
        ax, ay, az, bx, by, bz,
        leaf_vertices[leaf, 0], leaf_vertices[leaf, 1], leaf_vertices[leaf, 2],
        leaf_vertices[leaf, 3], leaf_vertices[leaf, 4], leaf_vertices[leaf, 5],
        leaf_vertices[leaf, 6], leaf_vertices[leaf, 7], leaf_vertices[leaf, 8])


def segment_winding_change(ax, ay, az, bx, by, bz, root, num_internal, child_left, child_right,
                           child_frame, leaf_vertices, margin, stack):
    """Change of the winding number from a to b across the triangles below ``root``.

    For a closed mesh (every edge used as often in each direction), the
    winding number is an integer, constant off the surface, and drops by one
    where a path crosses a triangle along its normal: so
    ``w(b) = w(a) + change``, exactly. Returns ``(change, ok)``; ``ok`` is
    False when a crossing is ambiguous (the segment grazes an edge, a vertex
    or ends on a triangle's plane), and the caller must use another method.
    """
    change = 0
    if root >= num_internal:
        crossing = leaf_crossing(ax, ay, az, bx, by, bz, root - num_internal, leaf_vertices)
        if crossing == CROSSING_AMBIGUOUS:
            return 0, False
        return -crossing, True
    node = root
    top = 0
    while True:
        for side in range(2):
            child = child_left[node]
            if side == 1:
                child = child_right[node]
            if segment_frame_overlap(ax, ay, az, bx, by, bz, child_frame, node, side * FRAME_SIZE,
                                     margin):
                if child >= num_internal:
                    crossing = leaf_crossing(ax, ay, az, bx, by, bz, child - num_internal,
                                             leaf_vertices)
                    if crossing == CROSSING_AMBIGUOUS:
                        return 0, False
                    change -= crossing
                else:
                    stack[top] = child
                    top += 1
        if top == 0:
            break
        top -= 1
        node = stack[top]
    return change, True


#: Floats per row of ``cap_group`` and ``cap_piece``: the centre of a part of
#: an open mesh's cap (3), the radius of the ball about it that holds the
#: part (1), the part's summed area-weighted normal (3) and its first
#: moment about the centre (9, see :func:`quadrupole_solid_angle`).
CAP_ROW_SIZE = 16
#: Floats per row of ``cap_edge``: a boundary edge's start and end (3 + 3)
#: and its multiplicity (1).
CAP_EDGE_SIZE = 7


def add_triangle_moments(row, cap, ox, oy, oz, ax, ay, az, bx, by, bz, cx, cy, cz, weight):
    """Add ``weight`` times triangle abc's area-weighted normal and its first
    moment about o to ``cap[row]`` (columns 4 .. 15). In float64."""
    ux = bx - ax
    uy = by - ay
    uz = bz - az
    vx = cx - ax
    vy = cy - ay
    vz = cz - az
    nx, ny, nz = cross3(ux, uy, uz, vx, vy, vz)
    nx *= 0.5 * weight
    ny *= 0.5 * weight
    nz *= 0.5 * weight
    cap[row, 4] += nx
    cap[row, 5] += ny
    cap[row, 6] += nz
    mx = (ax + bx + cx) / 3.0 - ox
    my = (ay + by + cy) / 3.0 - oy
    mz = (az + bz + cz) / 3.0 - oz
    cap[row, 7] += mx * nx
    cap[row, 8] += mx * ny
    cap[row, 9] += mx * nz
    cap[row, 10] += my * nx
    cap[row, 11] += my * ny
    cap[row, 12] += my * nz
    cap[row, 13] += mz * nx
    cap[row, 14] += mz * ny
    cap[row, 15] += mz * nz


def refit_cap_piece(piece, vertices, boundary_edge, piece_first_edge, cap_edge, cap_piece):
    """One piece of an open mesh's cap: its edges' ``cap_edge`` rows and its ``cap_piece`` row.

    An open mesh S with boundary curve G is closed by a cap C with boundary
    -G. Winding numbers add over triangles, so ``w_S = N - w_C``, where
    ``N``, the winding number of the closed S + C, is an integer that
    changes only where a path crosses S or C. The boundary is cut into
    pieces, chains s -> t of consecutive edges (rows ``piece_first_edge[piece]
    .. piece_first_edge[piece + 1] - 1`` of ``boundary_edge``: start vertex,
    end vertex, multiplicity, the same along a piece); a piece's part of C
    is the fan of triangles (s, end, start) over its edges, whose boundary
    is the chain reversed plus the chord s -> t (see
    :func:`refit_cap_group` for the rest). Centre: the mean of the edges'
    ends. In float64.
    """
    first = piece_first_edge[piece]
    last = piece_first_edge[piece + 1]
    for e in range(first, last):
        for end in range(2):
            v = boundary_edge[e, end]
            for axis in range(3):
                cap_edge[e, 3 * end + axis] = as_float64(vertices[v, axis])
        cap_edge[e, 6] = as_float64(boundary_edge[e, 2])
    fan_edges_moments(piece, first, last, cap_edge, cap_piece, cap_edge[first, 0],
                      cap_edge[first, 1], cap_edge[first, 2], 1)


def farthest_edge_end_squared(cap_edge, first, last, ox, oy, oz, radius2):
    """The larger of ``radius2`` and the squared distance from o to the
    farthest end of edges ``first .. last - 1``."""
    for e in range(first, last):
        for end in range(2):
            dx = cap_edge[e, 3 * end] - ox
            dy = cap_edge[e, 3 * end + 1] - oy
            dz = cap_edge[e, 3 * end + 2] - oz
            radius2 = max(radius2, dot3(dx, dy, dz, dx, dy, dz))
    return radius2


def fan_edges_moments(row, first, last, cap_edge, cap, sx, sy, sz, skip):
    """Centre, radius, normal and moment of the fan from s over edges
    ``first + skip .. last - 1`` (and s itself) into ``cap[row]``."""
    ox = sx
    oy = sy
    oz = sz
    count = 1.0
    for e in range(first, last):
        ox += cap_edge[e, 0] + cap_edge[e, 3]
        oy += cap_edge[e, 1] + cap_edge[e, 4]
        oz += cap_edge[e, 2] + cap_edge[e, 5]
        count += 2.0
    ox /= count
    oy /= count
    oz /= count
    radius2 = dot3(sx - ox, sy - oy, sz - oz, sx - ox, sy - oy, sz - oz)
    for k in range(3, CAP_ROW_SIZE):
        cap[row, k] = 0.0
    radius2 = farthest_edge_end_squared(cap_edge, first, last, ox, oy, oz, radius2)
    for e in range(first + skip, last):
        add_triangle_moments(row, cap, ox, oy, oz, sx, sy, sz, cap_edge[e, 3],
                             cap_edge[e, 4], cap_edge[e, 5], cap_edge[e, 0], cap_edge[e, 1],
                             cap_edge[e, 2], cap_edge[e, 6])
    cap[row, 0] = ox
    cap[row, 1] = oy
    cap[row, 2] = oz
    # Rounded up a little: a segment that misses the ball misses the part.
    cap[row, 3] = math.sqrt(radius2) * (1.0 + 1e-9)


def refit_cap_group(group, group_first_piece, piece_first_edge, cap_edge, cap_piece, cap_group):
    """The ``cap_group`` row of one group of pieces (after :func:`refit_cap_piece`).

    A group's pieces form a closed chain (their chords s -> t, weighted by
    the multiplicity, enter each vertex as often as they leave it), closed
    by the fan of chord triangles (o, t, s) from the group's centre o: with
    the pieces' fans, a cap whose boundary is the group's edges reversed.
    The row holds the whole cap of the group: centre o, the smallest ball
    about o that holds it (every corner of its triangles is o or a vertex
    of the group's edges; a tighter ball than one about the pieces' balls,
    so fewer points open the group), and the normal and moment of all its
    triangles.
    """
    first = group_first_piece[group]
    last = group_first_piece[group + 1]
    ox = 0.0
    oy = 0.0
    oz = 0.0
    for piece in range(first, last):
        e = piece_first_edge[piece]
        ox += cap_edge[e, 0]
        oy += cap_edge[e, 1]
        oz += cap_edge[e, 2]
    ox /= last - first
    oy /= last - first
    oz /= last - first
    radius2 = farthest_edge_end_squared(cap_edge, piece_first_edge[first],
                                        piece_first_edge[last], ox, oy, oz, 0.0)
    for k in range(3, CAP_ROW_SIZE):
        cap_group[group, k] = 0.0
    for piece in range(first, last):
        for axis in range(3):
            cap_group[group, 4 + axis] += cap_piece[piece, 4 + axis]
        for i in range(3):
            shift = cap_piece[piece, i] - (ox, oy, oz)[i]
            for j in range(3):
                cap_group[group, 7 + 3 * i + j] += (cap_piece[piece, 7 + 3 * i + j]
                                                    + shift * cap_piece[piece, 4 + j])
        s = piece_first_edge[piece]
        t = piece_first_edge[piece + 1] - 1
        add_triangle_moments(group, cap_group, ox, oy, oz, ox, oy, oz, cap_edge[t, 3],
                             cap_edge[t, 4], cap_edge[t, 5], cap_edge[s, 0], cap_edge[s, 1],
                             cap_edge[s, 2], cap_edge[s, 6])
    cap_group[group, 0] = ox
    cap_group[group, 1] = oy
    cap_group[group, 2] = oz
    cap_group[group, 3] = math.sqrt(radius2) * (1.0 + 1e-9)


def far_field_solid_angle(px, py, pz, row, cap):
    """Dipole plus first-moment solid angle of ``cap[row]`` seen from p."""
    ox = cap[row, 0]
    oy = cap[row, 1]
    oz = cap[row, 2]
    return (dipole_solid_angle(px, py, pz, ox, oy, oz, cap[row, 4], cap[row, 5], cap[row, 6])
            + quadrupole_solid_angle(px, py, pz, ox, oy, oz, cap[row, 7], cap[row, 8],
                                     cap[row, 9], cap[row, 10], cap[row, 11], cap[row, 12],
                                     cap[row, 13], cap[row, 14], cap[row, 15]))


def is_far(px, py, pz, row, cap, beta2):
    """Whether p is farther from ``cap[row]``'s centre than beta times its radius."""
    dx = cap[row, 0] - px
    dy = cap[row, 1] - py
    dz = cap[row, 2] - pz
    return dot3(dx, dy, dz, dx, dy, dz) > beta2 * cap[row, 3] * cap[row, 3]


def relative_corner(px, py, pz, array, row, offset):
    """``array[row, offset:offset + 3] - p`` and its length."""
    x = array[row, offset] - px
    y = array[row, offset + 1] - py
    z = array[row, offset + 2] - pz
    return x, y, z, math.sqrt(x * x + y * y + z * z)


def add_corner_half_angle(tangent, angle, solid, weight, x0, y0, z0, l0, x1, y1, z1, l1,
                          x2, y2, z2, l2):
    """Add ``weight`` times the solid angle of a triangle (corners relative to
    p and their lengths) to a cap's running sums ``(tangent, angle, solid)``:
    of unit weight (the usual multiplicity) to the half-angle sum of
    :func:`diffsd.geometry.add_half_angle`, otherwise to ``solid`` (steradians)."""
    det, denominator = corner_half_angle_terms(x0, y0, z0, l0, x1, y1, z1, l1, x2, y2, z2, l2)
    if weight == 1.0:
        tangent, angle = add_half_angle(tangent, angle, det, denominator)
    else:
        solid += 2.0 * weight * math.atan2(det, denominator)
    return tangent, angle, solid


def cap_winding_number(px, py, pz, first_group, last_group, group_first_piece,
                       piece_first_edge, cap_edge, cap_piece, cap_group, beta):
    """Winding number at p of the caps of groups ``first_group .. last_group - 1``.

    Barnes--Hut over two levels: a group (or, in a nearer group, a piece)
    whose centre is farther than ``beta`` times its radius contributes its
    far-field expansion (as :func:`winding_number_query`); the chord
    triangles of a near group and the triangles of a near piece their exact
    solid angles, summed by the tangent addition formula (see
    :func:`diffsd.geometry.add_half_angle`), so that a near group costs
    divisions rather than an atan2 per triangle. Consecutive pieces of a
    loop share a corner (one's end is the next one's start), whose vector
    from p is reused. ``beta = inf``: exact.
    """
    solid = 0.0
    tangent = 0.0
    angle = 0.0
    beta2 = beta * beta
    for g in range(first_group, last_group):
        if is_far(px, py, pz, g, cap_group, beta2):
            solid += far_field_solid_angle(px, py, pz, g, cap_group)
            continue
        ox, oy, oz, o_length = relative_corner(px, py, pz, cap_group, g, 0)
        end_row = -1
        tx = ty = tz = t_length = 0.0
        for piece in range(group_first_piece[g], group_first_piece[g + 1]):
            first = piece_first_edge[piece]
            last = piece_first_edge[piece + 1]
            if (end_row >= 0 and cap_edge[first, 0] == cap_edge[end_row, 3]
                    and cap_edge[first, 1] == cap_edge[end_row, 4]
                    and cap_edge[first, 2] == cap_edge[end_row, 5]):
                sx, sy, sz, s_length = tx, ty, tz, t_length
            else:
                sx, sy, sz, s_length = relative_corner(px, py, pz, cap_edge, first, 0)
            end_row = last - 1
            tx, ty, tz, t_length = relative_corner(px, py, pz, cap_edge, end_row, 3)
            tangent, angle, solid = add_corner_half_angle(
                tangent, angle, solid, cap_edge[first, 6], ox, oy, oz, o_length, tx, ty, tz,
                t_length, sx, sy, sz, s_length)
            if is_far(px, py, pz, piece, cap_piece, beta2):
                solid += far_field_solid_angle(px, py, pz, piece, cap_piece)
                continue
            # A piece is a chain: each edge starts where the previous ended.
            ax, ay, az, a_length = relative_corner(px, py, pz, cap_edge, first, 3)
            for e in range(first + 1, last):
                if e == end_row:
                    bx, by, bz, b_length = tx, ty, tz, t_length
                else:
                    bx, by, bz, b_length = relative_corner(px, py, pz, cap_edge, e, 3)
                tangent, angle, solid = add_corner_half_angle(
                    tangent, angle, solid, cap_edge[e, 6], sx, sy, sz, s_length, bx, by, bz,
                    b_length, ax, ay, az, a_length)
                ax = bx
                ay = by
                az = bz
                a_length = b_length
    return (solid + 2.0 * (angle + math.atan(tangent))) / (4.0 * math.pi)


def segment_meets_ball(ax, ay, az, sx, sy, sz, length2, row, cap):
    """Whether the segment a -> a + s comes within ``cap[row]``'s radius of its centre."""
    ox = cap[row, 0] - ax
    oy = cap[row, 1] - ay
    oz = cap[row, 2] - az
    t = 0.0
    if length2 > 0.0:
        t = min(1.0, max(0.0, dot3(ox, oy, oz, sx, sy, sz) / length2))
    dx = ox - t * sx
    dy = oy - t * sy
    dz = oz - t * sz
    return dot3(dx, dy, dz, dx, dy, dz) <= cap[row, 3] * cap[row, 3]


def cap_winding_change(ax, ay, az, bx, by, bz, first_group, last_group, group_first_piece,
                       piece_first_edge, cap_edge, cap_piece, cap_group):
    """Change of the caps' winding number from a to b at their crossings:
    ``(change, ok)`` as :func:`segment_winding_change` (only the triangles
    of groups and pieces whose balls the segment meets are tested)."""
    change = 0
    sx = bx - ax
    sy = by - ay
    sz = bz - az
    length2 = dot3(sx, sy, sz, sx, sy, sz)
    for g in range(first_group, last_group):
        if not segment_meets_ball(ax, ay, az, sx, sy, sz, length2, g, cap_group):
            continue
        for piece in range(group_first_piece[g], group_first_piece[g + 1]):
            first = piece_first_edge[piece]
            last = piece_first_edge[piece + 1]
            crossing = segment_triangle_crossing(
                ax, ay, az, bx, by, bz, cap_group[g, 0], cap_group[g, 1], cap_group[g, 2],
                cap_edge[last - 1, 3], cap_edge[last - 1, 4], cap_edge[last - 1, 5],
                cap_edge[first, 0], cap_edge[first, 1], cap_edge[first, 2])
            if crossing == CROSSING_AMBIGUOUS:
                return 0, False
            change -= int(cap_edge[first, 6]) * crossing
            if not segment_meets_ball(ax, ay, az, sx, sy, sz, length2, piece, cap_piece):
                continue
            for e in range(first + 1, last):
                crossing = segment_triangle_crossing(
                    ax, ay, az, bx, by, bz, cap_edge[first, 0], cap_edge[first, 1],
                    cap_edge[first, 2], cap_edge[e, 3], cap_edge[e, 4], cap_edge[e, 5],
                    cap_edge[e, 0], cap_edge[e, 1], cap_edge[e, 2])
                if crossing == CROSSING_AMBIGUOUS:
                    return 0, False
                change -= int(cap_edge[e, 6]) * crossing
    return change, True


def face_sort_key(face, vertices, faces, face_mesh, mesh_lo, mesh_inverse_extent):
    """Sort key of a face for the Morton-code build (one per face, both targets).

    The face's mesh above the 30-bit Morton code of its centroid, taken
    relative to its mesh's centroid box (``mesh_lo`` and the inverse of its
    extent, (M, 3) each), so that each mesh's faces sort together.
    """
    m = face_mesh[face]
    a = faces[face, 0]
    b = faces[face, 1]
    c = faces[face, 2]
    x = ((vertices[a, 0] + vertices[b, 0] + vertices[c, 0]) / 3.0 - mesh_lo[m, 0]) * mesh_inverse_extent[m, 0]
    y = ((vertices[a, 1] + vertices[b, 1] + vertices[c, 1]) / 3.0 - mesh_lo[m, 1]) * mesh_inverse_extent[m, 1]
    z = ((vertices[a, 2] + vertices[b, 2] + vertices[c, 2]) / 3.0 - mesh_lo[m, 2]) * mesh_inverse_extent[m, 2]
    return (m << 30) | morton_code_30(x, y, z)


def key_prefix_length(keys, i, j, n):
    """Karras's delta: common leading bits of keys i and j, -1 outside [0, n).

    Equal keys are told apart by their indices, so every key is distinct.
    """
    if j < 0 or j >= n:
        return -1
    a = keys[i]
    b = keys[j]
    if a == b:
        return 64 + count_leading_zeros_64(i ^ j)
    return count_leading_zeros_64(a ^ b)


def build_internal_node(i, keys, n, child_left, child_right, parent, range_first, range_last):
    """Children, parent links and leaf range of internal node i (Karras 2012, Fig. 4)."""
    d = 1
    if key_prefix_length(keys, i, i + 1, n) < key_prefix_length(keys, i, i - 1, n):
        d = -1
    delta_min = key_prefix_length(keys, i, i - d, n)
    length_max = 2
    while key_prefix_length(keys, i, i + length_max * d, n) > delta_min:
        length_max *= 2
    length = 0
    step = length_max // 2
    while step >= 1:
        if key_prefix_length(keys, i, i + (length + step) * d, n) > delta_min:
            length += step
        step = step // 2
    j = i + length * d
    delta_node = key_prefix_length(keys, i, j, n)
    split = 0
    divisor = 2
    step = (length + divisor - 1) // divisor
    while True:
        if key_prefix_length(keys, i, i + (split + step) * d, n) > delta_node:
            split += step
        if step <= 1:
            break
        divisor *= 2
        step = (length + divisor - 1) // divisor
    gamma = i + split * d + min(d, 0)
    first = min(i, j)
    last = max(i, j)
    num_internal = n - 1
    left = gamma
    if first == gamma:
        left = num_internal + gamma
    right = gamma + 1
    if last == gamma + 1:
        right = num_internal + gamma + 1
    link_node(i, left, right, first, last, child_left, child_right, parent, range_first,
              range_last)


def link_node(node, left, right, first, last, child_left, child_right, parent, range_first,
              range_last):
    """Record internal node's children, their parent links and its leaf range first..last."""
    child_left[node] = left
    child_right[node] = right
    parent[left] = node
    parent[right] = node
    range_first[node] = first
    range_last[node] = last


def refit_leaf(leaf, num_internal, vertices, faces, leaf_face, leaf_vertices, node_box,
               node_center, node_normal, node_moment, node_area, node_radius):
    """Copy leaf's triangle into tree order; set its box and its dipole."""
    face = leaf_face[leaf]
    node = num_internal + leaf
    ia = faces[face, 0]
    ib = faces[face, 1]
    ic = faces[face, 2]
    for axis in range(3):
        a = vertices[ia, axis]
        b = vertices[ib, axis]
        c = vertices[ic, axis]
        leaf_vertices[leaf, axis] = a
        leaf_vertices[leaf, 3 + axis] = b
        leaf_vertices[leaf, 6 + axis] = c
        node_box[node, axis] = min(a, min(b, c))
        node_box[node, 3 + axis] = max(a, max(b, c))
        node_center[node, axis] = (a + b + c) / 3.0
    e1x = vertices[ib, 0] - vertices[ia, 0]
    e1y = vertices[ib, 1] - vertices[ia, 1]
    e1z = vertices[ib, 2] - vertices[ia, 2]
    e2x = vertices[ic, 0] - vertices[ia, 0]
    e2y = vertices[ic, 1] - vertices[ia, 1]
    e2z = vertices[ic, 2] - vertices[ia, 2]
    nx = 0.5 * (e1y * e2z - e1z * e2y)
    ny = 0.5 * (e1z * e2x - e1x * e2z)
    nz = 0.5 * (e1x * e2y - e1y * e2x)
    node_normal[node, 0] = nx
    node_normal[node, 1] = ny
    node_normal[node, 2] = nz
    node_area[node] = math.sqrt(nx * nx + ny * ny + nz * nz)
    node_radius[node] = 0.0
    for k in range(9):
        node_moment[node, k] = 0.0


def write_frame(child_frame, row, offset, nx, ny, nz, ux, uy, uz, vx, vy, vz, lo_n, lo_u, lo_v,
                hi_n, hi_u, hi_v):
    """Store axes (n, u, v) and the extents [lo, hi] along them in centre/half form."""
    child_frame[row, offset + 0] = nx
    child_frame[row, offset + 1] = ny
    child_frame[row, offset + 2] = nz
    child_frame[row, offset + 3] = ux
    child_frame[row, offset + 4] = uy
    child_frame[row, offset + 5] = uz
    child_frame[row, offset + 6] = vx
    child_frame[row, offset + 7] = vy
    child_frame[row, offset + 8] = vz
    child_frame[row, offset + 9] = 0.5 * (lo_n + hi_n)
    child_frame[row, offset + 10] = 0.5 * (lo_u + hi_u)
    child_frame[row, offset + 11] = 0.5 * (lo_v + hi_v)
    child_frame[row, offset + 12] = 0.5 * (hi_n - lo_n)
    child_frame[row, offset + 13] = 0.5 * (hi_u - lo_u)
    child_frame[row, offset + 14] = 0.5 * (hi_v - lo_v)
    child_frame[row, offset + 15] = 0.0


def project_extents(nx, ny, nz, ux, uy, uz, vx, vy, vz, x, y, z, lo_n, lo_u, lo_v, hi_n, hi_u,
                    hi_v):
    """The extents ``(lo_n, lo_u, lo_v, hi_n, hi_u, hi_v)`` along the axes (n, u, v)
    widened to hold the point (x, y, z)."""
    t_n = dot3(nx, ny, nz, x, y, z)
    t_u = dot3(ux, uy, uz, x, y, z)
    t_v = dot3(vx, vy, vz, x, y, z)
    return (min(lo_n, t_n), min(lo_u, t_u), min(lo_v, t_v), max(hi_n, t_n), max(hi_u, t_u),
            max(hi_v, t_v))


def write_child_frame(child, num_internal, child_left, child_right, vertices,
                      frame_vertex_first, frame_vertex, leaf_vertices, node_box, node_center,
                      node_normal, node_area, child_frame, row, offset):
    """Oriented box of ``child`` into ``child_frame[row, offset:offset + FRAME_SIZE]``.

    Its first axis is the node's mean normal, so the box is thin where the
    surface is flat (for a leaf: flat in its triangle's plane), and its
    second the direction between its children's centres (for a leaf: its
    longest edge), along which the node is longest. Extents are exact,
    from every vertex below: for an internal node, the distinct vertices of
    its triangles, ``frame_vertex[frame_vertex_first[child]:
    frame_vertex_first[child + 1]]`` (about a third of their corners; see
    :func:`diffsd._cpu_kernels.frame_vertex_lists`), read from ``vertices``.
    Nodes whose normals do not agree (the mean's length under half the
    area) or over more than ``ORIENTED_MAX_LEAVES`` triangles (no list) get
    the coordinate axes and their box instead.
    """
    ok = False
    ux = uy = uz = vx = vy = vz = 0.0
    if child >= num_internal:
        first = child - num_internal
        last = first
        ax = leaf_vertices[first, 0]
        ay = leaf_vertices[first, 1]
        az = leaf_vertices[first, 2]
        abx = leaf_vertices[first, 3] - ax
        aby = leaf_vertices[first, 4] - ay
        abz = leaf_vertices[first, 5] - az
        acx = leaf_vertices[first, 6] - ax
        acy = leaf_vertices[first, 7] - ay
        acz = leaf_vertices[first, 8] - az
        nx, ny, nz = cross3(abx, aby, abz, acx, acy, acz)
        bcx = acx - abx
        bcy = acy - aby
        bcz = acz - abz
        ab2 = dot3(abx, aby, abz, abx, aby, abz)
        ac2 = dot3(acx, acy, acz, acx, acy, acz)
        bc2 = dot3(bcx, bcy, bcz, bcx, bcy, bcz)
        dx, dy, dz = abx, aby, abz  # the longest edge
        if ac2 > ab2 and ac2 >= bc2:
            dx, dy, dz = acx, acy, acz
        elif bc2 > ab2:
            dx, dy, dz = bcx, bcy, bcz
        ok, nx, ny, nz, ux, uy, uz, vx, vy, vz = orthonormal_frame(nx, ny, nz, dx, dy, dz)
    else:
        first = frame_vertex_first[child]
        last = frame_vertex_first[child + 1]
        nx = node_normal[child, 0]
        ny = node_normal[child, 1]
        nz = node_normal[child, 2]
        if (last > first
                and nx * nx + ny * ny + nz * nz > 0.25 * node_area[child] * node_area[child]):
            left = child_left[child]
            right = child_right[child]
            ok, nx, ny, nz, ux, uy, uz, vx, vy, vz = orthonormal_frame(
                nx, ny, nz, node_center[right, 0] - node_center[left, 0],
                node_center[right, 1] - node_center[left, 1],
                node_center[right, 2] - node_center[left, 2])
    if not ok:
        write_frame(child_frame, row, offset, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0,
                    node_box[child, 0], node_box[child, 1], node_box[child, 2],
                    node_box[child, 3], node_box[child, 4], node_box[child, 5])
        return
    lo_n = math.inf
    lo_u = math.inf
    lo_v = math.inf
    hi_n = -math.inf
    hi_u = -math.inf
    hi_v = -math.inf
    if child >= num_internal:
        for corner in range(3):
            lo_n, lo_u, lo_v, hi_n, hi_u, hi_v = project_extents(
                nx, ny, nz, ux, uy, uz, vx, vy, vz, leaf_vertices[first, 3 * corner],
                leaf_vertices[first, 3 * corner + 1], leaf_vertices[first, 3 * corner + 2],
                lo_n, lo_u, lo_v, hi_n, hi_u, hi_v)
    else:
        for k in range(first, last):
            v = frame_vertex[k]
            lo_n, lo_u, lo_v, hi_n, hi_u, hi_v = project_extents(
                nx, ny, nz, ux, uy, uz, vx, vy, vz, vertices[v, 0], vertices[v, 1],
                vertices[v, 2], lo_n, lo_u, lo_v, hi_n, hi_u, hi_v)
    write_frame(child_frame, row, offset, nx, ny, nz, ux, uy, uz, vx, vy, vz, lo_n, lo_u, lo_v,
                hi_n, hi_u, hi_v)


def refit_internal_node(node, child_left, child_right, node_box, node_center, node_normal,
                        node_moment, node_area, node_radius):
    """Box, dipole and first moment of an internal node from its two children's.

    The moment about the new centre c shifts each child's:
    ``M = M_l + (c_l - c) (x) N_l + M_r + (c_r - c) (x) N_r``.
    """
    left = child_left[node]
    right = child_right[node]
    area_left = node_area[left]
    area_right = node_area[right]
    area = area_left + area_right
    weight_left = 0.5
    if area > 0.0:
        weight_left = area_left / area
    radius2 = 0.0
    for axis in range(3):
        lo = min(node_box[left, axis], node_box[right, axis])
        hi = max(node_box[left, 3 + axis], node_box[right, 3 + axis])
        node_box[node, axis] = lo
        node_box[node, 3 + axis] = hi
        node_normal[node, axis] = node_normal[left, axis] + node_normal[right, axis]
        center = weight_left * node_center[left, axis] + (1.0 - weight_left) * node_center[right, axis]
        node_center[node, axis] = center
        # Farthest box corner bounds the distance from the centre to any
        # point of the node's triangles.
        extent = max(hi - center, center - lo)
        radius2 += extent * extent
    node_area[node] = area
    node_radius[node] = math.sqrt(radius2)
    for i in range(3):
        shift_left = node_center[left, i] - node_center[node, i]
        shift_right = node_center[right, i] - node_center[node, i]
        for j in range(3):
            node_moment[node, 3 * i + j] = (
                node_moment[left, 3 * i + j] + shift_left * node_normal[left, j]
                + node_moment[right, 3 * i + j] + shift_right * node_normal[right, j])


def refit_child_frames(node, child_left, child_right, vertices, frame_vertex_first, frame_vertex,
                       leaf_vertices, node_box, node_center, node_normal, node_area, child_frame):
    """The oriented boxes of internal node's two children, into its ``child_frame`` row.

    Needs the boxes and dipoles of the whole tree; independent across nodes.
    """
    num_internal = child_left.shape[0]
    write_child_frame(child_left[node], num_internal, child_left, child_right, vertices,
                      frame_vertex_first, frame_vertex, leaf_vertices, node_box, node_center,
                      node_normal, node_area, child_frame, node, 0)
    write_child_frame(child_right[node], num_internal, child_left, child_right, vertices,
                      frame_vertex_first, frame_vertex, leaf_vertices, node_box, node_center,
                      node_normal, node_area, child_frame, node, FRAME_SIZE)
