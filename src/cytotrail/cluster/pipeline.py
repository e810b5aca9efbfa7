"""Cluster cells (or whole tracks) into types and name them from marker signatures.

All samples go into one :class:`anndata.AnnData`: one observation per cell per frame
(``level="cell"``) or per track (``level="track"``), one variable per marker.

Pipeline (:func:`cluster`)
--------------------------
1. ``layers["raw"]``: the marker columns of the table (``<marker>_<feature>``, or named
   like the markers), untouched.
2. ``layers["transformed"]``: arcsinh(x / cofactor) per marker (default), per-marker
   percentile scaling to [0, 1], log1p, or none.
3. ``X``: the transformed values z-scored per marker and clipped at +-10 (a constant
   marker becomes 0 and is listed in ``uns["cytotrail"]["constant_markers"]``).
4. PCA (``obsm["X_pca"]``), the kNN graph (on ``X`` when there are at most ``n_pcs``
   markers, else on the first ``n_pcs`` principal components), Leiden (igraph, seeded,
   :func:`leiden`; resolution given, or chosen from the data by
   :func:`~cytotrail.cluster.resolution.choose_resolution`, the choice in
   ``uns["cytotrail"]["resolution"]``) in ``obs["leiden"]``, and UMAP (seeded,
   :func:`embed_umap`) in ``obsm["X_umap"]``; their parameters are in ``uns["pca"]``,
   ``uns["neighbors"]``, ``uns["leiden"]`` and ``uns["umap"]`` (scanpy's layout),
   cytotrail's own in ``uns["cytotrail"]["params"]``.
5. With ``signatures``, ``obs["cell_type"]`` and ``obs["cell_type_confidence"]`` (by
   gating, the thresholds in ``uns["cytotrail"]["thresholds"]``, or by percentile
   scores, :func:`~cytotrail.cluster.celltypes.score_signatures`), with one type per
   track when ``track_id`` is present; with ``background``, ``obs["background_high"]``.
   Without signatures: clusters only, no ``cell_type``.

``obs`` keeps every other column of the table (``sample, frame, label, track_id, ...``);
``obsm["spatial"]`` holds the centroid as ``(x, y)`` in pixels (the squidpy convention,
column 0 is x), from ``x``/``y`` or the centroid columns of MCMICRO, steinbock or ark
(:data:`~cytotrail.cluster.tables.SPATIAL_ALIASES`).
"""

from __future__ import annotations

import json
import logging
import time

import numpy as np
import pandas as pd

from cytotrail.checks import number, whole_number
from cytotrail.cluster.celltypes import annotate as annotate_types
from cytotrail.cluster.celltypes import normalise_signatures
from cytotrail.cluster.gating import estimate_thresholds, outlier_fence
from cytotrail.cluster.graph import KnnTransformer, _track_groups, embed_umap, knn_graph, leiden
from cytotrail.cluster.resolution import choose_resolution
from cytotrail.cluster.tables import (
    _feature_columns,
    marker_values,
    resolve_feature,
    spatial_columns,
    track_summaries,
    with_sample,
)
from cytotrail.cluster.transform import TRANSFORMS, _scale, _transform
from cytotrail.io import InputError, atomic_path

log = logging.getLogger("cytotrail.cluster")

UMAP_MIN_OBS = 10  # umap-learn's spectral layout needs more points than dimensions + 1


