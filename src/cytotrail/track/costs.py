"""The cost model of tracking: what a link, a division, a birth and a death cost.

Costs are negative log-likelihoods: squared displacements from the position predicted by
each cell's last step (velocity persistence estimated from the data) over the
drift-corrected step variance, squared log area ratios over their variance (estimated from
the confident links, growing with the gap; capped, so that odd segmentations cannot
dominate), and costs for a birth, a death, a missed frame and a division. A division
is scored by how well the daughters' midpoint matches the mother's predicted position, how
their areas add up to the mother's, whether they lie on opposite sides of it, whether they
still touch (centres about the sum of their radii apart, or without areas about one
neighbour distance, give or take the displacement spread), and how alike the sisters are in area and intensity. The scales of the division
terms (:data:`DEFAULT_DIVISION_SCALES`) are estimated from the movie by
:mod:`cytotrail.track.calibrate`. Objects cut by the frame's edge have unreliable areas:
their area changes along a track are scored with a heavy-tailed (Laplace) cost whose scale
comes from the links at the border, their division area terms count a quarter, and small
ones (a cell coming in or going out) may appear or vanish there at a lower cost.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DEFAULT_DIVISION_SCALES", "CostModel"]

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

#: Scales of a division's terms before the movie is seen (synthetic-like nuclei: areas add
#: up, sisters alike); :func:`cytotrail.track.calibrate.fit_division_scales` replaces them.
DEFAULT_DIVISION_SCALES = {
    "division_cost": DIVISION_COST,  # prior cost of a division
    "sum_area_mean": 0.0,  # mean of log((a1 + a2) / a_mother)
    "sum_area_sigma": SUM_AREA_SIGMA,  # its spread
    "sister_area_sigma": DAUGHTER_AREA_SIGMA,  # spread of log(a1 / a2)
    "centre_sigma_factor": 1.0,  # spread of the sisters' midpoint about the mother, in step sigmas
    "contact_distance_px": float("nan"),  # without areas: how far apart touching sisters are
}


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
    scales : dict, optional
        Division scales overriding :data:`DEFAULT_DIVISION_SCALES` (same keys).
    birth_cost, death_cost : float, optional
        Cost of a track starting, and of one ending, away from the border; default each:
        half a link one search range long, ``(search_range / sigma)**2 / 4``.
    gap_cost : float, optional
        Cost of each missed frame inside a track; default :data:`GAP_COST_PER_FRAME`.
    """

    def __init__(
        self,
        frame,
        pos,
        area,
        intensity,
        *,
        search_range,
        sigma,
        succ,
        border=None,
        persistence=True,
        orientation=None,
        elongation=None,
        scales=None,
        birth_cost=None,
        death_cost=None,
        gap_cost=None,
    ):
        self.frame, self.pos, self.area, self.intensity = frame, pos, area, intensity
        self.gap_cost = GAP_COST_PER_FRAME if gap_cost is None else float(gap_cost)
        self.scales = {**DEFAULT_DIVISION_SCALES, **(scales or {})}
        self.border = border
        if orientation is not None and elongation is not None:
            ok = np.isfinite(orientation) & np.isfinite(elongation)
            self.axis = np.column_stack(
                [np.cos(np.where(ok, orientation, 0.0)), np.sin(np.where(ok, orientation, 0.0))]
            )
            self.elongation = np.where(ok, np.clip(elongation, 0.0, 1.0), 0.0)
        else:
            self.axis = self.elongation = None
        if sigma is None or not np.isfinite(sigma) or sigma <= 0:
            sigma = search_range / 5.0
        self.sigma = float(max(sigma, 0.2))
        self.search_range = float(search_range)
        n_sigma = max(search_range / self.sigma, 3.0)
        # a link as long as the search range costs as much as a death plus a birth
        self.birth = n_sigma**2 / 4.0 if birth_cost is None else float(birth_cost)
        self.death = n_sigma**2 / 4.0 if death_cost is None else float(death_cost)
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
        cost = d2 / (2 * sigma**2 * g) + np.log(sigma / self.sigma) * 2 + self.gap_cost * (g - 1)
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
        sc = self.scales
        expected, sigma = self.predicted(m, (g1 + g2) / 2)
        d2c = ((centre - expected) ** 2).sum(axis=1)
        sigma_c = sigma * sc["centre_sigma_factor"]
        cost = (
            d2c / (2 * sigma_c**2 * (g1 + g2) / 2)
            + np.log(sigma_c / self.sigma) * 2
            + self.gap_cost * (np.maximum(g1, g2) - 1)
            + sc["division_cost"]
        )
        # the sisters lie on opposite sides of the mother: penalise a small angle between them
        v1, v2 = pos[d1] - expected, pos[d2] - expected
        norm = np.sqrt((v1**2).sum(axis=1) * (v2**2).sum(axis=1))
        cos = np.where(norm > 0, (v1 * v2).sum(axis=1) / np.where(norm > 0, norm, 1), -1.0)
        cost = cost + 2.0 * np.clip(cos, 0, None) ** 2
        contact = sc["contact_distance_px"]
        if self.area is None and np.isfinite(contact):
            # positions only: sisters touch, about one neighbour distance apart
            sep = np.sqrt(((pos[d1] - pos[d2]) ** 2).sum(axis=1))
            excess = np.clip(sep - contact, 0, None)
            cost = cost + np.minimum(excess**2 / (2 * self.sigma**2 * (g1 + g2) / 2), DIVISION_AREA_CAP)
        if self.area is not None:
            a = self.area
            w = self._weight(m, d1, d2)
            # just after a division the sisters touch: their centres lie about the sum of
            # their radii apart, and drift apart no faster than two cells move
            radii = np.sqrt(np.clip(a[d1], 0, None) / np.pi) + np.sqrt(np.clip(a[d2], 0, None) / np.pi)
            sep = np.sqrt(((pos[d1] - pos[d2]) ** 2).sum(axis=1))
            excess = np.where(np.isfinite(radii), np.clip(sep - radii, 0, None), 0.0)
            cost = cost + w * np.minimum(excess**2 / (2 * self.sigma**2 * (g1 + g2) / 2), DIVISION_AREA_CAP)
            total = _log_ratio(a[d1] + a[d2], a[m]) - sc["sum_area_mean"]
            cost = cost + self._area_term(total, sc["sum_area_sigma"], DIVISION_AREA_CAP, w)
            cost = cost + self._area_term(
                _log_ratio(a[d1], a[d2]), sc["sister_area_sigma"], DIVISION_AREA_CAP, w
            )
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
        cost = (
            d2 / (2 * (2 * self.sigma) ** 2 * g)
            + self.gap_cost * (g - 1)
            + self.scales["division_cost"]
            + HIDDEN_DAUGHTER_COST
            + self._area_term(r, SUM_AREA_SIGMA, DIVISION_AREA_CAP)
        )
        if self.border is None:
            return np.full(len(m), np.inf)
        return np.where(self.border[m] | self.border[d], cost, np.inf)
