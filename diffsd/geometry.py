"""Scalar geometry kernels, written once and compiled for the CPU and for CUDA.

Every function here is plain Python over scalars and array elements, with no
NumPy calls and no allocation, so that :mod:`diffsd._targets` can compile the
same source with ``numba.njit`` (CPU) and ``numba.cuda.jit(device=True)``
(GPU). Functions refer to each other by their module-level names; the target
compiler rebinds those names to the compiled versions.

Conventions: points and vertices are world coordinates (any length unit),
squared distances are returned where the square root is not needed, and the
solid angle is in steradians (a closed, outward-oriented surface subtends
``4*pi`` from inside).
"""

import math

FOUR_PI = 4.0 * math.pi

# Bounds of the stack used by the tree traversals. Karras trees over 30-bit
# Morton codes plus an index tie-break are at most 64 levels deep; with the
# nearer-child-first order a traversal holds at most one entry per level.
TRAVERSAL_STACK_SIZE = 96


def as_float64(x):
    """x as float64 on every target.

    A float64 literal promotes float32 in compiled code, but not in the CUDA
    simulator (NumPy 2 keeps a float32 scalar's type against Python floats),
    and Numba's ``float()`` keeps float32: so both are used.
    """
    return float(x) + 0.0


def dot3(ax, ay, az, bx, by, bz):
    return ax * bx + ay * by + az * bz


def cross3(ax, ay, az, bx, by, bz):
    return ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx


def closest_point_on_segment(px, py, pz, ax, ay, az, bx, by, bz):
    """Parameter t in [0, 1] of the point of segment ab closest to p."""
    ex = bx - ax
    ey = by - ay
    ez = bz - az
    length2 = dot3(ex, ey, ez, ex, ey, ez)
    if length2 <= 0.0:
        return 0.0
    t = dot3(px - ax, py - ay, pz - az, ex, ey, ez) / length2
    if t < 0.0:
        return 0.0
    if t > 1.0:
        return 1.0
    return t


def closest_point_on_degenerate_triangle(px, py, pz, ax, ay, az, bx, by, bz, cx, cy, cz):
    """Barycentrics (w0, w1, w2) of the closest point for a zero-area triangle.

    The triangle is then a segment or a point; the closest of its three edges
    is taken.
    """
    t_ab = closest_point_on_segment(px, py, pz, ax, ay, az, bx, by, bz)
    qx = ax + t_ab * (bx - ax) - px
    qy = ay + t_ab * (by - ay) - py
    qz = az + t_ab * (bz - az) - pz
    best = dot3(qx, qy, qz, qx, qy, qz)
    w0 = 1.0 - t_ab
    w1 = t_ab
    w2 = 0.0
    t_bc = closest_point_on_segment(px, py, pz, bx, by, bz, cx, cy, cz)
    qx = bx + t_bc * (cx - bx) - px
    qy = by + t_bc * (cy - by) - py
    qz = bz + t_bc * (cz - bz) - pz
    d2 = dot3(qx, qy, qz, qx, qy, qz)
    if d2 < best:
        best = d2
        w0 = 0.0
        w1 = 1.0 - t_bc
        w2 = t_bc
    t_ca = closest_point_on_segment(px, py, pz, cx, cy, cz, ax, ay, az)
    qx = cx + t_ca * (ax - cx) - px
    qy = cy + t_ca * (ay - cy) - py
    qz = cz + t_ca * (az - cz) - pz
    d2 = dot3(qx, qy, qz, qx, qy, qz)
    if d2 < best:
        w0 = t_ca
        w1 = 0.0
        w2 = 1.0 - t_ca
    return w0, w1, w2


# Triangles whose edges ab and ac make an angle with squared sine below this
# are taken as their three edges (segments): the face-region formula divides
# by |ab x ac|^2, whose float64 rounding is about 1e-16 |ab|^2 |ac|^2, and a
# triangle this thin lies within 1e-8 of its longest edge's length of its
# edges, below float32's resolution of the vertices.
DEGENERATE_SINE2 = 1e-16


