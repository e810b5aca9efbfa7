"""Cluster cells (or whole tracks) into types and name them from marker signatures.

All samples go into one :class:`anndata.AnnData`: one observation per cell per frame
(``level="cell"``) or per track (``level="track"``), one variable per marker.

Pipeline (:func:`cluster`)
--------------------------
1. ``layers["raw"]``: the ``<marker>_<feature>`` columns of the table, untouched.
2. ``layers["transformed"]``: arcsinh(x / cofactor) per marker (default), per-marker
   percentile scaling to [0, 1], log1p, or none.
3. ``X``: the transformed values z-scored per marker and clipped at +-10 (a constant
   marker becomes 0 and is listed in ``uns["cytotrail"]["constant_markers"]``).
4. PCA (``obsm["X_pca"]``), the kNN graph (on ``X`` when there are at most ``n_pcs``
   markers, else on the first ``n_pcs`` principal components), Leiden (igraph, seeded,
   :func:`leiden`) in ``obs["leiden"]``, and UMAP (seeded, :func:`embed_umap`) in
   ``obsm["X_umap"]``; their parameters are in ``uns["pca"]``, ``uns["neighbors"]``,
   ``uns["leiden"]`` and ``uns["umap"]`` (scanpy's layout), cytotrail's own in
   ``uns["cytotrail"]["params"]``.
5. With ``signatures``, ``obs["cell_type"]`` and ``obs["cell_type_confidence"]`` (see
   :func:`score_signatures`), with one type per track when ``track_id`` is present.

``obs`` keeps every other column of the table (``sample, frame, label, track_id, ...``);
``obsm["spatial"]`` holds the centroid as ``(x, y)`` in pixels (the squidpy convention,
column 0 is x).
"""

from __future__ import annotations

import json
import logging
import time

import numpy as np
import pandas as pd

from cytotrail.io import InputError, atomic_path

__all__ = ["KnnTransformer", "auto_umap_epochs", "cluster", "embed_umap", "leiden",
           "merge_tables", "score_signatures", "track_summaries", "write_anndata"]

log = logging.getLogger(__name__)

KEYS = ("sample", "frame", "label")
TRANSFORMS = ("arcsinh", "percentile", "log1p", "none")
UNKNOWN = "unknown"


# --------------------------------------------------------------------------------------
# tables


def merge_tables(cells, tracks=None, *, unmatched="error"):
    """Join per-cell measurements with tracks on ``(sample, frame, label)``.

    Parameters
    ----------
    cells : DataFrame
        One row per cell per frame with ``frame, label`` (and ``sample`` for several
        samples), as written by :func:`cytotrail.quantify.quantify`.
    tracks : DataFrame, optional
        One row per detection with ``frame, label`` and ``track_id`` (plus
        ``parent_track_id``, ``lineage_id``, ...). None returns a copy of ``cells``.
    unmatched : {"error", "keep", "drop"}
        What to do with cells that have no track row and track rows without a cell:
        raise (default), keep the cells with an empty ``track_id`` (track rows without a
        cell are dropped), or drop both.

    Returns
    -------
    DataFrame
        ``cells`` with the track columns added (columns both tables have keep the values
        of ``cells``), in the row order of ``cells``.

    Raises
    ------
    InputError
        Missing key columns, duplicated keys in either table, or unmatched rows.
    """
    if unmatched not in ("error", "keep", "drop"):
        raise InputError(f"unmatched must be 'error', 'keep' or 'drop', got {unmatched!r}")
    for name, table in (("cells", cells), ("tracks", tracks)):
        if table is None:
            continue
        missing = [k for k in ("frame", "label") if k not in table.columns]
        if missing:
            raise InputError(f"{name} table lacks the key column(s) {missing}; it has "
                             f"{list(table.columns)}")
    keys = [k for k in KEYS if k in cells.columns and (tracks is None or k in tracks.columns)]
    _check_unique(cells, keys, "cells")
    if tracks is None:
        return cells.copy()
    if "sample" in cells.columns and "sample" not in tracks.columns and cells["sample"].nunique() > 1:
        raise InputError("the cells come from several samples but the tracks table has no "
                         "`sample` column to join on")
    _check_unique(tracks, keys, "tracks")
    extra = [c for c in tracks.columns if c not in cells.columns]
    right = tracks[keys + extra]
    merged = cells.merge(right, on=keys, how="outer" if unmatched == "error" else "left",
                         indicator=True, validate="one_to_one", sort=False)
    if unmatched == "error":
        only_cells = merged["_merge"] == "left_only"
        only_tracks = merged["_merge"] == "right_only"
        if only_cells.any() or only_tracks.any():
            parts = []
            if only_cells.any():
                parts.append(f"{int(only_cells.sum())} cell row(s) have no track row, e.g. "
                             f"{_examples(merged[only_cells], keys)}")
            if only_tracks.any():
                parts.append(f"{int(only_tracks.sum())} track row(s) have no cell row, e.g. "
                             f"{_examples(merged[only_tracks], keys)}")
            hint = ""
            if "sample" in keys:
                a, b = set(cells["sample"].astype(str)), set(tracks["sample"].astype(str))
                if a != b:
                    hint = f"; samples in cells: {sorted(a)}, in tracks: {sorted(b)}"
            raise InputError("cells and tracks do not join on " + ", ".join(keys) + ": "
                             + "; ".join(parts) + hint
                             + " (use unmatched='keep' or 'drop' to accept this)")
        merged = merged[merged["_merge"] == "both"]
    elif unmatched == "drop":
        merged = merged[merged["_merge"] == "both"]
    return merged.drop(columns="_merge").reset_index(drop=True)


