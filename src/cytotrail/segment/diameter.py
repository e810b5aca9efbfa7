"""Nucleus diameter estimates that hold on tissue: specks and irregular nuclei.

Tissue images (e.g. a histone channel of multiplexed ion beam or cyclic immunofluorescence
images) hold many small bright specks beside the nuclei; each is an object, and with
hundreds of them the plain median object size is the size of a speck, not of a nucleus.
Nuclei hold most of the segmented area, so the area-weighted upper part of the size
distribution is theirs: objects far smaller than it are set aside before the median
(:func:`typical_diameter`). :func:`estimate_diameter_otsu` is the starting estimate of the
unet backend: per object of an Otsu mask, then the same robust median;
:func:`estimate_diameter_mask` (the whole mask at once) is the watershed backend's.

The unet backend then measures the network's own output at the scale of the current
estimate (:func:`network_diameter`), in one of two ways (:data:`MEASURES`):

- ``"objects"`` (the default): the size of the network's objects. The network splits
  textured, irregular tissue nuclei into fragments, the more so the smaller the scale it runs
  at, so the loop settles 13-24 % below the true size on the synthetic tissue frames of
  :func:`cytotrail.synth.tissue_frame` (22-26 px for nuclei of 28-30 px).
- ``"foreground"``: the pieces of the network's confident foreground, holes filled, cut only
  where the network draws a border between nuclei (a centre-ness valley) or where the
  foreground narrows (:func:`foreground_diameters`). It holds on the tissue frames (within
  4 %, specks and very few nuclei included) and on dsb2018 (median error 6.4 % -> 4.7 % over
  535 images), but crowded, touching large nuclei (the demo generator's at 40 px) merge into
  pieces 1.3-1.7 x too large, which then segments them merged (F1 0.67 instead of >= 0.85),
  and AP@0.5 on the held-out dsb2018 families fell from 0.795 to 0.791
  (``benchmarks/bench_diameter.py``, ``benchmarks/bench_segment_ood.py``). Hence not the
  default: pass ``measure="foreground"`` to :func:`cytotrail.segment.infer.estimate_diameter`,
  or give the diameter, for tissue.

Every diameter estimate of the package lives here.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from cytotrail.segment.preprocess import equivalent_diameters, normalize, percentiles

__all__ = [
    "typical_diameter",
    "estimate_diameter_otsu",
    "estimate_diameter_mask",
    "otsu_mask",
    "foreground_diameters",
    "object_diameters",
    "network_diameter",
    "check_measure",
    "SPECK_FRACTION",
    "REFERENCE_QUANTILE",
    "FOREGROUND_THRESHOLD",
    "WAIST_FRACTION",
    "CENTRE_VALLEY",
    "MEASURES",
]

# objects under this fraction of the reference diameter are specks or fragments, not nuclei
SPECK_FRACTION = 0.5
# the reference diameter: this quantile of the diameters weighted by object area
REFERENCE_QUANTILE = 0.75
# network foreground probability above which a pixel counts as nucleus for the estimate
# (0.5, the post-processing's, merged touching small nuclei more on dsb2018 in-distribution
# images; 0.7 and 0.8 shrank the irregular nuclei of the tissue frames by 8-18 %)
FOREGROUND_THRESHOLD = 0.6
# a foreground component is split where its (smoothed) distance to the edge dips by this
# fraction of the typical radius between two maxima: touching nuclei have such a waist
WAIST_FRACTION = 0.3
# ... and where the network's centre-ness falls below this between two nuclei (its borders
# between touching nuclei; 0.2 and 0.3 did best on dsb2018 in-distribution images, 0.2 on
# the tissue frames; 0.05-0.1 kept touching nuclei together)
CENTRE_VALLEY = 0.2
# what network_diameter measures (see the module's docstring): "objects", the network's
# instances (the default of estimate_diameter), or "foreground", the pieces of its foreground
MEASURES = ("objects", "foreground")


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


def _inner(labels, min_objects=3):
    """Labels without the objects that touch the image border, unless fewer than ``min_objects`` remain."""
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    inner = np.where(np.isin(labels, border[border > 0]), 0, labels)
    return inner if len(np.unique(inner)) - (inner.min() == 0) >= min_objects else labels


def object_diameters(labels, *, exclude_border=True):
    """Equivalent-circle diameters (px) of the objects of a label image.

    Parameters
    ----------
    labels : (Y, X) integer ndarray
    exclude_border : bool
        Leave out the objects that touch the border (cut by a crop), unless fewer than
        three objects would remain.

    Returns
    -------
    (N,) float64 ndarray
    """
    labels = np.asarray(labels)
    if exclude_border and labels.size:
        labels = _inner(labels)
    return equivalent_diameters(labels)


def foreground_diameters(
    fg,
    centre=None,
    *,
    threshold=FOREGROUND_THRESHOLD,
    valley=CENTRE_VALLEY,
    waist=WAIST_FRACTION,
    exclude_border=False,
):
    """Equivalent-circle diameters (px) of the nuclei of the network's foreground.

    The confident foreground (``fg > threshold``, holes filled) is cut where the network
    draws a border between touching nuclei (its centre-ness falls below ``valley``: a
    watershed on the centre-ness from the regions above it) and where the foreground
    narrows (a watershed on the distance to its edge, smoothed with sigma 1 px, from the
    maxima that rise ``waist`` x the typical radius above their surroundings, the typical
    radius being half the :func:`typical_diameter` of the whole components). A piece is a
    connected region that both cuts keep together. Unlike the network's objects (split at
    every centre-ness peak), a lobed or textured nucleus stays whole.

    Parameters
    ----------
    fg : (Y, X) float ndarray
        Foreground probability in [0, 1] (the network's first output), in image pixels.
    centre : (Y, X) float ndarray, optional
        Centre-ness in [0, 1] (the network's second output); without it, the foreground is
        cut at its waists only.
    threshold : float
        Probability above which a pixel is foreground.
    valley : float
        Centre-ness under which the network separates two nuclei.
    waist : float
        Depth of the dip (as a fraction of the typical radius) that separates two nuclei.
    exclude_border : bool
        Leave out the pieces that touch the border, unless fewer than three remain. Off by
        default: the nuclei cut by the border of a dsb2018 image are annotated, and their
        median with them is the target (leaving them out: median error 4.9 % -> 7.1 % on
        a third of the in-distribution images; the tissue frames 2.6 % -> 3.1 %).

    Returns
    -------
    (N,) float64 ndarray
        Empty when the map holds no foreground.
    """
    from skimage.measure import label
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    fg = np.asarray(fg, np.float32)
    if fg.ndim != 2 or (centre is not None and np.shape(centre) != fg.shape):
        raise ValueError(
            f"foreground (and centre-ness) maps must be 2-D (Y, X) of one shape, got {fg.shape}"
            + ("" if centre is None else f" and {np.shape(centre)}")
        )
    mask = ndi.binary_fill_holes(fg > threshold)
    comp, n = ndi.label(mask)
    if n == 0:
        return np.zeros(0)

    def cut(relief, seeds):
        markers, m = ndi.label(seeds & mask)
        pieces = watershed(-relief, markers, mask=mask)
        orphan = mask & (pieces == 0)  # components without a seed stay whole
        pieces[orphan] = comp[orphan] + m
        return pieces.astype(np.int64)

    radius = typical_diameter(equivalent_diameters(comp)) / 2.0
    dist = ndi.gaussian_filter(ndi.distance_transform_edt(mask), 1.0) * mask
    pieces = cut(dist, h_maxima(dist, max(0.5, waist * radius)).astype(bool))
    if centre is not None:
        centre = np.asarray(centre, np.float32)
        valleys = cut(centre, centre > valley)
        pieces = pieces * (int(valleys.max()) + 1) + valleys
        pieces = label(np.where(mask, pieces, 0), background=0, connectivity=1)
    return object_diameters(pieces, exclude_border=exclude_border)


def check_measure(measure):
    """Fail unless ``measure`` is one of :data:`MEASURES`."""
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {', '.join(MEASURES)}, got {measure!r}")


def network_diameter(maps, labels, *, measure):
    """Typical nucleus diameter (px) of a few frames' network outputs, specks set aside.

    Parameters
    ----------
    maps : sequence of (2, Y, X) float ndarray
        The network's foreground and centre-ness maps of the frames, in image pixels (used
        by ``measure="foreground"``).
    labels : sequence of (Y, X) integer ndarray
        The network's objects in the same frames (used by ``measure="objects"``).
    measure : {"objects", "foreground"}
        ``"objects"``: the diameters of the network's objects (objects cut by the frame's
        border left out; split tissue nuclei pull it down); ``"foreground"``:
        :func:`foreground_diameters` of each frame (touching large nuclei push it up).

    Returns
    -------
    float or None
        :func:`typical_diameter` of all frames' diameters; None when there are none.
    """
    check_measure(measure)
    if measure == "foreground":
        diams = [foreground_diameters(m[0], m[1]) for m in maps]
    else:
        diams = [object_diameters(lab) for lab in labels]
    return typical_diameter(np.concatenate(diams)) if diams else None
