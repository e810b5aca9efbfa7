"""QC figures and summary tables for the report.

Every function takes arrays, DataFrames or an AnnData and returns a matplotlib Figure or
a DataFrame; saving is left to :func:`cytotrail.io.save_figure`. Each figure says so in
words when there is nothing to show (no cells, a single frame), instead of failing.

- :mod:`~cytotrail.report.sample`: one sample (segmentation, QC, close-ups, tracks, lineages);
- :mod:`~cytotrail.report.summary`: all samples (UMAP, heatmap, composition, space, time);
- :mod:`~cytotrail.report.provenance`: software and model versions.
"""

from cytotrail.report._draw import CELL_OUTLINE
from cytotrail.report.provenance import versions
from cytotrail.report.sample import (
    CLOSE_UP_NUCLEI,
    CLOSE_UP_PX,
    close_up_size,
    close_up_windows,
    close_ups_figure,
    frame_qc,
    lineage_figure,
    napari_tracks,
    nucleus_areas,
    segmentation_figure,
    tracks_figure,
    worst_frames_figure,
)
from cytotrail.report.summary import (
    GROUP_TITLES,
    composition_figure,
    group_key,
    heatmap_figure,
    spatial_figure,
    summary_table,
    timeseries_figure,
    umap_figure,
)

__all__ = [
    "CELL_OUTLINE",
    "CLOSE_UP_NUCLEI",
    "CLOSE_UP_PX",
    "GROUP_TITLES",
    "close_up_size",
    "close_up_windows",
    "close_ups_figure",
    "composition_figure",
    "frame_qc",
    "group_key",
    "heatmap_figure",
    "lineage_figure",
    "napari_tracks",
    "nucleus_areas",
    "segmentation_figure",
    "spatial_figure",
    "summary_table",
    "timeseries_figure",
    "tracks_figure",
    "umap_figure",
    "versions",
    "worst_frames_figure",
]