def _check_unique(table, keys, name):
    dup = table.duplicated(keys, keep=False)
    if dup.any():
        raise InputError(f"{name} table has {int(dup.sum())} rows with duplicated keys "
                         f"({', '.join(keys)}), e.g. {_examples(table[dup], keys)}")


def _examples(rows, keys, n=3):
    return "; ".join(", ".join(f"{k}={r[k]}" for k in keys)
                     for _, r in rows[keys].head(n).iterrows())


def _feature_columns(table, markers, feature):
    """Validated column name of every marker."""
    markers = [str(m) for m in markers]
    if not markers:
        raise InputError("no markers given to cluster on")
    duplicated = sorted({m for m in markers if markers.count(m) > 1})
    if duplicated:
        raise InputError(f"duplicated marker names {duplicated}")
    columns = [f"{m}_{feature}" if feature else m for m in markers]
    missing = [m for m, c in zip(markers, columns) if c not in table.columns]
    if missing:
        if feature:
            suffix = f"_{feature}"
            available = [c[: -len(suffix)] for c in table.columns if str(c).endswith(suffix)]
            where = f"columns `<marker>_{feature}`"
        else:
            available = [c for c in table.columns if pd.api.types.is_numeric_dtype(table[c])]
            where = "numeric columns"
        raise InputError(f"markers {missing} have no column in the table (feature {feature!r}); "
                         f"markers available as {where}: {available}")
    return markers, columns


def track_summaries(table, *, markers, feature="cell_mean", trends=False):
    """One row per track: mean marker values and the track's extent in time and space.

    Parameters
    ----------
    table : DataFrame
        Per-cell table with ``track_id`` (and ``sample`` for several samples).
    markers : sequence of str
    feature : str
        Column suffix of the marker values (``""``: columns named like the markers).
    trends : bool
        Add ``<column>_slope``: the least-squares change per frame of each marker over
        the track (NaN for one-frame tracks), the simplest summary of its time series.

    Returns
    -------
    DataFrame
        ``sample, track_id, n_frames, first_frame, last_frame, y, x`` (mean centroid),
        ``parent_track_id`` and ``lineage_id`` when present, and one mean column per marker
        (named like the input columns). Sorted by sample then track_id.
    """
    if "track_id" not in table.columns:
        raise InputError("track summaries need a `track_id` column: join the tracks first "
                         "(merge_tables)")
    markers, columns = _feature_columns(table, markers, feature)
    data = table[table["track_id"].notna()]
    groups = ["sample", "track_id"] if "sample" in data.columns else ["track_id"]
    g = data.groupby(groups, sort=True, observed=True)
    out = g[columns].mean()
    out.insert(0, "n_frames", g.size())
    if "frame" in data.columns:
        out.insert(1, "first_frame", g["frame"].min())
        out.insert(2, "last_frame", g["frame"].max())
    for c in ("y", "x"):
        if c in data.columns:
            out[c] = g[c].mean()
    for c in ("parent_track_id", "lineage_id"):
        if c in data.columns:
            out[c] = g[c].first()
    if trends and "frame" in data.columns:
        frame = data["frame"].astype(float)
        df = frame - g["frame"].transform("mean")
        denom = (df * df).groupby([data[k] for k in groups], sort=True).sum()
        for c in columns:
            dv = data[c] - g[c].transform("mean")
            num = (df * dv).groupby([data[k] for k in groups], sort=True).sum()
            out[f"{c}_slope"] = (num / denom.where(denom > 0)).to_numpy()
    return out.reset_index()


