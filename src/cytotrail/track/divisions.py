"""Divisions and gap closing on top of frame-to-frame linking.

Frame-to-frame linking (trackpy) joins each cell to its nearest plausible successor. Around
a division that is wrong in a known way: the linker continues the mother into one daughter
(the one nearer its old centre) and the other daughter starts a new track; in crowds it may
also hand a daughter to a neighbour. Two steps repair this:

1. **Division-aware relinking** (:func:`relink_divisions`). Wherever a track starts or ends
   next to other cells, the links between the two frames around it are solved again as a
   small integer program that may also choose divisions (one cell -> two): each candidate
   link and division has a cost, each cell at most one predecessor and one successor role.
2. **Events across gaps** (:func:`resolve_events`). Track ends and starts up to ``memory``
   missed frames apart are joined (gap closing), and divisions whose mother or daughter was
   missed in a frame are found, with the same costs; a compatible set of least total cost
   is chosen.
3. **Merges** (:func:`resolve_merges`). Two touching cells segmented as one object for a
   few frames look like a track ending into its neighbour, whose area doubles, and later a
   "division": that split is given back to the two cells and the blob is flagged.

Costs are negative log-likelihoods: squared displacements from the position predicted by
each cell's last step (velocity persistence estimated from the data) over the
drift-corrected step variance, squared log area ratios over their variance (estimated from
the confident links, growing with the gap; capped, so that odd segmentations cannot
dominate), and fixed costs for a birth, a death, a missed frame and a division. A division
is scored by how well the daughters' midpoint matches the mother's predicted position, how
their areas add up to the mother's, whether they lie on opposite sides of it, whether they
still touch (centres about the sum of their radii apart, give or take the displacement
spread), and how alike the sisters are in area and intensity. Objects cut by the frame's edge have unreliable areas:
their area changes along a track are scored with a heavy-tailed (Laplace) cost whose scale
comes from the links at the border, their division area terms count a quarter, and small
ones (a cell coming in or going out) may appear or vanish there at a lower cost.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CostModel", "relink_divisions", "resolve_events", "resolve_merges"]

GAP_COST_PER_FRAME = 2.0  # each missed frame inside a track
DIVISION_COST = 6.0  # a division, before its geometric and area terms
HIDDEN_DAUGHTER_COST = 6.0  # a division with only one daughter seen
AREA_COST_CAP = 8.0  # largest cost an area term can add to a link
DIVISION_AREA_CAP = 12.0  # largest cost an area term can add to a division
SUM_AREA_SIGMA = 0.12  # log((a1 + a2) / a_mother) of a division
DAUGHTER_AREA_SIGMA = 0.3  # log(a1 / a2) of two sisters
DAUGHTER_INTENSITY_SIGMA = 0.3  # log(i1 / i2) of two sisters
AXIS_WEIGHT = 8.0  # sisters across the long axis of a rod-like mother (Hertwig's rule)
HALF = np.log(0.5)
BORDER_AREA_WEIGHT = 0.25  # division area terms of detections cut by the frame's edge
BORDER_AREA_SCALE = 0.2  # Laplace scale of log area ratios at the border, when not estimable
BORDER_BIRTH_FACTOR = 0.6  # births and deaths at the border cost this fraction
MAX_CANDIDATES = 8  # successors considered per cell
MAX_DAUGHTERS = 6  # nearest cells considered as daughters of a mother


def chains(frame, segment):
    """``succ``/``pred`` detection index along each segment (-1 at the ends)."""
    n = len(frame)
    order = np.lexsort((frame, segment))
    same = segment[order][1:] == segment[order][:-1]
    succ = np.full(n, -1, np.int64)
    pred = np.full(n, -1, np.int64)
    succ[order[:-1][same]] = order[1:][same]
    pred[order[1:][same]] = order[:-1][same]
    return succ, pred


def _log_ratio(num, den):
    ok = (num > 0) & (den > 0) & np.isfinite(num) & np.isfinite(den)
    return np.where(ok, np.log(np.where(ok, num, 1.0) / np.where(ok, den, 1.0)), 0.0)


class CostModel:
    """Costs of links, divisions, births and deaths between detections.

    Parameters
    ----------
    frame : (N,) int ndarray
    pos : (N, 2) float ndarray
        Drift-corrected positions.
    area, intensity : (N,) float ndarray or None
    search_range : float
        Largest frame-to-frame displacement (px).
    sigma : float or None
        Displacement standard deviation per axis per frame; default ``search_range / 5``.
    succ : (N,) int ndarray
        Current links, to estimate the area-ratio spread.
    border : (N,) bool ndarray, optional
        Detections cut by the frame's edge: their area is a poor cue (area terms count a
        quarter), and only they may divide with one daughter out of view.
    """

    def __init__(self, frame, pos, area, intensity, *, search_range, sigma, succ, border=None,
                 persistence=True, orientation=None, elongation=None):
        self.frame, self.pos, self.area, self.intensity = frame, pos, area, intensity
        self.border = border
        if orientation is not None and elongation is not None:
            ok = np.isfinite(orientation) & np.isfinite(elongation)
            self.axis = np.column_stack([np.cos(np.where(ok, orientation, 0.0)),
                                         np.sin(np.where(ok, orientation, 0.0))])
            self.elongation = np.where(ok, np.clip(elongation, 0.0, 1.0), 0.0)
        else:
            self.axis = self.elongation = None
        if sigma is None or not np.isfinite(sigma) or sigma <= 0:
            sigma = search_range / 5.0
        self.sigma = float(max(sigma, 0.2))
        self.search_range = float(search_range)
        n_sigma = max(search_range / self.sigma, 3.0)
        # a link as long as the search range costs as much as a death plus a birth
        self.birth = self.death = n_sigma**2 / 4.0
        self.sigma_a = self._area_sigma(succ) if area is not None else None
        # objects cut by the frame's edge change their visible area as they move in or out:
        # heavy-tailed log area ratios, modelled as Laplace with a scale from the links that
        # touch the border
        self.scale_a_border = self._border_area_scale(succ) if area is not None else None
        # a daughter lies about half a nucleus from its mother's centre
        if area is not None and np.isfinite(area).any():
            radius = float(np.sqrt(np.nanmedian(area[area > 0]) / np.pi)) if (area > 0).any() else 0.0
        else:
            radius = 0.0
        self.division_radius = self.search_range + max(radius, 2 * self.sigma)
        self.area_median = np.pi * radius**2 if radius > 0 else None
        # motion model: velocity persistence phi and the spread of the predicted step
        self.phi, self.sigma_pred = self._persistence(succ) if persistence else (0.0, self.sigma)
        self.velocity = np.full_like(pos, np.nan)

    def _persistence(self, succ):
        """AR(1) coefficient of frame-to-frame steps, and the residual step spread."""
        i = np.flatnonzero(succ >= 0)
        j = succ[i]
        k = succ[j[succ[j] >= 0]]
        i, j = i[succ[j] >= 0], j[succ[j] >= 0]
        ok = (self.frame[j] - self.frame[i] == 1) & (self.frame[k] - self.frame[j] == 1)
        if ok.sum() < 20:
            return 0.0, self.sigma
        v1 = self.pos[j[ok]] - self.pos[i[ok]]
        v2 = self.pos[k[ok]] - self.pos[j[ok]]
        # trust only steps the linker is sure of: well inside the search range
        sure = (np.hypot(*v1.T) < 0.6 * self.search_range) & (np.hypot(*v2.T) < 0.6 * self.search_range)
        v1, v2 = v1[sure], v2[sure]
        if len(v1) < 20:
            return 0.0, self.sigma
        phi = float(np.clip((v1 * v2).sum() / max((v1 * v1).sum(), 1e-12), 0.0, 0.9))
        r = (v2 - phi * v1).ravel()
        sigma_pred = 1.4826 * float(np.median(np.abs(r - np.median(r))))
        if not np.isfinite(sigma_pred) or sigma_pred <= 0 or sigma_pred >= self.sigma:
            return 0.0, self.sigma
        return phi, max(sigma_pred, 0.2)

    def _border_factor(self, i):
        """Discount on births and deaths of detections i: cells cross the frame's edge.

        A cell coming in (or going out) shows only a part of itself at the edge: the
        discount holds in full for objects up to half the median area and fades out for
        objects of the median area, which are mostly in view.
        """
        factor = np.ones(len(i))
        if self.border is None:
            return factor
        if self.area_median is not None:
            rel = self.area[i] / self.area_median
            fade = np.clip((np.nan_to_num(rel, nan=0.0) - 0.5) / 0.5, 0.0, 1.0)
        else:
            fade = np.zeros(len(i))
        discount = BORDER_BIRTH_FACTOR + (1 - BORDER_BIRTH_FACTOR) * fade
        return np.where(self.border[i], discount, factor)

    def birth_of(self, j):
        """Cost of detection j starting a track: lower at the border, where cells come in."""
        return self.birth * self._border_factor(j)

    def death_of(self, i):
        """Cost of detection i ending a track: lower at the border, where cells leave."""
        return self.death * self._border_factor(i)

    def update_velocity(self, idx, pred):
        """Set the last step of detections ``idx`` from their current predecessors."""
        idx = np.asarray(idx, np.int64)
        p = pred[idx]
        ok = p >= 0
        v = np.full((len(idx), 2), np.nan)
        g = (self.frame[idx[ok]] - self.frame[p[ok]]).astype(np.float64)
        v[ok] = (self.pos[idx[ok]] - self.pos[p[ok]]) / g[:, None]
        self.velocity[idx] = v

    def predicted(self, i, g):
        """Expected position of detection i after g frames, and the step's spread per axis."""
        v = self.velocity[i]
        known = np.isfinite(v[:, 0])
        if self.phi <= 0:
            return self.pos[i], np.full(len(i), self.sigma)
        gain = self.phi * (1 - self.phi**g) / (1 - self.phi)
        shift = np.where(known[:, None], v * gain[:, None], 0.0)
        return self.pos[i] + shift, np.where(known, self.sigma_pred, self.sigma)

    def _area_sigma(self, succ):
        i = np.flatnonzero(succ >= 0)
        r = _log_ratio(self.area[succ[i]], self.area[i])
        if len(r) < 10:
            return 0.1
        return float(np.clip(1.4826 * np.median(np.abs(r - np.median(r))), 0.03, 0.3))

    def _border_area_scale(self, succ):
        if self.border is None:
            return None
        i = np.flatnonzero(succ >= 0)
        i = i[self.border[i] | self.border[succ[i]]]
        r = _log_ratio(self.area[succ[i]], self.area[i])
        if len(r) < 10:
            return BORDER_AREA_SCALE
        return float(np.clip(np.median(np.abs(r - np.median(r))) / np.log(2), 0.05, 0.5))

    def _area_term(self, r, sigma, cap=None, weight=1.0):
        return weight * np.minimum(r**2 / (2 * sigma**2), AREA_COST_CAP if cap is None else cap)

    def _weight(self, *idx):
        """Weight of area terms: a quarter where any of the detections touches the border."""
        if self.border is None:
            return 1.0
        cut = np.zeros(len(idx[0]), bool)
        for i in idx:
            cut |= self.border[i]
        return np.where(cut, BORDER_AREA_WEIGHT, 1.0)

    def link(self, i, j):
        """Cost of detection i continuing as detection j (j in a later frame)."""
        g = (self.frame[j] - self.frame[i]).astype(np.float64)
        expected, sigma = self.predicted(i, g)
        d2 = ((self.pos[j] - expected) ** 2).sum(axis=1)
        cost = d2 / (2 * sigma**2 * g) + np.log(sigma / self.sigma) * 2 + GAP_COST_PER_FRAME * (g - 1)
        if self.sigma_a is not None:
            # log area drifts like a random walk: its variance grows with the gap
            r = _log_ratio(self.area[j], self.area[i])
            inner = self._area_term(r, self.sigma_a * np.sqrt(g))
            if self.scale_a_border is not None:
                cut = self.border[i] | self.border[j]
                edge = np.minimum(np.abs(r) / (self.scale_a_border * np.sqrt(g)), AREA_COST_CAP)
                inner = np.where(cut, np.minimum(inner, edge), inner)
            cost = cost + inner
        return cost

    def division(self, m, d1, d2):
        """Cost of mother m dividing into d1 and d2 (later frames)."""
        frame, pos = self.frame, self.pos
        g1 = (frame[d1] - frame[m]).astype(np.float64)
        g2 = (frame[d2] - frame[m]).astype(np.float64)
        centre = (pos[d1] + pos[d2]) / 2
        expected, sigma = self.predicted(m, (g1 + g2) / 2)
        d2c = ((centre - expected) ** 2).sum(axis=1)
        cost = (d2c / (2 * sigma**2 * (g1 + g2) / 2) + np.log(sigma / self.sigma) * 2
                + GAP_COST_PER_FRAME * (np.maximum(g1, g2) - 1) + DIVISION_COST)
        # the sisters lie on opposite sides of the mother: penalise a small angle between them
        v1, v2 = pos[d1] - expected, pos[d2] - expected
        norm = np.sqrt((v1**2).sum(axis=1) * (v2**2).sum(axis=1))
        cos = np.where(norm > 0, (v1 * v2).sum(axis=1) / np.where(norm > 0, norm, 1), -1.0)
        cost = cost + 2.0 * np.clip(cos, 0, None) ** 2
        if self.area is not None:
            a = self.area
            w = self._weight(m, d1, d2)
            # just after a division the sisters touch: their centres lie about the sum of
            # their radii apart, and drift apart no faster than two cells move
            radii = np.sqrt(np.clip(a[d1], 0, None) / np.pi) + np.sqrt(np.clip(a[d2], 0, None) / np.pi)
            sep = np.sqrt(((pos[d1] - pos[d2]) ** 2).sum(axis=1))
            excess = np.where(np.isfinite(radii), np.clip(sep - radii, 0, None), 0.0)
            cost = cost + w * np.minimum(excess**2 / (2 * self.sigma**2 * (g1 + g2) / 2),
                                         DIVISION_AREA_CAP)
            total = _log_ratio(a[d1] + a[d2], a[m])
            cost = cost + self._area_term(total, SUM_AREA_SIGMA, DIVISION_AREA_CAP, w)
            cost = cost + self._area_term(_log_ratio(a[d1], a[d2]), DAUGHTER_AREA_SIGMA,
                                          DIVISION_AREA_CAP, w)
        if self.axis is not None:
            # a cell divides along its long axis (Hertwig's rule): the sisters lie along the
            # mother's long axis, a cue as strong as the mother is elongated
            sep = pos[d1] - pos[d2]
            norm = np.sqrt((sep**2).sum(axis=1))
            along = np.abs((sep * self.axis[m]).sum(axis=1)) / np.where(norm > 0, norm, 1.0)
            along = np.where(norm > 0, along, 1.0)
            cost = cost + AXIS_WEIGHT * self.elongation[m] * (1 - along**2) * self._weight(m)
        if self.intensity is not None:
            ratio = _log_ratio(self.intensity[d1], self.intensity[d2])
            cost = cost + self._area_term(ratio, DAUGHTER_INTENSITY_SIGMA, DIVISION_AREA_CAP)
        return cost

    def half_division(self, m, d):
        """Cost of a mother m at the border dividing with only daughter d in view.

        Needs areas and border flags; infinite for mothers away from the border.
        """
        g = (self.frame[d] - self.frame[m]).astype(np.float64)
        d2 = ((self.pos[d] - self.pos[m]) ** 2).sum(axis=1)
        r = _log_ratio(self.area[d], self.area[m]) - HALF
        cost = (d2 / (2 * (2 * self.sigma) ** 2 * g) + GAP_COST_PER_FRAME * (g - 1) + DIVISION_COST
                + HIDDEN_DAUGHTER_COST + self._area_term(r, SUM_AREA_SIGMA, DIVISION_AREA_CAP))
        if self.border is None:
            return np.full(len(m), np.inf)
        return np.where(self.border[m] | self.border[d], cost, np.inf)


