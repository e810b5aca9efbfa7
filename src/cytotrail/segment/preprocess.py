"""Intensity normalisation and target maps shared by training and inference."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["percentiles", "normalize", "centre_map", "equivalent_diameters"]

# at most this many pixels are read to estimate a frame's percentiles
_MAX_SAMPLE = 1_000_000


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