def cluster(
    table,
    *,
    markers,
    feature=None,
    signatures=None,
    transform="arcsinh",
    cofactor=None,
    resolution=None,
    n_neighbors=15,
    level="cell",
    umap=True,
    seed=0,
    n_pcs=30,
    annotate="cell",
    min_score=0.2,
    exclude_same_track=True,
    gates="auto",
    background=None,
    drop_na=False,
    threads=1,
):
    """Cluster cells (or tracks) of all samples and annotate cell types.

    Parameters
    ----------
    table : DataFrame
        One row per cell (per frame) with one column per marker; every other column goes
        to ``obs``. ``sample``, ``frame`` and ``label`` are optional (``fov`` or
        ``imageid`` name the sample when there is no ``sample``).
    markers : sequence of str
        Markers to cluster on (the variables).
    feature : str, optional
        Column suffix, e.g. ``"cell_mean"`` or ``"nucleus_median"`` (columns
        ``<marker>_<feature>``); ``""`` takes the columns named exactly like the markers
        (MCMICRO, steinbock, scimap, spreadsheets). Default: ``cell_mean`` when every
        marker has such a column, else the columns named like the markers.
    signatures : dict, optional
        Cell-type signatures (:func:`cytotrail.cluster.celltypes.normalise_signatures`:
        ``pos``/``neg``/``anypos``/``anyneg``/``allpos``/``allneg`` marker lists,
        ``parent``, ``label``); adds ``obs["cell_type"]``, ``obs["cell_type_confidence"]``,
        the per-cell label before the track consensus (``cell_type_frame``) and the
        per-cluster label (``cell_type_cluster``). None or ``{}``: no typing.
    transform : {"arcsinh", "percentile", "log1p", "none"}
        Per-marker transform before scaling.
    cofactor : float or dict, optional
        arcsinh cofactor, for all or per marker; default: per marker, the 10th percentile
        of its positive values.
    resolution : float, optional
        Leiden resolution, honoured when given. None (default) chooses it from the data
        (:func:`cytotrail.cluster.resolution.choose_resolution`: the resolution whose
        clusters are most stable across seeds); the choice and the candidates are in
        ``uns["cytotrail"]["resolution"]``.
    n_neighbors : int
        Neighbours of the kNN graph (capped at the number of observations - 1).
    level : {"cell", "track"}
        Cluster cell-frames, or tracks (their mean values, :func:`track_summaries`).
    umap : bool
        Compute the UMAP embedding (:func:`embed_umap`).
    seed : int
        Seed of PCA, the kNN search, Leiden, UMAP and the threshold mixtures.
    n_pcs : int
        Principal components for the kNN graph when there are more markers than this;
        with fewer markers the graph uses all scaled markers.
    annotate : {"cell", "cluster"}
        ``cell_type`` from each observation's own scores, or from its cluster's mean
        scores.
    min_score : float
        With ``gates="none"``: the signature score below which an observation is
        ``"unknown"``.
    exclude_same_track : bool
        With ``track_id`` in the table (``level="cell"``), take each cell's graph
        neighbours from other lineages (or tracks) only (:class:`KnnTransformer`).
    gates : {"auto", "none"} or dict
        How signatures type cells. ``"auto"`` (default): gating
        (:mod:`cytotrail.cluster.gating`) with every marker's threshold estimated from
        the data; a dict ``{marker: threshold}`` on the transformed scale: those gates
        (markers without one estimated); ``"none"`` (or None): percentile signature
        scores (:func:`cytotrail.cluster.celltypes.score_signatures` without thresholds).
        Gating typed 88 % of MCMICRO exemplar-001's cells as its authors did, against
        47 % for the percentile scores (``benchmarks/bench_cluster_gating.py``).
    background : str or sequence of str, optional
        Background channel(s) (columns like the markers'): cells whose background is
        above its threshold (given in ``gates``, or estimated and then at least
        :func:`~cytotrail.cluster.gating.outlier_fence` above the bulk, so that an even
        background flags nobody) are flagged in ``obs["background_high"]`` and typed
        ``"unknown"`` instead of positive.
    drop_na : bool
        Leave out rows with NaN or infinite marker values (counted in ``uns``) instead
        of raising.
    threads : int
        Threads of the neighbour search (the exact search, up to 50,000 observations,
        gives the same neighbours with any number).

    Returns
    -------
    AnnData
        See the package docstring for its layout.

    Raises
    ------
    InputError
        Missing, duplicated or text marker columns, NaN values, no observations, bad
        options, signatures, gates or background channels; all before any clustering.
    """
    import anndata as ad

    if level not in ("cell", "track"):
        raise InputError(f"level must be 'cell' or 'track', got {level!r}")
    if annotate not in ("cell", "cluster"):
        raise InputError(f"annotate must be 'cell' or 'cluster', got {annotate!r}")
    if transform not in TRANSFORMS:
        raise InputError(f"unknown transform {transform!r}; choose from {list(TRANSFORMS)}")
    gates = "none" if gates is None else gates
    threads = whole_number(threads, "threads", minimum=1)
    n_neighbors = whole_number(n_neighbors, "n_neighbors", minimum=2)
    n_pcs = whole_number(n_pcs, "n_pcs", minimum=1)
    seed = whole_number(seed, "seed", minimum=0)
    number(min_score, "min_score", minimum=0, maximum=1)
    if resolution is not None and not float(resolution) > 0:
        raise InputError(f"resolution must be positive, got {resolution!r}")
    table = with_sample(table)
    feature = resolve_feature(table, markers, feature)
    markers, columns = _feature_columns(table, markers, feature)
    sigs = normalise_signatures(signatures, markers)
    given_gates = _check_gates(gates, markers, table, feature)
    bg_markers = [background] if isinstance(background, str) else list(background or [])
    _, bg_columns = _feature_columns(table, bg_markers, feature) if bg_markers else ([], [])
    if level == "track":
        table = track_summaries(table, markers=markers + bg_markers, feature=feature)
    if len(table) == 0:
        raise InputError("the table has no cells to cluster")
    keep, raw = marker_values(table, columns + bg_columns, markers + bg_markers, drop_na=drop_na)
    n_dropped = int((~keep).sum())
    if n_dropped:
        log.warning("left out %d row(s) with NaN or infinite marker values", n_dropped)
        table = table[keep]
        if len(table) == 0:
            raise InputError("every row has a NaN or infinite marker value")
    raw, bg_raw = raw[:, : len(markers)], raw[:, len(markers) :]

    timings = {}
    clock = time.perf_counter()
    transformed, tparams = _transform(raw, markers, transform, cofactor)
    scaled, constant = _scale(transformed)
    timings["transform"], clock = _lap(clock)
    if constant.any():
        log.warning(
            "constant markers carry no information and are set to 0: %s",
            [m for m, c in zip(markers, constant) if c],
        )

    obs = table.drop(columns=columns + bg_columns).reset_index(drop=True)
    obs = _clean_obs(obs)
    obs.index = obs.index.astype(str)
    adata = ad.AnnData(
        X=scaled.astype(np.float32), obs=obs, var=pd.DataFrame(index=pd.Index(markers, name="marker"))
    )
    adata.var["feature"] = columns
    adata.layers["raw"] = raw.astype(np.float32)
    adata.layers["transformed"] = transformed.astype(np.float32)
    xy = spatial_columns(obs)
    if xy is not None:
        adata.obsm["spatial"] = obs[list(xy)].to_numpy(dtype=np.float64)

    graph = _cluster_graph(
        adata,
        constant,
        seed=seed,
        n_pcs=n_pcs,
        n_neighbors=n_neighbors,
        exclude_same_track=exclude_same_track and level == "cell",
        resolution=resolution,
        umap=umap,
        timings=timings,
        threads=threads,
    )
    clock = time.perf_counter()

    params = {
        "markers": list(markers),
        "feature": feature,
        "level": level,
        "transform": transform,
        "resolution": "none" if graph["resolution"] is None else graph["resolution"],
        "auto_resolution": resolution is None,
        "n_neighbors": graph["n_neighbors"],
        "use_rep": graph["use_rep"],
        "n_pcs": graph["n_pcs"],
        "umap": bool(umap),
        "seed": int(seed),
        "annotate": annotate,
        "min_score": float(min_score),
        "exclude_same_track": graph["exclude_same_track"],
        "gates": gates if isinstance(gates, str) else "given",
        "background": ",".join(bg_markers),
        "drop_na": bool(drop_na),
    }
    if cofactor is not None and not isinstance(cofactor, dict):
        params["cofactor"] = float(cofactor)
    info = {
        "params": params,
        **tparams,
        "resolution": graph["choice"],
        "constant_markers": [m for m, c in zip(markers, constant) if c],
        "dropped_rows": n_dropped,
    }
    flagged = None
    if bg_markers:
        flagged = _background_flags(adata, bg_raw, bg_markers, transform, cofactor, given_gates, seed, info)
    if sigs:
        thresholds = None
        if gates != "none":
            thresholds = _thresholds(transformed, markers, given_gates, seed)
            info["thresholds"] = thresholds
        info["signatures"] = json.dumps(signatures, sort_keys=True)
        annotate_types(
            adata,
            transformed,
            markers,
            signatures,
            annotate=annotate,
            min_score=min_score,
            thresholds=thresholds,
            flagged=flagged,
        )
        timings["annotate"], clock = _lap(clock)
    else:
        log.info("no cell-type signatures: clustering only, no cell_type column")
    info["timings_s"] = timings
    adata.uns["cytotrail"] = info
    return adata


