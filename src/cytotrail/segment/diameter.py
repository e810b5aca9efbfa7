"""Nucleus diameter estimates that hold on tissue: specks and irregular nuclei.

Tissue images (e.g. a histone channel of multiplexed ion beam or cyclic immunofluorescence
images) hold many small bright specks beside the nuclei; each is an object, and with
hundreds of them the plain median object size is the size of a speck, not of a nucleus.
Nuclei hold most of the segmented area, so the area-weighted upper part of the size
distribution is theirs: objects far smaller than it are set aside before the median
(:func:`typical_diameter`). :func:`estimate_diameter_otsu` is the starting estimate of the
unet backend: per object of an Otsu mask, then the same robust median;
:func:`estimate_diameter_mask` (the whole mask at once) is the watershed backend's.
Every diameter estimate of the package lives here.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from cytotrail.segment.preprocess import normalize, percentiles

__all__ = [
    "typical_diameter",
    "estimate_diameter_otsu",
    "estimate_diameter_mask",
    "otsu_mask",
    "SPECK_FRACTION",
    "REFERENCE_QUANTILE",
]

# objects under this fraction of the reference diameter are specks or fragments, not nuclei
SPECK_FRACTION = 0.5
# the reference diameter: this quantile of the diameters weighted by object area
REFERENCE_QUANTILE = 0.75


def _weighted_quantile(values, weights, q):
    order = np.argsort(values)
    values, weights = values[order], weights[order]
    cumulative = np.cumsum(weights)
    return float(values[np.searchsorted(cumulative, q * cumulative[-1])])


def typical_diameter(diameters, *, speck_fraction=SPECK_FRACTION, quantile=REFERENCE_QUANTILE):
    """Median diameter of the objects that are not specks.

    Parameters
    ----------
    diameters : (N,) array_like
        Equivalent-circle diameters (px) of the segmented objects.
    speck_fraction : float
        Objects smaller than this fraction of the reference diameter are left out.
    quantile : float
        The reference diameter is this quantile of the diameters weighted by area
        (diameter squared), which the nuclei dominate even when specks outnumber them.

    Returns
    -------
    float or None
        None when there are no objects.
    """
    d = np.asarray(diameters, np.float64).ravel()
    d = d[np.isfinite(d) & (d > 0)]
    if d.size == 0:
        return None
    reference = _weighted_quantile(d, d**2, quantile)
    return float(np.median(d[d >= speck_fraction * reference]))


def otsu_mask(frame, *, max_side=2048, fill_holes=False):
    """Foreground of a frame's central crop by Otsu's threshold, for diameter estimates.

    The central ``max_side`` x ``max_side`` crop is percentile-normalised, smoothed
    (sigma 1 px), thresholded and opened once (holes filled on request). Returns None
    when the crop holds no foreground (flat, or fewer than 10 pixels).
    """
    from skimage.filters import threshold_otsu

    ny, nx = frame.shape
    y0, x0 = max(0, (ny - max_side) // 2), max(0, (nx - max_side) // 2)
    frame = frame[y0 : y0 + max_side, x0 : x0 + max_side]
    p_lo, p_hi = percentiles(frame)
    img = np.clip(normalize(frame, p_lo, p_hi), 0, 1)
    if not img.any():
        return None
    img = ndi.gaussian_filter(img, 1.0)
    try:
        mask = img > threshold_otsu(img)
    except ValueError:
        return None
    mask = ndi.binary_opening(mask, iterations=1)
    if fill_holes:
        mask = ndi.binary_fill_holes(mask)
    return mask if mask.sum() >= 10 else None


def estimate_diameter_mask(frame, *, max_side=2048):
    """Rough nucleus diameter (px) of the whole Otsu mask: 6 x its mean distance to the edge.

    For a disc of radius r the mean Euclidean distance to its edge is r / 3. The watershed
    backend's estimate; specks pull it down (see :func:`estimate_diameter_otsu`).
    Returns None when the frame holds no foreground.
    """
    mask = otsu_mask(frame, max_side=max_side)
    if mask is None:
        return None
    dist = ndi.distance_transform_edt(mask)
    return float(np.clip(6.0 * dist[mask].mean(), 4.0, 400.0))


def estimate_diameter_otsu(frame, *, max_side=2048):
    """Nucleus diameter (px) from the objects of an Otsu mask, robust to specks.

    Each connected object of the (smoothed, opened, hole-filled) Otsu mask gets the
    diameter 6 x its mean distance to the mask edge (2 r for a disc of radius r, and the
    width of an elongated clump rather than its length); :func:`typical_diameter` of those
    sets specks aside. Only the central ``max_side`` x ``max_side`` crop is used.

    Parameters
    ----------
    frame : (Y, X) ndarray

    Returns
    -------
    float or None
        None when the frame holds no foreground.
    """
    mask = otsu_mask(frame, max_side=max_side, fill_holes=True)
    if mask is None:
        return None
    comp, n = ndi.label(mask)
    mean_dist = ndi.mean(ndi.distance_transform_edt(mask), comp, np.arange(1, n + 1))
    d = typical_diameter(6.0 * np.asarray(mean_dist))
    return None if d is None else float(np.clip(d, 4.0, 400.0))
