"""Self-calibration: the motion and division model of a movie, estimated from the movie.

Four fits, each robust and bounded (a fixed, small number of iterations; never a division
by zero on degenerate input):

* :func:`calibrate_motion`: the common drift per frame (:func:`~cytotrail.track.link.
  estimate_drift`), then, on drift-corrected positions, the displacements of confident
  pairs (mutual nearest neighbours of consecutive frames closer than the current search
  range) are fitted by a heavy-tailed distribution (a 2-D Student t: scale and degrees of
  freedom by maximum likelihood); the search range is the radius that only a fraction
  :data:`TAIL_PROBABILITY` of steps exceeds under that fit, at most the typical
  nearest-neighbour distance. The confident pairs are taken again within the new range
  and the fit repeated until the range settles.
* :func:`fit_division_scales`: from the divisions found with wide, uninformative scales,
  the mean and spread of the daughters' summed-area ratio, the sisters' area ratio and
  the spread of their midpoint about the mother, which replace the defaults of
  :data:`cytotrail.track.costs.DEFAULT_DIVISION_SCALES` for the final relinking.
* :func:`birth_death_costs`: how often tracks end and start (daughters and mothers aside)
  in that pass; a tissue whose cells leave but never appear from nowhere makes a start
  dearer than an end.
* :func:`estimate_miss_rate` and :func:`gap_cost`: how often a cell is missed for a frame
  (track ends followed two frames later by a start close by, beyond what chance gives),
  and the cost of a missed frame that follows from it.
"""

from __future__ import annotations

import numpy as np

from cytotrail.track.costs import DEFAULT_DIVISION_SCALES, _log_ratio
from cytotrail.track.link import _frame_slices, _mutual_nearest, nearest_neighbour_distance

__all__ = [
    "WIDE_DIVISION_SCALES",
    "birth_death_costs",
    "calibrate_motion",
    "estimate_miss_rate",
    "fit_division_scales",
    "fit_student_t",
    "gap_cost",
    "t_radius",
]

TAIL_PROBABILITY = 1e-4  # fraction of true steps allowed beyond the search range
MIN_SEARCH_PX = 2.0
MAX_ITERATIONS = 4
MIN_PAIRS = 10  # fewer confident pairs: no fit, fall back to half the neighbour distance
NU_GRID = (1.5, 2.0, 3.0, 4.0, 6.0, 10.0, 20.0, 50.0, 1e6)  # t degrees of freedom tried
MIN_DIVISIONS = 15  # fewer divisions found: keep the default division scales
MAX_STEP_TO_SPACING = 0.35  # step scale / neighbour distance beyond which positions cannot link
REFERENCE_MISS_RATE = 0.02  # the miss rate at which a missed frame costs GAP_COST_PER_FRAME
MAX_GAP_COST = 12.0  # a missed frame in a movie that misses none (no division by zero)

#: Division scales of the first pass: wide enough to find the divisions of cells whose
#: areas do not add up (rounded, shrunk or partly out of focus mothers).
WIDE_DIVISION_SCALES = {
    **DEFAULT_DIVISION_SCALES,
    "sum_area_sigma": 0.35,
    "sister_area_sigma": 0.6,
    "centre_sigma_factor": 1.5,
}


def fit_student_t(d, *, nu_grid=NU_GRID, iterations=30):
    """Scale and degrees of freedom of an isotropic 2-D Student t fitted to displacements.

    Parameters
    ----------
    d : (M, 2) float ndarray
        Displacements (centred by the caller).

    Returns
    -------
    scale : float
        Per-axis scale (px); the standard deviation when ``nu`` is large.
    nu : float
        Degrees of freedom (small: heavy tails).
    """
    r2 = (np.asarray(d, np.float64) ** 2).sum(axis=1)
    r2 = r2[np.isfinite(r2)]
    best = (-np.inf, np.nan, np.nan)
    if len(r2) == 0 or not (r2 > 0).any():
        return np.nan, np.nan
    for nu in nu_grid:
        # start from the Gaussian scale of the median step (median r^2 = 2 ln 2 s^2)
        s2 = max(float(np.median(r2)) / (2 * np.log(2)), 1e-12)
        for _ in range(iterations):  # EM for the scale at fixed nu
            w = (nu + 2) / (nu + r2 / s2)
            new = max(float((w * r2).sum() / (2 * len(r2))), 1e-12)
            done = abs(new - s2) <= 1e-6 * s2
            s2 = new
            if done:
                break
        loglik = float(np.sum(-np.log(s2) - (nu + 2) / 2 * np.log1p(r2 / (nu * s2))))
        if loglik > best[0]:
            best = (loglik, np.sqrt(s2), nu)
    return float(best[1]), float(best[2])