def _frame_index(frame):
    frames, starts = np.unique(frame, return_index=True)
    stops = np.append(starts[1:], len(frame))
    return {int(t): (int(a), int(b)) for t, a, b in zip(frames, starts, stops)}


def _pairs(tree_pts, query_pts, radius):
    """All (query, point) index pairs within ``radius``."""
    from scipy.spatial import cKDTree

    if len(tree_pts) == 0 or len(query_pts) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    s = cKDTree(query_pts).sparse_distance_matrix(cKDTree(tree_pts), radius, output_type="ndarray")
    return s["i"].astype(np.int64), s["j"].astype(np.int64)


def _nearest_pairs(tree_pts, query_pts, radius, k):
    """(query, point) index pairs: up to ``k`` nearest points within ``radius`` of each query."""
    from scipy.spatial import cKDTree

    if len(tree_pts) == 0 or len(query_pts) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    k = min(k, len(tree_pts))
    dist, j = cKDTree(tree_pts).query(query_pts, k=k, distance_upper_bound=radius)
    dist, j = dist.reshape(len(query_pts), k), j.reshape(len(query_pts), k)
    ok = np.isfinite(dist)
    i = np.broadcast_to(np.arange(len(query_pts))[:, None], ok.shape)
    return i[ok].astype(np.int64), j[ok].astype(np.int64)


