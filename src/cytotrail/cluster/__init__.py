"""Cluster cells (or whole tracks) into types and name them from marker signatures.

A package of small modules, one responsibility each:

- :mod:`~cytotrail.cluster.tables`: per-cell tables in (joins with tracks, marker columns,
  track summaries);
- :mod:`~cytotrail.cluster.transform`: per-marker transforms and scaling;
- :mod:`~cytotrail.cluster.graph`: the kNN graph, Leiden, UMAP (the graph's edge weights in
  :mod:`~cytotrail.cluster.fuzzy_kernel`);
- :mod:`~cytotrail.cluster.resolution`: the Leiden resolution chosen from the data;
- :mod:`~cytotrail.cluster.gating`: thresholds (given or estimated), rescaling around
  them, scimap's rule kinds, readers of scimap's gates and phenotype workflow tables;
- :mod:`~cytotrail.cluster.celltypes`: cell types from marker signatures (the hierarchy,
  gated or percentile scores, one type per track);
- :mod:`~cytotrail.cluster.pipeline`: :func:`cluster`, all of the above into one AnnData.
"""

from cytotrail.cluster.celltypes import UNKNOWN, score_signatures
from cytotrail.cluster.graph import (
    UMAP_PCA_INIT_ABOVE,
    KnnTransformer,
    auto_umap_epochs,
    embed_umap,
    knn_graph,
    leiden,
)
from cytotrail.cluster.pipeline import cluster, write_anndata
from cytotrail.cluster.tables import KEYS, merge_tables, track_summaries
from cytotrail.cluster.transform import TRANSFORMS

__all__ = [
    "KEYS",
    "TRANSFORMS",
    "UMAP_PCA_INIT_ABOVE",
    "UNKNOWN",
    "KnnTransformer",
    "auto_umap_epochs",
    "cluster",
    "embed_umap",
    "knn_graph",
    "leiden",
    "merge_tables",
    "score_signatures",
    "track_summaries",
    "write_anndata",
]
