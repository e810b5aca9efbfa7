"""The flat label index of a frame: label ids mapped to 1..n, and the cell grown from each nucleus.

Every statistic of :mod:`cytotrail.quantify` works on a flat (Y*X,) index image whose
value at a pixel is the index (1..n) of the cell it belongs to, 0 outside, rather than on
the label ids themselves, which may be large and sparse.
"""

from __future__ import annotations

import numpy as np

# above this distance (px), growing the cells with expand_labels is faster than the kernel
GROW_KERNEL_MAX_PX = 9.0


class Index:
    """Flat label index of one compartment: ``idx`` in 0..n (0 = not in the compartment).

    Parameters
    ----------
    idx : (Y*X,) int ndarray
        Index (1..n) of the cell of every pixel, 0 outside the compartment.
    n : int
        Number of cells.
    counts : (n,) int ndarray, optional
        Pixels of each cell, when already known.
    """

    def __init__(self, idx, n, counts=None):
        from cytotrail.quantify import kernels

        self.idx = idx
        self.n = n
        if counts is None:  # no int64 copy of the index, as bincount makes
            counts = kernels.count_slots(idx, n + 1)[1:]
        self.counts = counts
        self._pos = None

    @property
    def pos(self):
        """Flat positions of the compartment's pixels, grouped by cell (one counting sort)."""
        if self._pos is None:
            fg = np.flatnonzero(self.idx)
            cells = self.idx[fg]
            # radix sort for small ids
            cells = cells.astype(np.uint16 if self.n < 2**16 else np.int64)
            self._pos = fg[np.argsort(cells, kind="stable")]
        return self._pos

    @property
    def cell(self):
        """Cell id (1..n) of every position of ``pos``."""
        return np.repeat(np.arange(1, self.n + 1), self.counts)


def label_index(lab):
    """The flat label index of a frame.

    Parameters
    ----------
    lab : (Y, X) int ndarray
        Labels, 0 = background.

    Returns
    -------
    ids : (n,) ndarray
        Label ids of the frame, sorted.
    idx : (Y*X,) int ndarray
        Index (1..n) of every pixel's label, 0 for background.
    lut : ndarray or None
        Lookup table from label id to index (None for very large label values).
    counts : (n,) int64 ndarray or None
        Pixels of every label (None when not counted on the way).
    """
    flat = lab.ravel()
    top = int(flat.max(initial=0))
    if top <= 4 * flat.size + 1024 and top < 2**31 - 1:
        from cytotrail.quantify import kernels

        # one counting pass and one relabelling pass, no int64 copy of the labels
        counts = kernels.count_slots(flat, top + 1)
        ids = np.flatnonzero(counts[1:]) + 1
        lut = np.zeros(top + 1, np.int32)
        lut[ids] = np.arange(1, len(ids) + 1, dtype=np.int32)
        return ids, kernels.relabel(flat, lut), lut, counts[ids]
    ids, inverse = np.unique(flat, return_inverse=True)
    if len(ids) and ids[0] == 0:
        ids = ids[1:]
    else:
        inverse = inverse + 1
    return ids, inverse.astype(np.int64), None, None


def cell_index(nuc_idx, flat_cells, ids):
    """The flat cell index of whole-cell labels.

    Each pixel is mapped to the index (1..n) of the nucleus with its label, 0 where no
    nucleus has it; nucleus pixels keep their own.

    Parameters
    ----------
    nuc_idx : (Y*X,) int ndarray
        The nucleus index of :func:`label_index`.
    flat_cells : (Y*X,) int ndarray
        Whole-cell labels, each cell labelled like its nucleus.
    ids : (n,) ndarray
        Sorted nucleus label ids.
    """
    pos = np.searchsorted(ids, flat_cells)
    pos = np.minimum(pos, max(len(ids) - 1, 0))
    found = (flat_cells > 0) & (ids[pos] == flat_cells) if len(ids) else flat_cells < 0
    cell_idx = np.where(found, pos + 1, 0).astype(nuc_idx.dtype)
    return np.where(nuc_idx > 0, nuc_idx, cell_idx)


def grow_index(nuc_idx, lab, ids, lut, distance, threads):
    """The flat cell index: nuclei grown by ``distance`` px without crossing into each other.

    The same pixels as ``skimage.segmentation.expand_labels(lab, distance)``, ties included
    (a test compares them), computed on the index image in one numba pass over the offsets
    of the disc, nearest first, instead of a Euclidean feature transform of the whole
    frame: 6-10x faster at 3 px, in row blocks over ``threads``. Its cost grows with the
    area of the disc, so above ``GROW_KERNEL_MAX_PX`` (where the two break even on sparse
    nuclei) ``expand_labels`` itself is called.

    Parameters
    ----------
    nuc_idx : (Y*X,) int ndarray
        The nucleus index of :func:`label_index`.
    lab : (Y, X) int ndarray
        The labels it was made from.
    ids, lut
        As returned by :func:`label_index`.
    distance : float
        Growth in pixels.
    threads : int
        Threads over blocks of rows (the result does not depend on it).
    """
    if distance <= 0:
        return nuc_idx
    if distance > GROW_KERNEL_MAX_PX:
        from skimage.segmentation import expand_labels

        grown = expand_labels(lab, distance=distance).ravel()
        if lut is not None:
            return lut[grown]
        cell_idx = np.searchsorted(ids, grown) + 1
        cell_idx[grown == 0] = 0
        return cell_idx
    from cytotrail.quantify import kernels

    r = int(np.floor(distance))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    d2 = (dy * dy + dx * dx).ravel()
    keep = (np.sqrt(d2.astype(np.float64)) <= distance) & (d2 > 0)
    dy, dx, d2 = dy.ravel()[keep], dx.ravel()[keep], d2[keep]
    order = np.lexsort((dy, dx, d2))  # nearest first, then smaller column, then smaller row
    dy, dx = dy[order].astype(np.int64), dx[order].astype(np.int64)
    height, width = lab.shape
    out = np.empty_like(nuc_idx)
    bounds = np.linspace(0, height, max(int(threads), 1) + 1).astype(int)
    if threads > 1 and height >= 64:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(
                pool.map(
                    lambda b: kernels.grow(nuc_idx, width, dy, dx, b[0], b[1], out),
                    zip(bounds[:-1], bounds[1:]),
                )
            )
    else:
        kernels.grow(nuc_idx, width, dy, dx, 0, height, out)
    return out
