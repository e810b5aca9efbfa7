"""The kNN graph, Leiden communities and the UMAP layout."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cytotrail.io import InputError


def leiden(adata, *, resolution, seed=0, n_iterations=2, key_added="leiden"):
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
        With ``obsp["connectivities"]`` (:func:`knn_graph` or :func:`scanpy.pp.neighbors`); modified in place.
    resolution : float
        Modularity resolution (no default: :func:`cytotrail.cluster.cluster` chooses it from the
        data or takes the user's, see :mod:`cytotrail.cluster.resolution`).
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
        part = graph.community_leiden(
            objective_function="modularity",
            weights="weight",
            resolution=float(resolution),
            n_iterations=int(n_iterations),
        )
    finally:
        ig.set_random_number_generator(random)
    groups = np.asarray(part.membership)
    adata.obs[key_added] = pd.Categorical(  # categories in numeric order, as scanpy's
        values=groups.astype("U"), categories=[str(g) for g in np.unique(groups)]
    )
    adata.uns[key_added] = {
        "params": {"resolution": float(resolution), "random_state": seed, "n_iterations": int(n_iterations)}
    }


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
        With the graph of :func:`knn_graph` (as :func:`cluster` leaves it) and,
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


def knn_graph(adata, *, transformer, use_rep="X", seed=0):
    """The kNN graph of ``adata``, as :func:`scanpy.pp.neighbors` with ``transformer`` builds it.

    The same ``obsp["distances"]``, ``obsp["connectivities"]`` (UMAP's fuzzy union of
    the neighbourhoods, equal to scanpy's to float32 rounding) and ``uns["neighbors"]``,
    with the edge weights computed by :mod:`cytotrail.cluster.fuzzy_kernel`, which is
    compiled once and cached on disk: scanpy's path through umap-learn compiles its
    kernels again in every process (10 s of a 16 s ``cytotrail cluster`` call on a few
    hundred cells).

    Parameters
    ----------
    adata : AnnData
        Modified in place.
    transformer : KnnTransformer
        Its ``n_neighbors`` counts the observation itself, as scanpy's do.
    use_rep : str
        ``"X"`` or a key of ``obsm``.
    seed : int
        Recorded as scanpy records its ``random_state``.
    """
    from scipy import sparse

    from cytotrail.cluster.fuzzy_kernel import bandwidths, memberships

    x = adata.X if use_rep == "X" else adata.obsm[use_rep]
    distances = transformer.fit_transform(np.asarray(x))
    n = adata.n_obs
    per_row = np.diff(distances.indptr)
    if len(per_row) and per_row.min() != per_row.max():
        raise ValueError("knn_graph needs the same number of neighbours in every row")
    want = int(per_row[0]) if len(per_row) else 0
    ind = np.hstack([np.arange(n)[:, None], distances.indices.reshape(n, want)])
    dist = np.hstack([np.zeros((n, 1)), distances.data.reshape(n, want)]).astype(np.float32)
    k = int(transformer.get_params()["n_neighbors"])
    ind, dist = np.ascontiguousarray(ind[:, :k]), np.ascontiguousarray(dist[:, :k])
    sigma, rho = bandwidths(dist, float(np.log2(k)))
    rows, cols, vals = memberships(ind, dist, sigma, rho)
    directed = sparse.coo_matrix((vals, (rows, cols)), shape=(n, n))
    directed.eliminate_zeros()
    transpose = directed.transpose()
    union = directed + transpose - directed.multiply(transpose)  # fuzzy union
    union.eliminate_zeros()
    adata.obsp["distances"] = distances
    adata.obsp["connectivities"] = union.tocsr()
    params = {"n_neighbors": k, "method": "umap", "random_state": seed, "metric": "euclidean"}
    if use_rep is not None:
        params["use_rep"] = use_rep
    adata.uns["neighbors"] = {
        "connectivities_key": "connectivities",
        "distances_key": "distances",
        "params": params,
    }


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

    def __init__(self, n_neighbors=15, groups=None, exact_max=50_000, random_state=0, n_jobs=None):
        self.n_neighbors = n_neighbors
        self.groups = groups
        self.exact_max = exact_max
        self.random_state = random_state
        self.n_jobs = n_jobs

    def get_params(self, deep=True):
        return {
            "n_neighbors": self.n_neighbors,
            "groups": self.groups,
            "exact_max": self.exact_max,
            "random_state": self.random_state,
            "n_jobs": self.n_jobs,
        }

    def fit(self, x, y=None):
        return self

    def transform(self, x):
        return self.fit_transform(x)

    def fit_transform(self, x, y=None):
        from scipy import sparse

        x = np.ascontiguousarray(x, dtype=np.float32)
        n = len(x)
        want = int(min(self.n_neighbors - 1, n - 1))
        groups = np.arange(n) if self.groups is None else np.asarray(self.groups, dtype=np.int64)
        extra = int(np.bincount(groups).max()) if self.groups is not None else 1
        exact = n <= self.exact_max
        query = int(min(n, want + (extra if exact else min(extra, 64)) + 1))
        if exact:
            from sklearn.neighbors import NearestNeighbors

            dist, ind = NearestNeighbors(n_neighbors=query, n_jobs=self.n_jobs).fit(x).kneighbors(x)
        else:
            from pynndescent import NNDescent

            index = NNDescent(
                x,
                n_neighbors=query,
                random_state=self.random_state,
                n_jobs=self.n_jobs,
                low_memory=True,
                n_trees=min(64, 5 + int(round(n**0.5 / 20.0))),
                n_iters=max(5, int(round(np.log2(n)))),
            )
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
