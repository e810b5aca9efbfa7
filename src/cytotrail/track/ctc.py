"""Cell Tracking Challenge (CTC) interchange: ``res_track.txt`` / ``man_track.txt`` plus masks.

In the CTC format every mask value is a track label, and the text file has one line
``L B E P`` per track: label, first frame, last frame, parent label (0 for none). A CTC
track has no gaps: a cytotrail track that skips frames is written as several CTC tracks,
each later piece the child of the earlier one (as the CTC tools expect).

With ``fill_gaps=True`` the exporter bridges instead the frames a track skips (a gap the
linker closed, a mother or daughter missed around a division): each skipped frame gets the
mask of the track's detection nearest in time, shifted to the position interpolated between
the detections on either side, painted only on pixels that no detection of that frame holds
(the gap filling of TrackMate or Ultrack). A missed detection then costs the CTC scores
little instead of a missing object and a broken track.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from cytotrail.io import InputError, atomic_path

__all__ = ["ctc_table", "gap_fills", "read_ctc", "read_ctc_masks", "write_ctc"]


def ctc_table(tracks):
    """CTC tracks ``L, B, E, P`` and the CTC label of every row of ``tracks``.

    Parameters
    ----------
    tracks : DataFrame
        ``frame, track_id, parent_track_id`` (as from :func:`cytotrail.track.track`).

    Returns
    -------
    table : DataFrame
        Columns ``L, B, E, P`` sorted by ``L``.
    ctc_label : (N,) int64 ndarray
        The CTC label of each row of ``tracks``, in its row order.
    """
    for col in ("frame", "track_id"):
        if col not in tracks.columns:
            raise InputError(f"tracks table lacks column {col!r}")
    n = len(tracks)
    frame = tracks["frame"].to_numpy(np.int64)
    tid = tracks["track_id"].to_numpy(np.int64)
    if "parent_track_id" in tracks.columns:
        parent = tracks["parent_track_id"].astype("Int64").fillna(0).to_numpy(np.int64)
    else:
        parent = np.zeros(n, np.int64)
    order = np.lexsort((frame, tid))
    f, t = frame[order], tid[order]
    # a new CTC piece starts at each new track and after each gap inside a track
    new = np.ones(n, bool)
    new[1:] = (t[1:] != t[:-1]) | (f[1:] - f[:-1] > 1)
    piece = np.cumsum(new) - 1
    labels = np.arange(1, new.sum() + 1)
    if len(labels) > 65535:
        raise InputError(f"{len(labels)} CTC tracks do not fit 16-bit CTC labels")
    first = np.flatnonzero(new)
    last = np.append(first[1:], n) - 1
    first_piece_of_track = {}
    last_piece_of_track = {}
    for p, (i, j) in enumerate(zip(first, last)):
        first_piece_of_track.setdefault(int(t[i]), p)
        last_piece_of_track[int(t[j])] = p
    parents = np.zeros(len(labels), np.int64)
    parent_sorted = parent[order]
    for p, i in enumerate(first):
        track = int(t[i])
        if first_piece_of_track[track] != p:  # continuation after a gap
            parents[p] = labels[p - 1]
        elif parent_sorted[i] > 0 and int(parent_sorted[i]) in last_piece_of_track:
            parents[p] = labels[last_piece_of_track[int(parent_sorted[i])]]
    table = pd.DataFrame({"L": labels, "B": f[first], "E": f[last], "P": parents})
    ctc_label = np.empty(n, np.int64)
    ctc_label[order] = labels[piece]
    return table, ctc_label


def write_ctc(directory, labels, tracks, *, ground_truth=False, fill_gaps=False):
    """Write a tracking result in CTC format: ``res_track.txt`` and ``mask000.tif, ...``.

    Parameters
    ----------
    directory : str or Path
        Output folder (created).
    labels : (T, Y, X) int ndarray
        The label stack the detections came from.
    tracks : DataFrame
        ``frame, label, track_id, parent_track_id``; one row per (frame, label) of
        ``labels`` that belongs to a track. Labelled objects without a row are erased.
    ground_truth : bool
        Write ``man_track.txt`` and ``man_trackNNN.tif`` (the CTC ground-truth ``TRA``
        layout) instead.
    fill_gaps : bool
        Fill the frames a track skips with an interpolated object (see
        :func:`gap_fills`) instead of splitting the track there. Off by default: the masks
        are then exactly the labelled objects of ``tracks``.

    Returns
    -------
    DataFrame
        The ``L B E P`` table written; ``attrs["n_filled"]`` counts the filled objects.
    """
    import tifffile

    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise InputError(f"labels must be (T, Y, X), got shape {labels.shape}")
    if "label" not in tracks.columns:
        raise InputError("tracks table lacks column 'label': CTC export needs tracks made from labels")
    frame = tracks["frame"].to_numpy(np.int64)
    lab = tracks["label"].to_numpy(np.int64)
    if len(frame) and (frame.min() < 0 or frame.max() >= labels.shape[0]):
        raise InputError(
            f"tracks have frames {frame.min()}..{frame.max()} but labels have {labels.shape[0]} frame(s)"
        )
    n = len(tracks)
    if fill_gaps and n:
        fills, pixels = _fill_pixels(labels, tracks)
        columns = ["frame", "track_id"] + (["parent_track_id"] if "parent_track_id" in tracks else [])
        both = pd.concat([tracks[columns].reset_index(drop=True), fills[columns]], ignore_index=True)
        table, ctc_label = ctc_table(both)
        fill_label = ctc_label[n:]
        ctc_label = ctc_label[:n]
        fill_frame = fills["frame"].to_numpy(np.int64)
    else:
        table, ctc_label = ctc_table(tracks)
        fill_label = fill_frame = np.zeros(0, np.int64)
        pixels = []
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = "man_track" if ground_truth else "mask"
    digits = max(3, len(str(labels.shape[0] - 1)))
    order = np.argsort(frame, kind="stable")
    bounds = np.searchsorted(frame[order], np.arange(labels.shape[0] + 1))
    for t in range(labels.shape[0]):
        rows = order[bounds[t] : bounds[t + 1]]
        lut_size = int(max(labels[t].max(initial=0), lab[rows].max(initial=0))) + 1
        lut = np.zeros(lut_size, np.uint16)
        lut[lab[rows]] = ctc_label[rows]
        mask = lut[labels[t]]
        for k in np.flatnonzero(fill_frame == t).tolist():
            mask[pixels[k]] = fill_label[k]
        with atomic_path(directory / f"{name}{t:0{digits}d}.tif") as tmp:
            tifffile.imwrite(tmp, mask, compression="zlib")
    text = "".join(f"{r.L} {r.B} {r.E} {r.P}\n" for r in table.itertuples(index=False))
    with atomic_path(directory / ("man_track.txt" if ground_truth else "res_track.txt")) as tmp:
        Path(tmp).write_text(text)
    table.attrs["n_filled"] = len(fill_frame)
    return table


def gap_fills(tracks):
    """The frames each track skips, and how to fill them: source detection and position.

    Within a track, a detection at frame ``a`` followed by one at ``b > a + 1`` leaves
    frames ``a+1 .. b-1`` to fill, each from the nearer of the two (the earlier on a tie)
    and placed on the straight line between them. Around a division whose daughters start
    later than one frame after the mother's last detection, the mother is extended up to the
    frame before the first daughter appears (towards the midpoint of the daughters that
    appear first; it stays put when only one does), and a daughter that appears later than
    its sister is filled from the frame its sister appears (from the mother's position
    towards its own first one).

    Parameters
    ----------
    tracks : DataFrame
        ``frame, track_id, y, x`` and optionally ``parent_track_id``; the index identifies
        detections.

    Returns
    -------
    DataFrame
        One row per filled object: ``frame, track_id, parent_track_id`` (Int64), ``source``
        (index label of the detection whose mask is used), ``y, x`` (its position in the
        filled frame).
    """
    for col in ("frame", "track_id", "y", "x"):
        if col not in tracks.columns:
            raise InputError(f"tracks table lacks column {col!r}")
    n = len(tracks)
    frame = tracks["frame"].to_numpy(np.int64)
    tid = tracks["track_id"].to_numpy(np.int64)
    pos = tracks[["y", "x"]].to_numpy(np.float64)
    if "parent_track_id" in tracks.columns:
        parent = tracks["parent_track_id"].astype("Int64").fillna(0).to_numpy(np.int64)
    else:
        parent = np.zeros(n, np.int64)
    rows = []  # (frame, track_id, parent, source row, y, x)

    def fill(t0, p0, t1, p1, src_of, track, par):
        for t in range(t0 + 1, t1):
            w = (t - t0) / (t1 - t0)
            y, x = p0 + w * (p1 - p0)
            rows.append((t, track, par, src_of(t), y, x))

    order = np.lexsort((frame, tid))
    f, t_, p = frame[order], tid[order], pos[order]
    same = t_[1:] == t_[:-1]
    for k in np.flatnonzero(same & (f[1:] - f[:-1] > 1)).tolist():
        a, b = order[k], order[k + 1]
        fill(
            f[k],
            p[k],
            f[k + 1],
            p[k + 1],
            lambda t, a=a, b=b: a if t - frame[a] <= frame[b] - t else b,
            int(t_[k]),
            parent[a],
        )
    # divisions: mother -> daughters that start later than one frame after it ends
    starts = np.r_[0, np.flatnonzero(~same) + 1]
    stops = np.r_[starts[1:], n]
    first = dict(zip(t_[starts].tolist(), order[starts].tolist()))
    last = dict(zip(t_[starts].tolist(), order[stops - 1].tolist()))
    daughters = {}
    for _track, i in first.items():
        if parent[i] > 0 and int(parent[i]) in last:
            daughters.setdefault(int(parent[i]), []).append(i)
    for mother, ds in sorted(daughters.items()):
        m = last[mother]
        t_first = min(frame[d] for d in ds)
        early = [d for d in ds if frame[d] == t_first]
        if t_first > frame[m] + 1:
            target = pos[early].mean(axis=0) if len(early) >= 2 else pos[m]
            fill(frame[m], pos[m], t_first, target, lambda t, m=m: m, mother, parent[m])
            w = (t_first - 1 - frame[m]) / (t_first - frame[m])
            ref = pos[m] + w * (target - pos[m])
        else:
            ref = pos[m]
        for d in ds:
            if frame[d] > t_first:
                fill(t_first - 1, ref, frame[d], pos[d], lambda t, d=d: d, int(tid[d]), parent[d])
    out = pd.DataFrame(rows, columns=["frame", "track_id", "parent_track_id", "source", "y", "x"])
    out = out.sort_values(["frame", "track_id"], kind="stable").reset_index(drop=True)
    out["source"] = tracks.index.to_numpy()[out["source"].to_numpy(np.int64)]
    par = out["parent_track_id"].to_numpy(np.int64)
    out["parent_track_id"] = pd.arrays.IntegerArray(par, par <= 0)
    return out


def _fill_pixels(labels, tracks, *, min_fraction=0.25):
    """Gap fills that keep at least ``min_fraction`` of their source mask, and their pixels.

    Each fill is the source detection's mask shifted by whole pixels from the source's
    centroid to the interpolated position, cut to the frame and to pixels no detection of
    ``tracks`` (nor an earlier fill, by track id) holds in that frame.
    """
    from scipy import ndimage as ndi

    shape = labels.shape[1:]
    tracks = tracks.reset_index(drop=True)
    frame = tracks["frame"].to_numpy(np.int64)
    lab = tracks["label"].to_numpy(np.int64)
    # centroids from the masks themselves, so that fills line up with what is painted
    cent = np.full((len(tracks), 2), np.nan)
    boxes = {}
    coords = {}

    def pixels_of(row):
        if row not in coords:
            t, l_ = int(frame[row]), int(lab[row])
            if t not in boxes:
                boxes[t] = ndi.find_objects(labels[t])
            box = boxes[t][l_ - 1] if 0 < l_ <= len(boxes[t]) else None
            if box is None:
                coords[row] = (np.zeros(0, np.int64), np.zeros(0, np.int64))
            else:
                yy, xx = np.nonzero(labels[t][box] == l_)
                coords[row] = (yy + box[0].start, xx + box[1].start)
        return coords[row]

    table = tracks[["frame", "track_id"]].copy()
    if "parent_track_id" in tracks.columns:
        table["parent_track_id"] = tracks["parent_track_id"]
    rough = gap_fills(table.assign(y=0.0, x=0.0))
    if not len(rough):
        return rough, []
    # only the detections at the ends of gaps need their centroids
    for row in _gap_ends(table):
        yy, xx = pixels_of(row)
        if len(yy):
            cent[row] = (yy.mean(), xx.mean())
    table[["y", "x"]] = cent  # NaN where unknown: fills that need it are skipped below
    fills = gap_fills(table)
    keep = np.zeros(len(fills), bool)
    pixels = []
    by_frame = np.argsort(frame, kind="stable")
    bounds = np.searchsorted(frame[by_frame], np.arange(labels.shape[0] + 1))
    for t, group in fills.groupby("frame", sort=True):
        rows = by_frame[bounds[t] : bounds[t + 1]]
        taken = np.isin(labels[t], lab[rows]) if len(rows) else np.zeros(shape, bool)
        for k, r in zip(group.index.tolist(), group.itertuples(index=False)):
            yy, xx = pixels_of(r.source)
            if len(yy) == 0 or not np.isfinite(r.y + r.x):
                pixels.append(None)
                continue
            src = cent[r.source]
            dy, dx = int(round(r.y - src[0])), int(round(r.x - src[1]))
            py, px = yy + dy, xx + dx
            ok = (py >= 0) & (py < shape[0]) & (px >= 0) & (px < shape[1])
            py, px = py[ok], px[ok]
            free = ~taken[py, px]
            py, px = py[free], px[free]
            if len(py) >= max(1, min_fraction * len(yy)):
                taken[py, px] = True
                keep[k] = True
                pixels.append((py, px))
            else:
                pixels.append(None)
    pixels = [p for p, k in zip(pixels, keep) if k]
    return fills[keep].reset_index(drop=True), pixels


def _gap_ends(table):
    """Rows of the detections at either end of a within-track gap, and each track's ends."""
    frame = table["frame"].to_numpy(np.int64)
    tid = table["track_id"].to_numpy(np.int64)
    order = np.lexsort((frame, tid))
    f, t_ = frame[order], tid[order]
    same = t_[1:] == t_[:-1]
    gap = np.flatnonzero(same & (f[1:] - f[:-1] > 1))
    ends = set(order[gap].tolist()) | set(order[gap + 1].tolist())
    starts = np.r_[0, np.flatnonzero(~same) + 1]
    stops = np.r_[starts[1:], len(f)]
    # every track's first and last detection (division gaps)
    ends |= set(order[starts].tolist()) | set(order[stops - 1].tolist())
    return table.index[sorted(ends)]