def relink_divisions(model, succ, pred, *, memory=0, half_divisions=True, time_limit=20.0):
    """Re-solve the links between two frames wherever a track starts or ends beside others.

    Parameters
    ----------
    model : CostModel
    succ, pred : (N,) int ndarray
        Links from frame-to-frame linking (consecutive frames only); not modified.
    memory : int
        Track ends up to this many frames before ``t`` may also link into ``t + 1``
        (gap closing, decided jointly with the divisions).

    Returns
    -------
    succ, pred : (N,) int ndarray
        New links (a mother has no successor).
    divisions : dict
        Mother detection -> tuple of daughter detections (one or two).
    """
    frame, pos = model.frame, model.pos
    succ, pred = succ.copy(), pred.copy()
    index = _frame_index(frame)
    t_min, t_max = frame.min(), frame.max()
    divisions = {}
    radius = model.division_radius
    for u in sorted(index):
        if u == t_min:
            continue
        t = u - 1
        a0, a1 = index.get(t, (0, 0))
        b0, b1 = index[u]
        starts = b0 + np.flatnonzero(pred[b0:b1] < 0)
        ends = a0 + np.flatnonzero(succ[a0:a1] < 0)
        if half_divisions and model.area is not None and model.border is not None:
            # a linked cell whose area halves is a division with a daughter unseen
            linked = a0 + np.flatnonzero(succ[a0:a1] >= 0)
            r = _log_ratio(model.area[succ[linked]], model.area[linked])
            shrunk = linked[r < HALF / 2]
        else:
            shrunk = np.zeros(0, np.int64)
        triggers = np.concatenate([pos[starts], pos[ends], pos[shrunk]])
        if len(triggers) == 0:
            continue
        # the neighbourhood of the triggers in both frames, closed under the current links
        ia, _ = _pairs(triggers, pos[a0:a1], radius + model.search_range)
        ib, _ = _pairs(triggers, pos[b0:b1], radius + model.search_range)
        local_a = np.unique(a0 + ia)
        local_b = np.unique(b0 + ib)
        if len(local_b) == 0:
            continue
        partners_b = succ[local_a][succ[local_a] >= 0]
        partners_a = pred[local_b][pred[local_b] >= 0]
        local_a = np.union1d(local_a, partners_a)
        local_b = np.union1d(local_b, partners_b)
        # open track ends of the previous `memory` frames near the neighbourhood
        earlier = []
        for g in range(1, memory + 1):
            if t - g not in index:
                continue
            c0, c1 = index[t - g]
            open_end = c0 + np.flatnonzero(succ[c0:c1] < 0)
            open_end = open_end[[k not in divisions for k in open_end.tolist()]]
            ic, _ = _pairs(pos[local_b], pos[open_end], model.search_range * np.sqrt(g + 1))
            earlier.append(open_end[np.unique(ic)])
        earlier = np.concatenate(earlier) if earlier else np.zeros(0, np.int64)
        model.update_velocity(np.concatenate([local_a, earlier]), pred)
        _solve_pair(model, local_a, local_b, succ, pred, divisions, half_divisions, time_limit,
                    earlier=earlier)
    return succ, pred, divisions