def closest_point_on_triangle(px, py, pz, ax, ay, az, bx, by, bz, cx, cy, cz):
    """Barycentric weights (w0, w1, w2) of the point of triangle abc closest to p.

    Voronoi-region classification (Ericson, Real-Time Collision Detection,
    5.1.5), computed in float64 whatever the coordinates' dtype (a float64
    literal promotes float32), relative to a. Where p falls in the face
    region of a triangle too thin for the face-region formula (see
    ``DEGENERATE_SINE2``), zero-area ones included, the closest of its three
    edges is taken; otherwise the face region's weights come from cross
    products with the normal, whose rounding does not grow with p's height
    over the plane.
    """
    ax = ax + 0.0
    ay = ay + 0.0
    az = az + 0.0
    abx = bx - ax
    aby = by - ay
    abz = bz - az
    acx = cx - ax
    acy = cy - ay
    acz = cz - az
    apx = px - ax
    apy = py - ay
    apz = pz - az
    d1 = dot3(abx, aby, abz, apx, apy, apz)
    d2 = dot3(acx, acy, acz, apx, apy, apz)
    if d1 <= 0.0 and d2 <= 0.0:
        return 1.0, 0.0, 0.0
    bpx = px - bx
    bpy = py - by
    bpz = pz - bz
    d3 = dot3(abx, aby, abz, bpx, bpy, bpz)
    d4 = dot3(acx, acy, acz, bpx, bpy, bpz)
    if d3 >= 0.0 and d4 <= d3:
        return 0.0, 1.0, 0.0
    vc = d1 * d4 - d3 * d2
    if vc <= 0.0 and d1 >= 0.0 and d3 <= 0.0 and d1 - d3 > 0.0:
        v = d1 / (d1 - d3)
        return 1.0 - v, v, 0.0
    cpx = px - cx
    cpy = py - cy
    cpz = pz - cz
    d5 = dot3(abx, aby, abz, cpx, cpy, cpz)
    d6 = dot3(acx, acy, acz, cpx, cpy, cpz)
    if d6 >= 0.0 and d5 <= d6:
        return 0.0, 0.0, 1.0
    vb = d5 * d2 - d1 * d6
    if vb <= 0.0 and d2 >= 0.0 and d6 <= 0.0 and d2 - d6 > 0.0:
        w = d2 / (d2 - d6)
        return 1.0 - w, 0.0, w
    va = d3 * d6 - d5 * d4
    if va <= 0.0 and (d4 - d3) >= 0.0 and (d5 - d6) >= 0.0 and (d4 - d3) + (d5 - d6) > 0.0:
        w = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        return 0.0, 1.0 - w, w
    # The vertex and edge tests above return points on the triangle, within
    # its thickness of the nearest one even where rounding misjudges a thin
    # triangle's regions; only the face region needs a usable normal.
    nx, ny, nz = cross3(abx, aby, abz, acx, acy, acz)
    normal2 = dot3(nx, ny, nz, nx, ny, nz)
    if not (normal2 > DEGENERATE_SINE2 * dot3(abx, aby, abz, abx, aby, abz)
            * dot3(acx, acy, acz, acx, acy, acz)):
        return closest_point_on_degenerate_triangle(px, py, pz, ax, ay, az, bx, by, bz, cx, cy, cz)
    # p = a + v ab + w ac + h n, so (ap x ac) . n = v |n|^2 and
    # (ab x ap) . n = w |n|^2: the height h drops out exactly.
    sx, sy, sz = cross3(apx, apy, apz, acx, acy, acz)
    v = dot3(sx, sy, sz, nx, ny, nz) / normal2
    sx, sy, sz = cross3(abx, aby, abz, apx, apy, apz)
    w = dot3(sx, sy, sz, nx, ny, nz) / normal2
    return 1.0 - v - w, v, w


