"""Per-cell statistics of one channel: accumulators for the moments, sorted segments for the order statistics."""

from __future__ import annotations

import numpy as np


def slot_runs(index, width):
    """The slot index of the frame and its runs along the rows.

    One flat index for both parts of the cell: nucleus 1..n, cytoplasm n+1..2n, cut into
    runs of at most 2**15 pixels (the integer kernel sums 16-bit values of a run in int32).

    Parameters
    ----------
    index : dict of str to Index
        The compartments of the frame (``"nucleus"``, and ``"cytoplasm"`` when grown).
    width : int
        Row length X of the frame.

    Returns
    -------
    combo : (Y*X,) int ndarray
        The slot of every pixel, 0 outside every cell.
    runs : tuple of ndarrays
        (start, end, slot) of every run.
    position_sums : tuple of (n + 1,) ndarrays
        Sums of the row and of the column coordinates of each nucleus' pixels (slot 0 unused).
    """
    from cytotrail.quantify import kernels

    n = index["nucleus"].n
    dtype = np.int32 if 2 * n + 1 < 2**31 else np.int64
    combo = index["nucleus"].idx.astype(dtype, copy="cytoplasm" in index)
    if "cytoplasm" in index:
        ring = index["cytoplasm"].idx
        combo[ring > 0] = ring[ring > 0] + n
    *runs, ysum, xsum = kernels.runs(combo, 2**15, width, n + 1)
    return combo, runs, (ysum, xsum)


def accumulate_channels(img, channels, runs, n_slots, squares, threads, *, block=8):
    """Per-slot (sum, sum of squares, min, max) of each channel, in blocks of channels.

    A block of up to ``block`` channels shares one pass over the index; with ``threads`` >
    1, blocks run in parallel (the kernel releases the GIL).

    Parameters
    ----------
    img : (C, Y, X) ndarray
        The frame's channels.
    channels : list of int
        Those to accumulate.
    runs : tuple of ndarrays
        (start, end, slot) of the runs of :func:`slot_runs`.
    n_slots : int
        2n + 1: slot 0 unused, nuclei 1..n, cytoplasms n+1..2n.
    squares : bool
        Sum the squares (float images; integer images always do).
    threads : int

    Returns
    -------
    list of tuple
        Per channel, its (sum, sum of squares, min, max) (n_slots,) arrays.
    """
    from cytotrail.quantify import kernels

    exact_ints = img.dtype.kind in "ui" and img.dtype.itemsize <= 2
    accumulate = kernels.accumulate_int if exact_ints else kernels.accumulate
    blocks = [channels[i : i + block] for i in range(0, len(channels), block)]

    def run(block):
        if img.flags.c_contiguous and block == list(range(block[0], block[-1] + 1)):
            values = img[block[0] : block[-1] + 1].reshape(len(block), -1)
        else:
            values = np.stack([img[c].ravel() for c in block])
        return accumulate(values, *runs, n_slots, squares)

    if threads > 1 and len(blocks) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=threads) as pool:
            results = list(pool.map(run, blocks))
    else:
        results = [run(block) for block in blocks]
    out = []
    for res in results:  # (channels, slots) arrays
        out.extend(tuple(a[j] for a in res) for j in range(res[0].shape[0]))
    return out


