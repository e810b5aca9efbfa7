"""Gating: per-marker thresholds, rescaling around them, and rule-based types.

Biologists type cells by gates: a marker is positive above its threshold. Here each
marker's transformed values are rescaled piecewise-linearly to [0, 1] with the
threshold at ``GATE`` (0.5): the minimum maps to 0, the threshold to 0.5, the maximum
to 1 (scimap's ``rescale``). A signature then combines its markers much as scimap's
``phenotype_cells`` does:

========  =======================================================================
kind      term of the type's score (one per kind the rule uses)
========  =======================================================================
pos       mean of the rescaled values of the markers
neg       mean of (1 - rescaled value)
anypos    max of the rescaled values (any one marker positive suffices)
anyneg    max of (1 - rescaled value)
allpos    max of the rescaled values if every marker is positive; + 0.01
allneg    max of (1 - rescaled value) if every marker is negative; + 0.01
========  =======================================================================

A cell has the type only when every kind its rule uses passes on its own: each term
reaches ``GATE``, and an ``allpos`` (``allneg``) has every marker positive (negative).
Otherwise the score is 0; when all pass, it is the mean of the terms. scimap averages
the terms instead, so a very negative ``neg`` marker makes up for a failed ``pos``
one: with ``allpos: [CD57, CD16], neg: [CD11B]`` every cell at CD11B's minimum scored
0.505 and passed, and once the lowest fifth of each marker of MCMICRO exemplar-001 was
set to zero (as ion counts are), a fifth of its immune cells became NK cells that way.

Among the children of a type, a cell takes the best-scoring child if that score reaches
``GATE``, and otherwise stays at the parent. Unlike scimap, a cell whose ``pos`` markers
average above the gate while one of them is below it keeps the type (scimap renames it
``likely-<type>``); its confidence shows the narrow margin. Thresholds are given (a gates table) or
estimated per marker by :func:`estimate_thresholds`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cytotrail.io import InputError

GATE = 0.5
KINDS = ("pos", "neg", "anypos", "anyneg", "allpos", "allneg")
REST = "-rest"


NEGATIVE_SDS = 3.0
POSITIVE_ODDS = 0.99
FLOOR_SHARE = 0.05
BACKGROUND_MADS = 5.0

THRESHOLD_METHODS = ("posterior", "negative_tail", "mixture_boundary")
SCALE_POWERS = (0.25, 0.5, 1.0, 2.0, 4.0)


def estimate_thresholds(
    values,
    markers,
    *,
    seed=0,
    max_cells=10_000,
    n_sds=NEGATIVE_SDS,
    confidence=POSITIVE_ODDS,
    method="posterior",
    scales=SCALE_POWERS,
):
    """Positive/negative threshold of every marker from the data.

    A two-component Gaussian mixture (scikit-learn, seeded, the best likelihood of four
    k-means++ starts: a single start lands in different optima) is fitted to each marker's
    values, leaving out outliers (below the 0.5th percentile or below Q1 - 3 IQR, e.g.
    the zeros of cells outside the tissue, and above the 99.9th percentile). Cells at the
    marker's minimum, when they are at least ``FLOOR_SHARE`` of all (the zeros of ion
    counts in IMC or MIBI), are negatives the mixture would take as a component of zero
    width: the mixture is fitted to the other cells. Where the threshold then sits:

    - ``"posterior"`` (default): the lowest value above the negative mean at which the
      mixture gives a cell ``confidence`` odds of belonging to the upper component; where
      it never does, the negative tail below;
    - ``"negative_tail"``: the lower component's mean plus ``n_sds`` standard deviations,
      the upper tail of the negatives as flow cytometry gates;
    - ``"mixture_boundary"``: the value between the means where the two weighted
      components are equally likely.

    Whatever the method, when the lower component is the broad one and the upper a tight
    population clearly above it (a marker most cells carry, such as HLA-DR or MHC-I), the
    negatives cannot be told from their spread: the threshold is then the lower edge of
    the positives, their mean minus ``n_sds`` standard deviations.

    **Five scales, one answer.** Real populations are not Gaussian on any one scale, and
    a mixture fitted to a skewed or noisy marker lands in different optima on scales that
    differ a little: on MCMICRO exemplar-001, SMA came out 13 % positive on the arcsinh
    scale, 99 % on its square root and 59 % on its power 1.4 (the authors: 14 %). So the
    mixture is fitted on the values shifted to start at 0 and raised to each power of
    ``scales`` (1/4, 1/2, 1, 2, 4), each fit gives the share of cells above its threshold,
    and the marker's threshold puts the mean of those shares, the highest and the lowest
    left out, above it. On the five versions of exemplar-001 the choice was made on (as
    given, as ion counts with 50 and 10 Poisson counts at the median cell, arcsinh then
    z-scored, log1p: ``benchmarks/bench_cluster_gating.py --stress``) the mean share of
    cells typed as the authors did is 72.8 % on one scale and 79.2 % on five (fitted on
    20,000 cells: 73.9 and 78.1 %; 3, 5 or 7 powers between 1/8 and 8 combined by their
    median gave 75.8-77.7 %, these five by their median 77.6 %, by their plain mean
    76.9 %). One scale is fragile: exemplar-001 as given is typed 88.8 % with fits on
    20,000 cells and 78.6 % with fits on 10,000 (five scales: 83.3 and 82.3 %). On the
    33-marker CyCIF table, which only reports (though its figures were seen when the
    combination was chosen), typing went from 50.0 to 77.1 % and the lineage from 69.4 to
    95.8 %. Fits use at most ``max_cells`` cells: 10,000 halved the time of 20,000 (five
    scales of 40 markers at 100,000 cells: annotation 22.8 s against 3.1 s for one scale
    at 20,000).

    The posterior rule with 0.99 was chosen on exemplar-001's gates at one scale
    (arcsinh): 88.9 % of cells typed as the authors did, against 88.1 % for the negative
    tail with 3 SDs (85 % with 2.5 or 4 SDs); 0.98 and 0.995 gave 89.1 % and 87.9 %.

    Parameters
    ----------
    values : (N, M) ndarray
        Transformed marker values.
    markers : sequence of str
        The M marker names.
    seed : int
        Seed of the mixtures' initialisation (and of the subsample above ``max_cells``).
    max_cells : int
        Cells used per fit (a seeded random subset above this, the same for every scale).
    n_sds : float
        Standard deviations of a component's spread (negative tail, positive edge).
    confidence : float
        Posterior probability of the upper component at the threshold (``"posterior"``).
    method : {"posterior", "negative_tail", "mixture_boundary"}
        Where the threshold sits (see above).
    scales : sequence of float
        Powers of the shifted values the mixture is fitted on; the mean share above the
        thresholds, without the highest and the lowest, decides. ``(1.0,)``: the values'
        own scale only.

    Returns
    -------
    dict
        ``{marker: threshold}`` on the transformed scale; a marker with (nearly) one
        value gets a threshold just above its maximum (every cell negative).
    """
    if method not in THRESHOLD_METHODS:
        raise InputError(f"threshold method must be one of {list(THRESHOLD_METHODS)}, got {method!r}")
    if not 0.5 <= confidence < 1:
        raise InputError(f"threshold confidence must be in [0.5, 1), got {confidence!r}")
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    rows = (
        np.sort(rng.choice(len(values), max_cells, replace=False))
        if len(values) > max_cells
        else np.arange(len(values))
    )
    out = {}
    for j, marker in enumerate(markers):
        x = values[rows, j]
        shifted = x - x.min()
        shares = []
        for power in scales:
            scaled = shifted**power
            shares.append(np.mean(scaled >= _fit_threshold(scaled, seed, n_sds, confidence, method)))
        middle = np.sort(shares)[1:-1] if len(shares) >= 3 else shares  # without the extremes
        out[str(marker)] = _threshold_at_share(values[:, j], float(np.mean(middle)))
    return out


def _fit_threshold(x, seed, n_sds, confidence, method):
    """Threshold of one marker's values ``x`` on their own scale (see :func:`estimate_thresholds`)."""
    from sklearn.mixture import GaussianMixture

    v, floor = _above_floor(x)  # a spike of zeros (counts): fit the rest
    q1, q3, p_lo, p_hi = np.percentile(v, [25, 75, 0.5, 99.9]) if len(v) else [floor] * 4
    v = v[(v >= max(q1 - 3 * (q3 - q1), p_lo)) & (v <= p_hi)]
    if len(v) < 10 or not np.ptp(v) > 0:
        return np.inf  # nothing to fit: every cell negative
    gm = GaussianMixture(2, random_state=seed, init_params="k-means++", n_init=4).fit(v[:, None])
    order = np.argsort(gm.means_.ravel())
    mixture = (gm.weights_[order], gm.means_.ravel()[order], np.sqrt(gm.covariances_.ravel()[order]))
    return _threshold(mixture, method, n_sds, confidence)