def corner_half_angle_terms(x0, y0, z0, l0, x1, y1, z1, l1, x2, y2, z2, l2):
    """``(det, denominator)`` of a triangle seen from p, whose solid angle is
    ``2 atan2(det, denominator)`` (Van Oosterom and Strackee, 1983), from the
    corners relative to p, (x_k, y_k, z_k), and their lengths l_k."""
    det = x0 * (y1 * z2 - z1 * y2) - y0 * (x1 * z2 - z1 * x2) + z0 * (x1 * y2 - y1 * x2)
    denominator = (
        l0 * l1 * l2
        + dot3(x0, y0, z0, x1, y1, z1) * l2
        + dot3(x0, y0, z0, x2, y2, z2) * l1
        + dot3(x1, y1, z1, x2, y2, z2) * l0
    )
    return det, denominator


def corner_solid_angle(x0, y0, z0, l0, x1, y1, z1, l1, x2, y2, z2, l2):
    """:func:`triangle_solid_angle` from the corners relative to p, (x_k, y_k,
    z_k), and their lengths l_k (computed once where triangles share corners)."""
    det, denominator = corner_half_angle_terms(x0, y0, z0, l0, x1, y1, z1, l1, x2, y2, z2, l2)
    return 2.0 * math.atan2(det, denominator)


def add_half_angle(tangent, angle, det, denominator):
    """``angle + atan(tangent) + atan2(det, denominator)`` as a new ``(tangent, angle)``.

    A running sum of the half solid angles of many triangles (see
    :func:`corner_half_angle_terms`) kept as a whole part ``angle`` plus
    the arctangent of ``tangent``, |tangent| < 1 (under 45 degrees): adding
    a triangle is then the tangent addition formula, one division, where an
    atan2 costs some twenty times as much. Only when the sum passes 45
    degrees, or the triangle's half angle is not under 90 degrees
    (``denominator <= 0``), is an atan2 taken and the sum folded into
    ``angle``. The folded sum is under 135 degrees, so atan2 reads it
    without ambiguity. Start from ``(0.0, 0.0)``; the total is
    ``angle + atan(tangent)``.
    """
    if not denominator > 0.0:
        return tangent, angle + math.atan2(det, denominator)
    # (1 + i tangent) (denominator + i det), scaled by a positive factor.
    x = denominator - tangent * det
    y = det + tangent * denominator
    if abs(y) < x:
        return y / x, angle
    return 0.0, angle + math.atan2(y, x)


def triangle_solid_angle(px, py, pz, ax, ay, az, bx, by, bz, cx, cy, cz):
    """Signed solid angle of triangle abc seen from p (Van Oosterom and Strackee, 1983)."""
    x0 = ax - px
    y0 = ay - py
    z0 = az - pz
    x1 = bx - px
    y1 = by - py
    z1 = bz - pz
    x2 = cx - px
    y2 = cy - py
    z2 = cz - pz
    return corner_solid_angle(x0, y0, z0, math.sqrt(x0 * x0 + y0 * y0 + z0 * z0), x1, y1, z1,
                              math.sqrt(x1 * x1 + y1 * y1 + z1 * z1), x2, y2, z2,
                              math.sqrt(x2 * x2 + y2 * y2 + z2 * z2))


def dipole_solid_angle(px, py, pz, qx, qy, qz, nx, ny, nz):
    """Far-field solid angle of an area-weighted normal n placed at q, seen from p.

    First-order term of the fast winding number (Barill et al. 2018):
    ``n . (q - p) / |q - p|^3`` steradians.
    """
    rx = qx - px
    ry = qy - py
    rz = qz - pz
    r2 = rx * rx + ry * ry + rz * rz
    return dot3(nx, ny, nz, rx, ry, rz) / (r2 * math.sqrt(r2))


