"""Network maps to instance labels: seeded watershed from the peaks of the centre-ness map."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["maps_to_labels", "DEFAULT_THRESHOLDS"]

DEFAULT_THRESHOLDS = {
    "foreground": 0.5,   # probability above which a pixel is nucleus
    "seed": 0.3,         # centre-ness a seed must exceed
    "h": 0.15,           # prominence of a centre-ness peak to seed its own nucleus (h-maxima)
    "min_area": 0.08,    # smallest object, as a fraction of the area of a disc of the diameter
}


def maps_to_labels(fg, centre, *, diameter, thresholds=None):
    """Instance labels from foreground probability and centre-ness maps.

    Seeds are the centre-ness peaks of prominence >= ``h`` (h-maxima) that exceed
    ``seed``, inside the foreground; a watershed on ``-centre`` grows them over the
    foreground. Foreground components without a seed become objects of their own when
    large enough. Peaks adapt to each nucleus, so dim or elongated nuclei whose
    centre-ness never gets high still get their seed, and touching nuclei (centre-ness
    falls to 0 on their shared border) get one each.

    Parameters
    ----------
    fg, centre : (Y, X) float ndarray
        Foreground probability and centre-ness, both in [0, 1].
    diameter : float
        Typical nucleus diameter in pixels of these maps (sets the smallest object).
    thresholds : dict, optional
        Keys of :data:`DEFAULT_THRESHOLDS`.

    Returns
    -------
    labels : (Y, X) int32 ndarray
        Objects numbered 1..n in the order of their seeds (row-major).
    seeds : (n, 2) float ndarray
        Centroid (y, x) of each object's seed, for ownership rules when tiling.
    """
    from skimage.segmentation import watershed

    th = dict(DEFAULT_THRESHOLDS)
    th.update(thresholds or {})
    mask = fg > th["foreground"]
    min_area = max(4.0, th["min_area"] * np.pi * diameter**2 / 4.0)
    if not mask.any():
        return np.zeros(fg.shape, np.int32), np.zeros((0, 2))
    from skimage.morphology import h_maxima

    peaks = h_maxima(np.asarray(centre, np.float32), np.float32(th["h"])).astype(bool) if th["h"] > 0 \
        else np.ones(mask.shape, bool)
    cores = peaks & (centre > th["seed"]) & mask
    markers, n = ndi.label(cores)
    # orphan foreground: components without a core become their own seed
    comp, n_comp = ndi.label(mask)
    if n_comp:
        has_core = np.zeros(n_comp + 1, bool)
        has_core[np.unique(comp[cores])] = True
        orphan = ~has_core[comp] & mask
        if orphan.any():
            extra, n_extra = ndi.label(orphan)
            markers = np.where(orphan, extra + n, markers)
            n += n_extra
    if n == 0:
        return np.zeros(fg.shape, np.int32), np.zeros((0, 2))
    labels = watershed(-centre, markers, mask=mask)
    area = np.bincount(labels.ravel(), minlength=n + 1)
    seed_area = np.bincount(markers.ravel(), minlength=n + 1)
    keep = (area >= min_area) & (seed_area > 0)
    keep[0] = False
    ids = np.flatnonzero(keep)
    if len(ids) == 0:
        return np.zeros(fg.shape, np.int32), np.zeros((0, 2))
    seeds = np.asarray(ndi.center_of_mass(np.ones_like(markers), markers, ids), float).reshape(-1, 2)
    lut = np.zeros(n + 1, np.int32)
    lut[ids] = np.arange(1, len(ids) + 1)
    labels = lut[labels]
    labels = _fill_holes(labels)
    return labels, seeds


def _fill_holes(labels):
    """Give enclosed background holes to the object around them."""
    holes = ndi.binary_fill_holes(labels > 0) & (labels == 0)
    if not holes.any():
        return labels
    _, (iy, ix) = ndi.distance_transform_edt(labels == 0, return_indices=True)
    out = labels.copy()
    out[holes] = labels[iy[holes], ix[holes]]
    return out
