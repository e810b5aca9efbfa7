"""The classical backend: smoothing, Otsu or local threshold, distance-transform watershed."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from cytotrail.segment.diameter import estimate_diameter_mask
from cytotrail.segment.preprocess import normalize, percentiles

__all__ = ["watershed_frame", "estimate_diameter_classical"]


def estimate_diameter_classical(frame, *, max_side=2048):
    """Rough nucleus diameter (px) from an Otsu mask; see :func:`.diameter.estimate_diameter_mask`."""
    return estimate_diameter_mask(frame, max_side=max_side)


def watershed_frame(frame, *, diameter=None, local=False):
    """Segment one frame with smoothing + threshold + distance-transform watershed.

    Parameters
    ----------
    frame : (Y, X) ndarray
        Nuclear channel, any dtype.
    diameter : float, optional
        Typical nucleus diameter in px (default: estimated from an Otsu mask).
    local : bool
        Use a local (adaptive) threshold instead of the global Otsu threshold; better
        under strong background gradients.

    Returns
    -------
    (Y, X) int32 ndarray
    """
    from skimage.feature import peak_local_max
    from skimage.filters import threshold_local, threshold_otsu
    from skimage.segmentation import relabel_sequential, watershed

    p_lo, p_hi = percentiles(frame)
    img = np.clip(normalize(frame, p_lo, p_hi), 0, 1)
    if p_hi - p_lo <= 0 or not img.any():
        return np.zeros(img.shape, np.int32)
    if diameter is None:
        diameter = estimate_diameter_classical(frame) or 12.0
    img = ndi.gaussian_filter(img, max(0.5, diameter / 12.0))
    if local:
        block = int(4 * diameter) | 1
        mask = img > threshold_local(img, block_size=block, offset=-0.02)
        mask &= img > threshold_otsu(img) * 0.5
    else:
        mask = img > threshold_otsu(img)
    # an Otsu threshold on a flat noisy frame splits noise: demand real contrast
    if img[mask].mean() - img[~mask].mean() < 0.15 if mask.any() and (~mask).any() else True:
        return np.zeros(img.shape, np.int32)
    mask = ndi.binary_opening(mask, iterations=1)
    mask = ndi.binary_fill_holes(mask)
    dist = ndi.distance_transform_edt(mask)
    dist = ndi.gaussian_filter(dist, max(0.5, diameter / 16.0))
    min_distance = max(2, int(diameter / 3))
    comp, _ = ndi.label(mask)
    peaks = peak_local_max(dist, min_distance=min_distance, labels=comp, exclude_border=False)
    markers = np.zeros(img.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(-dist, markers, mask=mask)
    min_area = max(4.0, 0.1 * np.pi * diameter**2 / 4)
    area = np.bincount(labels.ravel())
    small = area < min_area
    small[0] = False
    labels[small[labels]] = 0
    return relabel_sequential(labels.astype(np.int32))[0]
