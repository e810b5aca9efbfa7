"""Cell types from marker signatures: scores, the hierarchy, one type per track."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cytotrail.cluster.gating import GATE, KINDS, REST, rescale, rest_base, rule_scores
from cytotrail.cluster.transform import percentile_scale
from cytotrail.io import InputError

UNKNOWN = "unknown"


SIGNATURE_KEYS = ("positive", "negative", *KINDS, "parent", "label")
ALIASES = {"positive": "pos", "negative": "neg"}


def normalise_signatures(signatures, markers=None):
    """Validated signatures: ``{name: {"rule": {kind: [markers]}, "parent", "label"}}``.

    Parameters
    ----------
    signatures : dict or None
        ``{type: {pos: [...], neg: [...], anypos: [...], anyneg: [...], allpos: [...],
        allneg: [...], parent: type, label: name}}``; ``positive``/``negative`` are
        ``pos``/``neg``, a list is ``{pos: list}``. ``parent`` may be ``<type>-rest``:
        the cells of ``<type>`` that none of its other children took. ``label`` is the
        name given to the cells (default: the key). None or ``{}``: no types.
    markers : sequence of str, optional
        The clustered markers; every signature marker must be one of them.

    Returns
    -------
    dict
        In the order given; ``{}`` for no signatures.

    Raises
    ------
    InputError
        A signature that is not a mapping, an unknown key, no marker, a marker both positive
        and negative, an unknown parent, a cycle, or a marker that is not clustered.
    """
    if signatures is None:
        return {}
    if not isinstance(signatures, dict):
        raise InputError(
            "signatures must be a mapping {type: {pos: [...], neg: [...]}}, got "
            f"{type(signatures).__name__}"
        )
    out = {}
    for name, sig in signatures.items():
        if isinstance(sig, (list, tuple)):
            sig = {"pos": list(sig)}
        if not isinstance(sig, dict):
            raise InputError(
                f"signature of {name!r} must be a mapping of marker lists ({', '.join(SIGNATURE_KEYS)})"
            )
        unknown_keys = set(sig) - set(SIGNATURE_KEYS)
        if unknown_keys:
            raise InputError(
                f"signature of {name!r} has unknown keys {sorted(unknown_keys)}; "
                f"keys are {list(SIGNATURE_KEYS)}"
            )
        rule = {}
        for key in ("positive", "negative", *KINDS):
            value = sig.get(key) or []
            if isinstance(value, str):
                value = [value]
            if value:
                rule.setdefault(ALIASES.get(key, key), []).extend(str(m) for m in value)
        if not rule:
            raise InputError(f"signature of {name!r} names no marker")
        both = sorted(
            {m for k in ("pos", "anypos", "allpos") for m in rule.get(k, [])}
            & {m for k in ("neg", "anyneg", "allneg") for m in rule.get(k, [])}
        )
        if both:
            raise InputError(f"signature of {name!r} names {both} both positive and negative")
        parent = sig.get("parent")
        out[str(name)] = {
            "rule": rule,
            "parent": None if parent is None else str(parent),
            "label": str(sig.get("label") or name),
        }
    for name in out:
        seen, parent = {name}, out[name]["parent"]
        while parent is not None:
            base = rest_base(parent, out)
            if base not in out:
                raise InputError(
                    f"signature of {name!r}: parent {parent!r} is not a cell type; types are {list(out)}"
                )
            if base in seen:
                raise InputError(f"signature hierarchy has a cycle through {base!r}")
            seen.add(base)
            parent = out[base]["parent"]
    if markers is not None:
        used = sorted({m for sig in out.values() for ms in sig["rule"].values() for m in ms})
        missing = [m for m in used if m not in markers]
        if missing:
            raise InputError(
                f"signature markers {missing} are not among the clustered markers {list(markers)}"
            )
    return out


def score_signatures(values, markers, signatures, *, min_score=0.2, thresholds=None):
    """Score every observation against every cell-type signature and pick its type.

    Without ``thresholds`` each marker is normalised to [0, 1] between its 1st and 99th
    percentile over all observations, and the score of a type is its positive terms
    minus its negative terms (``pos``: mean, ``anypos``: max, ``allpos``: min of the
    markers' values; ``neg``: mean, ``anyneg``: min, ``allneg``: max), in [-1, 1]; a
    type needs ``min_score``. With ``thresholds`` the markers are gated
    (:mod:`cytotrail.cluster.gating`): rescaled with the threshold at 0.5 and scored as
    scimap's ``phenotype_cells`` does, except that every kind of a rule must pass (see
    the module); a type needs 0.5.

    Types are chosen top down: the best of the types without ``parent``, then, while the
    chosen type has children, the best child if it passes (else the cell stays at the
    parent; then a ``<type>-rest`` parent's children get their turn).

    Parameters
    ----------
    values : (N, M) ndarray
        Transformed marker values.
    markers : sequence of str
        The M marker names.
    signatures : dict
        See :func:`normalise_signatures`.
    min_score : float
        Score a type needs without thresholds (otherwise ``"unknown"``).
    thresholds : dict or (M,) array_like, optional
        Gate of every marker, on the scale of ``values``.

    Returns
    -------
    types : (N,) ndarray of str
        The type's ``label``, or ``"unknown"``.
    confidence : (N,) ndarray of float
        At each level descended, the gap between the chosen score and the larger of the
        runner-up's score and the pass score, over the room above the pass score; the
        smallest over the levels, in [0, 1]; 0 for ``"unknown"``.
    scores : DataFrame
        (N, n_types) scores.
    """
    sigs = normalise_signatures(signatures, markers)
    if not sigs:
        raise InputError("no signatures to score")
    scores, pass_score = _scores(np.asarray(values, np.float64), markers, sigs, thresholds)
    node, confidence = _descend(scores, sigs, pass_score, min_score=min_score)
    return _labels(node, sigs), confidence, scores


def _scores(values, markers, sigs, thresholds):
    """(scores DataFrame, pass score) by percentile scores or by gates."""
    col = {m: j for j, m in enumerate(markers)}
    if thresholds is None:
        norm, _, _ = percentile_scale(values)
        return pd.DataFrame({n: _percentile_score(norm, col, s["rule"]) for n, s in sigs.items()}), None
    if isinstance(thresholds, dict):
        thresholds = [thresholds[m] for m in markers]
    u = rescale(values, thresholds)
    return pd.DataFrame({n: rule_scores(u, col, s["rule"]) for n, s in sigs.items()}), GATE


def _percentile_score(norm, col, rule):
    def terms(kinds):
        out = []
        for kind, reduce in kinds:
            if rule.get(kind):
                out.append(reduce(norm[:, [col[m] for m in rule[kind]]], axis=1))
        return np.mean(out, axis=0) if out else 0.0

    score = terms((("pos", np.mean), ("anypos", np.max), ("allpos", np.min)))
    score = score - terms((("neg", np.mean), ("anyneg", np.min), ("allneg", np.max)))
    return np.broadcast_to(score, (len(norm),)).astype(np.float64)


def _descend(scores, sigs, pass_score=None, *, min_score=0.2):
    """(node, confidence): the signature each row ends at (None: unknown), top down."""
    pass_score = min_score if pass_score is None else pass_score
    arr = scores.to_numpy()
    names = list(scores.columns)
    children = {}
    for name, sig in sigs.items():
        children.setdefault(sig["parent"], []).append(names.index(name))
    n = len(arr)
    node = np.full(n, -1)
    confidence = np.ones(n)
    room = max(1.0 - pass_score, 1e-9)
    queue = [None]  # breadth first: a parent's rows are settled before its children go
    while queue:
        parent = queue.pop(0)
        if parent is None:
            rows = np.arange(n)
        else:
            rows = np.flatnonzero(node == names.index(rest_base(parent, sigs)))
        kids = children.get(parent, [])
        if kids and len(rows):
            sub = arr[np.ix_(rows, kids)]
            best = sub.argmax(axis=1)
            top = sub[np.arange(len(rows)), best]
            second = np.sort(sub, axis=1)[:, -2] if len(kids) > 1 else np.full(len(rows), -np.inf)
            take = top >= pass_score
            margin = (top - np.maximum(second, pass_score)) / room
            node[rows[take]] = np.asarray(kids)[best[take]]
            confidence[rows[take]] = np.minimum(confidence[rows[take]], np.clip(margin[take], 0, 1))
        queue.extend(names[k] for k in kids)
        if parent is not None and parent + REST in children:
            queue.append(parent + REST)
    confidence[node < 0] = 0.0
    return np.where(node < 0, None, np.asarray(names, dtype=object)[np.clip(node, 0, None)]), confidence


def _labels(node, sigs):
    """(N,) str: each node's label, ``UNKNOWN`` for None."""
    return np.asarray([UNKNOWN if k is None else sigs[k]["label"] for k in node], dtype=object).astype(str)


def lineages(signatures, markers=None):
    """``{label: label of its top-level type}`` of a hierarchy of signatures.

    The lineage a pathologist reads first (immune, epithelial, stromal) is the type at the
    top of the ``parent`` chain; ``unknown`` maps to itself.
    """
    sigs = normalise_signatures(signatures, markers)
    out = {UNKNOWN: UNKNOWN}
    for name, sig in sigs.items():
        top = name
        while sigs[top].get("parent"):
            top = rest_base(sigs[top]["parent"], sigs)
        out.setdefault(sig["label"], sigs[top]["label"])
    return out


def type_categories(sigs):
    """The labels of ``sigs`` in order, without repeats, then ``UNKNOWN``."""
    return list(dict.fromkeys(s["label"] for s in sigs.values())) + [UNKNOWN]


def _track_consensus(obs, types, confidence, *, min_run=3, purity=0.8):
    """One type per track: the majority, unless the track truly switches type once.

    A switch is kept when splitting the track's frames at one point gives two runs of at
    least ``min_run`` frames, each with a different known majority type covering
    ``purity`` of its frames. Otherwise every frame gets the track's majority type and
    its confidence is scaled by the majority's share. Returns new (types, confidence).
    """
    types = np.asarray(types, dtype=object)
    confidence = np.asarray(confidence, float).copy()
    groups = ["sample", "track_id"] if "sample" in obs.columns else ["track_id"]
    group = obs.groupby(groups, sort=False, observed=True, dropna=True).ngroup().to_numpy()
    frame = obs["frame"].to_numpy()
    codes, names = pd.factorize(pd.Series(types, dtype=object))
    names = np.asarray(names, dtype=object)
    unknown = np.flatnonzero(names == UNKNOWN)
    rows = np.flatnonzero(group >= 0)
    if len(rows) == 0:
        return types.astype(str), confidence
    rows = rows[np.lexsort((frame[rows], group[rows]))]
    g = group[rows]
    bounds = np.flatnonzero(np.r_[True, g[1:] != g[:-1], True])
    out = codes.copy()
    n_types = len(names)
    for a, b in zip(bounds[:-1], bounds[1:]):
        idx = rows[a:b]
        seq = codes[idx]
        counts = np.bincount(seq, minlength=n_types)
        share = counts.max() / len(seq)
        split = None
        if share < purity and len(seq) >= 2 * min_run:
            split = _best_switch(seq, n_types, unknown, min_run, purity)
        if split is None:
            out[idx] = counts.argmax()
            confidence[idx] *= share
        else:
            k, first, second = split
            out[idx[:k]] = first
            out[idx[k:]] = second
    return names[out].astype(str), confidence


def _best_switch(seq, n_types, unknown, min_run, purity):
    """(k, type before, type after) of the best single switch point, or None."""
    n = len(seq)
    onehot = np.zeros((n, n_types), np.int64)
    onehot[np.arange(n), seq] = 1
    head = np.cumsum(onehot, axis=0)[min_run - 1 : n - min_run]  # counts in seq[:k]
    k = np.arange(min_run, n - min_run + 1)
    tail = onehot.sum(axis=0) - head
    h, t = head.argmax(axis=1), tail.argmax(axis=1)
    hc, tc = head.max(axis=1), tail.max(axis=1)
    ok = (
        (h != t) & ~np.isin(h, unknown) & ~np.isin(t, unknown) & (hc >= purity * k) & (tc >= purity * (n - k))
    )
    if not ok.any():
        return None
    best = np.flatnonzero(ok)[np.argmax((hc + tc)[ok])]
    return int(k[best]), int(h[best]), int(t[best])


def annotate(
    adata, transformed, markers, signatures, *, annotate="cell", min_score=0.2, thresholds=None, flagged=None
):
    """Add the cell types of ``signatures`` to a clustered ``adata`` (in place).

    Parameters
    ----------
    adata : AnnData
        With ``obs["leiden"]`` (and ``track_id``, ``frame`` for the track consensus).
    transformed : (N, M) ndarray
        Transformed marker values.
    markers : sequence of str
    signatures : dict
        See :func:`normalise_signatures`; must not be empty.
    annotate : {"cell", "cluster"}
        ``cell_type`` from each observation's own scores or from its cluster's mean.
    min_score : float
        Pass score without thresholds.
    thresholds : dict, optional
        ``{marker: gate}`` on the transformed scale: gate the markers instead.
    flagged : (N,) bool ndarray, optional
        Observations to call ``"unknown"`` whatever their scores (high background).
    """
    sigs = normalise_signatures(signatures, markers)
    scores, pass_score = _scores(np.asarray(transformed, np.float64), markers, sigs, thresholds)
    node, cell_conf = _descend(scores, sigs, pass_score, min_score=min_score)
    cell_types = _labels(node, sigs)
    clusters = adata.obs["leiden"].to_numpy()
    cluster_scores = scores.groupby(clusters, sort=True).mean()
    cl_node, cl_conf = _descend(cluster_scores, sigs, pass_score, min_score=min_score)
    by_cluster = dict(zip(cluster_scores.index, _labels(cl_node, sigs)))
    conf_by_cluster = dict(zip(cluster_scores.index, cl_conf))
    adata.obs["cell_type_cluster"] = [by_cluster[c] for c in clusters]
    if annotate == "cell":
        types, conf = cell_types.astype(object), cell_conf
    else:
        types = np.asarray([by_cluster[c] for c in clusters], dtype=object)
        conf = np.asarray([conf_by_cluster[c] for c in clusters], float)
    if flagged is not None:
        types = np.where(flagged, UNKNOWN, types)
        conf = np.where(flagged, 0.0, conf)
    adata.obs["cell_type_frame"] = types
    if "track_id" in adata.obs.columns and "frame" in adata.obs.columns:
        types, conf = _track_consensus(adata.obs, types, conf)
    categories = type_categories(sigs)
    adata.obs["cell_type"] = pd.Categorical(types, categories=categories)
    adata.obs["cell_type_confidence"] = np.asarray(conf, np.float64)
    for col in ("cell_type_cluster", "cell_type_frame"):
        adata.obs[col] = pd.Categorical(adata.obs[col], categories=categories)
    adata.obsm["cell_type_scores"] = scores.to_numpy(np.float32)
    cluster_scores.index = cluster_scores.index.astype(str)
    adata.uns["cell_type_scores"] = {"types": list(sigs), "clusters": cluster_scores}