# --------------------------------------------------------------------------------------
# transforms


def _auto_cofactor(values):
    """Cofactor of one marker: the 10th percentile of its positive values (1 if none).

    That sits at the level of the negative population, so arcsinh is about linear
    through the noise of negative cells and logarithmic over the positive ones.
    """
    positive = values[values > 0]
    if len(positive) == 0:
        return 1.0
    return float(max(np.percentile(positive, 10), 1e-6))


def _transform(raw, markers, transform, cofactor):
    """Transformed values (float64) and the per-marker parameters used."""
    params = {}
    if transform == "arcsinh":
        if cofactor is None:
            cof = np.array([_auto_cofactor(raw[:, j]) for j in range(raw.shape[1])])
        elif isinstance(cofactor, dict):
            missing = [m for m in markers if m not in cofactor]
            if missing:
                raise InputError(f"cofactor dict lacks markers {missing}")
            cof = np.array([float(cofactor[m]) for m in markers])
        else:
            cof = np.full(raw.shape[1], float(cofactor))
        if not np.all(cof > 0):
            raise InputError(f"arcsinh cofactors must be positive, got {dict(zip(markers, cof))}")
        params["cofactors"] = dict(zip(markers, cof.tolist()))
        return np.arcsinh(raw / cof), params
    if transform == "percentile":
        lo = np.percentile(raw, 1, axis=0)
        hi = np.percentile(raw, 99, axis=0)
        span = np.where(hi > lo, hi - lo, 1.0)
        params["percentiles"] = {m: [float(a), float(b)] for m, a, b in zip(markers, lo, hi)}
        return np.clip((raw - lo) / span, 0, 1), params
    if transform == "log1p":
        return np.log1p(np.clip(raw, 0, None)), params
    if transform == "none":
        return raw.copy(), params
    raise InputError(f"unknown transform {transform!r}; choose from {list(TRANSFORMS)}")


def _scale(values, max_value=10.0):
    mean = values.mean(axis=0)
    std = values.std(axis=0)
    constant = ~(std > 0)
    scaled = (values - mean) / np.where(constant, 1.0, std)
    scaled[:, constant] = 0.0
    return np.clip(scaled, -max_value, max_value), constant


# --------------------------------------------------------------------------------------
# cell types


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


# --------------------------------------------------------------------------------------
# clustering


