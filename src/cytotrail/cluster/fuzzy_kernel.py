"""The numba kernel of the kNN graph's edge weights (UMAP's fuzzy simplicial set).

A top-level function compiled on its first call and cached on disk (``cache=True``), so
that later processes load it. umap-learn's own kernels are compiled again by every
process: 10 s of a 16 s ``cytotrail cluster`` call on a few hundred cells. Nothing imports
this module before a graph is built.
"""

import numba
import numpy as np

TOLERANCE = 1e-5  # on the sum of memberships, as umap-learn
MIN_SCALE = 1e-3  # smallest bandwidth, as a fraction of the mean neighbour distance
N_ITER = 64  # bisection steps at most
FLOAT32_MAX = np.finfo(np.float32).max


@numba.njit(
    cache=True,
    nogil=True,
    locals={"total": numba.float32, "lo": numba.float32, "mid": numba.float32, "hi": numba.float32},
)
def bandwidths(dists, target):
    """Per row, the distance to the nearest other point (``rho``) and the bandwidth
    ``sigma`` with ``sum_j exp(-(d_j - rho) / sigma) = target`` over the neighbours.

    ``dists``: (N, K) float32, each row sorted ascending with the point itself first
    (distance 0). Bisection in float32, as umap-learn's ``smooth_knn_dist`` with
    ``local_connectivity=1``, so the weights match scanpy's to float32 rounding.
    """
    n, k = dists.shape
    rho = np.zeros(n, np.float32)
    sigma = np.zeros(n, np.float32)
    mean_all = np.mean(dists)
    for i in range(n):
        row = dists[i]
        for j in range(k):  # the first nonzero distance (duplicates are at 0)
            if row[j] > 0.0:
                rho[i] = row[j]
                break
        lo = 0.0
        hi = FLOAT32_MAX
        mid = 1.0
        for _ in range(N_ITER):
            total = 0.0
            for j in range(1, k):
                d = row[j] - rho[i]
                if d > 0:
                    total += np.exp(-(d / mid))
                else:
                    total += 1.0
            if np.fabs(total - target) < TOLERANCE:
                break
            if total > target:
                hi = mid
                mid = (lo + hi) / 2.0
            else:
                lo = mid
                mid = mid * 2 if hi >= FLOAT32_MAX else (lo + hi) / 2.0
        sigma[i] = mid
        floor = MIN_SCALE * (np.mean(row) if rho[i] > 0.0 else mean_all)
        if sigma[i] < floor:
            sigma[i] = floor
    return sigma, rho


@numba.njit(cache=True, nogil=True, locals={"w": numba.float32})
def memberships(ind, dists, sigma, rho):
    """Directed edge weights ``exp(-(d - rho) / sigma)`` (1 up to ``rho``, 0 to itself) as
    COO rows, columns and float32 values; ``ind``/``dists`` as in :func:`bandwidths`."""
    n, k = ind.shape
    rows = np.empty(n * k, np.int32)
    cols = np.empty(n * k, np.int32)
    vals = np.zeros(n * k, np.float32)
    for i in range(n):
        for j in range(k):
            e = i * k + j
            rows[e] = i
            cols[e] = ind[i, j]
            if ind[i, j] == i:
                w = 0.0
            elif dists[i, j] - rho[i] <= 0.0 or sigma[i] == 0.0:
                w = 1.0
            else:
                w = np.exp(-((dists[i, j] - rho[i]) / sigma[i]))
            vals[e] = w
    return rows, cols, vals