def t_radius(scale, nu, tail=TAIL_PROBABILITY):
    """Radius that a 2-D t step (per-axis scale, nu) exceeds with probability ``tail``."""
    if nu > 1e5:
        return float(scale * np.sqrt(-2 * np.log(tail)))
    return float(scale * np.sqrt(nu * (tail ** (-2.0 / nu) - 1)))


def _confident_steps(frame, pos, cap):
    """Displacements of mutual nearest neighbours of consecutive frames closer than ``cap``."""
    frames, starts, stops = _frame_slices(frame)
    steps = []
    for k in range(1, len(frames)):
        if frames[k] - frames[k - 1] != 1:
            continue
        a, b = pos[starts[k - 1] : stops[k - 1]], pos[starts[k] : stops[k]]
        i, j = _mutual_nearest(a, b, np.zeros(2))
        d = b[j] - a[i]
        steps.append(d[np.hypot(*d.T) < cap])
    return np.concatenate(steps) if steps else np.zeros((0, 2))


def calibrate_motion(frame, pos):
    """Search range and step scale of drift-corrected positions, fitted to the movie.

    Parameters
    ----------
    frame : (N,) int ndarray, sorted ascending
    pos : (N, 2) float ndarray
        Drift-corrected positions (y, x), px.

    Returns
    -------
    search_range : float
        px; at least :data:`MIN_SEARCH_PX`, at most the median nearest-neighbour distance.
    info : dict
        ``sigma`` (per-axis step scale, px), ``nu`` (t degrees of freedom; inf when
        Gaussian), ``nn_distance`` (px), ``n_pairs`` (confident pairs of the last fit),
        ``iterations``. ``sigma`` is NaN when the movie has too few pairs to fit.
    """
    nn = nearest_neighbour_distance(frame, pos)
    info = {"sigma": np.nan, "nu": np.nan, "nn_distance": nn, "n_pairs": 0, "iterations": 0}
    if not np.isfinite(nn):  # at most one detection per frame: nothing to calibrate on
        return 10.0, info
    cap = 0.75 * nn
    search = None
    for it in range(1, MAX_ITERATIONS + 1):
        d = _confident_steps(frame, pos, cap)
        info["n_pairs"], info["iterations"] = len(d), it
        if len(d) < MIN_PAIRS:
            break
        d = d - np.median(d, axis=0)
        scale, nu = fit_student_t(d)
        if not (np.isfinite(scale) and scale > 0):
            break
        info["sigma"], info["nu"] = scale, (np.inf if nu > 1e5 else nu)
        new = float(np.clip(t_radius(scale, nu), MIN_SEARCH_PX, max(nn, MIN_SEARCH_PX)))
        settled = search is not None and abs(new - search) <= 0.05 * search
        search = cap = new
        if settled:
            break
    if search is None:
        search = float(max(0.5 * nn, MIN_SEARCH_PX))
    return search, info


def fit_division_scales(model, divisions, *, min_divisions=MIN_DIVISIONS):
    """Division scales fitted to the divisions found (mother -> two daughters).

    Parameters
    ----------
    model : CostModel
        The model they were found with (positions, areas, border flags, step scale).
    divisions : dict
        Mother detection -> daughter detections; one-daughter entries are ignored.

    Returns
    -------
    dict
        :data:`~cytotrail.track.costs.DEFAULT_DIVISION_SCALES`' keys. The area scales are
        fitted from divisions away from the border when there are at least
        ``min_divisions`` of them (else the defaults), spreads clipped to sane bounds and
        never below the defaults;
        ``n_fitted`` counts the divisions used.
    """
    scales = dict(DEFAULT_DIVISION_SCALES)
    pairs = [(m, *ds) for m, ds in divisions.items() if len(ds) == 2]
    scales["n_fitted"] = 0
    if len(pairs) < min_divisions:
        return scales
    m, d1, d2 = np.asarray(pairs, np.int64).T
    if model.border is not None:
        inside = ~(model.border[m] | model.border[d1] | model.border[d2])
        m, d1, d2 = m[inside], d1[inside], d2[inside]
    if len(m) < min_divisions:
        return scales
    scales["n_fitted"] = int(len(m))
    g = (model.frame[d1] + model.frame[d2]) / 2 - model.frame[m]
    centre = (model.pos[d1] + model.pos[d2]) / 2 - model.pos[m]
    scale, _ = fit_student_t(centre / np.sqrt(g)[:, None])
    if np.isfinite(scale) and scale > 0:
        scales["centre_sigma_factor"] = float(np.clip(scale / model.sigma, 0.5, 3.0))
    if model.area is not None:
        a = model.area
        ok = (a[m] > 0) & (a[d1] > 0) & (a[d2] > 0)
        if ok.sum() >= min_divisions:
            total = _log_ratio(a[d1] + a[d2], a[m])[ok]
            mean = float(np.median(total))
            spread = 1.4826 * float(np.median(np.abs(total - mean)))
            scales["sum_area_mean"] = float(np.clip(mean, -0.7, 0.7))
            # spreads never below the defaults: those are the tightest a division looks
            # through segmentation noise; a few near-perfect divisions must not forbid the rest
            floor = DEFAULT_DIVISION_SCALES
            scales["sum_area_sigma"] = float(np.clip(spread, floor["sum_area_sigma"], 0.6))
            sister = np.abs(_log_ratio(a[d1], a[d2])[ok])
            # |log ratio| of two alike sisters is half-normal: its median is 0.674 sigma
            scales["sister_area_sigma"] = float(
                np.clip(np.median(sister) / 0.674, floor["sister_area_sigma"], 1.0)
            )
    return scales