def _solve_pair(model, local_a, local_b, succ, pred, divisions, half_divisions, time_limit,
                earlier=None):
    """Optimal links and divisions between detections ``local_a`` (t) and ``local_b`` (t+1).

    ``earlier`` are open track ends of earlier frames that may link into ``local_b`` across
    a gap.
    """
    pos, frame = model.pos, model.frame
    # links (from t, and across gaps from earlier open ends)
    qi, qj = _nearest_pairs(pos[local_b], pos[local_a], model.search_range, MAX_CANDIDATES)
    li, lj = local_a[qi], local_b[qj]
    if earlier is not None and len(earlier):
        t1 = frame[local_b[0]]
        for g in np.unique(t1 - frame[earlier]).tolist():
            src = earlier[t1 - frame[earlier] == g]
            qi, qj = _nearest_pairs(pos[local_b], pos[src], model.search_range * np.sqrt(g),
                                    MAX_CANDIDATES)
            li = np.concatenate([li, src[qi]])
            lj = np.concatenate([lj, local_b[qj]])
        local_a_all = np.concatenate([local_a, earlier])
    else:
        local_a_all = local_a
    link_cost = model.link(li, lj) - model.death_of(li) - model.birth_of(lj)
    keep = link_cost < 0
    li, lj, link_cost = li[keep], lj[keep], link_cost[keep]
    # divisions: pairs of daughters near the mother
    qi, qj = _nearest_pairs(pos[local_b], pos[local_a], model.division_radius, MAX_DAUGHTERS)
    mi, dj = local_a[qi], local_b[qj]
    order = np.lexsort((dj, mi))
    mi, dj = mi[order], dj[order]
    bounds = np.flatnonzero(np.diff(np.r_[-1, mi, -2]))
    triples = [(mi[lo], dj[x], dj[y]) for lo, hi in zip(bounds[:-1], bounds[1:])
               for x in range(lo, hi) for y in range(x + 1, hi)]
    if triples:
        dm, d1, d2 = np.asarray(triples, np.int64).T
        div_cost = (model.division(dm, d1, d2) - model.death_of(dm) - model.birth_of(d1)
                    - model.birth_of(d2))
        keep = div_cost < 0
        dm, d1, d2, div_cost = dm[keep], d1[keep], d2[keep], div_cost[keep]
    else:
        dm = d1 = d2 = np.zeros(0, np.int64)
        div_cost = np.zeros(0)
    if half_divisions and model.area is not None and model.border is not None:
        hm, hd = mi, dj
        half_cost = model.half_division(hm, hd) - model.death_of(hm) - model.birth_of(hd)
        keep = half_cost < 0
        hm, hd, half_cost = hm[keep], hd[keep], half_cost[keep]
    else:
        hm = hd = np.zeros(0, np.int64)
        half_cost = np.zeros(0)

    n_l, n_d, n_h = len(li), len(dm), len(hm)
    if n_l + n_d + n_h == 0:
        chosen_l = chosen_d = chosen_h = np.zeros(0, np.int64)
    else:
        # constraint rows: one per source (t) and per target (t+1) detection
        src = {int(k): r for r, k in enumerate(local_a_all)}
        dst = {int(k): len(src) + r for r, k in enumerate(local_b)}
        rows = np.concatenate([
            [src[k] for k in li.tolist()], [dst[k] for k in lj.tolist()],
            [src[k] for k in dm.tolist()], [dst[k] for k in d1.tolist()], [dst[k] for k in d2.tolist()],
            [src[k] for k in hm.tolist()], [dst[k] for k in hd.tolist()],
        ]).astype(np.int64)
        cols = np.concatenate([
            np.arange(n_l), np.arange(n_l),
            n_l + np.arange(n_d), n_l + np.arange(n_d), n_l + np.arange(n_d),
            n_l + n_d + np.arange(n_h), n_l + n_d + np.arange(n_h),
        ]).astype(np.int64)
        cost = np.concatenate([link_cost, div_cost, half_cost])
        x = _packing(cost, rows, cols, len(src) + len(dst), time_limit)
        chosen_l = np.flatnonzero(x[:n_l])
        chosen_d = np.flatnonzero(x[n_l:n_l + n_d])
        chosen_h = np.flatnonzero(x[n_l + n_d:])
    # apply: drop every current link that touches the neighbourhood, then set the new ones
    old = local_a[succ[local_a] >= 0]
    pred[succ[old]] = -1
    succ[old] = -1
    old = local_b[pred[local_b] >= 0]
    succ[pred[old]] = -1
    pred[old] = -1
    for k in local_a.tolist():
        divisions.pop(k, None)
    succ[li[chosen_l]] = lj[chosen_l]
    pred[lj[chosen_l]] = li[chosen_l]
    for k in chosen_d.tolist():
        divisions[int(dm[k])] = (int(d1[k]), int(d2[k]))
    for k in chosen_h.tolist():
        divisions[int(hm[k])] = (int(hd[k]),)


