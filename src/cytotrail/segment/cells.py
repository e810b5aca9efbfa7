"""Whole cells grown from their nuclei over a membrane / cytoplasm signal ("propagation").

Each nucleus seeds a watershed on the sum of the named membrane and cytoplasm channels
(each scaled to its own robust range, then smoothed): cells flood outwards from their
nuclei through the stained cell body and meet at the bright membrane ridges between
them. A cell never reaches further than ``max_um`` from its nucleus, and ends where the
signal falls below half of that cell's own peak (the half-maximum edge of a blurred step, and
per cell, so that dim and bright cells alike get their true extent); the dim inside of a
membrane-stained ring is filled. The first pass, over the pixels above the frame's Otsu
threshold, finds each cell's basin and peak. Every cell reaches at least ``min_um`` from
its nucleus (where no neighbour is nearer), so that a cell negative for every named channel
gets a thin ring instead of its bare nucleus. The label of a cell is the label of its
nucleus, and every nucleus pixel stays in its cell.

Examples
--------
>>> import numpy as np
>>> from cytotrail.segment.cells import grow_cells
>>> nuclei = np.zeros((32, 32), np.uint32); nuclei[14:18, 8:12] = 1; nuclei[14:18, 20:24] = 2
>>> signal = np.zeros((1, 32, 32)); signal[0, 10:22, 4:28] = 1.0
>>> cells = grow_cells(nuclei, signal, max_um=6.0)
>>> sorted(np.unique(cells).tolist()), bool((cells[nuclei > 0] == nuclei[nuclei > 0]).all())
([0, 1, 2], True)
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from cytotrail.checks import labels_and_image
from cytotrail.io import InputError

__all__ = ["grow_cells", "membrane_channels", "EDGE_FRACTION", "MAX_UM", "MIN_UM", "SMOOTH_PX"]

MAX_UM = 10.0  # farthest a cell reaches from its nucleus, in µm (segment.cells.max_um)
MIN_UM = 2.0  # a cell reaches at least this far (unless a neighbour is nearer), in µm
SMOOTH_PX = 0.0  # Gaussian sigma of the channel sum, in pixels (chosen on the dev seed, see bench)
EDGE_FRACTION = 0.5  # a cell ends where the signal falls below this fraction of its own peak
_LOW_Q, _HIGH_Q = 1.0, 99.5  # percentiles that scale each channel to [0, 1]


def membrane_channels(image, channel_names, names):
    """The named channels of an image, checked.

    Parameters
    ----------
    image : (T, C, Y, X) or (C, Y, X) ndarray
    channel_names : sequence of str
        One name per channel C.
    names : sequence of str
        Membrane / cytoplasm channels to grow cells over (at least one).

    Returns
    -------
    (T, K, Y, X) or (K, Y, X) ndarray
        The K named channels, in the order of ``names``.

    Raises
    ------
    InputError
        No name given, or a name that is not a channel (naming the available ones).
    """
    names = [str(n) for n in names]
    channel_names = [str(n) for n in channel_names]
    if not names:
        raise InputError("segment.cells.channels is empty: name at least one membrane or cytoplasm channel")
    missing = [n for n in names if n not in channel_names]
    if missing:
        raise InputError(
            f"membrane/cytoplasm channel(s) {missing} of segment.cells.channels are "
            f"not channels of the image; available channels: {channel_names}"
        )
    image = np.asarray(image)
    index = [channel_names.index(n) for n in names]
    return image[:, index] if image.ndim == 4 else image[index]


def grow_cells(nuclei, channels, *, max_um=MAX_UM, min_um=MIN_UM, pixel_size_um=1.0, smooth_px=SMOOTH_PX):
    """Grow every nucleus into its whole cell (seeded watershed on a membrane signal).

    Parameters
    ----------
    nuclei : (T, Y, X) or (Y, X) int ndarray
        Nucleus labels, 0 = background; each cell keeps the label of its nucleus.
    channels : (T, K, Y, X), (K, Y, X) or, for 2-D ``nuclei``, (Y, X) ndarray
        Membrane and cytoplasm channels (see :func:`membrane_channels`); they are summed
        after scaling each to its 1st-99.5th percentile range of the frame.
    max_um : float
        Farthest a cell pixel lies from its nucleus, in µm.
    min_um : float
        Every cell covers the pixels within this distance of its nucleus (shared with its
        neighbours by the watershed), whatever the signal, in µm; 0 leaves unstained cells
        at their nucleus.
    pixel_size_um : float
        Pixel size in µm, converts ``max_um`` to pixels.
    smooth_px : float
        Gaussian sigma applied to the channel sum, in pixels (0: none, the default).

    Returns
    -------
    ndarray
        Cell labels, same shape and dtype as ``nuclei``.

    Raises
    ------
    InputError
        Shapes that do not match, non-integer or negative nuclei, NaN / infinite pixels,
        non-positive ``max_um`` / ``pixel_size_um`` or a negative ``min_um``.
    """
    nuclei = np.asarray(nuclei)
    channels = np.asarray(channels)
    squeeze = nuclei.ndim == 2
    if squeeze:
        nuclei = nuclei[np.newaxis]
        channels = channels[np.newaxis] if channels.ndim in (2, 3) else channels
    if channels.ndim == 3:
        channels = channels[:, np.newaxis]
    nuclei, channels = labels_and_image(nuclei, channels, names=("nuclei", "channels"))
    if channels.dtype.kind == "f" and not np.isfinite(channels).all():
        raise InputError(
            "membrane/cytoplasm channels contain NaN or infinite pixels; fill them "
            "(e.g. with 0) before growing cells"
        )
    if pixel_size_um is None or not pixel_size_um > 0:
        raise InputError(f"pixel_size_um must be positive, got {pixel_size_um}")
    if max_um is None or not max_um > 0:
        raise InputError(f"segment.cells.max_um must be positive, got {max_um}")
    if min_um is None or min_um < 0:
        raise InputError(f"segment.cells.min_um must be >= 0, got {min_um}")
    max_px = float(max_um) / float(pixel_size_um)
    min_px = float(min_um) / float(pixel_size_um)

    out = np.zeros_like(nuclei)
    for t in range(nuclei.shape[0]):
        if nuclei[t].any():
            out[t] = _grow_frame(nuclei[t], _channel_sum(channels[t], smooth_px), max_px, min_px)
    return out[0] if squeeze else out


def _grow_frame(lab, signal, max_px, min_px):
    """Two watersheds from the nuclei: a generous one over the Otsu-stained area, then one
    over the pixels at or above ``EDGE_FRACTION`` of their own cell's peak signal, plus those
    within ``min_px`` of a nucleus."""
    from skimage.filters import threshold_otsu
    from skimage.segmentation import watershed

    distance = ndi.distance_transform_edt(lab == 0)
    reach = distance <= max_px
    stained = lab > 0
    if signal.max() > signal.min():
        stained = stained | (signal > threshold_otsu(signal))
    basins = watershed(signal, markers=lab, mask=reach & ndi.binary_fill_holes(stained))
    peak = np.zeros(int(basins.max()) + 1)
    ids = np.unique(basins)
    ids = ids[ids > 0]
    peak[ids] = ndi.maximum(signal, basins, ids)
    # membrane cells: dim inside a bright ring, so the holes of the kept area are filled
    keep = ndi.binary_fill_holes(((signal >= EDGE_FRACTION * peak[basins]) & (basins > 0)) | (lab > 0))
    return watershed(signal, markers=lab, mask=(keep | (distance <= min_px)) & reach)


def _channel_sum(frame, smooth_px):
    """(K, Y, X) channels -> (Y, X) sum of each scaled to its robust [0, 1] range, smoothed."""
    total = np.zeros(frame.shape[1:], np.float64)
    for ch in frame:
        ch = ch.astype(np.float64, copy=False)
        lo, hi = np.percentile(ch, [_LOW_Q, _HIGH_Q])
        if hi > lo:
            total += np.clip((ch - lo) / (hi - lo), 0.0, None)
    if smooth_px > 0:
        total = ndi.gaussian_filter(total, smooth_px)
    return total
