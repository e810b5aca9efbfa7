"""Intensity normalisation and target maps shared by training and inference."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "percentiles",
    "normalize",
    "noise_ratio",
    "denoise_sigma",
    "looks_like_counts",
    "COUNTS_FLOOR_SHARE",
    "NOISE_TARGET",
    "DENOISE_SIGMA",
    "centre_map",
    "equivalent_diameters",
]

# at most this many pixels are read to estimate a frame's percentiles
_MAX_SAMPLE = 1_000_000

# Pixel noise of a normalised frame (:func:`noise_ratio`) above which inference smooths a
# frame of ion counts first: about the 99th percentile over dsb2018's train images (0.020),
# the fluorescence the shipped network learnt from; ion-count images (IMC, MIBI) sit at
# 0.02-0.09
NOISE_TARGET = 0.02
# the Gaussian sigma (frame pixels) such a frame is smoothed with: on the steinbock IMC
# images smoothed before segmenting, 0.5 / 0.75 / 1 / 1.5 found 264 / 290 / 314 / 235
# nuclei for DeepCell's 404 cells (none: 267)
DENOISE_SIGMA = 1.0
# share of a frame's pixels at its minimum or at 0 from which it is taken for ion counts
COUNTS_FLOOR_SHARE = 0.25
# the noise is measured on at most this central square of a frame
_NOISE_CROP = 512
# Immerkaer's kernel: a second difference that cancels planes and most smooth signal
_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


def percentiles(frame, lo=1.0, hi=99.8):
    """Robust low/high intensity of a frame from a strided subsample (bounded memory).

    Parameters
    ----------
    frame : (Y, X) ndarray
    lo, hi : float
        Percentiles.

    Returns
    -------
    (float, float)
    """
    frame = np.asarray(frame)
    step = max(1, int(np.ceil(np.sqrt(frame.size / _MAX_SAMPLE))))
    sample = np.asarray(frame[::step, ::step], np.float32)
    p_lo, p_hi = np.percentile(sample, [lo, hi])
    return float(p_lo), float(p_hi)


def normalize(frame, p_lo, p_hi, *, min_range=1e-6):
    """Map ``p_lo`` to 0 and ``p_hi`` to 1 (float32, not clipped); a flat frame maps to 0."""
    frame = np.asarray(frame, np.float32)
    span = p_hi - p_lo
    if span < min_range:
        return np.zeros(frame.shape, np.float32)
    return (frame - np.float32(p_lo)) / np.float32(span)


def _central_crop(frame):
    """The central square of at most ``_NOISE_CROP`` pixels of a frame, float32."""
    y0 = max(0, (frame.shape[0] - _NOISE_CROP) // 2)
    x0 = max(0, (frame.shape[1] - _NOISE_CROP) // 2)
    return np.asarray(frame[y0 : y0 + _NOISE_CROP, x0 : x0 + _NOISE_CROP], np.float32)


def noise_ratio(frame, p_lo, p_hi):
    """Pixel noise of a frame as a share of its ``p_lo``..``p_hi`` intensity range.

    Immerkaer's estimate (1996): the mean absolute response to a 3 x 3 second-difference
    kernel, which white noise of standard deviation s gives as 6 s sqrt(2 / pi), and which
    smooth structure larger than a few pixels barely moves. Measured on a central square
    of at most ``_NOISE_CROP`` pixels.

    Returns
    -------
    float
        0 for a flat frame or one smaller than 3 x 3.
    """
    frame = np.asarray(frame)
    span = p_hi - p_lo
    if frame.shape[0] < 3 or frame.shape[1] < 3 or not span > 0:
        return 0.0
    response = ndi.convolve(_central_crop(frame), _IMMERKAER, mode="nearest")[1:-1, 1:-1]
    return float(np.sqrt(np.pi / 2) * np.mean(np.abs(response)) / 6 / span)


def looks_like_counts(frame):
    """Whether at least ``COUNTS_FLOOR_SHARE`` of a frame's pixels are at its minimum or exactly 0.

    A counting detector at low flux (IMC, MIBI) records no ion in most pixels of the
    background and of dim cells: 41-84 % of the steinbock IMC pixels are 0 (exact zeros
    count even when a spillover compensation left a few pixels below them). Fluorescence
    has a noisy floor: over dsb2018, 99 % of the images have under 61 % of their pixels at
    the minimum, and the median image none; a background-subtracted frame whose noise
    straddles 0 has next to no pixel exactly at 0.
    """
    crop = _central_crop(np.asarray(frame))
    if not crop.size:
        return False
    return float(np.mean((crop <= crop.min()) | (crop == 0))) >= COUNTS_FLOOR_SHARE


def denoise_sigma(frame, p_lo, p_hi, *, target=NOISE_TARGET):
    """Gaussian sigma (frame pixels) to smooth a frame with before the network: 0 or ``DENOISE_SIGMA``.

    A frame of ion counts (:func:`looks_like_counts`) whose :func:`noise_ratio` is above
    ``target`` (noisier than nearly every image the shipped network learnt from) is smoothed
    with sigma ``DENOISE_SIGMA``; every other frame is left as it is. Sparse shot noise is
    read by a network trained on fluorescence as texture: on the 15 steinbock IMC images
    (H3K27Ac) it found 267 nuclei where DeepCell found 404 whole cells, 310 with the
    smoothing; the share of DeepCell's cells holding exactly one nucleus went from 41.8 to
    54.2 % (``tests/segment/test_segment_noise.py``), and grown cells scored F1@0.5 0.585
    against DeepCell's instead of 0.411 (``benchmarks/bench_cells.py --steinbock``).
    Synthetic nuclei at 5 ions a pixel are found with F1@0.5 0.939 instead of 0.427. The
    network copes with the dense, Gaussian-like noise of fluorescence by itself: smoothing
    synthetic fluorescence at noise ratios 0.022-0.043 cost up to 0.045 F1 (small nuclei),
    and two noisy dsb2018 images lost 0.04 AP each, so those frames are left alone.
    """
    if not looks_like_counts(frame) or noise_ratio(frame, p_lo, p_hi) <= target:
        return 0.0  # the cheaper check first: most frames are fluorescence
    return DENOISE_SIGMA


def centre_map(labels):
    """Scale-free centre-ness of every object: distance to its boundary / its max distance.

    Parameters
    ----------
    labels : (Y, X) integer ndarray

    Returns
    -------
    (Y, X) float32 ndarray in [0, 1]; 0 on background, 1 at each object's innermost pixel.
    """
    from skimage.segmentation import find_boundaries

    labels = np.asarray(labels)
    inside = (labels > 0) & ~find_boundaries(labels, mode="inner")
    dist = ndi.distance_transform_edt(inside) + (labels > 0)
    if not labels.any():
        return np.zeros(labels.shape, np.float32)
    peak = ndi.maximum(dist, labels, index=np.arange(int(labels.max()) + 1))
    peak = np.asarray(peak, np.float64)
    out = np.where(labels > 0, dist / np.maximum(peak[labels], 1e-6), 0.0)
    return out.astype(np.float32)


def equivalent_diameters(labels):
    """Equivalent-circle diameters sqrt(4 area / pi) of the objects of a label image."""
    labels = np.asarray(labels)
    counts = np.bincount(labels.ravel().astype(np.int64))[1:]
    counts = counts[counts > 0]
    return np.sqrt(4.0 * counts / np.pi)