def estimate_miss_rate(model, succ, pred, divisions):
    """Fraction of detections missed for one frame, from the ends and starts of tracks.

    A cell missed at frame t leaves a track end at t - 1 and a start at t + 1 within a
    step's reach (``r = 3 sqrt(2) sigma``, at most the search range). Pairs at distances
    from ``r`` to ``2 r`` count what chance gives (scaled by area, ``1/3``); the excess over
    the number of detections is the rate.

    Parameters
    ----------
    model : CostModel
    succ, pred : (N,) int ndarray
        Links without gap closing.
    divisions : dict
        Mother -> daughters (mothers are no ends, daughters no starts).

    Returns
    -------
    float
        In [0, 1]; 0 when nothing can be estimated.
    """
    from scipy.spatial import cKDTree

    frame, pos = model.frame, model.pos
    n = len(frame)
    if n == 0:
        return 0.0
    is_mother = np.zeros(n, bool)
    is_mother[list(divisions)] = True
    is_daughter = np.zeros(n, bool)
    for ds in divisions.values():
        is_daughter[list(ds)] = True
    ends = np.flatnonzero((succ < 0) & ~is_mother)
    starts = np.flatnonzero((pred < 0) & ~is_daughter)
    r = float(min(3.0 * np.sqrt(2.0) * model.sigma, model.search_range))
    if len(ends) == 0 or len(starts) == 0 or not r > 0:
        return 0.0
    big = 100.0 * (r + model.search_range + 1.0)  # frames far apart in the third coordinate
    a = np.column_stack([pos[ends], (frame[ends] + 2) * big])
    b = np.column_stack([pos[starts], frame[starts] * big])
    tree = cKDTree(b)
    near = tree.query_ball_point(a, 2 * r, return_length=True)
    close = tree.query_ball_point(a, r, return_length=True)
    excess = close.sum() - (near.sum() - close.sum()) / 3.0
    return float(np.clip(excess / n, 0.0, 1.0))


def gap_cost(miss_rate, *, base=None):
    """Cost of a missed frame: the base cost at :data:`REFERENCE_MISS_RATE`, more when rarer.

    ``base + log(REFERENCE_MISS_RATE / miss_rate)``, between ``base`` and
    :data:`MAX_GAP_COST`.
    """
    from cytotrail.track.costs import GAP_COST_PER_FRAME

    base = GAP_COST_PER_FRAME if base is None else base
    if not miss_rate > 0:
        return MAX_GAP_COST
    return float(np.clip(base + np.log(REFERENCE_MISS_RATE / miss_rate), base, MAX_GAP_COST))


def birth_death_costs(model, succ, pred, divisions):
    """Birth and death costs split by how often tracks start and end in the movie.

    The rates are counted on links without gap closing, divisions aside: ``p_birth`` (tracks
    starting after the first frame, daughters excluded) and ``p_death`` (tracks ending
    before the last frame, mothers excluded), each per detection with add-one smoothing.
    Their sum stays that of ``model`` (so a link as long as the search range still costs a
    birth plus a death); the difference is ``log(p_death / p_birth)``, at most half the sum.

    Returns
    -------
    birth, death : float
        Costs of a track start and end away from the border.
    rates : dict
        ``p_birth``, ``p_death``.
    """
    frame = model.frame
    n = len(frame)
    total = model.birth + model.death
    if n == 0:
        return model.birth, model.death, {"p_birth": None, "p_death": None}
    is_mother = np.zeros(n, bool)
    is_mother[list(divisions)] = True
    is_daughter = np.zeros(n, bool)
    for ds in divisions.values():
        is_daughter[list(ds)] = True
    before_last, after_first = frame < frame.max(), frame > frame.min()
    p_death = (((succ < 0) & ~is_mother & before_last).sum() + 1) / (before_last.sum() + 2)
    p_birth = (((pred < 0) & ~is_daughter & after_first).sum() + 1) / (after_first.sum() + 2)
    delta = float(np.clip(np.log(p_death / p_birth) / 2, -total / 4, total / 4))
    return total / 2 + delta, total / 2 - delta, {"p_birth": float(p_birth), "p_death": float(p_death)}
