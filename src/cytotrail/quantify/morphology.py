"""Shape features of every nucleus, as ``skimage.measure.regionprops`` measures them, for all labels at once."""

from __future__ import annotations

import numpy as np

from cytotrail.quantify.options import MORPHOLOGY_COLUMNS

# perimeter weights of skimage.measure.perimeter (4-connectivity border, Benkrid & Crookes)
PERIMETER_WEIGHTS = np.zeros(50)
PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1.0
PERIMETER_WEIGHTS[[21, 33]] = np.sqrt(2.0)
PERIMETER_WEIGHTS[[13, 23]] = (1.0 + np.sqrt(2.0)) / 2.0
# pixel-edge midpoints, doubled: the points whose hull skimage's convex_hull_image takes
DIAMOND = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]])


def morphology(nucleus, shape, pixel_size_um, neighbour_radius_um, *, full, position_sums=None):
    """Centroid (px) and, when ``full``, the shape columns of every nucleus.

    Parameters
    ----------
    nucleus : Index
        The nucleus index of the frame.
    shape : (int, int)
        (Y, X) of the frame.
    pixel_size_um, neighbour_radius_um : float
        As :func:`cytotrail.quantify.quantify` takes them.
    full : bool
        Measure the shape columns, not only the centroid.
    position_sums : tuple of (n + 1,) ndarrays, optional
        The sums of the row and of the column coordinates of each nucleus' pixels (slot 0
        unused), when already known.

    Returns
    -------
    dict of str to (n,) ndarray
        ``y, x`` and, when ``full``, the columns of ``MORPHOLOGY_COLUMNS``.
    """
    from cytotrail.quantify import kernels, shape_kernels

    n, counts = nucleus.n, nucleus.counts
    if position_sums is None:
        position_sums = kernels.position_sums(nucleus.idx, shape[1], n + 1)
    ysum, xsum = position_sums
    with np.errstate(invalid="ignore", divide="ignore"):
        yc, xc = ysum[1:] / counts, xsum[1:] / counts
    if not full:
        return {"y": yc, "x": xc}
    # one raster pass over the index image, no per-pixel arrays
    centres = np.r_[0.0, np.nan_to_num(yc)], np.r_[0.0, np.nan_to_num(xc)]
    mu20, mu02, mu11 = (m[1:] for m in shape_kernels.central_moments(nucleus.idx, shape[1], n + 1, *centres))
    border, perim = perimeter(nucleus, shape)
    s = float(pixel_size_um)
    ny, nx = shape
    columns = {
        **moment_features(mu20, mu02, mu11, counts, s),
        "perimeter": perim * s,
        "solidity": counts / convex_areas(border, nucleus, shape),
        "border_distance": np.minimum.reduce([yc, xc, ny - 1 - yc, nx - 1 - xc]) * s,
        "n_neighbours": count_neighbours(yc, xc, neighbour_radius_um / s),
    }
    return {"y": yc, "x": xc, **{name: columns[name] for name in MORPHOLOGY_COLUMNS}}


def moment_features(mu20, mu02, mu11, counts, pixel_size_um):
    """Area, eccentricity, axis lengths and orientation from the second central moments.

    As regionprops: the inertia tensor [[a, b], [b, c]] with a = mu02/m, b = -mu11/m,
    c = mu20/m; lengths scaled by ``pixel_size_um``, the area by its square.
    """
    s = pixel_size_um
    with np.errstate(invalid="ignore", divide="ignore"):
        a, b, c = mu02 / counts, -mu11 / counts, mu20 / counts
    half_trace = (a + c) / 2
    root = np.sqrt(((a - c) / 2) ** 2 + b * b)
    l1 = np.clip(half_trace + root, 0, None)
    l2 = np.clip(half_trace - root, 0, None)
    with np.errstate(invalid="ignore", divide="ignore"):
        ecc = np.where(l1 == 0, 0.0, np.sqrt(np.clip(1 - l2 / np.where(l1 == 0, 1, l1), 0, None)))
    orientation = np.where(
        a - c == 0, np.where(b < 0, np.pi / 4, -np.pi / 4), 0.5 * np.arctan2(-2 * b, c - a)
    )
    return {
        "area": counts * s * s,
        "eccentricity": ecc,
        "axis_major_length": 4 * np.sqrt(l1) * s,
        "axis_minor_length": 4 * np.sqrt(l2) * s,
        "orientation": orientation,
    }


