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

from cytotrail.cluster.celltypes import _annotate, _normalise_signatures
from cytotrail.cluster.graph import KnnTransformer, _track_groups, embed_umap, leiden
from cytotrail.cluster.tables import _feature_columns, track_summaries
from cytotrail.cluster.transform import TRANSFORMS, _scale, _transform
from cytotrail.io import InputError, atomic_path

log = logging.getLogger("cytotrail.cluster")


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


def _lap(clock):
    now = time.perf_counter()
    return round(now - clock, 4), now


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
