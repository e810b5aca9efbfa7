"""The numba union-find behind :func:`cytotrail.segment.postprocess.h_maxima`.

Top-level functions compiled on their first call and cached on disk (``cache=True``), so
that every later process loads them. Defined inside another function, as they were, the
kernel often missed numba's disk cache (31 cached versions had piled up) and each miss
recompiled it for 3.4 s: a whole ``cytotrail segment`` call on a 60 x 60 px IMC image took
6.1 s (median of 5) before, 5.1 s now. Nothing imports this module before a segmentation
needs it.
"""

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _find(parent, i):
    while parent[i] != i:
        parent[i] = parent[parent[i]]  # path halving
        i = parent[i]
    return i


@numba.njit(cache=True, nogil=True)
def h_maxima_flat(flat, order, nx, h, floor):
    """h-maxima of a raveled image ``flat`` (row length ``nx``) as uint8 over its pixels.

    ``order``: the pixels above ``floor`` in decreasing order of value. Components are
    merged as each pixel arrives; when two meet at level ``v`` the one with the lower top
    ends, and its top plateau is marked when ``top - v >= h``.
    """
    n = flat.size
    ny = n // nx
    parent = np.full(n, -1, np.int64)
    nxt = np.full(n, -1, np.int64)  # each root's list of top-plateau pixels: head is the root's
    head = np.empty(n, np.int64)
    tail = np.empty(n, np.int64)
    out = np.zeros(n, np.uint8)
    for k in range(order.size):
        p = order[k]
        v = flat[p]
        parent[p] = p
        head[p] = p
        tail[p] = p
        y, x = p // nx, p % nx
        for dy in range(-1, 2):
            yy = y + dy
            if yy < 0 or yy >= ny:
                continue
            for dx in range(-1, 2):
                xx = x + dx
                if (dy == 0 and dx == 0) or xx < 0 or xx >= nx:
                    continue
                q = yy * nx + xx
                if parent[q] < 0:
                    continue
                rp, rq = _find(parent, p), _find(parent, q)
                if rp == rq:
                    continue
                tp, tq = flat[head[rp]], flat[head[rq]]
                if tp == tq:  # equal tops: one component, both plateaus stay candidates
                    parent[rp] = rq
                    nxt[tail[rq]] = head[rp]
                    tail[rq] = tail[rp]
                    continue
                lo, hi = (rp, rq) if tp < tq else (rq, rp)
                mark = 1 if flat[head[lo]] - v >= h else 0
                i = head[lo]
                while i >= 0:
                    out[i] = mark
                    i = nxt[i]
                parent[lo] = hi
    for k in range(order.size):  # components that never met a higher one
        p = order[k]
        if parent[p] == p and flat[head[p]] - floor >= h:
            i = head[p]
            while i >= 0:
                out[i] = 1
                i = nxt[i]
    return out
