"""Cell types from marker signatures: scores, the hierarchy, one type per track."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cytotrail.io import InputError

UNKNOWN = "unknown"


def _normalise_signatures(signatures, markers):
    """{type: (positive list, negative list, parent or None)}, validated."""
    if not isinstance(signatures, dict) or not signatures:
        raise InputError("signatures must be a non-empty mapping {type: {positive: [...], "
                         "negative: [...]}}")
    raw = {}
    for name, sig in signatures.items():
        if isinstance(sig, (list, tuple)):
            sig = {"positive": list(sig)}
        if not isinstance(sig, dict):
            raise InputError(f"signature of {name!r} must be a mapping with `positive` and "
                             "`negative` marker lists")
        unknown_keys = set(sig) - {"positive", "negative", "parent"}
        if unknown_keys:
            raise InputError(f"signature of {name!r} has unknown keys {sorted(unknown_keys)}")
        pos = [str(m) for m in sig.get("positive") or []]
        neg = [str(m) for m in sig.get("negative") or []]
        if not pos:
            raise InputError(f"signature of {name!r} has no positive markers")
        raw[str(name)] = (pos, neg, sig.get("parent"))
    for name, (_, _, parent) in raw.items():
        seen = {name}
        while parent is not None:
            if parent not in raw:
                raise InputError(f"signature of {name!r}: parent {parent!r} is not a cell type")
            if parent in seen:
                raise InputError(f"signature hierarchy has a cycle through {parent!r}")
            seen.add(parent)
            parent = raw[parent][2]
    out = {name: (pos, neg, None if parent is None else str(parent))
           for name, (pos, neg, parent) in raw.items()}
    used = sorted({m for pos, neg, _ in out.values() for m in pos + neg})
    missing = [m for m in used if m not in markers]
    if missing:
        raise InputError(f"signature markers {missing} are not among the clustered markers "
                         f"{list(markers)}")
    return out


def score_signatures(values, markers, signatures, *, min_score=0.2):
    """Score every observation against every cell-type signature.

    Each marker is normalised to [0, 1] between its 1st and 99th percentile over all
    observations. The score of a type is the mean normalised value of its positive
    markers minus the mean of its negative markers, in [-1, 1]. Types are chosen top
    down: the best of the types without ``parent``, then, while the chosen type has
    children, the best child if its score reaches ``min_score``.

    Parameters
    ----------
    values : (N, M) ndarray
        Transformed marker values.
    markers : sequence of str
        The M marker names.
    signatures : dict
        ``{type: {"positive": [...], "negative": [...], "parent": type}}``.
    min_score : float
        Best scores below this give ``"unknown"``.

    Returns
    -------
    types : (N,) ndarray of str
        Best type, or ``"unknown"``.
    confidence : (N,) ndarray of float
        Best score minus the runner-up's at each level of the hierarchy (the best score
        alone when there is one candidate), the smallest over the levels descended,
        clipped to [0, 1]; 0 for ``"unknown"``.
    scores : DataFrame
        (N, n_types) scores.
    """
    sigs = _normalise_signatures(signatures, markers)
    lo = np.percentile(values, 1, axis=0)
    hi = np.percentile(values, 99, axis=0)
    norm = np.clip((values - lo) / np.where(hi > lo, hi - lo, 1.0), 0, 1)
    return _scores_to_types(_signature_scores(norm, markers, sigs), min_score, sigs)


def _signature_scores(norm, markers, sigs):
    col = {m: j for j, m in enumerate(markers)}
    scores = {}
    for name, (pos, neg, _) in sigs.items():
        s = norm[:, [col[m] for m in pos]].mean(axis=1)
        if neg:
            s = s - norm[:, [col[m] for m in neg]].mean(axis=1)
        scores[name] = s
    return pd.DataFrame(scores)


def _scores_to_types(scores, min_score, sigs):
    arr = scores.to_numpy()
    names = list(scores.columns)
    col = {name: j for j, name in enumerate(names)}
    children = {}
    for name, (_, _, parent) in sigs.items():
        children.setdefault(parent, []).append(col[name])

    def pick(rows, candidates):
        sub = arr[np.ix_(rows, candidates)]
        best = sub.argmax(axis=1)
        top = sub[np.arange(len(rows)), best]
        margin = top - np.sort(sub, axis=1)[:, -2] if len(candidates) > 1 else top
        return np.asarray(candidates)[best], top, np.clip(margin, 0, 1)

    n = len(arr)
    assigned, top, confidence = pick(np.arange(n), children[None])
    unknown = top < min_score
    for _ in range(len(names)):  # descend one level per pass
        moved = False
        for parent, kids in children.items():
            if parent is None:
                continue
            rows = np.flatnonzero((assigned == col[parent]) & ~unknown)
            if len(rows) == 0:
                continue
            child, ctop, cmargin = pick(rows, kids)
            go = ctop >= min_score
            if go.any():
                assigned[rows[go]] = child[go]
                confidence[rows[go]] = np.minimum(confidence[rows[go]], cmargin[go])
                moved = True
        if not moved:
            break
    types = np.asarray(names, dtype=object)[assigned]
    types[unknown] = UNKNOWN
    confidence = np.where(unknown, 0.0, confidence)
    return types.astype(str), confidence, scores


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
    head = np.cumsum(onehot, axis=0)[min_run - 1:n - min_run]  # counts in seq[:k]
    k = np.arange(min_run, n - min_run + 1)
    tail = onehot.sum(axis=0) - head
    h, t = head.argmax(axis=1), tail.argmax(axis=1)
    hc, tc = head.max(axis=1), tail.max(axis=1)
    ok = ((h != t) & ~np.isin(h, unknown) & ~np.isin(t, unknown)
          & (hc >= purity * k) & (tc >= purity * (n - k)))
    if not ok.any():
        return None
    best = np.flatnonzero(ok)[np.argmax((hc + tc)[ok])]
    return int(k[best]), int(h[best]), int(t[best])



def _annotate(adata, transformed, markers, signatures, *, annotate, min_score):
    sigs = _normalise_signatures(signatures, markers)
    lo = np.percentile(transformed, 1, axis=0)
    hi = np.percentile(transformed, 99, axis=0)
    norm = np.clip((transformed - lo) / np.where(hi > lo, hi - lo, 1.0), 0, 1)
    scores = _signature_scores(norm, markers, sigs)
    cell_types, cell_conf, _ = _scores_to_types(scores, min_score, sigs)
    clusters = adata.obs["leiden"].to_numpy()
    cluster_scores = scores.groupby(clusters, sort=True).mean()
    cl_types, cl_conf, _ = _scores_to_types(cluster_scores, min_score, sigs)
    by_cluster = dict(zip(cluster_scores.index, cl_types))
    conf_by_cluster = dict(zip(cluster_scores.index, cl_conf))
    adata.obs["cell_type_cluster"] = [by_cluster[c] for c in clusters]
    if annotate == "cell":
        types, conf = cell_types, cell_conf
    else:
        types = np.asarray([by_cluster[c] for c in clusters], dtype=object)
        conf = np.asarray([conf_by_cluster[c] for c in clusters], float)
    adata.obs["cell_type_frame"] = types
    if "track_id" in adata.obs.columns and "frame" in adata.obs.columns:
        types, conf = _track_consensus(adata.obs, types, conf)
    categories = list(sigs) + [UNKNOWN]
    adata.obs["cell_type"] = pd.Categorical(types, categories=categories)
    adata.obs["cell_type_confidence"] = np.asarray(conf, np.float64)
    for col in ("cell_type_cluster", "cell_type_frame"):
        adata.obs[col] = pd.Categorical(adata.obs[col], categories=categories)
    adata.obsm["cell_type_scores"] = scores.to_numpy(np.float32)
    cluster_scores.index = cluster_scores.index.astype(str)
    adata.uns["cell_type_scores"] = {"types": list(sigs), "clusters": cluster_scores}
