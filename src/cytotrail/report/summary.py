"""The figures and table of all samples: cells grouped by type (or Leiden cluster) on the
UMAP, per marker, per sample, over time and in space."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cytotrail.report._draw import say, subplots

GROUP_TITLES = {"cell_type": "cell type", "leiden": "Leiden cluster"}


def group_key(obs):
    """The column the summary figures group cells by: ``cell_type``, else the Leiden
    clusters (a run without signatures), else None."""
    return next((key for key in GROUP_TITLES if key in obs), None)


def _groups(values):
    """Distinct values as str, numbers in numeric order (Leiden's "2" before "10")."""
    names = pd.unique(pd.Series(values).astype(str))
    return sorted(names, key=lambda v: (0, int(v), "") if v.isdigit() else (1, 0, v))


def _palette(names):
    """``{name: colour}``: matplotlib's tab10, or tab20 beyond 10 names (repeating beyond
    20); cells typed ``unknown`` in grey."""
    import matplotlib

    from cytotrail.cluster.celltypes import UNKNOWN

    named = [n for n in names if n != UNKNOWN]
    cmap = matplotlib.colormaps["tab10" if len(named) <= 10 else "tab20"]
    out = {n: cmap(i % cmap.N) for i, n in enumerate(named)}
    return {n: out.get(n, (0.6, 0.6, 0.6, 1.0)) for n in names}


def umap_figure(adata):
    """UMAP coloured by cell type and by sample."""
    fig, axes = subplots(1, 2, figsize=(14, 5))
    if adata.n_obs == 0 or "X_umap" not in adata.obsm:
        for ax in axes:
            say(ax, "no UMAP: no cells, or UMAP switched off")
        return fig
    xy = adata.obsm["X_umap"]
    for ax, key in zip(axes, (group_key(adata.obs), "sample")):
        if key not in adata.obs:
            say(ax, "no cell types or clusters" if key is None else f"no `{key}` column")
            continue
        values = adata.obs[key].astype(str)
        names = _groups(values)
        for value, colour in _palette(names).items():
            sel = (values == value).to_numpy()
            ax.scatter(
                xy[sel, 0], xy[sel, 1], s=3, label=f"{value} ({sel.sum()})", color=colour, rasterized=True
            )
        ax.legend(markerscale=4, fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        title = f"by {GROUP_TITLES.get(key, key)}"
        ax.set(xticks=[], yticks=[], xlabel="UMAP 1", ylabel="UMAP 2", title=title)
    fig.tight_layout()
    return fig


def heatmap_figure(adata, *, groupby=None):
    """Mean marker intensity per group (default: :func:`group_key`), z-scored per marker."""
    groupby = groupby or group_key(adata.obs)
    n_groups = adata.obs[groupby].nunique() if groupby in adata.obs else 0
    width = max(5.0, 2.4 + 0.7 * max(adata.n_vars, 1))  # room for the title and the longest name
    fig, ax = subplots(figsize=(width, 1.5 + 0.45 * max(n_groups, 4)))
    if adata.n_obs == 0 or groupby not in adata.obs:
        say(ax, "no cells to summarise" if adata.n_obs == 0 else "no cell types or clusters")
        return fig
    values = pd.DataFrame(np.asarray(adata.X), columns=adata.var_names, index=adata.obs_names)
    means = values.groupby(adata.obs[groupby].astype(str).to_numpy()).mean()
    means = means.loc[_groups(means.index)]
    z = (means - means.mean()) / means.std(ddof=0).replace(0, 1)
    im = ax.imshow(z.to_numpy(), cmap="RdBu_r", vmin=-2, vmax=2, aspect="auto")
    ax.set_xticks(range(len(z.columns)), z.columns, rotation=45, ha="right")
    ax.set_yticks(range(len(z.index)), z.index)
    ax.set_title(f"marker means per {GROUP_TITLES.get(groupby, groupby)} (z-score)", fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig


def summary_table(obs, *, samples=None):
    """Per-sample counts: frames, cell-frames, tracks, divisions and cells of each type.

    Parameters
    ----------
    obs : DataFrame
        ``adata.obs``: ``sample, frame`` and optionally ``track_id``, ``parent_track_id``,
        ``cell_type``.
    samples : sequence of str, optional
        Every sample of the run, in the order of the table: a sample without any cell
        gets a row of zeros instead of no row.
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
    table = pd.DataFrame(rows, columns=["sample", "frames", "cells"] if not rows else None)
    if samples is not None:
        missing = [s for s in samples if s not in set(table["sample"])]
        table = pd.concat([table, pd.DataFrame({"sample": missing})], ignore_index=True)
        table = table.set_index("sample").loc[list(samples)].reset_index()
    table = table.fillna(0)
    counts = [c for c in table.columns if c != "sample"]
    table[counts] = table[counts].astype(int)
    return table


def composition_figure(obs, *, groupby=None):
    """Composition per sample, and over time (fraction of cells per frame), of the cell
    types (default: :func:`group_key`, the clusters when there are no types)."""
    groupby = groupby or group_key(obs)
    fig, (ax_s, ax_t) = subplots(1, 2, figsize=(11, 4.5))
    if len(obs) == 0 or groupby not in obs:
        for ax in (ax_s, ax_t):
            say(ax, "no cells" if len(obs) == 0 else "no cell types or clusters")
        return fig
    groups = obs[groupby].astype(str)
    names = _groups(groups)
    colours = _palette(names)
    per_sample = pd.crosstab(obs["sample"].astype(str), groups, normalize="index")[names]
    bottom = np.zeros(len(per_sample))
    for name in names:
        ax_s.bar(per_sample.index, per_sample[name], bottom=bottom, label=name, color=colours[name])
        bottom += per_sample[name].to_numpy()
    ax_s.set(ylabel="fraction of cells", title=f"{GROUP_TITLES.get(groupby, groupby)}s per sample")
    ax_s.tick_params(axis="x", labelrotation=90 if len(per_sample) > 4 else 0, labelsize=7)
    ax_s.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if obs["frame"].nunique() < 2:
        say(ax_t, "one frame per sample: no time axis")
    else:
        over_time = pd.crosstab(obs["frame"], groups, normalize="index")
        for name in over_time.columns:
            ax_t.plot(over_time.index, over_time[name], color=colours[name], label=name)
        ax_t.set(xlabel="frame", ylabel="fraction of cells", title="composition over time")
    fig.tight_layout()
    return fig


def spatial_figure(adata, *, groupby=None, max_samples=12):
    """Where the cells of each type lie: one panel per sample (its last frame), cells as
    dots at their centroids, coloured as in the other figures (default: :func:`group_key`).

    Parameters
    ----------
    adata : AnnData
        ``obs`` with ``sample``, ``frame``, ``y``, ``x``.
    groupby : str, optional
        ``obs`` column of the colours.
    max_samples : int
        Panels at most; the first samples in name order (the figure says how many more).
    """
    groupby = groupby or group_key(adata.obs)
    obs = adata.obs
    samples = _groups(obs["sample"]) if len(obs) else []
    shown = samples[:max_samples]
    ncols = max(1, min(4, len(shown)))
    nrows = max(1, -(-len(shown) // ncols))
    fig, axes = subplots(nrows, ncols, figsize=(3.6 * ncols + 1.8, 3.6 * nrows), squeeze=False)
    axes = axes.ravel()
    if not shown or groupby not in obs or not {"x", "y", "frame"} <= set(obs.columns):
        say(axes[0], "no cells" if not shown else "no cell types or clusters, or no positions")
        for ax in axes[1:]:
            ax.set_axis_off()
        return fig
    values = obs[groupby].astype(str).to_numpy()
    names = _groups(values)
    colours = _palette(names)
    sample_of = obs["sample"].astype(str).to_numpy()
    frame, x, y = (obs[c].to_numpy() for c in ("frame", "x", "y"))
    movie = len(np.unique(frame)) > 1
    for ax, sample in zip(axes, shown):
        in_sample = sample_of == sample
        cells = in_sample & (frame == frame[in_sample].max())  # the last frame of a movie
        size = float(np.clip(3000 / max(cells.sum(), 1), 1, 30))
        for name in names:
            sel = cells & (values == name)
            if sel.any():
                ax.scatter(x[sel], y[sel], s=size, color=colours[name], rasterized=True)
        ax.set_aspect("equal")
        ax.invert_yaxis()
        ax.set(xticks=[], yticks=[])
        frame_note = f", frame {frame[cells][0]}" if movie else ""
        ax.set_title(f"{sample}{frame_note}", fontsize=8)
    for ax in axes[len(shown) :]:
        ax.set_axis_off()
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], ls="", marker="o", color=colours[n]) for n in names]
    fig.legend(handles, names, loc="center right", fontsize=8, frameon=False, title=GROUP_TITLES.get(groupby))
    more = f" (first {len(shown)} of {len(samples)} samples)" if len(samples) > len(shown) else ""
    fig.suptitle(f"{GROUP_TITLES.get(groupby, groupby)}s in space{more}")
    fig.tight_layout(rect=(0, 0, (3.6 * ncols) / (3.6 * ncols + 1.8), 1))
    return fig


def timeseries_figure(adata, *, groupby=None):
    """Mean marker level per cell type (default: :func:`group_key`) over frames."""
    groupby = groupby or group_key(adata.obs)
    markers = list(adata.var_names)
    n = max(len(markers), 1)
    fig, axes = subplots(1, n, figsize=(3.2 * n, 3.4), squeeze=False)
    axes = axes[0]
    if adata.n_obs == 0 or groupby not in adata.obs or adata.obs["frame"].nunique() < 2:
        say(
            axes[0],
            "no cell types or clusters"
            if adata.n_obs and groupby is None
            else "no time axis: a single frame, or no cells",
        )
        for ax in axes[1:]:
            ax.set_axis_off()
        return fig
    values = pd.DataFrame(np.asarray(adata.X), columns=markers)
    values["frame"] = adata.obs["frame"].to_numpy()
    values["group"] = adata.obs[groupby].astype(str).to_numpy()
    means = values.groupby(["group", "frame"]).mean()
    names = _groups(values["group"])
    for ax, marker in zip(axes, markers):
        for group, colour in _palette(names).items():
            series = means.loc[group, marker]
            ax.plot(series.index, series.to_numpy(), color=colour, label=group)
        ax.set(title=marker, xlabel="frame")
    axes[0].legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig
