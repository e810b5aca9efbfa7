"""Benchmark cytotrail.cluster on random mixture data: 10^4 -> 10^5 -> 10^6 cells x 40 markers.

Usage::

    .venv/bin/python benchmarks/bench_cluster.py [--sizes 10000 100000 1000000]
        [--markers 40] [--types 12] [--umap-max 1000000] [--threads 2]
        [--umap-epochs N] [--umap-init spectral|pca] [--seeds 0 1 2]
    .venv/bin/python benchmarks/bench_cluster.py --synthetic

``--synthetic`` instead measures accuracy on synthetic timelapses with known types
(``cytotrail.synth.make_timelapse``, K in {3, 4, 6}, several seeds, plus the demo-like
n_types=4 seed 0): quantify the true labels (default options, and ``background="local"``),
join the true tracks, cluster with the default options and the data's signatures, on the
type markers only and on all markers (with the type-independent Ki67), and print the ARI
of ``cell_type`` and of ``leiden`` against the true types.

Each size runs in a fresh subprocess limited to ``--threads`` threads (OMP, BLAS, numba).
The data: ``--types`` cell types, each a random log-normal profile over the markers;
cells scatter around their type's profile, 5% are random "unknown" cells. The pipeline
(transform, scale, PCA, kNN graph, Leiden, signature annotation) is one
``cytotrail.cluster.cluster(..., umap=False)`` call, timed step by step from
``uns["cytotrail"]["timings_s"]``; UMAP (``cytotrail.cluster.embed_umap``, the step
``cluster(umap=True)`` runs, with its automatic epochs and initialisation unless
``--umap-epochs`` / ``--umap-init`` are given) is then timed on its own (up to
``--umap-max`` cells). Peak RSS of the subprocess comes from ``resource.getrusage``, read
after the clustering and again after UMAP. The ARI of Leiden and of the annotated cell
types against the generating types is printed as a sanity check; ``--seeds`` repeats
each size with other data seeds (and ``--types`` may list several type counts).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def make_mixture(n, n_markers, n_types, seed=0):
    """(n, n_markers) intensities, true type per cell, and signatures of the types."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    markers = [f"M{i}" for i in range(n_markers)]
    # each type: 2-4 high markers, the rest low
    profiles = np.full((n_types, n_markers), np.log(30.0))
    signatures = {}
    for k in range(n_types):
        high = rng.choice(n_markers, size=rng.integers(2, 5), replace=False)
        profiles[k, high] = np.log(rng.uniform(300, 1500, len(high)))
        signatures[f"type{k}"] = {"positive": [markers[j] for j in high]}
    truth = rng.integers(0, n_types, n)
    values = np.exp(profiles[truth] + rng.normal(0, 0.35, (n, n_markers)))
    noise = rng.random(n) < 0.05
    values[noise] = np.exp(rng.uniform(np.log(10), np.log(1500), (int(noise.sum()), n_markers)))
    labels = np.array([f"type{k}" for k in truth], dtype=object)
    labels[noise] = "unknown"
    table = pd.DataFrame(values.astype(np.float32), columns=[f"{m}_cell_mean" for m in markers])
    table.insert(0, "sample", np.where(rng.random(n) < 0.5, "s1", "s2"))
    table.insert(1, "frame", 0)
    table.insert(2, "label", np.arange(1, n + 1))
    table["y"] = rng.uniform(0, 4096, n)
    table["x"] = rng.uniform(0, 4096, n)
    return table, labels, markers, signatures