def without_clustering(table):
    """The table as an AnnData without variables, when there are no markers to cluster.

    ``obs`` holds every column (``fov``/``imageid`` copied to ``sample``), ``X`` is
    (N, 0), and ``uns["cytotrail"]["skipped"]`` says why; no ``leiden`` or
    ``cell_type``.
    """
    import anndata as ad

    obs = _clean_obs(with_sample(table).reset_index(drop=True))
    obs.index = obs.index.astype(str)
    adata = ad.AnnData(X=np.zeros((len(obs), 0), np.float32), obs=obs)
    adata.uns["cytotrail"] = {
        "params": {"markers": []},
        "skipped": "no markers to cluster on: not clustered, not typed",
    }
    log.warning("no markers: %d cells written without clustering or cell types", len(obs))
    return adata


def _check_gates(gates, markers, table, feature):
    """Given gates as ``{marker: float}`` ({} for "none" or "auto"), validated."""
    if isinstance(gates, str) and gates in ("none", "auto"):
        return {}
    if not isinstance(gates, dict):
        raise InputError(f"gates must be 'auto', 'none' or a mapping {{marker: threshold}}, got {gates!r}")
    out = {}
    for marker, value in gates.items():
        marker = str(marker)
        column = f"{marker}_{feature}" if feature else marker
        if marker not in markers and column not in table.columns:
            raise InputError(
                f"a gate is given for marker {marker!r}, which is not in the table; "
                f"clustered markers: {list(markers)}"
            )
        try:
            out[marker] = float(value)
        except (TypeError, ValueError):
            raise InputError(f"the gate of {marker!r} is not a number: {value!r}") from None
        if not np.isfinite(out[marker]):
            raise InputError(f"the gate of {marker!r} is not finite: {value!r}")
    return out