def cluster(
    table,
    *,
    markers,
    feature="cell_mean",
    signatures=None,
    transform="arcsinh",
    cofactor=None,
    resolution=0.1,
    n_neighbors=15,
    level="cell",
    umap=True,
    seed=0,
    n_pcs=30,
    annotate="cell",
    min_score=0.2,
    exclude_same_track=True,
):
    """Cluster cells (or tracks) of all samples and annotate cell types.

    Parameters
    ----------
    table : DataFrame
        One row per cell per frame (e.g. :func:`merge_tables` output) with the marker
        columns ``<marker>_<feature>``; every other column goes to ``obs``.
    markers : sequence of str
        Markers to cluster on (the variables).
    feature : str
        Column suffix, e.g. ``"cell_mean"`` or ``"nucleus_median"``; ``""`` takes the
        columns named exactly like the markers (tables from other tools).
    signatures : dict, optional
        ``{type: {"positive": [markers], "negative": [markers], "parent": type}}``; adds
        ``obs["cell_type"]``, ``obs["cell_type_confidence"]``, the per-cell label before
        the track consensus (``cell_type_frame``) and the per-cluster label
        (``cell_type_cluster``).
    transform : {"arcsinh", "percentile", "log1p", "none"}
        Per-marker transform before scaling.
    cofactor : float or dict, optional
        arcsinh cofactor, for all or per marker; default: per marker, the 10th percentile
        of its positive values.
    resolution : float
        Leiden resolution. The default 0.1 is low by scanpy's standards: it aims at one
        cluster per cell type rather than at sub-states. On synthetic timelapses with known
        types (``benchmarks/bench_cluster.py --synthetic``) it gives ARI >= 0.98 against
        the truth when the cells were quantified with ``background="local"``; raise it
        to split types into finer states.
    n_neighbors : int
        Neighbours of the kNN graph (capped at the number of observations - 1).
    level : {"cell", "track"}
        Cluster cell-frames, or tracks (their mean values, :func:`track_summaries`).
    umap : bool
        Compute the UMAP embedding (:func:`embed_umap`: fewer epochs and a PCA
        initialisation above 100,000 observations).
    seed : int
        Seed of PCA, the kNN search, Leiden and UMAP.
    n_pcs : int
        Principal components for the kNN graph when there are more markers than this;
        with fewer markers the graph uses all scaled markers.
    annotate : {"cell", "cluster"}
        ``cell_type`` from each observation's own scores, or from its cluster's mean
        scores.
    min_score : float
        Signature score below which an observation (or cluster) is ``"unknown"``.
    exclude_same_track : bool
        With ``track_id`` in the table (``level="cell"``), take each cell's graph
        neighbours from other lineages (or tracks) only (:class:`KnnTransformer`): the frames of
        one track are near-duplicates and would otherwise form a cluster of their own.
        The kNN search is :class:`KnnTransformer` in every case (exact up to 50,000
        observations, pynndescent beyond).

    Returns
    -------
    AnnData
        See the module docstring for its layout.

    Raises
    ------
    InputError
        Missing or duplicated markers, NaN or infinite values, no observations, bad
        options or signatures.

    Notes
    -----
    Bad input, as tested: a sample without cells contributes no observations; a
    constant (e.g. all-zero) marker is kept with 0 in ``X`` and listed in
    ``uns["cytotrail"]["constant_markers"]``; negative intensities are transformed as
    they are (arcsinh is odd; ``log1p`` clips them at 0); NaN or infinite values raise.
    """
    import anndata as ad
    import scanpy as sc

    if level not in ("cell", "track"):
        raise InputError(f"level must be 'cell' or 'track', got {level!r}")
    if annotate not in ("cell", "cluster"):
        raise InputError(f"annotate must be 'cell' or 'cluster', got {annotate!r}")
    if transform not in TRANSFORMS:
        raise InputError(f"unknown transform {transform!r}; choose from {list(TRANSFORMS)}")
    markers, columns = _feature_columns(table, markers, feature)
    if level == "track":
        table = track_summaries(table, markers=markers, feature=feature)
    if len(table) == 0:
        raise InputError("the table has no cells to cluster")
    if signatures is not None:
        _normalise_signatures(signatures, markers)  # fail before any work
    raw = table[columns].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(raw)
    if bad.any():
        counts = {m: int(n) for m, n in zip(markers, bad.sum(axis=0)) if n}
        raise InputError(f"marker values are NaN or infinite in {int(bad.any(axis=1).sum())} "
                         f"row(s): {counts}; drop or fill those rows first")

    timings = {}
    clock = time.perf_counter()
    transformed, tparams = _transform(raw, markers, transform, cofactor)
    scaled, constant = _scale(transformed)
    timings["transform"], clock = _lap(clock)
    if constant.any():
        log.warning("constant markers carry no information and are set to 0: %s",
                    [m for m, c in zip(markers, constant) if c])

    obs = table.drop(columns=columns).reset_index(drop=True)
    obs = _clean_obs(obs)
    obs.index = obs.index.astype(str)
    adata = ad.AnnData(X=scaled.astype(np.float32), obs=obs,
                       var=pd.DataFrame(index=pd.Index(markers, name="marker")))
    adata.var["feature"] = columns
    adata.layers["raw"] = raw.astype(np.float32)
    adata.layers["transformed"] = transformed.astype(np.float32)
    if {"x", "y"} <= set(obs.columns):
        adata.obsm["spatial"] = obs[["x", "y"]].to_numpy(dtype=np.float64)

    n_obs, n_vars = adata.shape
    n_comps = max(1, min(n_pcs, n_vars - 1, n_obs - 1))
    if n_vars >= 2 and n_obs >= 3:
        sc.pp.pca(adata, n_comps=n_comps, random_state=seed)
        timings["pca"], clock = _lap(clock)
    use_rep = "X" if n_vars <= n_pcs or "X_pca" not in adata.obsm else "X_pca"
    k = int(min(n_neighbors, max(n_obs - 1, 1)))
    groups = _track_groups(adata.obs) if exclude_same_track and level == "cell" else None
    if n_obs >= 3:
        transformer = KnnTransformer(n_neighbors=k, groups=groups, random_state=seed)
        sc.pp.neighbors(adata, n_neighbors=k, use_rep=use_rep, random_state=seed,
                        transformer=transformer)
        timings["neighbors"], clock = _lap(clock)
        leiden(adata, resolution=resolution, seed=seed)
        timings["leiden"], clock = _lap(clock)
        if umap:
            embed_umap(adata, seed=seed)
            timings["umap"], clock = _lap(clock)
    else:  # too few observations for a graph: one cluster
        adata.obs["leiden"] = pd.Categorical(["0"] * n_obs)
    adata.obs["leiden"] = adata.obs["leiden"].astype(str).astype("category")

    params = {
        "markers": list(markers), "feature": feature, "level": level, "transform": transform,
        "resolution": float(resolution), "n_neighbors": k, "use_rep": use_rep,
        "n_pcs": int(n_comps), "umap": bool(umap), "seed": int(seed), "annotate": annotate,
        "min_score": float(min_score), "exclude_same_track": groups is not None,
    }
    if cofactor is not None and not isinstance(cofactor, dict):
        params["cofactor"] = float(cofactor)
    info = {"params": params, **tparams,
            "constant_markers": [m for m, c in zip(markers, constant) if c]}
    if signatures is not None:
        info["signatures"] = json.dumps(signatures, sort_keys=True)
        _annotate(adata, transformed, markers, signatures, annotate=annotate,
                  min_score=min_score)
        timings["annotate"], clock = _lap(clock)
    info["timings_s"] = timings
    adata.uns["cytotrail"] = info
    return adata


