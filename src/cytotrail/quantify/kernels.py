"""The numba kernels of the flat label index and of the per-cell intensity statistics.

Top-level functions compiled on their first call and cached on disk (``cache=True``: in
``__pycache__`` beside this file, or under ``NUMBA_CACHE_DIR`` / the user's cache when the
package is read-only), so that every later process loads them. Nothing imports this module
before a kernel is needed: ``import cytotrail.quantify`` does not import numba. All release
the GIL (``nogil``) so that blocks of channels and of rows can run in threads.
"""

import numba
import numpy as np

# --------------------------------------------------------------------------------------
# the flat label index


@numba.njit(cache=True, nogil=True)
def count_slots(idx, n_slots):
    """``np.bincount(idx, minlength=n_slots)`` without the int64 copy of the index."""
    counts = np.zeros(n_slots, np.int64)
    for i in range(idx.size):
        counts[idx[i]] += 1
    return counts


@numba.njit(cache=True, nogil=True)
def relabel(flat, lut):
    """``lut[flat]`` in the dtype of ``lut``, without a temporary of the index."""
    out = np.empty(flat.size, lut.dtype)
    for i in range(flat.size):
        out[i] = lut[flat[i]]
    return out


@numba.njit(cache=True, nogil=True)
def runs(combo, max_len, width, n_pos):
    """Runs of equal non-zero slot along the rows of the flat index ``combo`` (row ``width``).

    Returns the start, end and slot of every run, runs longer than ``max_len`` cut into
    pieces, and, for the slots below ``n_pos``, the sums of the row and of the column
    coordinates of their pixels.
    """
    m = 0
    prev = 0
    length = 0
    for i in range(combo.size):
        v = combo[i]
        if v != prev or (v > 0 and (length == max_len or i % width == 0)):
            if v > 0:
                m += 1
            prev = v
            length = 0
        length += 1
    start = np.empty(m, np.int64)
    end = np.empty(m, np.int64)
    slot = np.empty(m, combo.dtype)
    j = -1
    prev = 0
    length = 0
    for i in range(combo.size):
        v = combo[i]
        if v != prev or (v > 0 and (length == max_len or i % width == 0)):
            if prev > 0:
                end[j] = i
            if v > 0:
                j += 1
                start[j] = i
                slot[j] = v
            prev = v
            length = 0
        length += 1
    if prev > 0:
        end[j] = combo.size
    ys = np.zeros(n_pos)
    xs = np.zeros(n_pos)
    for r in range(m):
        k = slot[r]
        if k < n_pos:
            a = start[r]
            ln = end[r] - a
            y = a // width
            x = a - y * width
            ys[k] += y * ln
            xs[k] += x * ln + ln * (ln - 1) // 2
    return start, end, slot, ys, xs


@numba.njit(cache=True, nogil=True)
def position_sums(idx, width, n_slots):
    """Sums of the row and of the column coordinates of the pixels of every slot."""
    ys = np.zeros(n_slots)
    xs = np.zeros(n_slots)
    for i in range(idx.size):
        k = idx[i]
        if k > 0:
            ys[k] += i // width
            xs[k] += i % width
    return ys, xs


@numba.njit(cache=True, nogil=True)
def grow(idx, width, dy, dx, row0, row1, out):
    """Rows ``row0:row1`` of ``expand_labels`` on a flat index image, written into ``out``.

    Every background pixel takes the first labelled pixel in the offset list ``dy, dx``
    (sorted by squared distance, then column, then row: scipy's feature transform breaks
    ties that way).
    """
    height = idx.size // width
    reach = 0
    for k in range(dy.size):
        reach = max(reach, abs(dy[k]))
    # horizontal distance from each pixel of the needed rows to the nearest label
    # (capped at reach + 1), so that pixels with no label in reach are skipped fast
    lo = max(row0 - reach, 0)
    hi = min(row1 + reach, height)
    near = np.empty((hi - lo, width), np.int16)
    for y in range(lo, hi):
        d = reach + 1
        for x in range(width):
            d = 0 if idx[y * width + x] != 0 else min(d + 1, reach + 1)
            near[y - lo, x] = d
        d = reach + 1
        for x in range(width - 1, -1, -1):
            d = 0 if idx[y * width + x] != 0 else min(d + 1, reach + 1)
            near[y - lo, x] = min(near[y - lo, x], d)
    r2 = 0
    for k in range(dy.size):
        r2 = max(r2, dy[k] * dy[k] + dx[k] * dx[k])
    for y in range(row0, row1):
        for x in range(width):
            p = y * width + x
            if idx[p] != 0:
                out[p] = idx[p]
                continue
            out[p] = 0
            hit = False
            for yy in range(max(y - reach, 0), min(y + reach + 1, height)):
                h = near[yy - lo, x]
                if h * h + (yy - y) * (yy - y) <= r2:
                    hit = True
                    break
            if not hit:
                continue
            for k in range(dy.size):
                yy = y + dy[k]
                xx = x + dx[k]
                if 0 <= yy < height and 0 <= xx < width:
                    v = idx[yy * width + xx]
                    if v != 0:
                        out[p] = v
                        break
    return out


# --------------------------------------------------------------------------------------
# per-cell intensity statistics