def _thresholds(transformed, markers, given, seed):
    """{marker: threshold}: the given gates, the others estimated (logged)."""
    missing = [m for m in markers if m not in given]
    out = {m: given[m] for m in markers if m in given}
    if missing:
        cols = [markers.index(m) for m in missing]
        est = estimate_thresholds(transformed[:, cols], missing, seed=seed)
        log.info(
            "thresholds estimated from the data for %s: %s", missing, {m: round(v, 3) for m, v in est.items()}
        )
        out.update(est)
    return {m: float(out[m]) for m in markers}


def _background_flags(adata, bg_raw, bg_markers, transform, cofactor, given, seed, info):
    """obs["background_high"]: background above its threshold in any background channel."""
    cof = cofactor if not isinstance(cofactor, dict) else {m: cofactor.get(m, 1.0) for m in bg_markers}
    bg, _ = _transform(bg_raw, bg_markers, transform, cof)
    thresholds = _thresholds(bg, bg_markers, given, seed)
    for marker, fence in zip(bg_markers, outlier_fence(bg)):  # estimated: also above the bulk
        if marker not in given:
            thresholds[marker] = max(thresholds[marker], float(fence))
    high = (bg > np.array([thresholds[m] for m in bg_markers])).any(axis=1)
    adata.obs["background_high"] = high
    info["background"] = {
        "markers": bg_markers,
        "thresholds": thresholds,
        "fraction_high": float(high.mean()),
    }
    if "sample" in adata.obs.columns:
        info["background"]["fraction_high_by_sample"] = {
            str(k): float(v)
            for k, v in adata.obs.groupby("sample", observed=True)["background_high"].mean().items()
        }
    if high.any():
        log.warning(
            "%d of %d cells have a high %s signal: typed unknown, flagged in obs['background_high']",
            int(high.sum()),
            len(high),
            "/".join(bg_markers),
        )
    return high


