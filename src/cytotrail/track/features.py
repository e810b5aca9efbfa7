"""Per-track features: lifetime, displacement, speed, mean squared displacement, divisions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cytotrail.io import InputError

__all__ = ["track_features"]


def track_features(tracks, *, pixel_size_um=None, frame_interval=None, max_lag=10):
    """One row per track: lifetime, motion and division timing.

    Parameters
    ----------
    tracks : DataFrame
        Output of :func:`cytotrail.track.track`: ``frame, y, x, track_id`` and optionally
        ``parent_track_id, lineage_id, generation, border_track, area, mean_intensity``.
        With a ``sample`` column, tracks are told apart by ``(sample, track_id)``.
    pixel_size_um : float, optional
        Distances in µm (column suffix ``um``) instead of px.
    frame_interval : float, optional
        Time between frames in the user's time unit (column suffix ``per_t``); otherwise
        per frame.
    max_lag : int
        Largest lag (frames) of the mean squared displacement curve.

    Returns
    -------
    DataFrame
        Sorted by (``sample``,) ``track_id``. Columns: ``first_frame, last_frame,
        n_detections, lifetime_frames, n_missed_frames, path_length_<u>,
        displacement_<u>, straightness, speed_<u>_per_<t>, msd_lag1_<u>2, msd_alpha``
        (the exponent of MSD ~ lag^alpha, NaN with fewer than 3 lags), ``parent_track_id,
        lineage_id, generation, n_daughters, divides`` (the track ends in a division),
        ``born_by_division, division_frame`` (<NA> if it does not divide),
        ``cell_cycle_frames`` (birth by division to division, <NA> otherwise) and, when
        present, ``border_track, mean_area, mean_intensity``. Units in ``attrs["units"]``.
    """
    needed = ["frame", "y", "x", "track_id"]
    if not isinstance(tracks, pd.DataFrame):
        raise InputError(f"tracks must be a DataFrame, got {type(tracks).__name__}")
    missing = [c for c in needed if c not in tracks.columns]
    if missing:
        raise InputError(f"tracks table lacks column(s) {missing}; run cytotrail.track.track first")
    for value, name in ((pixel_size_um, "pixel_size_um"), (frame_interval, "frame_interval")):
        if value is not None and not (np.isfinite(value) and value > 0):
            raise InputError(f"{name} must be a positive number, got {value!r}")
    scale = float(pixel_size_um or 1.0)
    dt = float(frame_interval or 1.0)
    lu = "um" if pixel_size_um else "px"
    tu = "t" if frame_interval else "frame"

    keys = ["sample", "track_id"] if "sample" in tracks.columns else ["track_id"]
    t = tracks.sort_values([*keys, "frame"], kind="stable")
    key = t.groupby(keys, sort=True).ngroup().to_numpy()
    n_tracks = int(key.max()) + 1 if len(key) else 0
    frame = t["frame"].to_numpy(np.int64)
    y = t["y"].to_numpy(np.float64) * scale
    x = t["x"].to_numpy(np.float64) * scale
    g = t.groupby(key, sort=True)
    i_first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.zeros(0, np.int64)
    i_last = np.r_[i_first[1:] - 1, len(key) - 1] if len(key) else np.zeros(0, np.int64)
    first, last = t.iloc[i_first], t.iloc[i_last]
    out = pd.DataFrame({k: first[k].to_numpy() for k in keys})
    out["first_frame"] = first["frame"].to_numpy(np.int64)
    out["last_frame"] = last["frame"].to_numpy(np.int64)
    out["n_detections"] = np.bincount(key, minlength=n_tracks)
    out["lifetime_frames"] = out["last_frame"] - out["first_frame"] + 1
    out["n_missed_frames"] = out["lifetime_frames"] - out["n_detections"]

    same = np.zeros(len(key), bool)
    same[1:] = key[1:] == key[:-1]
    step = np.zeros(len(key))
    step[1:] = np.hypot(np.diff(y), np.diff(x))
    step[~same] = 0.0
    path = np.bincount(key, weights=step, minlength=n_tracks)
    disp = np.hypot(y[i_last] - y[i_first], x[i_last] - x[i_first])
    duration = (out["last_frame"] - out["first_frame"]).to_numpy(np.float64) * dt
    with np.errstate(invalid="ignore", divide="ignore"):
        out[f"path_length_{lu}"] = path
        out[f"displacement_{lu}"] = disp
        out["straightness"] = np.where(path > 0, disp / np.where(path > 0, path, 1), np.nan)
        moving = duration > 0
        out[f"speed_{lu}_per_{tu}"] = np.where(moving, path / np.where(moving, duration, 1), np.nan)
    msd1, alpha = _msd(key, frame, y, x, n_tracks, max_lag)
    out[f"msd_lag1_{lu}2"] = msd1
    out["msd_alpha"] = alpha

    # lineage and divisions
    if "parent_track_id" in t.columns:
        parent = first["parent_track_id"].astype("Int64").to_numpy()
    else:
        parent = pd.array([pd.NA] * n_tracks, dtype="Int64")
    out["parent_track_id"] = pd.array(parent, dtype="Int64")
    for col in ("lineage_id", "generation"):
        out[col] = (
            first[col].to_numpy()
            if col in t.columns
            else (out["track_id"].to_numpy() if col == "lineage_id" else np.zeros(n_tracks, np.int64))
        )
    group_keys = keys[:-1]
    parent_key = out[group_keys + ["parent_track_id"]].dropna()
    parent_key = parent_key.rename(columns={"parent_track_id": "track_id"})
    parent_key["track_id"] = parent_key["track_id"].astype(np.int64)
    counts = parent_key.groupby(group_keys + ["track_id"]).size().rename("n_daughters")
    out = out.merge(counts, how="left", left_on=keys, right_index=True)
    out["n_daughters"] = out["n_daughters"].fillna(0).astype(np.int64)
    out["divides"] = out["n_daughters"] >= 1
    out["born_by_division"] = out["parent_track_id"].notna().to_numpy()
    out["division_frame"] = pd.array(np.where(out["divides"], out["last_frame"], 0), dtype="Int64")
    out.loc[~out["divides"], "division_frame"] = pd.NA
    cycle = out["last_frame"] - out["first_frame"] + 1
    full = out["divides"] & out["born_by_division"]
    out["cell_cycle_frames"] = pd.array(np.where(full, cycle, 0), dtype="Int64")
    out.loc[~full, "cell_cycle_frames"] = pd.NA
    if "border_track" in t.columns:
        out["border_track"] = g["border_track"].any().to_numpy()
    if "area" in t.columns:
        out["mean_area"] = g["area"].mean().to_numpy() * scale**2
    if "mean_intensity" in t.columns:
        out["mean_intensity"] = g["mean_intensity"].mean().to_numpy()
    out = out.reset_index(drop=True)
    out.attrs["units"] = {
        "length": lu,
        "time": tu,
        "pixel_size_um": pixel_size_um,
        "frame_interval": frame_interval,
    }
    return out


def _msd(key, frame, y, x, n_tracks, max_lag):
    """MSD at lag 1 and the exponent alpha of MSD ~ lag^alpha per track (lags in frames)."""
    sums = np.zeros((n_tracks, max_lag + 1))
    counts = np.zeros((n_tracks, max_lag + 1))
    for k in range(1, max_lag + 1):
        if k >= len(key):
            break
        lag = frame[k:] - frame[:-k]
        ok = (key[k:] == key[:-k]) & (lag <= max_lag)
        if not ok.any():
            continue
        sq = (y[k:] - y[:-k]) ** 2 + (x[k:] - x[:-k]) ** 2
        np.add.at(sums, (key[:-k][ok], lag[ok]), sq[ok])
        np.add.at(counts, (key[:-k][ok], lag[ok]), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        msd = sums / counts
    msd1 = msd[:, 1] if max_lag >= 1 else np.full(n_tracks, np.nan)
    lags = np.log(np.arange(max_lag + 1, dtype=np.float64).clip(1))
    valid = (counts > 0) & (msd > 0)
    valid[:, 0] = False
    logm = np.log(np.where(valid, msd, 1.0))
    w = valid.astype(np.float64)
    n = w.sum(axis=1)
    sx, sy = (w * lags).sum(axis=1), (w * logm).sum(axis=1)
    sxx, sxy = (w * lags**2).sum(axis=1), (w * lags * logm).sum(axis=1)
    den = n * sxx - sx**2
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = np.where((n >= 3) & (den > 0), (n * sxy - sx * sy) / np.where(den > 0, den, 1), np.nan)
    return msd1, alpha