def child(n, n_markers, n_types, umap_max, seed=0, umap_epochs=None, umap_init=None):
    import anndata  # noqa: F401
    import numpy as np
    from sklearn.metrics import adjusted_rand_score

    from cytotrail.cluster import cluster, embed_umap

    table, truth, markers, signatures = make_mixture(n, n_markers, n_types, seed=seed)
    t0 = time.perf_counter()
    adata = cluster(table, markers=markers, signatures=signatures, umap=False, seed=0)
    total = time.perf_counter() - t0
    timings = dict(adata.uns["cytotrail"]["timings_s"])
    peak_cluster = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    umap_s = umap_used = None
    if n <= umap_max:
        t1 = time.perf_counter()
        umap_used = embed_umap(adata, seed=0, n_epochs=umap_epochs, init=umap_init)
        umap_s = time.perf_counter() - t1
    known = truth != "unknown"
    umap_acc = None
    if umap_s is not None:  # do the types stay apart in the layout? kNN (k=15) vote in 2-D
        from sklearn.neighbors import KNeighborsClassifier

        emb = adata.obsm["X_umap"][known]
        lab = truth[known]
        order = np.random.default_rng(0).permutation(len(emb))
        half = min(len(emb) // 2, 20_000)
        pick, held = order[:half], order[half : 2 * half]
        knn = KNeighborsClassifier(15).fit(emb[pick], lab[pick])
        umap_acc = float(np.mean(knn.predict(emb[held]) == lab[held]))
    result = {
        "n": n,
        "seed": seed,
        "types": n_types,
        "total_s": total,
        "timings_s": timings,
        "umap_s": umap_s,
        "umap": umap_used,
        "umap_knn_accuracy": umap_acc,
        "peak_rss_cluster_mb": peak_cluster,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "n_clusters": int(adata.obs["leiden"].nunique()),
        "ari_leiden": float(adjusted_rand_score(truth[known], adata.obs["leiden"][known])),
        "ari_cell_type": float(adjusted_rand_score(truth[known], adata.obs["cell_type"].astype(str)[known])),
        "unknown_recall": float(np.mean(adata.obs["cell_type"].astype(str)[~known] == "unknown")),
    }
    print(json.dumps(result))


SYNTHETIC_CASES = [(3, 5), (3, 11), (3, 31), (4, 2), (4, 21), (4, 33), (6, 7), (6, 13), (6, 41)]


def synthetic():
    import pandas as pd
    from sklearn.metrics import adjusted_rand_score as ari

    from cytotrail.cluster import cluster, merge_tables
    from cytotrail.quantify import quantify
    from cytotrail.synth import make_timelapse

    rows = []
    for n_types, seed in SYNTHETIC_CASES + [(4, 0)]:
        data = make_timelapse(n_types=n_types, seed=seed, n_frames=20, shape=(256, 256), n_cells=50)
        tracks = data.tracks.drop(columns=["y", "x", "area"]).rename(columns={"cell_type": "truth"})
        for background in (None, "local"):
            cells = quantify(data.labels, data.image, channel_names=data.channel_names, background=background)
            table = merge_tables(cells, tracks)
            for marker_set in ("type markers", "all markers"):
                markers = [
                    m.name for m in data.panel if m.cell_type is not None or marker_set == "all markers"
                ]
                adata = cluster(table, markers=markers, signatures=data.signatures, umap=False)
                truth = adata.obs["truth"].astype(str)
                rows.append(
                    {
                        "case": "demo-like" if seed == 0 else "test",
                        "K": n_types,
                        "seed": seed,
                        "background": str(background),
                        "markers": marker_set,
                        "cells": adata.n_obs,
                        "clusters": adata.obs["leiden"].nunique(),
                        "ari_cell_type": ari(truth, adata.obs["cell_type"].astype(str)),
                        "ari_leiden": ari(truth, adata.obs["leiden"].astype(str)),
                    }
                )
        print(pd.DataFrame(rows[-4:]).round(3).to_string(index=False, header=len(rows) == 4), flush=True)
    df = pd.DataFrame(rows)
    summary = df.groupby(["case", "background", "markers"])[["ari_cell_type", "ari_leiden"]]
    print("\nmin / mean ARI over the cases (defaults: resolution from the data, n_neighbors 15):")
    print(summary.agg(["min", "mean"]).round(3).to_string())


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--markers", type=int, default=40)
    p.add_argument("--types", type=int, nargs="+", default=[12])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--umap-max", type=int, default=1_000_000)
    p.add_argument(
        "--umap-epochs",
        type=int,
        default=None,
        help="UMAP epochs (default: cytotrail.cluster.auto_umap_epochs)",
    )
    p.add_argument(
        "--umap-init",
        choices=("spectral", "pca"),
        default=None,
        help="UMAP initial layout (default: spectral up to 10^5 cells, PCA beyond)",
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--synthetic", action="store_true", help="accuracy on synthetic timelapses with known types instead"
    )
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.synthetic:
        synthetic()
        return
    if args.child:
        child(
            args.child,
            args.markers,
            args.types[0],
            args.umap_max,
            seed=args.seeds[0],
            umap_epochs=args.umap_epochs,
            umap_init=args.umap_init,
        )
        return
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = str(args.threads)
    print(
        f"{args.markers} markers, {args.types} types + 5% noise cells, {args.threads} threads; "
        "cluster(umap=False) then UMAP alone; one fresh process per size"
    )
    for n_types in args.types:
        for seed in args.seeds:
            previous = previous_umap = None
            for n in args.sizes:
                cmd = [
                    sys.executable,
                    __file__,
                    "--child",
                    str(n),
                    "--markers",
                    str(args.markers),
                    "--types",
                    str(n_types),
                    "--seeds",
                    str(seed),
                    "--umap-max",
                    str(args.umap_max),
                ]
                if args.umap_epochs is not None:
                    cmd += ["--umap-epochs", str(args.umap_epochs)]
                if args.umap_init is not None:
                    cmd += ["--umap-init", args.umap_init]
                res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
                if res.returncode != 0:
                    print(f"n={n}: failed\n{res.stderr[-3000:]}")
                    break
                r = json.loads(res.stdout.strip().splitlines()[-1])
                steps = ", ".join(f"{k} {v:.1f}" for k, v in r["timings_s"].items())
                scale = f" ({r['total_s'] / previous:.1f}x the previous size)" if previous else ""
                if r["umap_s"] is not None:
                    uscale = (
                        f", {r['umap_s'] / previous_umap:.1f}x the previous size" if previous_umap else ""
                    )
                    umap = (
                        f"{r['umap_s']:.1f} s ({r['umap']['n_epochs']} epochs, "
                        f"{r['umap']['init']} init{uscale}; 2-D kNN type accuracy "
                        f"{r['umap_knn_accuracy']:.3f})"
                    )
                else:
                    umap = "not run"
                with_umap = (
                    f"; peak RSS with UMAP {r['peak_rss_mb'] / 1024:.2f} GB"
                    if r["umap_s"] is not None
                    else ""
                )
                print(
                    f"K={n_types} seed={seed} n={n:>9,}: cluster {r['total_s']:7.1f} s{scale} "
                    f"[{steps}]; peak RSS {r['peak_rss_cluster_mb'] / 1024:.2f} GB; "
                    f"UMAP {umap}{with_umap}; "
                    f"{r['n_clusters']} clusters; ARI leiden {r['ari_leiden']:.3f}, "
                    f"cell_type {r['ari_cell_type']:.3f}; noise cells called unknown "
                    f"{r['unknown_recall']:.2f}",
                    flush=True,
                )
                previous, previous_umap = r["total_s"], r["umap_s"]


if __name__ == "__main__":
    main()