def _packing(cost, rows, cols, n_rows, time_limit):
    """Binary x minimising cost @ x with every row used at most once (HiGHS MILP; greedy fallback)."""
    n = len(cost)
    order = np.lexsort((np.arange(n), cost))
    if n == 1:
        return (cost < 0).astype(np.int8)
    try:
        from scipy.optimize import Bounds, LinearConstraint, milp
        from scipy.sparse import csr_array

        a = csr_array((np.ones(len(rows)), (rows, cols)), shape=(n_rows, n))
        res = milp(cost, constraints=LinearConstraint(a, -np.inf, 1), integrality=np.ones(n),
                   bounds=Bounds(0, 1), options={"time_limit": time_limit})
        if res.x is not None:
            x = (res.x > 0.5).astype(np.int8)
            used = np.bincount(rows[np.isin(cols, np.flatnonzero(x))], minlength=n_rows)
            if used.max(initial=0) <= 1:
                return x
    except (ImportError, ValueError):
        pass
    # greedy, cheapest first
    by_col = [[] for _ in range(n)]
    for r, c in zip(rows.tolist(), cols.tolist()):
        by_col[c].append(r)
    used = np.zeros(n_rows, bool)
    x = np.zeros(n, np.int8)
    for c in order.tolist():
        if cost[c] < 0 and not used[by_col[c]].any():
            used[by_col[c]] = True
            x[c] = 1
    return x