def _cluster_graph(
    adata, constant, *, seed, n_pcs, n_neighbors, exclude_same_track, resolution, umap, timings, threads=1
):
    """PCA, kNN graph, Leiden (given or chosen resolution) and UMAP, in place."""
    import scanpy as sc

    clock = time.perf_counter()
    n_obs, n_vars = adata.shape
    informative = int((~constant).sum())
    n_comps = max(1, min(n_pcs, n_vars - 1, n_obs - 1))
    n_distinct = len(np.unique(adata.X, axis=0)) if n_obs >= 3 else n_obs
    if n_vars >= 2 and n_distinct >= 3 and informative >= 2:
        # X is finite (checked rows, constant markers at 0, clipped): an "invalid value"
        # flag here is OpenBLAS's stale FPU flag (numpy#24067), seen now and then under load
        with np.errstate(invalid="ignore"):
            sc.pp.pca(adata, n_comps=min(n_comps, informative), random_state=seed)
        if not np.all(np.isfinite(adata.obsm["X_pca"])):
            raise RuntimeError("PCA of the scaled markers is not finite")
        timings["pca"], clock = _lap(clock)
    use_rep = "X" if n_vars <= n_pcs or "X_pca" not in adata.obsm else "X_pca"
    k = int(min(n_neighbors, max(n_obs - 1, 1)))
    groups = _track_groups(adata.obs) if exclude_same_track else None
    out = {
        "n_neighbors": k,
        "use_rep": use_rep,
        "n_pcs": int(n_comps),
        "exclude_same_track": groups is not None,
        "resolution": None if resolution is None else float(resolution),
    }
    if n_distinct >= 3 and informative >= 1:
        transformer = KnnTransformer(n_neighbors=k, groups=groups, random_state=seed, n_jobs=threads)
        knn_graph(adata, transformer=transformer, use_rep=use_rep, seed=seed)
        timings["neighbors"], clock = _lap(clock)
        if resolution is None:
            chosen, table = choose_resolution(adata, seed=seed, use_rep=use_rep, n_neighbors=k)
            out["choice"] = {
                "method": "stability across seeds",
                "resolution": chosen,
                "candidates": json.dumps(table),
            }
            log.info(
                "Leiden resolution %.2f chosen from the data (most stable across seeds: %s)",
                chosen,
                ", ".join(f"{r['resolution']}: {r['stability']:.3f}" for r in table),
            )
            out["resolution"] = chosen
        else:
            out["choice"] = {"method": "given", "resolution": float(resolution)}
        leiden(adata, resolution=out["resolution"], seed=seed)
        timings["leiden"], clock = _lap(clock)
        if umap and n_obs < UMAP_MIN_OBS:
            log.warning("%d observations: too few for a UMAP layout, none computed", n_obs)
        elif umap:
            embed_umap(adata, seed=seed)
            timings["umap"], clock = _lap(clock)
    else:  # too few distinct observations for a graph: one cluster
        log.warning("%d observation(s), %d distinct: one cluster, no graph or UMAP", n_obs, n_distinct)
        adata.obs["leiden"] = pd.Categorical(["0"] * n_obs)
        out["choice"] = {"method": "one cluster (fewer than 3 distinct observations)"}
    adata.obs["leiden"] = adata.obs["leiden"].astype(str).astype("category")
    return out


def _lap(clock):
    now = time.perf_counter()
    return round(now - clock, 4), now


def _clean_obs(obs):
    """obs columns that h5ad can store: object columns become str (missing -> "")."""
    obs = obs.copy()
    for c in obs.columns:
        if obs[c].dtype == object:
            obs[c] = obs[c].map(
                lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
            )
    obs.columns = [str(c) for c in obs.columns]
    return obs


def write_anndata(path, adata):
    """Write ``adata`` as ``.h5ad``, atomically (temporary file beside it, then rename)."""
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp)