def read_ctc(directory):
    """Read a CTC tracking folder (``man_track.txt`` or ``res_track.txt`` plus masks).

    Parameters
    ----------
    directory : str or Path
        A folder with ``res_track.txt`` + ``mask###.tif`` or ``man_track.txt`` +
        ``man_track###.tif`` (e.g. a CTC ``01_GT/TRA`` folder).

    Returns
    -------
    labels : (T, Y, X) uint32 ndarray
        Mask value == CTC track label.
    tracks : DataFrame
        One row per object per frame: ``frame, label, y, x, area, track_id`` (the CTC
        label), ``parent_track_id`` (Int64), ``lineage_id``, ``generation``.
    """
    from cytotrail.track.detections import detections_from_labels
    from cytotrail.track.tracking import _lineage

    labels, txt = _read_masks(directory)
    directory = Path(directory)
    try:
        lbep = np.loadtxt(directory / txt, dtype=np.int64, ndmin=2)
    except ValueError as err:
        raise InputError(f"{directory / txt}: not a table of 4 integers per line ({err})") from err
    if lbep.size and lbep.shape[1] != 4:
        raise InputError(f"{directory / txt}: expected 4 columns L B E P, found {lbep.shape[1]}")
    tracks = detections_from_labels(labels).drop(columns="touches_border")
    tracks["track_id"] = tracks["label"]
    parent_of = dict(zip(lbep[:, 0].tolist(), lbep[:, 3].tolist())) if lbep.size else {}
    unknown = sorted(set(tracks["label"].unique().tolist()) - set(parent_of))
    if unknown:
        raise InputError(f"{directory}: mask label(s) {unknown[:5]} missing from {txt}")
    parents = tracks["label"].map(parent_of).to_numpy(np.int64)
    tracks["parent_track_id"] = pd.arrays.IntegerArray(parents, parents <= 0)
    lineage, generation = _lineage(tracks["track_id"].to_numpy(np.int64), parents)
    tracks["lineage_id"] = lineage
    tracks["generation"] = generation
    return labels, tracks


