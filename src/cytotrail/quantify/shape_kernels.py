"""The numba kernels of the shape features: second moments, border pixels and perimeter,
convex hull pixel counts.

Compiled and cached like :mod:`cytotrail.quantify.kernels`, imported only when a shape
feature is first measured.
"""

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def central_moments(idx, width, n_slots, yc, xc):
    """Second central moments (mu20, mu02, mu11) of every slot's pixels (``yc, xc``: centroids by slot)."""
    mu20 = np.zeros(n_slots)
    mu02 = np.zeros(n_slots)
    mu11 = np.zeros(n_slots)
    for p in range(idx.size):
        v = idx[p]
        if v != 0:
            dr = p // width - yc[v]
            dc = p % width - xc[v]
            mu20[v] += dr * dr
            mu02[v] += dc * dc
            mu11[v] += dr * dc
    return mu20, mu02, mu11


@numba.njit(cache=True, nogil=True)
def border_pixels(idx, width, n_slots, weights):
    """scikit-image's 4-connectivity perimeter of every slot, and its border pixels.

    The border pixels are returned as (rows, columns, slots), grouped by slot and row-major
    inside each; ``weights`` are the perimeter weights of each neighbourhood code.
    """
    height = idx.size // width
    flag = np.zeros(idx.size, np.uint8)
    ends = np.zeros(n_slots + 1, np.int64)
    for y in range(height):
        for x in range(width):
            p = y * width + x
            v = idx[p]
            if v != 0 and (
                x == 0
                or idx[p - 1] != v
                or x == width - 1
                or idx[p + 1] != v
                or y == 0
                or idx[p - width] != v
                or y == height - 1
                or idx[p + width] != v
            ):
                flag[p] = 1
                ends[v + 1] += 1
    for v in range(n_slots):
        ends[v + 1] += ends[v]
    fill = ends[:-1].copy()
    rows = np.empty(ends[-1], np.int64)
    cols = np.empty(ends[-1], np.int64)
    slots = np.empty(ends[-1], np.int64)
    perim = np.zeros(n_slots)
    for y in range(height):
        for x in range(width):
            p = y * width + x
            if flag[p] == 0:
                continue
            v = idx[p]
            value = 1
            for oy in range(-1, 2):
                for ox in range(-1, 2):
                    yy = y + oy
                    xx = x + ox
                    if (
                        (oy != 0 or ox != 0)
                        and 0 <= yy < height
                        and 0 <= xx < width
                        and flag[yy * width + xx] != 0
                        and idx[yy * width + xx] == v
                    ):
                        value += 10 if oy != 0 and ox != 0 else 2
            perim[v] += weights[value]
            k = fill[v]
            rows[k] = y
            cols[k] = x
            slots[k] = v
            fill[v] += 1
    return perim, rows, cols, slots


@numba.njit(cache=True, nogil=True)
def hull_pixel_counts(pts, bounds, heights):
    """Number of pixel centres inside or on the convex hull of each group of points.

    ``pts``: (P, 2) doubled integer (row, col) points, grouped by label between ``bounds``;
    pixel centres are the even doubled coordinates of the first ``heights`` rows.
    Andrew's monotone chain, then an exact count per row.
    """
    n = bounds.size - 1
    out = np.zeros(n)
    for j in range(n):
        p = pts[bounds[j] : bounds[j + 1]]
        m = p.shape[0]
        key = (p[:, 0] + 2) * (4 * m + 1 << 20) + (p[:, 1] + 2)
        order = np.argsort(key)
        q = p[order]
        hull = np.empty((2 * m + 1, 2), np.int64)
        k = 0
        for i in range(m):  # lower chain
            while (
                k >= 2
                and (
                    (hull[k - 1, 0] - hull[k - 2, 0]) * (q[i, 1] - hull[k - 2, 1])
                    - (hull[k - 1, 1] - hull[k - 2, 1]) * (q[i, 0] - hull[k - 2, 0])
                )
                <= 0
            ):
                k -= 1
            hull[k] = q[i]
            k += 1
        t = k + 1
        for i in range(m - 2, -1, -1):  # upper chain
            while (
                k >= t
                and (
                    (hull[k - 1, 0] - hull[k - 2, 0]) * (q[i, 1] - hull[k - 2, 1])
                    - (hull[k - 1, 1] - hull[k - 2, 1]) * (q[i, 0] - hull[k - 2, 0])
                )
                <= 0
            ):
                k -= 1
            hull[k] = q[i]
            k += 1
        nv = k - 1
        total = 0
        for r in range(heights[j]):
            y = 2 * r
            # x-extent of the polygon on the line y as fractions num/den (den > 0)
            lo_n, lo_d, hi_n, hi_d = 1, 0, -1, 0
            found = False
            for e in range(nv):
                ay, ax = hull[e, 0], hull[e, 1]
                by, bx = hull[e + 1, 0], hull[e + 1, 1]
                if y < min(ay, by) or y > max(ay, by):
                    continue
                if ay == by:
                    cands = ((ax, 1), (bx, 1))
                else:
                    num = ax * (by - ay) + (bx - ax) * (y - ay)
                    den = by - ay
                    if den < 0:
                        num, den = -num, -den
                    cands = ((num, den), (num, den))
                for cn, cd in cands:
                    if not found:
                        lo_n, lo_d, hi_n, hi_d = cn, cd, cn, cd
                        found = True
                    else:
                        if cn * lo_d < lo_n * cd:
                            lo_n, lo_d = cn, cd
                        if cn * hi_d > hi_n * cd:
                            hi_n, hi_d = cn, cd
            if found:
                # columns c with lo <= 2c <= hi
                first = -((-lo_n) // (2 * lo_d))
                last = hi_n // (2 * hi_d)
                if last >= first:
                    total += last - first + 1
        out[j] = total
    return out