def leiden(adata, *, resolution=0.1, seed=0, n_iterations=2, key_added="leiden"):
    """Leiden communities of the kNN graph: :func:`scanpy.tl.leiden` with ``flavor="igraph"``
    and ``directed=False``, the same communities, built in seconds instead of minutes.

    scanpy hands igraph a Python list of one tuple per stored edge, and reads the weights
    by fancy-indexing the sparse matrix: at 10^6 cells (3 * 10^7 edges) that took more
    time and memory than the clustering itself. Here the same edges, in the same order,
    go to igraph as one array, and igraph draws from the same seeded generator as in
    scanpy, so the labels are identical to scanpy's (a test checks it).

    Parameters
    ----------
    adata : AnnData
        With ``obsp["connectivities"]`` (:func:`scanpy.pp.neighbors`); modified in place.
    resolution : float
        Modularity resolution.
    seed : int
        Seed of igraph's random number generator (igraph's default is restored after).
    n_iterations : int
        Leiden iterations (negative: until stable).
    key_added : str
        ``obs`` column of the cluster labels (categorical strings); the parameters go to
        ``uns[key_added]["params"]`` as scanpy records them.
    """
    import random

    import igraph as ig

    if "connectivities" not in adata.obsp:
        raise InputError("leiden needs obsp['connectivities']: run the kNN graph first")
    coo = adata.obsp["connectivities"].tocoo()
    keep = coo.data != 0  # what scipy's nonzero() keeps, in the same order
    graph = ig.Graph(n=adata.n_obs, directed=False)
    graph.add_edges(np.column_stack([coo.row[keep], coo.col[keep]]).astype(np.int64))
    graph.es["weight"] = coo.data[keep].astype(np.float64)
    ig.set_random_number_generator(_IgraphRandom(seed))
    try:
        part = graph.community_leiden(objective_function="modularity", weights="weight",
                                      resolution=float(resolution),
                                      n_iterations=int(n_iterations))
    finally:
        ig.set_random_number_generator(random)
    groups = np.asarray(part.membership)
    adata.obs[key_added] = pd.Categorical(  # categories in numeric order, as scanpy's
        values=groups.astype("U"), categories=[str(g) for g in np.unique(groups)])
    adata.uns[key_added] = {"params": {"resolution": float(resolution), "random_state": seed,
                                       "n_iterations": int(n_iterations)}}


class _IgraphRandom:
    """Seeded generator for igraph drawing like scanpy's (a legacy numpy RandomState)."""

    def __init__(self, seed):
        self._rng = np.random.RandomState(seed)

    def getrandbits(self, k):
        return self._rng.tomaxint() & ((1 << k) - 1)

    def randint(self, a, b):
        return self._rng.randint(a, b + 1)

    def random(self):
        return self._rng.random()

    def gauss(self, mu, sigma):
        return self._rng.normal(mu, sigma)