def read_ctc_masks(directory):
    """The masks of a CTC tracking folder as one (T, Y, X) uint32 stack (value == CTC label).

    The same folders as :func:`read_ctc`; its ``man_track.txt``/``res_track.txt`` is only
    looked for, not read.
    """
    return _read_masks(directory)[0]


def _read_masks(directory):
    """(labels, name of the track file) of a CTC folder; see :func:`read_ctc`."""
    import tifffile

    directory = Path(directory)
    for txt, prefix in (("man_track.txt", "man_track"), ("res_track.txt", "mask")):  # noqa: B007 (used after the loop)
        if (directory / txt).is_file():
            break
    else:
        raise InputError(f"{directory}: no man_track.txt or res_track.txt (not a CTC tracking folder)")
    pattern = re.compile(rf"^{prefix}(\d+)\.tiff?$")
    files = sorted((int(m.group(1)), p) for p in directory.iterdir() if (m := pattern.match(p.name)))
    if not files:
        raise InputError(f"{directory}: no {prefix}###.tif masks beside {txt}")
    n_frames = files[-1][0] + 1
    first = tifffile.imread(files[0][1])
    labels = np.zeros((n_frames, *first.shape[-2:]), np.uint32)
    for t, path in files:
        labels[t] = np.squeeze(tifffile.imread(path))
    return labels, txt