def perimeter(nucleus, shape):
    """The border pixels of every label and skimage's 4-connectivity perimeter of each.

    Returns
    -------
    border : tuple of ndarrays
        (rows, columns, index 1..n) of the border pixels, grouped by label and row-major
        inside each.
    perimeter : (n,) ndarray
        In pixels.
    """
    from cytotrail.quantify import shape_kernels

    perim, rows, cols, slots = shape_kernels.border_pixels(
        nucleus.idx, shape[1], nucleus.n + 1, PERIMETER_WEIGHTS
    )
    return (rows, cols, slots), perim[1:]


def hull_points(border, shape):
    """The points whose convex hull skimage's ``convex_hull_image`` fills, per label.

    The hull of a region is the hull of the pixel-edge midpoints (the ``DIAMOND`` offsets)
    of the leftmost and rightmost pixel of each of its rows.

    Parameters
    ----------
    border : tuple of ndarrays
        From :func:`perimeter`.
    shape : (int, int)
        (Y, X) of the frame.

    Returns
    -------
    cells : (m,) int ndarray
        Index (0..n-1) of each label with a border.
    local : (P, 2) int ndarray
        Row and column of each row end, relative to its label's bounding box.
    bounds : (m + 1,) int ndarray
        Label j owns rows ``bounds[j]:bounds[j + 1]`` of the (4P, 2) points ``local`` plus
        each ``DIAMOND`` offset.
    height, width : (m,) int ndarray
        Bounding box of each label.
    """
    br, bc, bcell = border  # grouped by cell, row-major inside each cell
    key = bcell.astype(np.int64) * (shape[0] + 1) + br
    first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    last = np.r_[first[1:] - 1, len(key) - 1]
    ends = np.r_[first, last]
    ends.sort(kind="stable")
    er, ec, ecell = br[ends], bc[ends], bcell[ends]
    starts = np.flatnonzero(np.r_[True, ecell[1:] != ecell[:-1]])
    cells = ecell[starts] - 1
    r0 = np.minimum.reduceat(er, starts)
    c0 = np.minimum.reduceat(ec, starts)
    height = np.maximum.reduceat(er, starts) - r0 + 1
    width = np.maximum.reduceat(ec, starts) - c0 + 1
    seg = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(er)]))
    local = np.column_stack([er - r0[seg], ec - c0[seg]])
    bounds = np.r_[starts, len(er)] * 4
    return cells, local, bounds, height, width


def convex_areas(border, nucleus, shape):
    """Pixel count of each label's convex hull image, as ``skimage.morphology.convex_hull_image``.

    The count is of pixel centres inside or on the hull of :func:`hull_points`: Andrew's
    monotone chain and an exact count per row in doubled integer coordinates, all labels in
    one call. NaN for a label without border pixels.
    """
    from cytotrail.quantify import shape_kernels

    areas = np.full(nucleus.n, np.nan)
    if len(border[0]) == 0:
        return areas
    cells, local, bounds, height, _ = hull_points(border, shape)
    doubled = (2 * local[:, None, :] + DIAMOND).reshape(-1, 2)
    areas[cells] = shape_kernels.hull_pixel_counts(doubled, bounds.astype(np.int64), height.astype(np.int64))
    return areas


def count_neighbours(yc, xc, radius_px):
    """Number of other centroids within ``radius_px`` of each centroid."""
    if len(yc) < 2 or not radius_px > 0:
        return np.zeros(len(yc), np.int64)
    from scipy.spatial import cKDTree

    pts = np.column_stack([yc, xc])
    return np.asarray(cKDTree(pts).query_ball_point(pts, radius_px, return_length=True), np.int64) - 1
