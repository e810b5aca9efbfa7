"""The figures of one sample: segmentation outlines, frame QC and close-ups, tracks,
lineage trees, and the napari export of its tracks."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cytotrail.report._draw import contrast, outlines, say, subplots


def _n_nuclei(labels):
    """Number of objects of a label image (0 is background, when present)."""
    ids = np.unique(labels)
    return len(ids) - int(ids.size > 0 and ids[0] == 0)


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
    fig, axes = subplots(1, len(frames) + 2, figsize=(4 * (len(frames) + 2), 4.2))
    counts = [_n_nuclei(f) for f in labels]
    for ax, t in zip(axes, frames):
        rgb = outlines(contrast(nuclear[t]), labels[t], (1.0, 0.2, 0.2), None if cells is None else cells[t])
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title(f"frame {t}: {counts[t]} nuclei")
        ax.set_axis_off()
    if n_total == 1:
        say(axes[-2], f"a single image: {counts[0]} nuclei")
    else:
        axes[-2].plot(range(n_total), counts, marker="o", ms=3)
        axes[-2].set(xlabel="frame", ylabel="nuclei", title="nuclei per frame")
    areas = nucleus_areas(labels)
    if len(areas):
        axes[-1].hist(areas, bins=30, color="0.4")
        axes[-1].set(xlabel="area (px)", ylabel="nuclei", title="nucleus size")
    else:
        say(axes[-1], "no nuclei found")
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
    fig, (ax_xy, ax_len) = subplots(1, 2, figsize=(10, 4.6))
    if len(tracks) == 0 or _single_frame(tracks["frame"]):
        say(ax_xy, "no cells: nothing to track" if len(tracks) == 0 else "a single image: nothing to track")
        say(ax_len, "no tracks")
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
    fig, axes = subplots(1, max(len(worst), 1), figsize=(4 * max(len(worst), 1), 4.2), squeeze=False)
    axes = axes[0]
    if len(worst) == 0:
        say(axes[0], "no frames")
    for ax, row in zip(axes, worst.itertuples()):
        t = row.frame
        rgb = outlines(contrast(nuclear[t]), labels[t], (1.0, 0.8, 0.1), None if cells is None else cells[t])
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
    counts = np.array([_n_nuclei(labels[y : y + size, x : x + size]) for y, x in corners])
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
    fig, axes = subplots(1, len(windows), figsize=(4 * len(windows), 4.2), squeeze=False)
    grey = contrast(nuclear)
    for ax, (name, (y, x)) in zip(axes[0], windows.items()):
        crop = labels[y : y + size, x : x + size]
        window = (slice(y, y + size), slice(x, x + size))
        rgb = outlines(grey[window], crop, (1.0, 0.8, 0.1), None if cells is None else cells[window])
        ax.imshow(rgb, interpolation="nearest")
        n = _n_nuclei(crop)
        ax.set_title(f"{name} (y {y}, x {x}): {n} {'nucleus' if n == 1 else 'nuclei'}", fontsize=9)
        ax.set_axis_off()
    fig.suptitle(f"{title}: close-ups at full resolution" if title else "close-ups at full resolution")
    fig.tight_layout()
    return fig


def lineage_figure(tracks, *, max_lineages=12, title=""):
    """Lineage trees of the largest lineages: a line per track over its frames, divisions joined."""
    fig, ax = subplots(figsize=(9, 5))
    if len(tracks) == 0 or "lineage_id" not in tracks or _single_frame(tracks["frame"]):
        if len(tracks) == 0:
            say(ax, "no tracks")
        else:
            say(ax, "a single image: no lineages" if "lineage_id" in tracks else "no lineage information")
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
        say(ax, "no divisions were found")
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
