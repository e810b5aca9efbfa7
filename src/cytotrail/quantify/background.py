"""The background subtracted from each channel: given, the median outside every cell, or local."""

from __future__ import annotations

import numpy as np

from cytotrail.quantify.index import Index
from cytotrail.quantify.stats import segment_percentile, sort_segments


def channel_background(values, bg, outside, blocks, yc, xc, block):
    """The background of one channel of one frame.

    Parameters
    ----------
    values : (Y*X,) ndarray
        The flat channel.
    bg : float, None or "local"
        Given value; None: the median of the pixels ``outside`` every cell (0 when there are
        none); ``"local"``: :func:`local_background`.
    outside : (Y*X,) bool ndarray or None
        Pixels outside every cell (needed unless ``bg`` is a float).
    blocks, yc, xc, block
        As :func:`local_background` takes them.

    Returns
    -------
    float or (n,) ndarray
        One value for the frame, or one per cell.
    """
    if bg is None:
        return float(np.median(values[outside])) if outside.any() else 0.0
    if isinstance(bg, str):  # "local"
        return local_background(values, outside, blocks, yc, xc, block)
    return bg


def block_index(outside, shape, block):
    """Index of the background pixels by square block of ``block`` px (ids 1..n_blocks, row-major),
    and the (rows, columns) of the grid of blocks."""
    ny, nx = shape
    nby, nbx = -(-ny // block), -(-nx // block)
    rows = np.arange(ny) // block
    colsb = np.arange(nx) // block
    bid = (rows[:, None] * nbx + colsb[None, :] + 1).ravel()
    return Index(np.where(outside, bid, 0), nby * nbx), (nby, nbx)


def local_background(values, outside, blocks, yc, xc, block):
    """Per-cell background: block medians of the background pixels, bilinear at the centroid.

    Blocks without background pixels take the value of the nearest block that has some.

    Parameters
    ----------
    values : (Y*X,) ndarray
        The flat channel.
    outside : (Y*X,) bool ndarray
        Pixels outside every cell.
    blocks : (Index, (nby, nbx))
        From :func:`block_index`.
    yc, xc : (n,) ndarray
        Centroids of the cells, in pixels.
    block : int
        Block size in pixels.

    Returns
    -------
    (n,) ndarray or float
        0.0 when no pixel is outside the cells.
    """
    from scipy.ndimage import map_coordinates

    index, grid_shape = blocks
    if not outside.any():
        return 0.0
    med = segment_percentile(sort_segments(values[index.pos], index), index.counts, 50.0)
    med = med.reshape(grid_shape)
    empty = np.isnan(med)
    if empty.any():  # blocks without background pixels take the nearest block's value
        from scipy.ndimage import distance_transform_edt

        nearest = distance_transform_edt(empty, return_distances=False, return_indices=True)
        med = med[tuple(nearest)]
    coords = np.vstack([(yc - (block - 1) / 2) / block, (xc - (block - 1) / 2) / block])
    return map_coordinates(med, coords, order=1, mode="nearest")