def _threshold_at_share(values, share):
    """The value halfway between the cells ``share`` of ``values`` puts above and the rest."""
    n = len(values)
    n_pos = int(round(share * n))
    if n_pos <= 0:
        return float(np.nextafter(values.max(), np.inf))
    if n_pos >= n:
        return float(values.min())
    below, above = np.partition(values, [n - n_pos - 1, n - n_pos])[[n - n_pos - 1, n - n_pos]]
    return float((below + above) / 2)


def _above_floor(v):
    """(``v`` without its minimum when ``FLOOR_SHARE`` of it or more sits there, that minimum).

    The spike is the zeros of ion counts (IMC, MIBI): negatives a mixture or a spread would
    take for a component of zero width.
    """
    floor = v.min()
    return (v[v > floor] if np.mean(v <= floor) >= FLOOR_SHARE else v), floor


def rest_base(parent, types):
    """The type a ``parent`` names: itself, or ``<type>`` for ``<type>-rest`` when no type has that name."""
    return parent[: -len(REST)] if parent.endswith(REST) and parent not in types else parent


def outlier_fence(values, n_mads=BACKGROUND_MADS):
    """Per column, the median plus ``n_mads`` robust SDs (1.4826 x the median absolute deviation).

    A background channel is "high" only where it stands out of the bulk of the cells: a
    mixture fitted to a channel of even background (noise alone) splits it in two and
    would flag its upper half. The fence sits far above the bulk's spread (about 3e-7 of a
    normal bulk beyond it) and, as long as fewer than half the cells are in a bright
    field, is set by the cells outside it. As in :func:`estimate_thresholds`, a spike at
    the minimum (``FLOOR_SHARE`` of the cells or more: the zeros of ion counts) is left
    out, so that a mostly-zero channel gets the spread of its counts, not a fence of 0.
    """
    values = np.asarray(values, dtype=np.float64)
    out = np.empty(values.shape[1])
    for j, column in enumerate(values.T):
        v = _above_floor(column)[0]
        v = v if len(v) else column
        median = np.median(v)
        out[j] = median + n_mads * 1.4826 * np.median(np.abs(v - median))
    return out