@numba.njit(cache=True, nogil=True)
def accumulate_int(values, run_start, run_end, run_slot, n_slots, squares):
    """Per slot and channel: sum, sum of squares, min and max of integer ``values`` (B, N).

    Values of at most 16 bits, runs of at most 2**15 pixels: exact int32 sums along a run,
    int64 per slot. Two channels per pass over a run: half the (mispredicted) loop exits of
    these short runs. Squares are always summed (``squares`` is unused).
    """
    nc = values.shape[0]
    s = np.zeros((nc, n_slots), np.int64)
    ss = np.zeros((nc, n_slots), np.int64)
    lo = np.full((nc, n_slots), np.int64(2**40))
    hi = np.full((nc, n_slots), np.int64(-(2**40)))
    for r in range(run_start.size):
        k = run_slot[r]
        a = run_start[r]
        b = run_end[r]
        for c in range(0, nc, 2):
            d = min(c + 1, nc - 1)  # the second channel (the first again when nc is odd)
            row0 = values[c]
            row1 = values[d]
            t0 = np.int32(0)
            t1 = np.int32(0)
            q0 = np.int64(0)
            q1 = np.int64(0)
            l0 = np.int32(2**30)
            l1 = np.int32(2**30)
            h0 = np.int32(-(2**30))
            h1 = np.int32(-(2**30))
            for i in range(a, b):
                v0 = np.int32(row0[i])
                v1 = np.int32(row1[i])
                t0 += v0
                t1 += v1
                q0 += np.int64(v0) * v0
                q1 += np.int64(v1) * v1
                l0 = min(l0, v0)
                l1 = min(l1, v1)
                h0 = max(h0, v0)
                h1 = max(h1, v1)
            s[c, k] += t0
            ss[c, k] += q0
            lo[c, k] = min(lo[c, k], l0)
            hi[c, k] = max(hi[c, k], h0)
            if d != c:
                s[d, k] += t1
                ss[d, k] += q1
                lo[d, k] = min(lo[d, k], l1)
                hi[d, k] = max(hi[d, k], h1)
    return s, ss, lo, hi


@numba.njit(cache=True, nogil=True)
def accumulate(values, run_start, run_end, run_slot, n_slots, squares):
    """Per slot and channel: sum, sum of squares (when ``squares``), min and max of ``values`` (B, N).

    Accumulated in registers along each run of equal slot, in float64.
    """
    nc = values.shape[0]
    s = np.zeros((nc, n_slots))
    ss = np.zeros((nc, n_slots))
    lo = np.full((nc, n_slots), np.inf)
    hi = np.full((nc, n_slots), -np.inf)
    for r in range(run_start.size):
        k = run_slot[r]
        a = run_start[r]
        b = run_end[r]
        for c in range(nc):
            t = 0.0
            q = 0.0
            low = np.inf
            high = -np.inf
            for i in range(a, b):
                v = np.float64(values[c, i])
                t += v
                if squares:
                    q += v * v
                low = min(low, v)
                high = max(high, v)
            s[c, k] += t
            ss[c, k] += q
            lo[c, k] = min(lo[c, k], low)
            hi[c, k] = max(hi[c, k], high)
    return s, ss, lo, hi


@numba.njit(cache=True, nogil=True)
def int_std(total, squares, count):
    """Population std from exact int64 sums and sums of squares, NaN where empty.

    With a the mean rounded to an integer, the sum of squared deviations from a,
    squares - 2 a total + m a**2, is an exact integer; the variance is that over m minus
    ((total - a m) / m)**2 (at most 1/4): no large terms cancel in floats.
    """
    out = np.empty(total.size)
    for i in range(total.size):
        m = count[i]
        if m == 0:
            out[i] = np.nan
            continue
        a = np.int64(np.rint(total[i] / m))
        centred = squares[i] - 2 * a * total[i] + m * a * a
        frac = (total[i] - a * m) / m
        out[i] = np.sqrt(max(centred / m - frac * frac, 0.0))
    return out


@numba.njit(cache=True, nogil=True)
def deviations(values, combo, n, slot_mean, cell_mean):
    """Sums of squared deviations from the slot means (nucleus 1..n, cytoplasm n+1..2n) and
    from the cell means (1..n), for the float standard deviations."""
    d = np.zeros(2 * n + 1)
    dc = np.zeros(n + 1)
    for i in range(values.size):
        k = combo[i]
        if k > 0:
            v = np.float64(values[i])
            x = v - slot_mean[k]
            d[k] += x * x
            c = k if k <= n else k - n
            y = v - cell_mean[c]
            dc[c] += y * y
    return d, dc


@numba.njit(cache=True, nogil=True)
def segment_quantiles(values, starts, counts, qs):
    """Linear-interpolated percentiles ``qs`` of each segment of ``values`` (as ``numpy.percentile``),
    NaN for empty segments."""
    out = np.full((counts.size, qs.size), np.nan)
    for i in range(counts.size):
        m = counts[i]
        if m == 0:
            continue
        seg = np.sort(values[starts[i] : starts[i] + m]).astype(np.float64)
        for j in range(qs.size):
            pos = qs[j] / 100.0 * (m - 1)
            lo = int(np.floor(pos))
            hi = min(lo + 1, m - 1)
            out[i, j] = seg[lo] + (seg[hi] - seg[lo]) * (pos - lo)
    return out