def moment_stats(values, acc_channel, combo, index, compartments, stats, bg):
    """Mean, sum, std, min and max of every compartment from one channel's accumulators.

    Parameters
    ----------
    values : (Y*X,) ndarray
        The flat channel, in its own dtype.
    acc_channel : tuple of (2n + 1,) ndarrays
        Its (sum, sum of squares, min, max) per slot, from :func:`accumulate_channels`.
    combo : (Y*X,) int ndarray
        The slot index of :func:`slot_runs`.
    index : dict of str to Index
        The compartments of the frame.
    compartments : list of str
        Those to return.
    stats : list of (name, kind, q)
        Statistics of the kinds in ``MOMENT_KINDS``.
    bg : float or (n,) ndarray
        Background subtracted from every statistic but std.

    Returns
    -------
    dict
        ``{compartment: {name: (n,) ndarray}}``; NaN (and a zero sum) for empty compartments.
    """
    from cytotrail.quantify import kernels

    n = index["nucleus"].n
    exact_ints = values.dtype.kind in "ui" and values.dtype.itemsize <= 2
    want_std = any(kind == "std" for _, kind, _ in stats)
    s, ss, lo, hi = acc_channel
    parts = {"nucleus": slice(1, n + 1), "cytoplasm": slice(n + 1, 2 * n + 1)}
    counts = {"nucleus": index["nucleus"].counts}
    if "cytoplasm" in index:
        counts["cytoplasm"] = index["cytoplasm"].counts
    acc = {}
    for comp, sl in parts.items():
        if comp in counts:
            acc[comp] = (s[sl], ss[sl], lo[sl], hi[sl], counts[comp])
    if "cytoplasm" in acc:
        (s1, q1, l1, h1, c1), (s2, q2, l2, h2, c2) = acc["nucleus"], acc["cytoplasm"]
        acc["cell"] = (s1 + s2, q1 + q2, np.minimum(l1, l2), np.maximum(h1, h2), c1 + c2)
    var = {}
    if want_std and not exact_ints:
        with np.errstate(invalid="ignore", divide="ignore"):
            slot_mean = np.zeros(2 * n + 1)
            for comp, sl in parts.items():
                if comp in acc:
                    slot_mean[sl] = acc[comp][0] / np.maximum(acc[comp][4], 1)
            cell = acc.get("cell", acc["nucleus"])
            cell_mean = np.r_[0.0, cell[0] / np.maximum(cell[4], 1)]
        d, dc = kernels.deviations(values, combo, n, slot_mean, cell_mean)
        var = {"nucleus": d[1 : n + 1], "cytoplasm": d[n + 1 :], "cell": dc[1:]}
    out = {}
    for comp in compartments:
        total, squares, low, high, count = acc[comp]
        empty = count == 0
        res = {}
        with np.errstate(invalid="ignore", divide="ignore"):
            for name, kind, _ in stats:
                if kind == "sum":
                    res[name] = total - bg * count
                elif kind == "mean":
                    res[name] = total / count - bg
                elif kind == "min":
                    res[name] = np.where(empty, np.nan, low) - bg
                elif kind == "max":
                    res[name] = np.where(empty, np.nan, high) - bg
                elif exact_ints:
                    res[name] = kernels.int_std(total, squares, count.astype(np.int64))
                else:
                    res[name] = np.sqrt(var[comp] / count)
        out[comp] = res
    return out


def order_stats(values, index, stats, bg):
    """Medians and percentiles of one channel over every cell of one compartment.

    Each cell's pixels are sorted on their own (small sorts); percentiles interpolate
    linearly, as :func:`numpy.percentile`.

    Parameters
    ----------
    values : (Y*X,) ndarray
        The flat channel, in its own dtype.
    index : Index
        The compartment.
    stats : list of (name, kind, q)
        Statistics of kind ``median`` or ``percentile``.
    bg : float or (n,) ndarray
        Background subtracted from every statistic.

    Returns
    -------
    dict of str to (n,) ndarray
        NaN for cells with an empty compartment.
    """
    from cytotrail.quantify import kernels

    counts = index.counts
    qs = np.array([50.0 if kind == "median" else q for _, kind, q in stats], dtype=np.float64)
    table = kernels.segment_quantiles(values[index.pos], np.cumsum(counts) - counts, counts, qs)
    return {name: table[:, j] - bg for j, (name, _, _) in enumerate(stats)}


def sort_segments(v, index):
    """``v`` (grouped by cell) sorted by cell, then by value, as float64."""
    cell = index.cell
    if (v.dtype.kind in "ui" and v.dtype.itemsize <= 2) or v.dtype == np.float32:
        # one integer sort of (cell << 32 | order-preserving bits of the value)
        if v.dtype == np.float32:
            bits = v.view(np.uint32)
            low = np.where(bits >> 31, ~bits, bits | np.uint32(0x80000000))
        else:
            low = (v.astype(np.int64) + 2**31).astype(np.uint32)
        key = low.astype(np.uint64)
        key |= cell.astype(np.uint64) << np.uint64(32)
        key.sort()
        low = (key & np.uint64(0xFFFFFFFF)).astype(np.uint32)
        if v.dtype == np.float32:
            return np.where(low >> 31, low & np.uint32(0x7FFFFFFF), ~low).view(np.float32).astype(np.float64)
        return (low.astype(np.int64) - 2**31).astype(np.float64)
    order = np.lexsort((v, cell))
    return v[order].astype(np.float64)


def segment_percentile(ordered, counts, q):
    """Linear-interpolated percentile ``q`` of each sorted segment; NaN for empty ones."""
    starts = np.cumsum(counts) - counts
    out = np.full(len(counts), np.nan)
    ok = counts > 0
    pos = q / 100.0 * (counts[ok] - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, counts[ok] - 1)
    frac = pos - lo
    a = ordered[starts[ok] + lo]
    b = ordered[starts[ok] + hi]
    out[ok] = a + (b - a) * frac
    return out


# --------------------------------------------------------------------------------------
# morphology