def _threshold(mixture, method, n_sds, confidence):
    """Threshold of one marker from its two sorted components (weights, means, SDs)."""
    weight, mean, sd = mixture
    if sd[0] > sd[1] and mean[1] - mean[0] > sd[0]:  # broad negatives, tight positives
        return float(mean[1] - n_sds * sd[1])
    tail = float(mean[0] + n_sds * sd[0])
    if method == "negative_tail":
        return tail
    hi = mean[1] if method == "mixture_boundary" else max(tail, mean[1] + n_sds * sd[1])
    grid = np.linspace(mean[0], hi, 4001)
    dens = [w * np.exp(-0.5 * ((grid - m) / s) ** 2) / s for w, m, s in zip(weight, mean, sd)]
    if method == "mixture_boundary":
        above = np.flatnonzero(dens[1] >= dens[0])
        return float(grid[above[0]] if len(above) else mean.mean())
    above = np.flatnonzero(dens[1] >= confidence * (dens[0] + dens[1]))
    return float(grid[above[0]]) if len(above) else tail


def rescale(values, thresholds):
    """Rescale each marker to [0, 1] with its threshold at ``GATE``.

    Parameters
    ----------
    values : (N, M) ndarray
        Transformed marker values.
    thresholds : (M,) array_like
        Threshold of each marker, on the same scale.

    Returns
    -------
    (N, M) ndarray of float64
        Values below the threshold mapped linearly from [min, threshold] to [0, 0.5],
        values above it from [threshold, max] to [0.5, 1].
    """
    values = np.asarray(values, dtype=np.float64)
    t = np.asarray(thresholds, dtype=np.float64)
    lo, hi = values.min(axis=0), values.max(axis=0)
    below = GATE * (values - lo) / np.where(t > lo, t - lo, 1.0)
    above = GATE + (1 - GATE) * (values - t) / np.where(hi > t, hi - t, 1.0)
    out = np.where(values < t, below, above)
    return np.clip(out, 0.0, 1.0)