def quadrupole_solid_angle(px, py, pz, qx, qy, qz, m00, m01, m02, m10, m11, m12, m20, m21, m22):
    """Second-order far-field term of the solid angle of a cluster centred at q.

    ``M = sum_t (x_t - q) (x) n_t`` over the cluster's triangles (centroid
    x_t, area-weighted normal n_t); with ``r = q - p`` the term is
    ``tr(M) / |r|^3 - 3 r^T M r / |r|^5``, the next term of the Taylor
    expansion of ``n . (x - p) / |x - p|^3`` about q (Barill et al. 2018).
    """
    rx = qx - px
    ry = qy - py
    rz = qz - pz
    r2 = rx * rx + ry * ry + rz * rz
    r3 = r2 * math.sqrt(r2)
    quadratic = (rx * (m00 * rx + m01 * ry + m02 * rz) + ry * (m10 * rx + m11 * ry + m12 * rz)
                 + rz * (m20 * rx + m21 * ry + m22 * rz))
    return (m00 + m11 + m22) / r3 - 3.0 * quadratic / (r3 * r2)


def frame_axis_dot(frame, row, offset, axis, x, y, z):
    """Dot product of (x, y, z) with axis ``axis`` (0, 1 or 2) of an oriented box."""
    k = offset + 3 * axis
    return frame[row, k] * x + frame[row, k + 1] * y + frame[row, k + 2] * z


def frame_distance_squared(px, py, pz, frame, row, offset, margin):
    """Squared distance from p to an oriented box, less ``margin`` per axis (0 inside).

    ``frame[row, offset:offset + 15]`` holds the box's orthonormal axes
    (three rows of three), then its centre and half extents along them.
    Each axis's gap is shrunk by ``margin`` (the rounding allowance of the
    projections, world units), so the result bounds the squared distance
    to anything in the box from below even when computed in float32.
    Evaluated in the type of p, the frame and ``margin`` (float32 for a
    float32 tree queried with float32 p and margin: no conversions, 1.25x
    faster searches on the CPU than in float64); the caller keeps p and the
    box within float32's range (see :data:`BOX_FLOAT32_LIMIT`).
    """
    zero = margin - margin  # 0 of the margin's type: a float32 sum stays float32
    total = zero
    for axis in range(3):
        along = frame_axis_dot(frame, row, offset, axis, px, py, pz)
        gap = abs(along - frame[row, offset + 9 + axis]) - frame[row, offset + 12 + axis] - margin
        gap = max(gap, zero)
        total += gap * gap
    return total


#: Largest coordinate (of the point and of the mesh) for which
#: :func:`frame_distance_squared` may run in float32: its gaps are then at
#: most ~3.5e18 and their squares' sum ~4e37, below float32's 3.4e38.
#: Float32 vertices are limited to 1e18 already
#: (:data:`diffsd.validation.VERTEX_LIMIT`); farther points are searched in
#: float64.
BOX_FLOAT32_LIMIT = 1e18


def orthonormal_frame(nx, ny, nz, dx, dy, dz):
    """Axes (n, u, v) with n along the normal given, u along d off it, v = n x u.

    Returns ``(ok, nx, ny, nz, ux, uy, uz, vx, vy, vz)``; ``ok`` is False
    for a zero or non-finite normal. When d is (nearly) along n, u is
    taken along the coordinate axis least aligned with n instead.
    """
    length2 = nx * nx + ny * ny + nz * nz
    if not (length2 > 0.0) or not (length2 < math.inf):
        return False, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    inverse = 1.0 / math.sqrt(length2)
    nx = nx * inverse
    ny = ny * inverse
    nz = nz * inverse
    along = dot3(nx, ny, nz, dx, dy, dz)
    ux = dx - along * nx
    uy = dy - along * ny
    uz = dz - along * nz
    u_length2 = ux * ux + uy * uy + uz * uz
    if not (u_length2 > 1e-6 * (dx * dx + dy * dy + dz * dz)):
        ux = 0.0
        uy = 0.0
        uz = 0.0
        if abs(nx) <= abs(ny) and abs(nx) <= abs(nz):
            ux = 1.0
        elif abs(ny) <= abs(nz):
            uy = 1.0
        else:
            uz = 1.0
        along = dot3(nx, ny, nz, ux, uy, uz)
        ux = ux - along * nx
        uy = uy - along * ny
        uz = uz - along * nz
        u_length2 = ux * ux + uy * uy + uz * uz
    inverse = 1.0 / math.sqrt(u_length2)
    ux = ux * inverse
    uy = uy * inverse
    uz = uz * inverse
    vx, vy, vz = cross3(nx, ny, nz, ux, uy, uz)
    return True, nx, ny, nz, ux, uy, uz, vx, vy, vz


