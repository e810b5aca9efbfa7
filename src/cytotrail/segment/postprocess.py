"""Network maps to instance labels: seeded watershed from the peaks of the centre-ness map."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["maps_to_labels", "h_maxima", "DEFAULT_THRESHOLDS"]

DEFAULT_THRESHOLDS = {
    "foreground": 0.5,  # probability above which a pixel is nucleus
    "seed": 0.3,  # centre-ness a seed must exceed
    "h": 0.15,  # prominence of a centre-ness peak to seed its own nucleus (h-maxima)
    "min_area": 0.08,  # smallest object, as a fraction of the area of a disc of the diameter
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
    # cores need centre > seed: maxima that low are never seeds, so h_maxima may skip them
    peaks = (
        h_maxima(centre, th["h"], floor=th["seed"] - th["h"]) if th["h"] > 0 else np.ones(mask.shape, bool)
    )
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


def h_maxima(image, h, *, floor=None):
    """Regional maxima of dynamic (prominence) >= ``h``, 8-connected.

    The same pixels as :func:`skimage.morphology.h_maxima` (up to its float rounding
    allowance), computed by union-find over the pixels in decreasing order: when two
    components meet at level ``v``, the one with the lower top ends there, and its top
    plateau is an h-maximum when ``top - v >= h``. This sorts only the pixels above
    ``floor`` and so runs several times faster than skimage's grey reconstruction on
    the sparse maps of :func:`maps_to_labels`.

    Parameters
    ----------
    image : (Y, X) ndarray
    h : float
        Smallest dynamic, > 0.
    floor : float, optional
        Pixels <= ``floor`` are ignored (as if -inf); the result is exact for maxima
        >= ``floor + h`` and leaves out lower maxima whose dynamic it cannot know.

    Returns
    -------
    (Y, X) bool ndarray
    """
    image = np.asarray(image, np.float32)
    if image.ndim != 2:
        raise ValueError(f"h_maxima needs a 2-D image, got shape {image.shape}")
    from cytotrail.segment.hmax_kernel import h_maxima_flat

    flat = image.ravel()
    floor = np.float32(-np.inf if floor is None else floor)
    candidates = np.flatnonzero(flat > floor)
    order = candidates[np.argsort(-flat[candidates], kind="stable")]
    out = h_maxima_flat(flat, order, image.shape[1], np.float32(h), floor)
    return out.reshape(image.shape).view(bool)


def _fill_holes(labels):
    """Give enclosed background holes to the nearest object around them."""
    holes = ndi.binary_fill_holes(labels > 0) & (labels == 0)
    if not holes.any():
        return labels
    out = labels.copy()
    hole_ids, _ = ndi.label(holes)
    for i, box in enumerate(ndi.find_objects(hole_ids), start=1):
        # the object pixels around a hole lie within one pixel of its bounding box
        box = tuple(slice(max(0, s.start - 1), s.stop + 1) for s in box)
        sub, hole = labels[box], hole_ids[box] == i
        _, (iy, ix) = ndi.distance_transform_edt(sub == 0, return_indices=True)
        out[box][hole] = sub[iy[hole], ix[hole]]
    return out