UMAP_PCA_INIT_ABOVE = 100_000


def embed_umap(adata, *, seed=0, n_epochs=None, init=None):
    """UMAP of the kNN graph of ``adata`` (:func:`scanpy.tl.umap`), in ``obsm["X_umap"]``.

    Parameters
    ----------
    adata : AnnData
        With the graph of :func:`scanpy.pp.neighbors` (as :func:`cluster` leaves it) and,
        for the PCA initialisation, ``obsm["X_pca"]``; modified in place.
    seed : int
        Seed of the layout (seeded UMAP runs on one thread, and is reproducible).
    n_epochs : int, optional
        Optimisation epochs; default: :func:`auto_umap_epochs` of the number of
        observations.
    init : {"spectral", "pca"}, optional
        Initial layout: ``"spectral"`` (scanpy's default) or the first two principal
        components, scaled as umap-learn scales any initial layout; default: spectral up
        to ``UMAP_PCA_INIT_ABOVE`` observations, PCA beyond (the spectral layout of a
        million-node graph takes minutes and often does not converge).

    Returns
    -------
    dict
        The settings used (``n_epochs``, ``init``), also in
        ``uns["umap"]["params"]["cytotrail"]``.
    """
    import scanpy as sc

    n = adata.n_obs
    if n_epochs is None:
        n_epochs = auto_umap_epochs(n)
    if init is None:
        init = "pca" if n > UMAP_PCA_INIT_ABOVE and "X_pca" in adata.obsm else "spectral"
    if init not in ("spectral", "pca"):
        raise InputError(f"init must be 'spectral' or 'pca', got {init!r}")
    if init == "pca":
        if "X_pca" not in adata.obsm or adata.obsm["X_pca"].shape[1] < 2:
            raise InputError("init='pca' needs obsm['X_pca'] with at least 2 components")
        init_pos = np.ascontiguousarray(adata.obsm["X_pca"][:, :2], dtype=np.float32)
    else:
        init_pos = "spectral"
    sc.tl.umap(adata, random_state=seed, maxiter=int(n_epochs), init_pos=init_pos)
    used = {"n_epochs": int(n_epochs), "init": init}
    adata.uns["umap"]["params"]["cytotrail"] = used
    return used


def auto_umap_epochs(n_obs):
    """Default UMAP epochs for ``n_obs`` observations.

    umap-learn and scanpy use 500 epochs up to 10,000 observations and 200 beyond. The
    layout's cost is edges x epochs, and per edge it grows with the size once the
    embedding no longer fits in the caches: on this project's 2-core machine 200 epochs
    take about 70 s at 10^5 cells, and 50 epochs 3-4 minutes at 10^6 (so 200 would take
    well over 10 minutes: 4x the epochs, and fewer weak edges pruned). Beyond 100,000
    observations cytotrail therefore uses ``200 * 100,000 / n_obs`` epochs, at least 50
    (``benchmarks/bench_cluster.py`` prints the times). umap-learn
    samples every edge in proportion to its weight, so with 50 epochs each cell's
    strongest edges are still pulled on every epoch; together with the PCA
    initialisation (:func:`embed_umap`) the cell types stay as well separated in the
    layout as with the defaults on the benchmark's data (2-D kNN type accuracy 1.0).
    Pass ``n_epochs`` to :func:`embed_umap` to override.
    """
    n_obs = int(n_obs)
    if n_obs <= 10_000:
        return 500
    if n_obs <= 100_000:
        return 200
    return max(50, int(round(200 * 100_000 / n_obs)))


def _lap(clock):
    now = time.perf_counter()
    return round(now - clock, 4), now


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


def _track_groups(obs):
    """Integer group per observation: its (sample, lineage) or (sample, track) when there is
    no ``lineage_id``; a unique id for observations without one."""
    key = "lineage_id" if "lineage_id" in obs.columns else "track_id"
    if key not in obs.columns:
        return None
    valid = obs[key].notna().to_numpy()
    if not valid.any():
        return None
    cols = ["sample", key] if "sample" in obs.columns else [key]
    groups = obs.groupby(cols, sort=False, observed=True, dropna=True).ngroup().to_numpy()
    groups = groups.astype(np.int64)
    missing = groups < 0
    groups[missing] = groups.max() + 1 + np.arange(int(missing.sum()))
    return groups