def rule_scores(u, col, rule):
    """Score of one signature per cell (see the module docstring).

    Parameters
    ----------
    u : (N, M) ndarray
        Rescaled values (:func:`rescale`).
    col : dict
        ``{marker: column of u}``.
    rule : dict
        ``{kind: [markers]}`` for kinds in ``KINDS``.

    Returns
    -------
    (N,) ndarray
    """
    terms = []
    vetoed = np.zeros(len(u), dtype=bool)
    for kind in KINDS:
        names = rule.get(kind) or []
        if not names:
            continue
        x = u[:, [col[m] for m in names]]
        if kind == "pos":
            terms.append(x.mean(axis=1))
        elif kind == "neg":
            terms.append((1 - x).mean(axis=1))
        elif kind == "anypos":
            terms.append(x.max(axis=1))
        elif kind == "anyneg":
            terms.append((1 - x).max(axis=1))
        elif kind == "allpos":
            vetoed |= ~(x >= GATE).all(axis=1)
            terms.append(x.max(axis=1) + 0.01)
        else:  # allneg
            vetoed |= ~(x < GATE).all(axis=1)
            terms.append((1 - x).max(axis=1) + 0.01)
    terms = np.asarray(terms)
    if len(terms) > 1:
        vetoed |= (terms < GATE).any(axis=0)
    return np.where(vetoed, 0.0, terms.mean(axis=0))


def signatures_from_workflow(table):
    """cytotrail signatures from a scimap ``phenotype_workflow`` table.

    Parameters
    ----------
    table : DataFrame
        scimap's format: the first column the parent (``all`` at the top), the second
        the child, then one column per marker holding ``pos``, ``neg``, ``anypos``,
        ``anyneg``, ``allpos`` or ``allneg`` (empty elsewhere). A parent named
        ``<type>-rest`` stands for the cells of ``<type>`` that none of its children took.

    Returns
    -------
    dict
        ``{name: {kind: [markers], "parent": name, "label": child}}`` in the table's
        order. A child listed under several parents keeps its name the first time and is
        named ``"<child> (<parent>)"`` after, with ``label`` the child's name; a parent
        refers to the first type of that name.

    Raises
    ------
    InputError
        Fewer than three columns, an empty parent or child, or a value that is not a kind.
    """
    if table.shape[1] < 3:
        raise InputError(
            "a phenotype workflow needs a parent column, a child column and one "
            f"column per marker; it has {table.shape[1]} column(s)"
        )
    markers = [str(c).strip() for c in table.columns[2:]]
    out = {}
    for i, row in enumerate(table.itertuples(index=False), start=2):
        parent, child = (str(v).strip() if isinstance(v, str) else "" for v in row[:2])
        if not parent or not child:
            raise InputError(f"phenotype workflow line {i}: empty parent or child name")
        rule = {}
        for marker, value in zip(markers, row[2:]):
            if not isinstance(value, str) or not value.strip():
                continue
            kind = value.strip().lower()
            if kind not in KINDS:
                raise InputError(
                    f"phenotype workflow line {i} ({child!r}), marker {marker!r}: "
                    f"{value!r} is not one of {list(KINDS)}"
                )
            rule.setdefault(kind, []).append(marker)
        if not rule:
            raise InputError(f"phenotype workflow line {i} ({child!r}) names no marker")
        name = child if child not in out else f"{child} ({parent})"
        sig = dict(rule, label=child)
        if parent.lower() != "all":
            sig["parent"] = parent
        out[name] = sig
    return out


def thresholds_from_gates(table):
    """``{marker: threshold}`` from a gates table (scimap's ``manual_gates.csv``).

    Parameters
    ----------
    table : DataFrame
        A ``markers`` (or ``marker``) column and one numeric column of gates; or the
        markers as the first column.

    Raises
    ------
    InputError
        No gate column, several gate columns, duplicated markers or non-numeric gates.
    """
    table = table.copy()
    table.columns = [str(c).strip() for c in table.columns]
    key = next((c for c in table.columns if c.lower() in ("markers", "marker")), table.columns[0])
    values = [c for c in table.columns if c != key]
    if len(values) != 1:
        raise InputError(f"a gates table needs one column of gates beside {key!r}; it has {values}")
    names = table[key].astype(str).str.strip()
    dup = sorted(set(names[names.duplicated()]))
    if dup:
        raise InputError(f"gates table names markers {dup} more than once")
    gates = pd.to_numeric(table[values[0]], errors="coerce")
    bad = list(names[gates.isna()])
    if bad:
        raise InputError(f"gates table: the gates of {bad} are not numbers")
    return dict(zip(names, gates.astype(float)))
