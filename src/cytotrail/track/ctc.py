"""Cell Tracking Challenge (CTC) interchange: ``res_track.txt`` / ``man_track.txt`` plus masks.

In the CTC format every mask value is a track label, and the text file has one line
``L B E P`` per track: label, first frame, last frame, parent label (0 for none). A CTC
track has no gaps: a cytotrail track that skips frames is written as several CTC tracks,
each later piece the child of the earlier one (as the CTC tools expect).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from cytotrail.io import InputError, atomic_path

__all__ = ["ctc_table", "read_ctc", "write_ctc"]


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


def write_ctc(directory, labels, tracks, *, ground_truth=False):
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

    Returns
    -------
    DataFrame
        The ``L B E P`` table written.
    """
    import tifffile

    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise InputError(f"labels must be (T, Y, X), got shape {labels.shape}")
    if "label" not in tracks.columns:
        raise InputError("tracks table lacks column 'label': CTC export needs tracks made from labels")
    table, ctc_label = ctc_table(tracks)
    frame = tracks["frame"].to_numpy(np.int64)
    lab = tracks["label"].to_numpy(np.int64)
    if len(frame) and (frame.min() < 0 or frame.max() >= labels.shape[0]):
        raise InputError(f"tracks have frames {frame.min()}..{frame.max()} but labels have "
                         f"{labels.shape[0]} frame(s)")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = "man_track" if ground_truth else "mask"
    digits = max(3, len(str(labels.shape[0] - 1)))
    order = np.argsort(frame, kind="stable")
    bounds = np.searchsorted(frame[order], np.arange(labels.shape[0] + 1))
    for t in range(labels.shape[0]):
        rows = order[bounds[t]:bounds[t + 1]]
        lut_size = int(max(labels[t].max(initial=0), lab[rows].max(initial=0))) + 1
        lut = np.zeros(lut_size, np.uint16)
        lut[lab[rows]] = ctc_label[rows]
        mask = lut[labels[t]]
        with atomic_path(directory / f"{name}{t:0{digits}d}.tif") as tmp:
            tifffile.imwrite(tmp, mask, compression="zlib")
    text = "".join(f"{r.L} {r.B} {r.E} {r.P}\n" for r in table.itertuples(index=False))
    with atomic_path(directory / ("man_track.txt" if ground_truth else "res_track.txt")) as tmp:
        Path(tmp).write_text(text)
    return table


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
    import tifffile

    from cytotrail.track.detections import detections_from_labels
    from cytotrail.track.tracking import _lineage

    directory = Path(directory)
    for txt, prefix in (("man_track.txt", "man_track"), ("res_track.txt", "mask")):
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
