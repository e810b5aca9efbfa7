"""The demo workflow's clustering, without the workflow: ARI of cell types and Leiden.

Usage::

    .venv/bin/python benchmarks/bench_cluster_demo.py

The demo's two samples (``cytotrail.synth.make_timelapse`` with the demo config's size,
frames, cells and seeds), their true labels and tracks quantified as the demo config
quantifies (its ``quantify.background``), then clustered with the demo config's
``cluster`` section; printed beside the same with the former defaults (resolution 0.1,
percentile signature scores). ``benchmarks/score_demo.py`` scores a real workflow run,
segmentation and tracking included; this isolates the clustering in a minute.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]


def main():
    from sklearn.metrics import adjusted_rand_score

    from cytotrail.cluster import cluster, merge_tables
    from cytotrail.quantify import quantify
    from cytotrail.synth import make_timelapse

    logging.basicConfig(level=logging.WARNING)
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    demo, cl = config["demo"], config["cluster"]
    background = config["quantify"].get("background", "none")
    tables = []
    for i, sample in enumerate(["demo_a", "demo_b"]):
        data = make_timelapse(
            n_frames=demo["frames"],
            shape=(demo["size"], demo["size"]),
            n_cells=demo["cells"],
            seed=demo["seed"] + i,
        )
        cells = quantify(data.labels, data.image, channel_names=data.channel_names, background=background)
        cells.insert(0, "sample", sample)
        tracks = data.tracks.rename(columns={"cell_type": "truth"})
        tables.append(merge_tables(cells, tracks.drop(columns=["y", "x", "area"]).assign(sample=sample)))
    table = pd.concat(tables, ignore_index=True)
    base = dict(
        markers=cl["markers"],
        feature=cl["feature"],
        signatures=cl["cell_types"],
        transform=cl["transform"],
        cofactor=cl["cofactor"],
        resolution=cl["resolution"],
        n_neighbors=cl["n_neighbors"],
        umap=False,
        seed=cl["seed"],
        gates=cl.get("gates", "auto"),
    )
    print(f"{len(table)} cell-frames, {table['truth'].nunique()} types")
    for label, change in (
        ("demo config", {}),
        ("former defaults: resolution 0.1, gates none", {"resolution": 0.1, "gates": "none"}),
    ):
        t0 = time.perf_counter()
        adata = cluster(table, **{**base, **change})
        print(
            f"  {label:<45} ARI cell_type "
            f"{adjusted_rand_score(table['truth'], adata.obs['cell_type'].astype(str)):.3f}"
            f"  leiden {adjusted_rand_score(table['truth'], adata.obs['leiden']):.3f}"
            f"  (resolution {adata.uns['cytotrail']['params']['resolution']}, "
            f"{time.perf_counter() - t0:.1f} s)"
        )


if __name__ == "__main__":
    main()
