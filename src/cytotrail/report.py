"""QC figures and summary tables for the report.

Every function takes arrays, DataFrames or an AnnData and returns a matplotlib Figure or
a DataFrame; saving is left to :func:`cytotrail.io.save_figure`. Each figure says so in
words when there is nothing to show (no cells, a single frame), instead of failing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "heatmap_figure",
    "segmentation_figure",
    "summary_table",
    "tracks_figure",
    "umap_figure",
]


def _figure(*args, **kwargs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def _say(ax, text):
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=11)
    ax.set_axis_off()


def _contrast(frame):
    lo, hi = np.percentile(frame, (1, 99.8))
    return np.clip((frame.astype(np.float32) - lo) / max(hi - lo, 1e-6), 0, 1)


def segmentation_figure(nuclear, labels, *, n_frames=3, title=""):
    """Label outlines on the nuclear channel for a few frames, nuclei per frame and sizes.

    Parameters
    ----------
    nuclear : (T, Y, X) ndarray
        Nuclear channel.
    labels : (T, Y, X) ndarray
        Label stack of the same shape.
    n_frames : int
        Frames shown, spread evenly over the movie.
    """
    from skimage.segmentation import find_boundaries

    n_total = labels.shape[0]
    frames = np.unique(np.linspace(0, n_total - 1, min(n_frames, n_total)).round().astype(int))
    fig, axes = _figure(1, len(frames) + 2, figsize=(4 * (len(frames) + 2), 4.2))
    for ax, t in zip(axes, frames):
        rgb = np.repeat(_contrast(nuclear[t])[..., None], 3, axis=2)
        rgb[find_boundaries(labels[t], mode="inner")] = (1.0, 0.2, 0.2)
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title(f"frame {t}: {len(np.unique(labels[t])) - (labels[t].min() == 0)} nuclei")
        ax.set_axis_off()
    counts = [len(np.unique(f)) - 1 if f.min() == 0 else len(np.unique(f)) for f in labels]
    axes[-2].plot(range(n_total), counts, marker="o", ms=3)
    axes[-2].set(xlabel="frame", ylabel="nuclei", title="nuclei per frame")
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[areas > 0]
    if len(areas):
        axes[-1].hist(areas, bins=30, color="0.4")
        axes[-1].set(xlabel="area (px)", ylabel="nuclei", title="nucleus size")
    else:
        _say(axes[-1], "no nuclei found")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def tracks_figure(tracks, *, title=""):
    """Trajectories coloured by lineage, and the track-length histogram.

    Parameters
    ----------
    tracks : DataFrame
        ``frame, track_id, y, x`` and optionally ``lineage_id``, ``parent_track_id``.
    """
    fig, (ax_xy, ax_len) = _figure(1, 2, figsize=(10, 4.6))
    if len(tracks) == 0:
        _say(ax_xy, "no cells: nothing to track")
        _say(ax_len, "no tracks")
        fig.suptitle(title)
        return fig
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    lineage = tracks["lineage_id"] if "lineage_id" in tracks else tracks["track_id"]
    for track_id, track in tracks.sort_values("frame").groupby("track_id", sort=True):
        colour = cmap(int(lineage.loc[track.index[0]]) % 20)
        ax_xy.plot(track["x"], track["y"], "-", color=colour, lw=1)
        ax_xy.plot(track["x"].iloc[-1], track["y"].iloc[-1], ".", color=colour, ms=3)
    ax_xy.invert_yaxis()
    ax_xy.set_aspect("equal")
    ax_xy.set(xlabel="x (px)", ylabel="y (px)", title="trajectories (colour: lineage)")
    n_frames = tracks["frame"].max() + 1
    lengths = tracks.groupby("track_id")["frame"].nunique()
    ax_len.hist(lengths, bins=np.arange(0.5, n_frames + 1.5), color="0.4")
    whole = (lengths == tracks["frame"].nunique()).mean()
    ax_len.set(xlabel="frames", ylabel="tracks",
               title=f"track length ({whole:.0%} tracked over the whole movie)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def umap_figure(adata):
    """UMAP coloured by cell type and by sample."""
    fig, axes = _figure(1, 2, figsize=(11, 5))
    if adata.n_obs == 0 or "X_umap" not in adata.obsm:
        for ax in axes:
            _say(ax, "no UMAP: no cells, or UMAP switched off")
        return fig
    xy = adata.obsm["X_umap"]
    for ax, key in zip(axes, ("cell_type", "sample")):
        if key not in adata.obs:
            _say(ax, f"no `{key}` column")
            continue
        values = adata.obs[key].astype(str)
        for i, value in enumerate(sorted(values.unique())):
            sel = (values == value).to_numpy()
            ax.scatter(xy[sel, 0], xy[sel, 1], s=3, label=f"{value} ({sel.sum()})",
                       color=f"C{i % 10}", rasterized=True)
        ax.legend(markerscale=4, fontsize=8, frameon=False)
        ax.set(xticks=[], yticks=[], xlabel="UMAP 1", ylabel="UMAP 2", title=f"by {key}")
    fig.tight_layout()
    return fig


def heatmap_figure(adata, *, groupby="cell_type"):
    """Mean marker intensity per group, z-scored per marker."""
    fig, ax = _figure(figsize=(1.2 + 0.7 * max(adata.n_vars, 1), 1.5 + 0.45 * 6))
    if adata.n_obs == 0 or groupby not in adata.obs:
        _say(ax, "no cells to summarise")
        return fig
    values = pd.DataFrame(np.asarray(adata.X), columns=adata.var_names, index=adata.obs_names)
    means = values.groupby(adata.obs[groupby].astype(str).to_numpy()).mean()
    z = (means - means.mean()) / means.std(ddof=0).replace(0, 1)
    im = ax.imshow(z.to_numpy(), cmap="RdBu_r", vmin=-2, vmax=2, aspect="auto")
    ax.set_xticks(range(len(z.columns)), z.columns, rotation=45, ha="right")
    ax.set_yticks(range(len(z.index)), z.index)
    ax.set_title(f"marker means per {groupby} (z-score)")
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig


def summary_table(obs):
    """Per-sample counts: frames, cell-frames, tracks, divisions and cells of each type.

    Parameters
    ----------
    obs : DataFrame
        ``adata.obs``: ``sample, frame`` and optionally ``track_id``, ``parent_track_id``,
        ``cell_type``.
    """
    rows = []
    for sample, cells in obs.groupby("sample", observed=True, sort=True):
        row = {"sample": sample, "frames": cells["frame"].nunique(), "cells": len(cells)}
        if "track_id" in cells:
            row["tracks"] = cells["track_id"].nunique()
        if "parent_track_id" in cells:
            daughters = cells.drop_duplicates("track_id")["parent_track_id"].dropna()
            row["divisions"] = daughters.nunique()
        if "cell_type" in cells:
            for cell_type, n in cells["cell_type"].astype(str).value_counts().sort_index().items():
                row[f"n_{cell_type}"] = int(n)
        rows.append(row)
    return pd.DataFrame(rows).fillna(0)
