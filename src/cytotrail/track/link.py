"""Frame-to-frame linking with trackpy, on drift-corrected positions; the common drift."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cytotrail.io import InputError

__all__ = ["estimate_drift", "link_frames", "nearest_neighbour_distance", "validate_detections"]

OUTPUT_COLUMNS = ("track_id", "parent_track_id", "lineage_id", "generation")


def validate_detections(detections, *, pos_columns=("y", "x")):
    """Check a detections table; return ``frame`` (int64) and positions (N, 2) float64.

    Raises
    ------
    InputError
        Not a DataFrame, a missing column, non-numeric, NaN/inf, negative or non-integer
        frames, NaN/inf positions.
    """
    if not isinstance(detections, pd.DataFrame):
        raise InputError(f"detections must be a pandas DataFrame, got {type(detections).__name__}")
    needed = ["frame", *pos_columns]
    missing = [c for c in needed if c not in detections.columns]
    if missing:
        raise InputError(
            f"detections table lacks column(s) {missing}; needs {needed} "
            f"(has {list(detections.columns)[:12]})"
        )
    out = {}
    for col in needed:
        values = detections[col]
        numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        if len(values) and not numeric:  # a header-only table reads as text columns: no detections
            raise InputError(f"detections column {col!r} must be numeric, got dtype {values.dtype}")
        arr = values.to_numpy(dtype=np.float64, na_value=np.nan) if len(values) else np.zeros(0)
        bad = ~np.isfinite(arr)
        if bad.any():
            raise InputError(
                f"detections column {col!r} has {int(bad.sum())} NaN/infinite value(s), "
                f"e.g. in row {detections.index[np.flatnonzero(bad)[0]]!r}"
            )
        out[col] = arr
    frame = out["frame"]
    if len(frame) and (frame < 0).any():
        raise InputError(f"detections column 'frame' has negative values (min {frame.min():g})")
    if len(frame) and (np.mod(frame, 1) != 0).any():
        raise InputError("detections column 'frame' must hold whole frame numbers, found fractions")
    pos = np.column_stack([out[c] for c in pos_columns]) if len(frame) else np.zeros((0, 2))
    return frame.astype(np.int64), pos


# --------------------------------------------------------------------------------------
# drift


def _mutual_nearest(a, b, shift):
    """Indices (i, j) of mutual nearest neighbours between a + shift and b."""
    from scipy.spatial import cKDTree

    if len(a) == 0 or len(b) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    _, ab = cKDTree(b).query(a + shift)
    _, ba = cKDTree(a + shift).query(b)
    i = np.flatnonzero(ba[ab] == np.arange(len(a)))
    return i, ab[i]


def _frame_slices(frame):
    """Sorted unique frames and the [start, stop) slice of each in frame-sorted arrays."""
    frames, starts = np.unique(frame, return_index=True)
    stops = np.append(starts[1:], len(frame))
    return frames, starts, stops


def nearest_neighbour_distance(frame, pos):
    """Median distance from each detection to its nearest neighbour in the same frame."""
    from scipy.spatial import cKDTree

    frames, starts, stops = _frame_slices(frame)
    dists = []
    for a, b in zip(starts, stops):
        if b - a >= 2:
            d, _ = cKDTree(pos[a:b]).query(pos[a:b], k=2)
            dists.append(d[:, 1])
    if not dists:
        return np.nan
    return float(np.median(np.concatenate(dists)))


def _vote_shift(a, b, radius):
    """Most common displacement between points of a and b within ``radius`` (a 2-D vote)."""
    from scipy import ndimage as ndi
    from scipy.spatial import cKDTree

    pairs = cKDTree(a).sparse_distance_matrix(cKDTree(b), radius, output_type="ndarray")
    if len(pairs) == 0:
        return np.zeros(2)
    d = b[pairs["j"]] - a[pairs["i"]]
    n_bins = 41
    edges = np.linspace(-radius, radius, n_bins + 1)
    hist, _, _ = np.histogram2d(d[:, 0], d[:, 1], bins=[edges, edges])
    hist = ndi.gaussian_filter(hist, 1.0)
    iy, ix = np.unravel_index(np.argmax(hist), hist.shape)
    centre = np.array([(edges[iy] + edges[iy + 1]) / 2, (edges[ix] + edges[ix + 1]) / 2])
    near = np.hypot(*(d - centre).T) <= 2.5 * (edges[1] - edges[0])
    return np.median(d[near], axis=0) if near.any() else centre


def _refine_shift(a, b, shift, iterations):
    """Median displacement of mutual nearest neighbours around ``shift``; and its quality."""
    resid = np.array([np.inf])
    n_match = 0
    for _ in range(iterations):
        i, j = _mutual_nearest(a, b, shift)
        if len(i) == 0:
            break
        d = b[j] - a[i]
        resid = np.hypot(*(d - shift).T)
        keep = resid <= max(np.median(resid) * 3, 1e-9)
        new = np.median(d[keep], axis=0)
        n_match = int(keep.sum())
        done = np.allclose(new, shift)
        shift = new
        if done:
            break
    i, j = _mutual_nearest(a, b, shift)
    resid = np.hypot(*(b[j] - a[i] - shift).T) if len(i) else np.array([np.inf])
    return shift, n_match, float(np.median(resid))


def estimate_drift(frame, pos, *, iterations=4, max_drift=None):
    """Common displacement of all cells per frame, by mutual nearest neighbours.

    Each step starts from the previous step's drift; when the matches stay poor (median
    residual above a third of the cell spacing, e.g. after a sudden stage jump) the shift is
    found by a vote over all displacements up to ``max_drift`` (default three times the
    nearest-neighbour distance) and refined again.

    Parameters
    ----------
    frame : (N,) int ndarray, sorted ascending
    pos : (N, 2) float ndarray
        Positions (y, x) in the same order.
    max_drift : float, optional
        Largest drift per frame (px) to look for.

    Returns
    -------
    offset : (N, 2) float ndarray
        Cumulative drift at each detection's frame (0 at the first frame); subtract it
        from ``pos`` to get drift-corrected positions.
    steps : DataFrame
        ``frame, dy, dx, n_matches``: the drift from the previous present frame.
    """
    frames, starts, stops = _frame_slices(frame)
    steps = np.zeros((len(frames), 2))
    counts = np.zeros(len(frames), np.int64)
    nn = nearest_neighbour_distance(frame, pos)
    if max_drift is None:
        max_drift = 3.0 * nn if np.isfinite(nn) else 50.0
    previous = np.zeros(2)
    for k in range(1, len(frames)):
        a = pos[starts[k - 1] : stops[k - 1]]
        b = pos[starts[k] : stops[k]]
        if len(a) == 0 or len(b) == 0:
            continue
        shift, n_match, resid = _refine_shift(a, b, previous, iterations)
        if np.isfinite(nn) and not resid <= nn / 3:
            voted = _vote_shift(a, b, max_drift)
            shift2, n_match2, resid2 = _refine_shift(a, b, voted, iterations)
            if resid2 < resid:
                shift, n_match = shift2, n_match2
        steps[k] = shift
        counts[k] = n_match
        previous = shift
    cumulative = np.cumsum(steps, axis=0)
    offset = np.repeat(cumulative, stops - starts, axis=0)
    table = pd.DataFrame({"frame": frames, "dy": steps[:, 0], "dx": steps[:, 1], "n_matches": counts})
    return offset, table


# --------------------------------------------------------------------------------------
# linking


def link_frames(frame, pos, *, search_range, memory=0, predictor=None, link_strategy="auto"):
    """Link frame-sorted detections with trackpy; return a segment id per detection.

    Oversized subnetworks (crowds) are retried with a progressively smaller search range
    (trackpy's adaptive search), then with half and a quarter of the range; as a last
    resort the detections are left unlinked for the division-aware relinking to join.
    This never raises ``SubnetOversizeException``.

    Parameters
    ----------
    frame : (N,) int ndarray, sorted ascending
    pos : (N, 2) float ndarray
    search_range : float
    memory : int

    Returns
    -------
    segment : (N,) int64 ndarray
        Consecutive ids 0..S-1 in order of first appearance.
    strategy : str
        The trackpy strategy that succeeded (with the reduced search range when one was
        needed, or ``'unlinked'``).
    """
    n = len(frame)
    frames = np.unique(frame)
    if len(frames) <= 1:  # nothing to link (a tissue section): trackpy is not even imported
        return np.arange(n, dtype=np.int64), "none"
    import trackpy
    from trackpy.linking.utils import SubnetOversizeException

    trackpy.quiet()
    # the present frames plus empty ones for missing frame numbers, so that `memory` counts
    # real frames; more than memory + 1 empty frames in a row change nothing, so no more
    gaps = np.diff(frames) - 1
    empties = [np.arange(a + 1, a + 1 + min(g, memory + 1)) for a, g in zip(frames[:-1], gaps) if g > 0]
    all_frames = np.sort(np.concatenate([frames, *empties])) if empties else frames
    all_starts = np.searchsorted(frame, all_frames, side="left")
    all_stops = np.searchsorted(frame, all_frames, side="right")
    # crowds: trackpy's adaptive search first, then smaller ranges, then no links at all
    attempts = [
        (search_range, link_strategy),
        (search_range / 2, link_strategy),
        (search_range / 4, link_strategy),
        (None, "unlinked"),
    ]
    for search, strategy in attempts:
        if search is None:
            ids = np.arange(n)
            break
        # every frame number, empty ones included, so that `memory` counts real frames
        coords = ((int(t), pos[a:b]) for t, a, b in zip(all_frames, all_starts, all_stops))
        ids = np.empty(n, np.int64)
        try:
            linked = trackpy.link_iter(
                coords,
                search,
                memory=memory,
                predictor=predictor,
                link_strategy=strategy,
                adaptive_stop=max(0.5, 0.1 * search),
                adaptive_step=0.9,
            )
            for (a, b), (_, part) in zip(zip(all_starts, all_stops), linked):
                ids[a:b] = part
        except SubnetOversizeException:
            continue
        if not pd.DataFrame({"i": ids, "t": frame}).duplicated().any():
            break
    _, segment = np.unique(ids, return_inverse=True)
    # renumber by first appearance
    first = np.full(segment.max() + 1, n, np.int64)
    np.minimum.at(first, segment, np.arange(n))
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[segment].astype(np.int64), strategy if search == search_range else f"{strategy}@{search}"
