"""Tracks as a GEFF graph: the graph exchange format for tracking (geff 1.x).

One node per detection (``t, y, x``, ``track_id``, ``lineage_id``, ``generation``,
``seg_id``: the cell's label in the sample's label stack), one edge from each detection
to the next detection of its track, and one *division* edge from the last detection of
a mother track to the first detection of each daughter track (edge property
``division``). The file is a zarr (format 2) group that TrackMate, Ultrack, Trackastra,
motile-tracker and the ``geff`` package read; it is written with numpy and zarr alone.

>>> from cytotrail.synth import make_timelapse
>>> from cytotrail.track import detections_from_labels, track
>>> tracks = track(detections_from_labels(make_timelapse(n_frames=4, shape=(64, 64),
...                                                      n_cells=5, seed=1).labels))
>>> graph = tracks_to_graph(tracks)
>>> len(graph["node_ids"]) == len(tracks)
True
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cytotrail.checks import number
from cytotrail.io import InputError

__all__ = ["GEFF_VERSION", "tracks_to_graph", "geff_metadata", "write_geff"]

GEFF_VERSION = "1.3"

_REQUIRED = ("frame", "y", "x", "track_id")
# node properties written when the track table has them: column -> (property, description)
_NODE_PROPS = {
    "frame": ("t", "frame index"),
    "y": ("y", "centroid row"),
    "x": ("x", "centroid column"),
    "track_id": ("track_id", "cytotrail track id: one cell between divisions"),
    "lineage_id": ("lineage_id", "track id of the lineage's root ancestor"),
    "generation": ("generation", "divisions since the lineage's root (0 for roots)"),
    "label": ("seg_id", "the cell's label in this frame of the sample's label stack"),
    "area": ("area", "area in px^2"),
}


def tracks_to_graph(tracks):
    """Nodes, edges and their properties of a track table, as arrays.

    Parameters
    ----------
    tracks : DataFrame
        One row per detection of one sample, as returned by :func:`cytotrail.track.track`:
        ``frame, y, x, track_id`` and optionally ``parent_track_id``, ``lineage_id``,
        ``generation``, ``label``, ``area``. Not modified.

    Returns
    -------
    dict
        ``node_ids`` (N,) int64 (the detections in (track_id, frame) order, numbered 0..N-1),
        ``node_props`` {name: (N,) ndarray}, ``edge_ids`` (E, 2) int64 (source, target),
        ``edge_props`` {"division": (E,) bool}, ``descriptions`` {name: text} and
        ``tracklets_valid`` / ``lineages_valid``: whether ``track_id`` and ``lineage_id``
        obey GEFF's tracklet and lineage definitions (a mother with a single daughter, or
        a daughter whose mother is missing, breaks them).

    Raises
    ------
    InputError
        A required column is missing or not numeric, the table holds several samples, a
        track has two detections in one frame or is its own parent.
    """
    missing = [c for c in _REQUIRED if c not in tracks.columns]
    if missing:
        raise InputError(f"track table has no column(s) {missing}; GEFF needs {list(_REQUIRED)}")
    if "sample" in tracks.columns and tracks["sample"].nunique() > 1:
        raise InputError(
            f"track table holds samples {sorted(tracks['sample'].unique())}; a GEFF "
            "file holds one sample's graph: export each sample on its own"
        )
    for column in _REQUIRED:
        values = pd.to_numeric(tracks[column], errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise InputError(
                f"track table column {column!r}: {len(bad)} value(s) are not finite numbers "
                f"(the first: {tracks[column].iloc[bad[0]]!r} in row {bad[0]})"
            )
    if "parent_track_id" in tracks.columns:
        own = tracks["parent_track_id"].astype("Int64") == tracks["track_id"].astype(np.int64)
        if own.fillna(False).any():
            raise InputError(
                f"track table: track(s) {sorted(set(tracks.loc[own.fillna(False), 'track_id']))[:3]} "
                "are their own parent"
            )
    table = tracks.sort_values(["track_id", "frame"], kind="stable").reset_index(drop=True)
    if table.duplicated(["track_id", "frame"]).any():
        bad = table.loc[table.duplicated(["track_id", "frame"]), "track_id"].unique()[:3].tolist()
        raise InputError(f"track table: track(s) {bad} have two detections in one frame")
    n = len(table)
    node_ids = np.arange(n, dtype=np.int64)
    track_ids = table["track_id"].to_numpy(np.int64)

    same_track = track_ids[1:] == track_ids[:-1]
    links = np.stack([node_ids[:-1][same_track], node_ids[1:][same_track]], axis=1)

    first = table.groupby("track_id", sort=False).head(1)
    last = table.groupby("track_id", sort=False).tail(1)
    last_node = pd.Series(last.index.to_numpy(np.int64), index=last["track_id"].to_numpy())
    parents = pd.Series(dtype="Int64")
    if "parent_track_id" in table.columns:
        parents = pd.Series(first["parent_track_id"].to_numpy(), index=first.index).astype("Int64")
    has_parent = parents.notna()
    parent_ids = parents[has_parent].astype(np.int64)
    known = parent_ids.isin(last_node.index)
    daughters = parent_ids[known]
    divisions = np.stack(
        [last_node.loc[daughters.to_numpy()].to_numpy(np.int64), daughters.index.to_numpy(np.int64)], axis=1
    ).reshape(-1, 2)
    edge_ids = np.concatenate([links.reshape(-1, 2), divisions]).astype(np.int64)
    is_division = np.concatenate([np.zeros(len(links), bool), np.ones(len(divisions), bool)])

    node_props, descriptions = {}, {}
    for column, (name, text) in _NODE_PROPS.items():
        if column in table.columns:
            values = table[column].to_numpy()
            if name in ("y", "x"):
                values = values.astype(np.float64)
            elif not np.issubdtype(values.dtype, np.number):
                continue
            elif np.issubdtype(values.dtype, np.integer):
                values = values.astype(np.int64)
            node_props[name] = values
            descriptions[name] = text
    n_children = daughters.value_counts()
    tracklets_valid = bool(known.all() and not (n_children == 1).any())
    return {
        "node_ids": node_ids,
        "node_props": node_props,
        "edge_ids": edge_ids,
        "edge_props": {"division": is_division},
        "descriptions": descriptions,
        "tracklets_valid": tracklets_valid,
        "lineages_valid": bool(known.all()) and "lineage_id" in node_props,
    }


def _prop_metadata(name, values, description=None, unit=None):
    return {
        "identifier": name,
        "dtype": np.dtype(values.dtype).name,
        "varlength": False,
        "unit": unit,
        "name": None,
        "description": description,
    }


def geff_metadata(graph, *, pixel_size_um=None, frame_interval_s=None):
    """The ``geff`` attribute of a graph from :func:`tracks_to_graph`, as a dict.

    Parameters
    ----------
    graph : dict
        Output of :func:`tracks_to_graph`.
    pixel_size_um : float, optional
        Pixel size: the y and x axes get unit ``micrometer`` and this scale (default:
        unit ``pixel``).
    frame_interval_s : float, optional
        Time between frames: the t axis gets unit ``second`` and this scale (default:
        unit ``frame``).
    """
    for value, name in ((pixel_size_um, "pixel_size_um"), (frame_interval_s, "frame_interval_s")):
        if value is not None:
            number(value, name, above=0)
    props = graph["node_props"]

    def axis(name, kind, unit, scale, scaled_unit):
        values = props[name]
        return {
            "name": name,
            "type": kind,
            "unit": unit,
            "min": float(values.min()) if len(values) else None,
            "max": float(values.max()) if len(values) else None,
            "scale": scale,
            "scaled_unit": scaled_unit if scale is not None else None,
            "offset": None,
        }

    axes = [
        axis("t", "time", "frame", frame_interval_s, "second"),
        axis("y", "space", "pixel", pixel_size_um, "micrometer"),
        axis("x", "space", "pixel", pixel_size_um, "micrometer"),
    ]
    track_props = {}
    if graph["tracklets_valid"]:
        track_props["tracklet"] = "track_id"
    if graph["lineages_valid"]:
        track_props["lineage"] = "lineage_id"
    from cytotrail import __version__

    units = {"t": "frame", "y": "pixel", "x": "pixel", "area": "pixel^2"}
    return {
        "geff_version": GEFF_VERSION,
        "directed": True,
        "axes": axes,
        "node_props_metadata": {
            name: _prop_metadata(name, values, graph["descriptions"].get(name), units.get(name))
            for name, values in props.items()
        },
        "edge_props_metadata": {
            name: _prop_metadata(name, values, "True for a mother-to-daughter edge")
            for name, values in graph["edge_props"].items()
        },
        "track_node_props": track_props or None,
        "display_hints": {
            "display_horizontal": "x",
            "display_vertical": "y",
            "display_depth": None,
            "display_time": "t",
        },
        "extra": {"written_by": f"cytotrail {__version__}"},
    }


def write_geff(path, tracks, *, pixel_size_um=None, frame_interval_s=None):
    """Write one sample's tracks as a GEFF zarr group (zarr format 2), atomically.

    Parameters
    ----------
    path : str or Path
        Output folder, conventionally ``NAME.geff``; replaced if it exists.
    tracks : DataFrame
        One sample's track table (see :func:`tracks_to_graph`).
    pixel_size_um, frame_interval_s : float, optional
        Physical scales recorded on the axes (see :func:`geff_metadata`).

    Returns
    -------
    dict
        The graph written (see :func:`tracks_to_graph`).
    """
    from cytotrail.export._files import atomic_dir, zarr_array, zarr_group

    graph = tracks_to_graph(tracks)
    meta = geff_metadata(graph, pixel_size_um=pixel_size_um, frame_interval_s=frame_interval_s)
    with atomic_dir(path) as tmp:
        root = zarr_group(tmp)
        for kind, ids, props in (
            ("nodes", graph["node_ids"], graph["node_props"]),
            ("edges", graph["edge_ids"], graph["edge_props"]),
        ):
            group = root.require_group(kind)
            zarr_array(group, "ids", ids)
            prop_group = group.require_group("props")
            for name, values in props.items():
                zarr_array(prop_group.require_group(name), "values", values)
        root.attrs["geff"] = meta
    return graph