# Relative tolerance of the exact-crossing tests below, computed in float64:
# a test whose determinant is within this fraction of its magnitude is
# called ambiguous rather than guessed, and the caller falls back.
CROSSING_TOLERANCE = 1e-10
CROSSING_NONE = 0
CROSSING_AMBIGUOUS = 2


def segment_frame_overlap(ax, ay, az, bx, by, bz, frame, row, offset, margin):
    """Whether the segment from a to b meets an oriented box grown by ``margin``.

    The box is laid out as for :func:`frame_distance_squared`. Separating
    axes (Ericson, Real-Time Collision Detection, 5.3.3): the box's three
    axes and their cross products with the segment, in the box's frame, in
    float64, with no division. ``margin`` (world units) covers the rounding
    of the projections, so a box the segment touches is never dropped (a
    false overlap only costs a triangle test).
    """
    # Midpoint and half vector, in float64 (a float64 literal promotes float32).
    mx = 0.5 * (ax + 0.0 + bx)
    my = 0.5 * (ay + 0.0 + by)
    mz = 0.5 * (az + 0.0 + bz)
    hx = 0.5 * (bx - (ax + 0.0))
    hy = 0.5 * (by - (ay + 0.0))
    hz = 0.5 * (bz - (az + 0.0))
    m0 = frame_axis_dot(frame, row, offset, 0, mx, my, mz) - frame[row, offset + 9]
    m1 = frame_axis_dot(frame, row, offset, 1, mx, my, mz) - frame[row, offset + 10]
    m2 = frame_axis_dot(frame, row, offset, 2, mx, my, mz) - frame[row, offset + 11]
    h0 = frame_axis_dot(frame, row, offset, 0, hx, hy, hz)
    h1 = frame_axis_dot(frame, row, offset, 1, hx, hy, hz)
    h2 = frame_axis_dot(frame, row, offset, 2, hx, hy, hz)
    e0 = frame[row, offset + 12] + margin
    e1 = frame[row, offset + 13] + margin
    e2 = frame[row, offset + 14] + margin
    if abs(m0) > e0 + abs(h0) or abs(m1) > e1 + abs(h1) or abs(m2) > e2 + abs(h2):
        return False
    if abs(m1 * h2 - m2 * h1) > e1 * abs(h2) + e2 * abs(h1):
        return False
    if abs(m2 * h0 - m0 * h2) > e0 * abs(h2) + e2 * abs(h0):
        return False
    return abs(m0 * h1 - m1 * h0) <= e0 * abs(h1) + e1 * abs(h0)


def line_edge_side(dx, dy, dz, d_length, ux, uy, uz, wx, wy, wz):
    """Which side of a triangle edge the line through a with direction d passes.

    ``u`` and ``w`` are the edge's ends relative to a. Returns +1 or -1 by
    the sign of the volume ``d . (u x w)``, 0 when it is within rounding.
    """
    cx, cy, cz = cross3(ux, uy, uz, wx, wy, wz)
    volume = dot3(dx, dy, dz, cx, cy, cz)
    scale = CROSSING_TOLERANCE * d_length * math.sqrt(
        dot3(ux, uy, uz, ux, uy, uz) * dot3(wx, wy, wz, wx, wy, wz))
    if volume > scale:
        return 1
    if volume < -scale:
        return -1
    return 0


