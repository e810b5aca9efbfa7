"""Scores of a tracking result against ground truth on the same detections."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cytotrail.io import InputError

__all__ = ["division_events", "links", "tracking_scores"]


def links(table, *, track_column="track_id"):
    """Set of ``(row, next_row)`` index pairs of consecutive detections of each track.

    Parameters
    ----------
    table : DataFrame
        ``frame`` and ``track_column``; the index identifies detections.
    """
    t = table[["frame", track_column]].sort_values([track_column, "frame"], kind="stable")
    ids = t[track_column].to_numpy()
    idx = t.index.to_numpy()
    same = ids[1:] == ids[:-1]
    return set(zip(idx[:-1][same].tolist(), idx[1:][same].tolist()))


def division_events(table, *, track_column="track_id", parent_column="parent_track_id"):
    """Set of ``(mother_last_row, frozenset(daughter_first_rows))`` of each division.

    A division is a track with at least one daughter track (a track whose parent it is)
    among the rows of ``table``.
    """
    t = table.sort_values([track_column, "frame"], kind="stable")
    g = t.groupby(track_column, sort=True)
    first_row = pd.Series(g.head(1).index.to_numpy(), index=g.head(1)[track_column].to_numpy())
    last_row = pd.Series(g.tail(1).index.to_numpy(), index=g.tail(1)[track_column].to_numpy())
    firsts = g.head(1)
    parents = firsts[parent_column]
    has = parents.notna() & parents.isin(first_row.index)
    events = {}
    for daughter, mother in zip(firsts.loc[has, track_column].to_numpy(), parents[has].astype(np.int64)):
        events.setdefault(int(mother), set()).add(first_row[daughter])
    return {(last_row[m], frozenset(d)) for m, d in events.items()}


def _f1(truth, found):
    tp = len(truth & found)
    precision = tp / len(found) if found else 1.0
    recall = tp / len(truth) if truth else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "tp": tp,
        "n_truth": len(truth),
        "n_found": len(found),
    }


def tracking_scores(truth, tracks, *, truth_columns=("track_id", "parent_track_id")):
    """Link and division precision, recall and F1 of ``tracks`` against ``truth``.

    Parameters
    ----------
    truth : DataFrame
        Ground truth with ``frame`` and the ``truth_columns`` (track id, parent id).
    tracks : DataFrame
        A tracking result on (a subset of) the same detections, sharing ``truth``'s index
        (as :func:`cytotrail.track.track` keeps it), with ``track_id, parent_track_id``.

    Returns
    -------
    dict
        ``link`` and ``division``: dicts of ``precision, recall, f1, tp, n_truth, n_found``.
        A link is a pair of consecutive detections of one track; a division matches when the
        mother's last detection and the set of daughters' first detections are the same.
    """
    missing = tracks.index.difference(truth.index)
    if len(missing):
        raise InputError(f"{len(missing)} row(s) of the tracks are not in the truth table (by index)")
    tcol, pcol = truth_columns
    gt = truth.loc[tracks.index, ["frame", tcol, pcol]].rename(
        columns={tcol: "track_id", pcol: "parent_track_id"}
    )
    return {
        "link": _f1(links(gt), links(tracks)),
        "division": _f1(division_events(gt), division_events(tracks)),
    }
