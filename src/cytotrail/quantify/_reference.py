"""Plain numpy (and scipy, scikit-image) implementations of what the numba kernels compute.

The tests' oracle only: :func:`cytotrail.quantify.quantify` never calls this module. Each
function computes the same quantity as its namesake of the package by another route
(``ufunc.reduceat`` over the pixels sorted by cell, one integer sort per channel,
shifted-array neighbourhoods, Qhull), so that a test comparing the two can fail.
"""

from __future__ import annotations

import numpy as np

from cytotrail.quantify.index import Index
from cytotrail.quantify.morphology import DIAMOND, PERIMETER_WEIGHTS, hull_points
from cytotrail.quantify.stats import segment_percentile, sort_segments


def label_index(lab):
    """``(ids, idx, lut)`` as :func:`cytotrail.quantify.index.label_index`, with bincount or unique."""
    flat = lab.ravel()
    top = int(flat.max(initial=0))
    if top <= 4 * flat.size + 1024:
        present = np.bincount(flat, minlength=top + 1).astype(bool)
        present[0] = False
        ids = np.flatnonzero(present)
        lut = np.zeros(top + 1, np.int64)
        lut[ids] = np.arange(1, len(ids) + 1)
        return ids, lut[flat], lut
    ids, inverse = np.unique(flat, return_inverse=True)
    if len(ids) and ids[0] == 0:
        ids = ids[1:]
    else:
        inverse = inverse + 1
    return ids, inverse.astype(np.int64), None


def index(idx, n):
    """An :class:`~cytotrail.quantify.index.Index` counted with bincount."""
    return Index(idx, n, counts=np.bincount(idx, minlength=n + 1)[1:])


def channel_stats(values, index, stats, bg):
    """Statistics of one channel over every cell of one compartment (background removed).

    ``values`` is the flat channel in its own dtype; ``stats`` any of the kinds. Cells with
    an empty compartment get NaN (and a zero sum).
    """
    n, counts = index.n, index.counts
    ok = np.flatnonzero(counts)
    starts = (np.cumsum(counts) - counts)[counts > 0]
    kinds = {kind for _, kind, _ in stats}
    v = values[index.pos]
    out = {}
    sums = means = var = None
    exact_ints = v.dtype.kind in "ui" and v.dtype.itemsize <= 2
    if kinds & {"mean", "sum", "std"}:
        sums = np.zeros(n)
        if len(ok):
            # small integers: exact int64 sums; floats: float64 sums
            sums[ok] = np.add.reduceat(v, starts, dtype=np.int64 if exact_ints else np.float64)
        means = np.full(n, np.nan)
        means[ok] = sums[ok] / counts[ok]
    if "std" in kinds:
        var = np.full(n, np.nan)
        if len(ok) and exact_ints:
            # exact integer sums of squares; the difference in extended precision
            sq = np.add.reduceat(np.square(v, dtype=np.int64), starts)
            n_ok = counts[ok].astype(np.longdouble)
            s1 = np.add.reduceat(v, starts, dtype=np.int64).astype(np.longdouble)
            var[ok] = np.clip(sq.astype(np.longdouble) / n_ok - (s1 / n_ok) ** 2, 0, None)
        elif len(ok):
            dev = v - np.repeat(means[ok], counts[ok])
            var[ok] = np.add.reduceat(dev * dev, starts) / counts[ok]
    ordered = sort_segments(v, index) if kinds & {"median", "percentile"} else None
    for name, kind, q in stats:
        if kind == "mean":
            out[name] = means - bg
        elif kind == "sum":
            out[name] = sums - bg * counts
        elif kind == "std":
            out[name] = np.sqrt(var)
        elif kind in ("min", "max"):
            res = np.full(n, np.nan)
            if len(ok):
                ufunc = np.minimum if kind == "min" else np.maximum
                res[ok] = ufunc.reduceat(v, starts).astype(np.float64)
            out[name] = res - bg
        else:
            out[name] = segment_percentile(ordered, counts, 50.0 if kind == "median" else q) - bg
    return out


def central_moments(nucleus, shape):
    """Centroids (yc, xc) and second central moments (mu20, mu02, mu11) of every label."""
    n, counts = nucleus.n, nucleus.counts
    rows, cols = np.divmod(nucleus.pos, shape[1])
    rows = rows.astype(np.float64)
    cols = cols.astype(np.float64)
    cell = nucleus.cell
    with np.errstate(invalid="ignore", divide="ignore"):
        yc = np.bincount(cell, weights=rows, minlength=n + 1)[1:] / counts
        xc = np.bincount(cell, weights=cols, minlength=n + 1)[1:] / counts
    dr = rows - yc[cell - 1]
    dc = cols - xc[cell - 1]
    mu20 = np.bincount(cell, weights=dr * dr, minlength=n + 1)[1:]
    mu02 = np.bincount(cell, weights=dc * dc, minlength=n + 1)[1:]
    mu11 = np.bincount(cell, weights=dr * dc, minlength=n + 1)[1:]
    return yc, xc, mu20, mu02, mu11


def perimeter(lab, nucleus, shape):
    """Border pixels ``(rows, columns, index 1..n)`` and perimeter of every label, as
    :func:`cytotrail.quantify.morphology.perimeter`, from shifted copies of the padded labels."""
    nx = shape[1]
    padded = np.pad(lab, 1)
    p_idx = np.pad(nucleus.idx.reshape(shape), 1)
    width = nx + 2
    flat = padded.ravel()
    pos, cell = nucleus.pos, nucleus.cell
    r, c = np.divmod(pos, nx)
    ppos = (r + 1) * width + (c + 1)
    lv = flat[ppos]
    is_border = np.zeros(len(ppos), bool)
    for off in (-1, 1, -width, width):
        is_border |= flat[ppos + off] != lv
    bpos = ppos[is_border]
    bcell = cell[is_border]
    border_img = np.zeros(flat.shape, np.int64)
    border_img[bpos] = p_idx.ravel()[bpos]
    value = np.ones(len(bpos), np.int64)
    for off, weight in ((-1, 2), (1, 2), (-width, 2), (width, 2)):
        value += weight * (border_img[bpos + off] == bcell)
    for off in (-width - 1, -width + 1, width - 1, width + 1):
        value += 10 * (border_img[bpos + off] == bcell)
    perim = np.bincount(bcell, weights=PERIMETER_WEIGHTS[value], minlength=nucleus.n + 1)[1:]
    br, bc = np.divmod(bpos, width)  # back in unpadded coordinates, grouped by cell
    return (br - 1, bc - 1, bcell), perim


def convex_areas(border, nucleus, shape):
    """Pixel count of each label's convex hull image: Qhull and skimage's ``grid_points_in_poly``."""
    from scipy.spatial import ConvexHull, QhullError
    from skimage.measure import grid_points_in_poly

    areas = np.full(nucleus.n, np.nan)
    if len(border[0]) == 0:
        return areas
    cells, local, bounds, height, width = hull_points(border, shape)
    pts = (local[:, None, :] + DIAMOND / 2).reshape(-1, 2)
    for j, i in enumerate(cells.tolist()):
        try:
            hull = ConvexHull(pts[bounds[j] : bounds[j + 1]])
        except QhullError:
            continue
        inside = grid_points_in_poly(
            (int(height[j]), int(width[j])), hull.points[hull.vertices], binarize=False
        )
        areas[i] = np.count_nonzero(inside)
    return areas