def segment_triangle_crossing(ax, ay, az, bx, by, bz, v0x, v0y, v0z, v1x, v1y, v1z,
                              v2x, v2y, v2z):
    """How the segment from a to b crosses triangle (v0, v1, v2).

    Returns +1 when it crosses the interior along the triangle's normal
    (right-hand rule), -1 against it, ``CROSSING_NONE`` when it misses, and
    ``CROSSING_AMBIGUOUS`` when rounding cannot decide: an endpoint on the
    triangle's plane, or the segment through an edge or a vertex. Computed
    in float64 from orientation determinants; a zero-area triangle is never
    crossed (it carries no flux).
    """
    # Coordinates relative to a, in float64 (a float64 literal promotes
    # float32) before any difference is taken.
    ax = ax + 0.0
    ay = ay + 0.0
    az = az + 0.0
    dx = bx - ax
    dy = by - ay
    dz = bz - az
    u0x = v0x - ax
    u0y = v0y - ay
    u0z = v0z - az
    u1x = v1x - ax
    u1y = v1y - ay
    u1z = v1z - az
    u2x = v2x - ax
    u2y = v2y - ay
    u2z = v2z - az
    nx, ny, nz = cross3(u1x - u0x, u1y - u0y, u1z - u0z, u2x - u0x, u2y - u0y, u2z - u0z)
    n_length = math.sqrt(nx * nx + ny * ny + nz * nz)
    if n_length == 0.0:
        return CROSSING_NONE
    # Signed heights of a and b over the plane (times |n|).
    side_a = -dot3(nx, ny, nz, u0x, u0y, u0z)
    side_b = dot3(nx, ny, nz, dx - u0x, dy - u0y, dz - u0z)
    tolerance_a = CROSSING_TOLERANCE * n_length * math.sqrt(dot3(u0x, u0y, u0z, u0x, u0y, u0z))
    tolerance_b = CROSSING_TOLERANCE * n_length * math.sqrt(
        dot3(dx - u0x, dy - u0y, dz - u0z, dx - u0x, dy - u0y, dz - u0z))
    if (side_a > tolerance_a and side_b > tolerance_b) or (
            side_a < -tolerance_a and side_b < -tolerance_b):
        return CROSSING_NONE
    on_plane = abs(side_a) <= tolerance_a or abs(side_b) <= tolerance_b
    d_length = math.sqrt(dx * dx + dy * dy + dz * dz)
    side_01 = line_edge_side(dx, dy, dz, d_length, u0x, u0y, u0z, u1x, u1y, u1z)
    side_12 = line_edge_side(dx, dy, dz, d_length, u1x, u1y, u1z, u2x, u2y, u2z)
    side_20 = line_edge_side(dx, dy, dz, d_length, u2x, u2y, u2z, u0x, u0y, u0z)
    if max(side_01, max(side_12, side_20)) > 0 and min(side_01, min(side_12, side_20)) < 0:
        return CROSSING_NONE  # the line passes clearly outside an edge
    if side_01 == 0 or side_12 == 0 or side_20 == 0 or on_plane:
        return CROSSING_AMBIGUOUS
    if side_b > side_a:
        return 1
    return -1


def expand_bits_10(v):
    """Spread the low 10 bits of v so that two zero bits separate each bit."""
    v = (v * 0x00010001) & 0xFF0000FF
    v = (v * 0x00000101) & 0x0F00F00F
    v = (v * 0x00000011) & 0xC30C30C3
    v = (v * 0x00000005) & 0x49249249
    return v


def morton_code_30(x, y, z):
    """30-bit Morton code of a point with coordinates normalised to [0, 1]."""
    xi = int(min(max(x * 1024.0, 0.0), 1023.0))
    yi = int(min(max(y * 1024.0, 0.0), 1023.0))
    zi = int(min(max(z * 1024.0, 0.0), 1023.0))
    return expand_bits_10(xi) * 4 + expand_bits_10(yi) * 2 + expand_bits_10(zi)


def count_leading_zeros_64(x):
    """Leading zero bits of a non-negative 64-bit integer (64 for 0).

    Written with right shifts only, so that no intermediate overflows int64.
    """
    if x == 0:
        return 64
    n = 63
    if x >= (1 << 32):
        n -= 32
        x = x >> 32
    if x >= (1 << 16):
        n -= 16
        x = x >> 16
    if x >= (1 << 8):
        n -= 8
        x = x >> 8
    if x >= (1 << 4):
        n -= 4
        x = x >> 4
    if x >= (1 << 2):
        n -= 2
        x = x >> 2
    if x >= (1 << 1):
        n -= 1
    return n