class KnnTransformer:
    """kNN distance graph for :func:`scanpy.pp.neighbors`, optionally across groups only.

    Exact Euclidean neighbours (scikit-learn) up to ``exact_max`` observations, approximate
    ones (pynndescent, seeded, with UMAP's default trees and iterations) beyond. With
    ``groups``, the ``n_neighbors - 1`` nearest observations of *other* groups are kept:
    the frames of one tracked cell (or of one lineage) are near-duplicates and would
    otherwise fill each other's neighbourhoods and become clusters of their own.

    The returned CSR matrix has exactly ``n_neighbors - 1`` entries per row, in distance
    order, without the observation itself (scanpy adds it).

    Parameters
    ----------
    n_neighbors : int
        Neighbours including the observation itself, as scanpy counts them.
    groups : (N,) int ndarray, optional
        Group (track or lineage) of every observation.
    exact_max : int
        Largest number of observations searched exactly.
    random_state : int
        Seed of the approximate search.
    n_jobs : int, optional
        Threads of the approximate search (default: all).
    """

    def __init__(self, n_neighbors=15, groups=None, exact_max=50_000, random_state=0,
                 n_jobs=None):
        self.n_neighbors = n_neighbors
        self.groups = groups
        self.exact_max = exact_max
        self.random_state = random_state
        self.n_jobs = n_jobs

    def get_params(self, deep=True):
        return {"n_neighbors": self.n_neighbors, "groups": self.groups,
                "exact_max": self.exact_max, "random_state": self.random_state,
                "n_jobs": self.n_jobs}

    def fit(self, x, y=None):
        return self

    def transform(self, x):
        return self.fit_transform(x)

    def fit_transform(self, x, y=None):
        from scipy import sparse

        x = np.ascontiguousarray(x, dtype=np.float32)
        n = len(x)
        want = int(min(self.n_neighbors - 1, n - 1))
        groups = (np.arange(n) if self.groups is None
                  else np.asarray(self.groups, dtype=np.int64))
        extra = int(np.bincount(groups).max()) if self.groups is not None else 1
        exact = n <= self.exact_max
        query = int(min(n, want + (extra if exact else min(extra, 64)) + 1))
        if exact:
            from sklearn.neighbors import NearestNeighbors

            dist, ind = NearestNeighbors(n_neighbors=query).fit(x).kneighbors(x)
        else:
            from pynndescent import NNDescent

            index = NNDescent(x, n_neighbors=query, random_state=self.random_state,
                              n_jobs=self.n_jobs, low_memory=True,
                              n_trees=min(64, 5 + int(round(n**0.5 / 20.0))),
                              n_iters=max(5, int(round(np.log2(n)))))
            ind, dist = index.neighbor_graph
        valid = (ind >= 0) & (groups[np.clip(ind, 0, None)] != groups[:, None])
        rank = np.cumsum(valid, axis=1)
        keep = valid & (rank <= want)
        enough = rank[:, -1] >= want
        out_ind = np.zeros((n, want), np.int64)
        out_dist = np.zeros((n, want), np.float64)
        ok = np.flatnonzero(enough)
        out_ind[ok] = ind[ok][keep[ok]].reshape(-1, want)
        out_dist[ok] = dist[ok][keep[ok]].reshape(-1, want)
        for i in np.flatnonzero(~enough):  # large groups: search everything for these rows
            d_all = np.linalg.norm(x - x[i], axis=1)
            d_all[groups == groups[i]] = np.inf
            best = np.argsort(d_all, kind="stable")[:want]
            out_ind[i], out_dist[i] = best, d_all[best]
        # explicit zeros must survive as neighbours: exact duplicates get a tiny distance
        out_dist = np.where(out_dist > 0, out_dist, 1e-12)
        indptr = np.arange(0, n * want + 1, want)
        return sparse.csr_matrix((out_dist.ravel(), out_ind.ravel(), indptr), shape=(n, n))


def _clean_obs(obs):
    """obs columns that h5ad can store: object columns become str (missing -> "")."""
    obs = obs.copy()
    for c in obs.columns:
        if obs[c].dtype == object:
            obs[c] = obs[c].map(lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v))
                                else str(v))
    obs.columns = [str(c) for c in obs.columns]
    return obs


def write_anndata(path, adata):
    """Write ``adata`` as ``.h5ad``, atomically (temporary file beside it, then rename)."""
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp)