def resolve_events(model, succ, pred, divisions, *, memory, gap_closing=True, find_divisions=True):
    """Close gaps of up to ``memory`` missed frames and find divisions across such gaps.

    Parameters
    ----------
    model : CostModel
    succ, pred : (N,) int ndarray
        Current links (not modified).
    divisions : dict
        Mother -> daughters found so far (not modified).
    memory : int

    Returns
    -------
    succ, pred, divisions, stats
        Updated copies; ``stats`` counts ``n_gaps_closed`` and ``n_divisions_across_gaps``.
    """
    frame, pos = model.frame, model.pos
    succ, pred, divisions = succ.copy(), pred.copy(), dict(divisions)
    model.update_velocity(np.arange(len(frame)), pred)
    t_min, t_max = frame.min(), frame.max()
    is_daughter = np.zeros(len(frame), bool)
    for ds in divisions.values():
        is_daughter[list(ds)] = True
    is_mother = np.zeros(len(frame), bool)
    is_mother[list(divisions)] = True
    is_start = (pred < 0) & (frame > t_min) & ~is_daughter
    is_end = (succ < 0) & (frame < t_max) & ~is_mother
    starts, ends = np.flatnonzero(is_start), np.flatnonzero(is_end)
    stats = {"n_gaps_closed": 0, "n_divisions_across_gaps": 0}
    if len(starts) == 0 or len(ends) + len(frame) == 0:
        return succ, pred, divisions, stats
    big = 10.0 * (model.division_radius + 1.0) * (memory + 3)
    pts = np.column_stack([pos, frame * big])
    events = []  # (cost, kind, a, b, c)
    if gap_closing:
        for g in range(1, memory + 2):
            q = np.column_stack([pos[ends], (frame[ends] + g) * big])
            qi, qj = _pairs(pts, q, model.search_range * np.sqrt(g))
            e, s = ends[qi], qj
            ok = is_start[s]
            e, s = e[ok], s[ok]
            if len(e):
                c = model.link(e, s) - model.death_of(e) - model.birth_of(s)
                events += zip(c.tolist(), ["gap"] * len(e), e.tolist(), s.tolist(), [-1] * len(e))
    if find_divisions:
        ms, ss = [], []
        for g in range(1, memory + 2):
            q = np.column_stack([pos[starts], (frame[starts] - g) * big])
            qi, qj = _pairs(pts, q, model.division_radius * np.sqrt(g))
            ms.append(qj)
            ss.append(starts[qi])
        m, s = np.concatenate(ms), np.concatenate(ss)
        ok = ~is_mother[m]
        m, s = m[ok], s[ok]
        # the mother continues (as one daughter) and s is the other daughter, across a gap
        mid = succ[m] >= 0
        m1, s1 = m[mid], s[mid]
        c1 = succ[m1]
        ok = (frame[s1] - frame[m1] >= 2) | (frame[c1] - frame[m1] >= 2)
        m1, s1, c1 = m1[ok], s1[ok], c1[ok]
        if len(m1):
            c = model.division(m1, c1, s1) - model.link(m1, c1) - model.birth_of(s1)
            events += zip(c.tolist(), ["mid"] * len(m1), m1.tolist(), c1.tolist(), s1.tolist())
        # the mother ends and two starts are the daughters, one of them after a gap
        m2, s2 = m[~mid], s[~mid]
        if len(m2):
            order = np.lexsort((s2, m2))
            m2, s2 = m2[order], s2[order]
            bounds = np.flatnonzero(np.diff(np.r_[-1, m2, -2]))
            triples = [(m2[lo], s2[x], s2[y]) for lo, hi in zip(bounds[:-1], bounds[1:])
                       for x in range(lo, hi) for y in range(x + 1, hi)
                       if s2[x] != s2[y]]
            if triples:
                pm, pa, pb = np.asarray(triples, np.int64).T
                ok = (frame[pa] - frame[pm] >= 2) | (frame[pb] - frame[pm] >= 2)
                pm, pa, pb = pm[ok], pa[ok], pb[ok]
                c = (model.division(pm, pa, pb) - model.death_of(pm) - model.birth_of(pa)
                     - model.birth_of(pb))
                events += zip(c.tolist(), ["end"] * len(pm), pm.tolist(), pa.tolist(), pb.tolist())
    events = sorted({ev for ev in events if ev[0] < 0}, key=lambda ev: (ev[0], ev[1], ev[2], ev[3], ev[4]))
    if not events:
        return succ, pred, divisions, stats
    keys = {}
    rows, cols = [], []
    for k, (_, kind, a, b, c) in enumerate(events):
        if kind == "gap":
            used = (("out", a), ("in", b))
        elif kind == "mid":
            used = (("mother", a), ("in", c))
        else:
            used = (("out", a), ("mother", a), ("in", b), ("in", c))
        for key in used:
            rows.append(keys.setdefault(key, len(keys)))
            cols.append(k)
    x = _packing(np.array([ev[0] for ev in events]), np.asarray(rows), np.asarray(cols), len(keys), 60.0)
    for k in np.flatnonzero(x).tolist():
        _, kind, a, b, c = events[k]
        if kind == "gap":
            succ[a], pred[b] = b, a
            stats["n_gaps_closed"] += 1
        else:
            if kind == "mid":
                pred[b] = -1
                succ[a] = -1
            divisions[a] = (b, c)
            stats["n_divisions_across_gaps"] += 1
    return succ, pred, divisions, stats


