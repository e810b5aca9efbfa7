"""One frame: the compartments of every cell, then morphology and the statistics of each channel."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cytotrail.io import InputError
from cytotrail.quantify.background import block_index, channel_background
from cytotrail.quantify.index import Index, cell_index, grow_index, label_index
from cytotrail.quantify.morphology import morphology as shape_columns
from cytotrail.quantify.options import MOMENT_KINDS
from cytotrail.quantify.stats import accumulate_channels, moment_stats, order_stats, slot_runs

# channels accumulated in one pass over the index, per thread
CHANNEL_BLOCK = 8


def quantify_frame(
    lab,
    img,
    t,
    *,
    markers,
    channels,
    stats,
    compartments,
    grow_px,
    pixel_size_um,
    background,
    neighbour_radius_um,
    morphology,
    block_px,
    threads,
    cells=None,
):
    """The table of one frame (the options already checked by :func:`cytotrail.quantify.quantify`).

    Parameters
    ----------
    lab : (Y, X) int ndarray
        Nucleus labels of frame ``t``.
    img : (C, Y, X) ndarray
        Its channels.
    t : int
        Frame index, written in the ``frame`` column.
    markers, channels
        Column names of the measured channels and their indices in ``img``.
    stats : list of (name, kind, q)
        From :func:`cytotrail.quantify.options.parse_statistics`.
    compartments : list of str
    grow_px : float
        Width of the cytoplasm ring in pixels.
    pixel_size_um, neighbour_radius_um, morphology, threads
        As :func:`cytotrail.quantify.quantify` takes them.
    background : list
        Per measured channel: a float, None (``"auto"``) or ``"local"``.
    block_px : int
        Block size of the local background, in pixels.
    cells : (Y, X) int ndarray, optional
        Whole-cell labels of the frame, replacing the ring.

    Returns
    -------
    DataFrame
        One row per label of the frame, sorted by label.
    """
    ids, nuc_idx, lut, nuc_counts = label_index(lab)
    n = len(ids)
    shape = lab.shape
    cols = {"frame": np.full(n, t, np.int64), "label": ids.astype(np.int64)}
    estimated = None in background or "local" in background  # needs the pixels outside every cell
    with_cell = estimated or any(c in ("cytoplasm", "cell") for c in compartments)
    index = _compartments(lab, ids, nuc_idx, lut, nuc_counts, grow_px, threads, cells, with_cell=with_cell)
    outside = blocks = None
    if estimated:
        outside = index["cell"].idx == 0
    if "local" in background:
        blocks = block_index(outside, shape, block_px)

    moments = [st for st in stats if st[1] in MOMENT_KINDS]
    order = [st for st in stats if st[1] not in MOMENT_KINDS]
    combo = runs = position_sums = None
    if moments:
        # runs of equal slot along the rows, and the nuclei's coordinate sums on the way
        combo, runs, position_sums = slot_runs(index, shape[1])
    cols.update(
        shape_columns(
            index["nucleus"],
            shape,
            pixel_size_um,
            neighbour_radius_um,
            full=morphology,
            position_sums=position_sums,
        )
    )
    squares = img.dtype.kind in "ui" and img.dtype.itemsize <= 2 and any(k == "std" for _, k, _ in moments)
    chunk = CHANNEL_BLOCK * max(int(threads), 1)  # channels held as accumulators at a time
    accumulated = {}
    for j, (marker, c, bg) in enumerate(zip(markers, channels, background)):
        if moments and j % chunk == 0:
            block = accumulate_channels(
                img, channels[j : j + chunk], runs, 2 * n + 1, squares, threads, block=CHANNEL_BLOCK
            )
            accumulated = dict(zip(range(j, j + chunk), block))
        values = img[c].ravel()
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            bad = int(np.count_nonzero(~np.isfinite(values)))
            raise InputError(
                f"channel {marker!r} of frame {t} has {bad} NaN or infinite "
                "pixel(s); fill them (e.g. with 0) before quantifying"
            )
        bg = channel_background(values, bg, outside, blocks, cols["y"], cols["x"], block_px)
        results = {comp: {} for comp in compartments}
        if moments:
            acc = accumulated.pop(j)
            for comp, out in moment_stats(values, acc, combo, index, compartments, moments, bg).items():
                results[comp].update(out)
        if order:
            for comp in compartments:
                results[comp].update(order_stats(values, index[comp], order, bg))
        for comp in compartments:
            for name, *_ in stats:
                cols[f"{marker}_{comp}_{name}"] = results[comp][name]
    return pd.DataFrame(cols)


def _compartments(lab, ids, nuc_idx, lut, nuc_counts, grow_px, threads, cells, *, with_cell):
    """``{"nucleus": Index}``, plus ``"cell"`` and ``"cytoplasm"`` when ``with_cell``: the nucleus
    grown by ``grow_px`` (px), or the whole-cell labels ``cells``, and the cell less its nucleus."""
    n = len(ids)
    nucleus = Index(nuc_idx, n, counts=nuc_counts)
    index = {"nucleus": nucleus}
    if with_cell:
        if cells is None:
            cell_idx = grow_index(nuc_idx, lab, ids, lut, grow_px, threads)
        else:
            cell_idx = cell_index(nuc_idx, cells.ravel(), ids)
        index["cell"] = Index(cell_idx, n)
        ring = np.where(nuc_idx > 0, 0, cell_idx)
        index["cytoplasm"] = Index(ring, n, counts=index["cell"].counts - nucleus.counts)
    return index
