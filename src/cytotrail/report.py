"""QC figures and summary tables for the report.

Every function takes arrays, DataFrames or an AnnData and returns a matplotlib Figure or
a DataFrame; saving is left to :func:`cytotrail.io.save_figure`. Each figure says so in
words when there is nothing to show (no cells, a single frame), instead of failing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "composition_figure",
    "group_key",
    "heatmap_figure",
    "lineage_figure",
    "nucleus_areas",
    "segmentation_figure",
    "spatial_figure",
    "summary_table",
    "timeseries_figure",
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
    from cytotrail.segment.preprocess import normalize, percentiles

    return np.clip(normalize(frame, *percentiles(frame)), 0, 1)


CELL_OUTLINE = (0.2, 0.8, 1.0)  # whole cells: cyan, under the nuclei's outlines


def _outlines(grey, labels, colour, cells=None):
    """RGB of a contrast-stretched ``grey`` plane with the inner boundaries of ``labels``
    in ``colour`` over those of the whole ``cells`` (cyan), when given."""
    from skimage.segmentation import find_boundaries

    rgb = np.repeat(grey[..., None], 3, axis=2)
    if cells is not None:
        rgb[find_boundaries(cells, mode="inner")] = CELL_OUTLINE
    rgb[find_boundaries(labels, mode="inner")] = colour
    return rgb


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


def _single_frame(frames):
    return len(frames) > 0 and pd.Series(frames).nunique() == 1


def segmentation_figure(nuclear, labels, *, cells=None, n_frames=3, title=""):
    """Label outlines on the nuclear channel for a few frames, nuclei per frame and sizes.

    Parameters
    ----------
    nuclear : (T, Y, X) ndarray
        Nuclear channel.
    labels : (T, Y, X) ndarray
        Label stack of the same shape.
    cells : (T, Y, X) ndarray, optional
        Whole cells (``segment.cells``), outlined in cyan under the nuclei.
    n_frames : int
        Frames shown, spread evenly over the movie.
    """
    n_total = labels.shape[0]
    frames = np.unique(np.linspace(0, n_total - 1, min(n_frames, n_total)).round().astype(int))
    fig, axes = _figure(1, len(frames) + 2, figsize=(4 * (len(frames) + 2), 4.2))
    for ax, t in zip(axes, frames):
        rgb = _outlines(
            _contrast(nuclear[t]), labels[t], (1.0, 0.2, 0.2), None if cells is None else cells[t]
        )
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title(f"frame {t}: {len(np.unique(labels[t])) - (labels[t].min() == 0)} nuclei")
        ax.set_axis_off()
    counts = [len(np.unique(f)) - 1 if f.min() == 0 else len(np.unique(f)) for f in labels]
    if n_total == 1:
        _say(axes[-2], f"a single image: {counts[0]} nuclei")
    else:
        axes[-2].plot(range(n_total), counts, marker="o", ms=3)
        axes[-2].set(xlabel="frame", ylabel="nuclei", title="nuclei per frame")
    areas = nucleus_areas(labels)
    if len(areas):
        axes[-1].hist(areas, bins=30, color="0.4")
        axes[-1].set(xlabel="area (px)", ylabel="nuclei", title="nucleus size")
    else:
        _say(axes[-1], "no nuclei found")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def nucleus_areas(labels):
    """Area in pixels of every nucleus of every frame (labels restart each frame).

    Parameters
    ----------
    labels : (T, Y, X) or (Y, X) ndarray
        Label stack; label ids are per frame, so the same id in two frames is two nuclei.

    Returns
    -------
    (N,) ndarray of int
        One area per (frame, label), frames in order.
    """
    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = labels[np.newaxis]
    per_frame = []
    for frame in labels:
        counts = np.bincount(frame.ravel())[1:]
        per_frame.append(counts[counts > 0])
    return np.concatenate(per_frame) if per_frame else np.zeros(0, np.int64)


def tracks_figure(tracks, *, title=""):
    """Trajectories coloured by lineage, and the track-length histogram.

    Parameters
    ----------
    tracks : DataFrame
        ``frame, track_id, y, x`` and optionally ``lineage_id``, ``parent_track_id``.
    """
    fig, (ax_xy, ax_len) = _figure(1, 2, figsize=(10, 4.6))
    if len(tracks) == 0 or _single_frame(tracks["frame"]):
        _say(ax_xy, "no cells: nothing to track" if len(tracks) == 0 else "a single image: nothing to track")
        _say(ax_len, "no tracks")
        fig.suptitle(title)
        return fig
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    lineage = tracks["lineage_id"] if "lineage_id" in tracks else tracks["track_id"]
    for _track_id, track in tracks.sort_values("frame").groupby("track_id", sort=True):
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
    ax_len.set(
        xlabel="frames", ylabel="tracks", title=f"track length ({whole:.0%} tracked over the whole movie)"
    )
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
    for ax, key in zip(axes, (group_key(adata.obs), "sample")):
        if key not in adata.obs:
            _say(ax, "no cell types or clusters" if key is None else f"no `{key}` column")
            continue
        values = adata.obs[key].astype(str)
        names = _groups(values)
        for value, colour in _palette(names).items():
            sel = (values == value).to_numpy()
            ax.scatter(
                xy[sel, 0], xy[sel, 1], s=3, label=f"{value} ({sel.sum()})", color=colour, rasterized=True
            )
        ax.legend(markerscale=4, fontsize=8, frameon=False)
        title = f"by {GROUP_TITLES.get(key, key)}"
        ax.set(xticks=[], yticks=[], xlabel="UMAP 1", ylabel="UMAP 2", title=title)
    fig.tight_layout()
    return fig


def heatmap_figure(adata, *, groupby=None):
    """Mean marker intensity per group (default: :func:`group_key`), z-scored per marker."""
    groupby = groupby or group_key(adata.obs)
    fig, ax = _figure(figsize=(1.2 + 0.7 * max(adata.n_vars, 1), 1.5 + 0.45 * 6))
    if adata.n_obs == 0 or groupby not in adata.obs:
        _say(ax, "no cells to summarise" if adata.n_obs == 0 else "no cell types or clusters")
        return fig
    values = pd.DataFrame(np.asarray(adata.X), columns=adata.var_names, index=adata.obs_names)
    means = values.groupby(adata.obs[groupby].astype(str).to_numpy()).mean()
    means = means.loc[_groups(means.index)]
    z = (means - means.mean()) / means.std(ddof=0).replace(0, 1)
    im = ax.imshow(z.to_numpy(), cmap="RdBu_r", vmin=-2, vmax=2, aspect="auto")
    ax.set_xticks(range(len(z.columns)), z.columns, rotation=45, ha="right")
    ax.set_yticks(range(len(z.index)), z.index)
    ax.set_title(f"marker means per {GROUP_TITLES.get(groupby, groupby)} (z-score)")
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


def frame_qc(labels):
    """Per-frame QC score of a label stack: how far a frame strays from the movie's norm.

    The score adds the log-ratio of the frame's nucleus count to the median count, the
    log-ratio of its median nucleus area to the movie's, and its fraction of fragments
    (objects under a quarter of the movie's median area). 0 is a typical frame.

    Returns
    -------
    DataFrame
        ``frame, nuclei, median_area, fragments, qc_score``, one row per frame.
    """
    rows = []
    for t, frame in enumerate(labels):
        areas = np.bincount(frame.ravel())[1:]
        areas = areas[areas > 0]
        rows.append((t, len(areas), float(np.median(areas)) if len(areas) else 0.0, areas))
    all_areas = np.concatenate([r[3] for r in rows]) if rows else np.zeros(0)
    typical_area = float(np.median(all_areas)) if len(all_areas) else 1.0
    typical_count = max(float(np.median([r[1] for r in rows])), 1.0) if rows else 1.0
    out = []
    for t, n, median_area, areas in rows:
        fragments = float(np.mean(areas < typical_area / 4)) if len(areas) else 0.0
        score = (
            abs(np.log((n + 1) / (typical_count + 1)))
            + abs(np.log((median_area + 1) / (typical_area + 1)))
            + fragments
        )
        out.append(
            {"frame": t, "nuclei": n, "median_area": median_area, "fragments": fragments, "qc_score": score}
        )
    return pd.DataFrame(out, columns=["frame", "nuclei", "median_area", "fragments", "qc_score"])


CLOSE_UP_NUCLEI = 8  # a close-up spans about this many median nuclei
CLOSE_UP_PX = (128, 512)  # ... within these sides in pixels


def worst_frames_figure(nuclear, labels, *, cells=None, n_frames=3, title=""):
    """Outlines on the frames with the highest QC score (see :func:`frame_qc`); for a
    single image, close-ups instead (:func:`close_ups_figure`)."""
    if labels.shape[0] == 1:
        return close_ups_figure(nuclear[0], labels[0], cells=None if cells is None else cells[0], title=title)
    qc = frame_qc(labels).sort_values(["qc_score", "frame"], ascending=[False, True])
    worst = qc.head(n_frames)
    fig, axes = _figure(1, max(len(worst), 1), figsize=(4 * max(len(worst), 1), 4.2), squeeze=False)
    axes = axes[0]
    if len(worst) == 0:
        _say(axes[0], "no frames")
    for ax, row in zip(axes, worst.itertuples()):
        t = row.frame
        rgb = _outlines(
            _contrast(nuclear[t]), labels[t], (1.0, 0.8, 0.1), None if cells is None else cells[t]
        )
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title(f"frame {row.frame}: QC {row.qc_score:.2f}, {row.nuclei} nuclei")
        ax.set_axis_off()
    fig.suptitle(f"{title}: frames with the highest QC score" if title else "highest QC score")
    fig.tight_layout()
    return fig


def close_up_size(labels):
    """Side in pixels of a close-up: ``CLOSE_UP_NUCLEI`` median nucleus diameters (of a
    disc of the median area), within ``CLOSE_UP_PX``."""
    areas = nucleus_areas(labels)
    diameter = 2 * np.sqrt(np.median(areas) / np.pi) if len(areas) else 0.0
    return int(np.clip(round(CLOSE_UP_NUCLEI * diameter), *CLOSE_UP_PX))


def close_up_windows(labels, *, size=None):
    """``{name: (y, x)}``: top-left corners of ``size`` windows (default
    :func:`close_up_size`) of a (Y, X) label image,
    among the windows of a grid the one with the most nuclei, a typical one (the median
    count) and the one with the fewest but one; ``{"the whole image": (0, 0)}`` when the
    image fits in one window (or holds no nucleus)."""
    size = size or close_up_size(labels)
    ny, nx = labels.shape
    corners = [
        (y, x) for y in range(0, max(ny - size, 0) + 1, size) for x in range(0, max(nx - size, 0) + 1, size)
    ]
    counts = np.array([len(np.unique(labels[y : y + size, x : x + size])) - 1 for y, x in corners])
    order = np.argsort(-counts, kind="stable")
    occupied = order[counts[order] > 0]
    if len(corners) == 1 or len(occupied) == 0:
        return {"the whole image": (0, 0)}
    out = {}
    for name, i in zip(("densest field", "typical field", "sparsest field"), (0, len(occupied) // 2, -1)):
        if corners[occupied[i]] not in out.values():
            out[name] = corners[occupied[i]]
    return out


def close_ups_figure(nuclear, labels, *, cells=None, size=None, title=""):
    """Outlines at full resolution on the densest, a typical and the sparsest field of one
    image, where the whole-image view of a tissue section is too small to judge them
    (whole ``cells`` in cyan under the nuclei, when given)."""
    size = size or close_up_size(labels)
    windows = close_up_windows(labels, size=size)
    fig, axes = _figure(1, len(windows), figsize=(4 * len(windows), 4.2), squeeze=False)
    contrast = _contrast(nuclear)
    for ax, (name, (y, x)) in zip(axes[0], windows.items()):
        crop = labels[y : y + size, x : x + size]
        window = (slice(y, y + size), slice(x, x + size))
        rgb = _outlines(contrast[window], crop, (1.0, 0.8, 0.1), None if cells is None else cells[window])
        ax.imshow(rgb, interpolation="nearest")
        n = len(np.unique(crop)) - (crop.min() == 0)
        ax.set_title(f"{name} (y {y}, x {x}): {n} {'nucleus' if n == 1 else 'nuclei'}", fontsize=9)
        ax.set_axis_off()
    fig.suptitle(f"{title}: close-ups at full resolution" if title else "close-ups at full resolution")
    fig.tight_layout()
    return fig


def lineage_figure(tracks, *, max_lineages=12, title=""):
    """Lineage trees of the largest lineages: a line per track over its frames, divisions joined."""
    fig, ax = _figure(figsize=(9, 5))
    if len(tracks) == 0 or "lineage_id" not in tracks or _single_frame(tracks["frame"]):
        if len(tracks) == 0:
            _say(ax, "no tracks")
        else:
            _say(ax, "a single image: no lineages" if "lineage_id" in tracks else "no lineage information")
        return fig
    spans = tracks.groupby("track_id").agg(
        start=("frame", "min"),
        end=("frame", "max"),
        lineage=("lineage_id", "first"),
        parent=("parent_track_id", "first"),
    )
    sizes = spans.groupby("lineage").size().sort_values(ascending=False, kind="stable")
    dividing = sizes[sizes > 1].head(max_lineages).index
    if len(dividing) == 0:
        _say(ax, "no divisions were found")
        return fig
    row = 0
    ypos = {}
    for lineage in dividing:
        members = spans[spans["lineage"] == lineage].sort_values("start", kind="stable")
        for track_id, span in members.iterrows():
            ypos[track_id] = row
            # a bar over the frames the track lives in (start - 0.4 to end + 0.4): a daughter
            # that lives a single frame is a short bar, not a zero-length, invisible line
            ax.plot(
                [span["start"] - 0.4, span["end"] + 0.4],
                [row, row],
                "-",
                color=f"C{int(lineage) % 10}",
                lw=2,
                solid_capstyle="butt",
            )
            parent = span["parent"]
            if pd.notna(parent) and int(parent) in ypos:
                ax.plot([span["start"] - 0.5] * 2, [ypos[int(parent)], row], ":", color="0.4", lw=1)
                ax.plot(span["start"] - 0.5, ypos[int(parent)], "k^", ms=4)
            row += 1
        row += 1
    ax.set(xlabel="frame", yticks=[], title=title or "lineage trees (^: division)")
    ax.invert_yaxis()
    fig.tight_layout()
    return fig


def composition_figure(obs, *, groupby=None):
    """Composition per sample, and over time (fraction of cells per frame), of the cell
    types (default: :func:`group_key`, the clusters when there are no types)."""
    groupby = groupby or group_key(obs)
    fig, (ax_s, ax_t) = _figure(1, 2, figsize=(11, 4.5))
    if len(obs) == 0 or groupby not in obs:
        for ax in (ax_s, ax_t):
            _say(ax, "no cells" if len(obs) == 0 else "no cell types or clusters")
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
        _say(ax_t, "one frame per sample: no time axis")
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
    fig, axes = _figure(nrows, ncols, figsize=(3.6 * ncols + 1.8, 3.6 * nrows), squeeze=False)
    axes = axes.ravel()
    if not shown or groupby not in obs or not {"x", "y", "frame"} <= set(obs.columns):
        _say(axes[0], "no cells" if not shown else "no cell types or clusters, or no positions")
        for ax in axes[1:]:
            ax.set_axis_off()
        return fig
    values = obs[groupby].astype(str)
    names = _groups(values)
    colours = _palette(names)
    sample_of = obs["sample"].astype(str)
    for ax, sample in zip(axes, shown):
        in_sample = (sample_of == sample).to_numpy()
        last = obs["frame"].to_numpy()[in_sample].max()
        cells = obs[in_sample & (obs["frame"].to_numpy() == last)]
        size = float(np.clip(3000 / max(len(cells), 1), 1, 30))
        for name in names:
            sel = (values.loc[cells.index] == name).to_numpy()
            if sel.any():
                ax.scatter(cells["x"][sel], cells["y"][sel], s=size, color=colours[name], rasterized=True)
        ax.set_aspect("equal")
        ax.invert_yaxis()
        ax.set(xticks=[], yticks=[])
        frame_note = f", frame {last}" if obs["frame"].nunique() > 1 else ""
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
    fig, axes = _figure(1, n, figsize=(3.2 * n, 3.4), squeeze=False)
    axes = axes[0]
    if adata.n_obs == 0 or groupby not in adata.obs or adata.obs["frame"].nunique() < 2:
        _say(
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


def napari_tracks(tracks):
    """Tracks in the layout of napari's tracks layer.

    Returns
    -------
    data : DataFrame
        ``track_id, t, y, x``, sorted by track then time (``viewer.add_tracks(data)``).
    graph : dict
        ``{daughter track_id: [mother track_id]}`` for ``add_tracks(..., graph=graph)``.
    """
    data = tracks[["track_id", "frame", "y", "x"]].rename(columns={"frame": "t"})
    data = data.sort_values(["track_id", "t"], kind="stable").reset_index(drop=True)
    graph = {}
    if "parent_track_id" in tracks:
        firsts = tracks.drop_duplicates("track_id")
        for track_id, parent in zip(firsts["track_id"], firsts["parent_track_id"]):
            if pd.notna(parent):
                graph[int(track_id)] = [int(parent)]
    return data, graph


def versions(*, model=None):
    """Versions of cytotrail, its key dependencies and the segmentation model (name, sha256)."""
    import json
    from importlib import metadata

    from cytotrail.segment.model import model_dir

    rows = []
    for package in (
        "cytotrail",
        "snakemake",
        "torch",
        "numpy",
        "pandas",
        "scikit-image",
        "trackpy",
        "anndata",
        "scanpy",
        "leidenalg",
    ):
        try:
            rows.append({"component": package, "version": metadata.version(package)})
        except metadata.PackageNotFoundError:
            rows.append({"component": package, "version": "not installed"})
    folder = model_dir(model)
    card = json.loads((folder / "config.json").read_text())
    rows.append(
        {
            "component": f"segmentation model {folder.name}",
            "version": f"sha256 {card.get('weights_sha256', '?')[:16]}",
        }
    )
    return pd.DataFrame(rows)
