"""Leiden resolution from the data: the resolution whose clusters are stable across seeds.

Leiden makes as many clusters as its resolution asks for, whatever the number of cell
types. A resolution that matches structure in the data gives the same partition
whatever the random seed; one that cuts through a population gives a different cut
each time. :func:`choose_resolution` runs Leiden at each of ``RESOLUTIONS`` with
``N_SEEDS`` seeds and keeps the resolution whose partitions agree best (mean pairwise
adjusted Rand index), among those giving at least two clusters; ties (within ``TIE``)
go to the lowest resolution, the fewest clusters.

On the tables of ``benchmarks/bench_cluster_gating.py`` this picked 0.1 on MCMICRO
exemplar-001 (the data that decided the grid and the rule; ARI 0.33 against the authors'
phenotypes, against 0.15 for scanpy's default 1.0) and 0.05 on the synthetic timelapses
(ARI 1.0 against the true types).
"""

from __future__ import annotations

import numpy as np

RESOLUTIONS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0)
N_SEEDS = 4
TIE = 0.01
MAX_CELLS = 20_000


def choose_resolution(
    adata,
    *,
    seed=0,
    resolutions=RESOLUTIONS,
    n_seeds=N_SEEDS,
    max_cells=MAX_CELLS,
    use_rep="X",
    n_neighbors=15,
):
    """The most stable Leiden resolution of ``adata``'s kNN graph.

    Parameters
    ----------
    adata : AnnData
        With ``obsp["connectivities"]`` (not modified).
    seed : int
        First Leiden seed (``seed .. seed + n_seeds - 1`` are used) and the seed of the
        subsample.
    resolutions : sequence of float
        Candidates.
    n_seeds : int
        Leiden runs per candidate (at least 2).
    max_cells : int
        Above this many observations, the choice is made on a seeded random subsample of
        ``max_cells`` with its own kNN graph (on ``use_rep``, ``n_neighbors``).

    Returns
    -------
    resolution : float
    table : list of dict
        Per candidate: ``resolution``, ``n_clusters`` (first seed) and ``stability``.
    """
    import anndata as ad
    from sklearn.metrics import adjusted_rand_score

    from cytotrail.cluster.graph import KnnTransformer, knn_graph, leiden

    if n_seeds < 2:
        raise ValueError("n_seeds must be at least 2")
    if adata.n_obs > max_cells:
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(adata.n_obs, max_cells, replace=False))
        rep = adata.X if use_rep == "X" else adata.obsm[use_rep]
        graph = ad.AnnData(X=np.asarray(rep[rows], dtype=np.float32))
        knn_graph(graph, transformer=KnnTransformer(n_neighbors=n_neighbors, random_state=seed), seed=seed)
    else:
        graph = ad.AnnData(X=np.zeros((adata.n_obs, 0), np.float32))
        graph.obsp["connectivities"] = adata.obsp["connectivities"]
    table = []
    for resolution in resolutions:
        runs = []
        for s in range(seed, seed + n_seeds):
            leiden(graph, resolution=resolution, seed=s, key_added="_run")
            runs.append(graph.obs["_run"].to_numpy())
        stability = np.mean(
            [adjusted_rand_score(runs[i], runs[j]) for i in range(n_seeds) for j in range(i + 1, n_seeds)]
        )
        table.append(
            {
                "resolution": float(resolution),
                "n_clusters": int(len(set(runs[0]))),
                "stability": round(float(stability), 4),
            }
        )
    candidates = [row for row in table if row["n_clusters"] >= 2] or table
    best = max(row["stability"] for row in candidates)
    chosen = min(row["resolution"] for row in candidates if row["stability"] >= best - TIE)
    return chosen, table