def segments_from_links(succ, divisions):
    """Segment ids (by first detection) and parent segment of each segment.

    Parameters
    ----------
    succ : (N,) int ndarray
        Successor of each detection, -1 for none; detections in frame-sorted order.
    divisions : dict
        Mother detection -> daughter detections.

    Returns
    -------
    segment : (N,) int64 ndarray
    parent : (S,) int64 ndarray
        -1 for none.
    """
    n = len(succ)
    has_pred = np.zeros(n, bool)
    has_pred[succ[succ >= 0]] = True
    heads = np.flatnonzero(~has_pred)
    segment = np.full(n, -1, np.int64)
    segment[heads] = np.arange(len(heads))
    current, cur_id = heads, np.arange(len(heads))
    while len(current):
        nxt = succ[current]
        ok = nxt >= 0
        current, cur_id = nxt[ok], cur_id[ok]
        segment[current] = cur_id
    parent = np.full(len(heads), -1, np.int64)
    for mother, pair in divisions.items():
        for d in pair:
            if segment[d] != segment[mother]:
                parent[segment[d]] = segment[mother]
    return segment, parent


def resolve_merges(model, succ, pred, divisions, *, max_frames=10, area_tolerance=0.3):
    """Find two cells segmented as one object for a while, and keep both tracks.

    A merge: track A ends at detection ``e`` (frame t) next to track B, whose next detection
    ``p`` (t + 1) has about the area of A and B together (``|log((a_e + a_q) / a_p)| <
    area_tolerance`` and ``a_p > 1.4 a_q`` where ``q`` is B's detection at t). When B's
    blob later splits in two (a division found within ``max_frames``), the split is the two
    cells coming apart, not a division: A continues (across the gap) into the part that
    matches it in area and side, B into the other. The blob's detections are flagged.

    Needs areas; without them nothing is done.

    Returns
    -------
    succ, pred, divisions : updated copies
    merged : (N,) bool ndarray
        Detections that hold two cells.
    n_merges : int
        Merges resolved (the blob split again).
    """
    n = len(model.frame)
    merged = np.zeros(n, bool)
    if model.area is None or n == 0:
        return succ, pred, divisions, merged, 0
    frame, pos, area = model.frame, model.pos, model.area
    succ, pred, divisions = succ.copy(), pred.copy(), dict(divisions)
    is_mother = np.zeros(n, bool)
    is_mother[list(divisions)] = True
    ends = np.flatnonzero((succ < 0) & ~is_mother & (frame < frame.max()))
    if len(ends) == 0:
        return succ, pred, divisions, merged, 0
    big = 10.0 * (model.division_radius + 1.0) * 3
    pts = np.column_stack([pos, frame * big])
    qi, qj = _pairs(pts, np.column_stack([pos[ends], (frame[ends] + 1) * big]), model.division_radius)
    e, p = ends[qi], qj
    q = pred[p]
    ok = (q >= 0) & (q != e)
    e, p, q = e[ok], p[ok], q[ok]
    if len(e) == 0:
        return succ, pred, divisions, merged, 0
    together = _log_ratio(area[e] + area[q], area[p])
    jump = _log_ratio(area[p], area[q])
    ok = (np.abs(together) < area_tolerance) & (jump > np.log(1.4))
    if model.border is not None:
        ok &= ~(model.border[e] | model.border[p])
    e, p, q = e[ok], p[ok], q[ok]
    order = np.lexsort((e, np.abs(together[ok])))
    used = set()
    n_merges = 0
    for k in order.tolist():
        ek, pk, qk = int(e[k]), int(p[k]), int(q[k])
        if ek in used or pk in used:
            continue
        # follow the blob while it keeps the joint area, until it divides
        blob = [pk]
        cur = pk
        split = None
        while len(blob) <= max_frames:
            if cur in divisions and len(divisions[cur]) == 2:
                split = cur
                break
            nxt = succ[cur]
            if nxt < 0 or abs(_log_ratio(area[[nxt]], area[[cur]])[0]) > area_tolerance:
                break
            blob.append(int(nxt))
            cur = int(nxt)
        if split is None:  # no split seen: cannot tell a merge from growth; leave it
            continue
        used.update((ek, pk))
        merged[blob] = True
        d1, d2 = divisions.pop(split)
        # which part is A: the cheaper pair of links from A's and B's last separate states
        straight = model.link(np.array([ek, qk]), np.array([d1, d2])).sum()
        swapped = model.link(np.array([ek, qk]), np.array([d2, d1])).sum()
        da, db = (d1, d2) if straight <= swapped else (d2, d1)
        succ[split], pred[db] = db, split
        succ[ek], pred[da] = da, ek
        n_merges += 1
    return succ, pred, divisions, merged, n_merges
