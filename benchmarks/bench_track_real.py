"""Benchmark of cytotrail.track on real curated lineages, beside laptrack and trackpy.

Data: the W-R1 movie of live mouse paw epidermis (``../shared/data/tracking/epidermis-
lineages/W-R1.csv``: 15 frames, 4,728 cell positions, 404 divisions, curated ``cell_id`` and
``parent_id``). Every tracker gets the same rows, shuffled (seeded): ``frame, y, x`` and,
where it can use it, ``area``. Scores against the curation:

* link F1: pairs of consecutive detections of one cell (mother -> daughter is no link);
* division F1: a division matches when the mother's last detection and the set of the
  daughters' first detections are the same;
* spanning: fraction of the tracks that run from the first to the last frame of the split
  (the curation's own fraction is shown as ``truth``).

Honesty about tuning: there is one real movie. cytotrail runs with its defaults (nothing
tuned per movie; its defaults were chosen on frames 0-7 only). The peers are tuned on this
movie: laptrack (with splitting, gap closing) over a small grid of cutoffs and trackpy over
a grid of search ranges, each setting chosen by link F1 + division F1 on frames 0-7; the
same setting is then reported on frames 7-14 (held out) and on the whole movie, and the
best setting of the grid on the whole movie (an oracle no user has) is shown too.

Usage::

    .venv/bin/python benchmarks/bench_track_real.py
    .venv/bin/python benchmarks/bench_track_real.py --data ../shared/data --seed 1

Needs, for the benchmark only: ``pip install laptrack`` (trackpy comes with cytotrail).
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MOVIE = Path("tracking") / "epidermis-lineages" / "W-R1.csv"
SPLITS = {"frames 0-7 (chooses)": (0, 7), "frames 7-14 (held out)": (7, 14), "whole movie": (0, 14)}
SELECT = "frames 0-7 (chooses)"
TRACKPY_GRID = (6, 8, 10, 12, 14, 16, 18, 20)
LAPTRACK_GRID = list(itertools.product((10, 14, 18, 22), (14, 18, 22, 26), (0, 1)))


def load(data_dir, seed):
    """The curated movie as a truth table and shuffled detections sharing its index."""
    path = Path(data_dir) / MOVIE
    if not path.exists():
        raise SystemExit(f"{path} not found: pass --data (the shared data folder)")
    raw = pd.read_csv(path)
    truth = raw.assign(
        track_id=raw["cell_id"], parent_track_id=raw["parent_id"].where(raw["parent_id"] > 0).astype("Int64")
    )
    det = raw[["frame", "y", "x", "area"]].sample(frac=1.0, random_state=seed)
    return truth, det


def scores(truth, result, lo, hi):
    from cytotrail.track.metrics import tracking_scores

    s = tracking_scores(truth, result)
    span = result.groupby("track_id")["frame"].agg(["min", "max"])
    spanning = float(((span["min"] == lo) & (span["max"] == hi)).mean())
    return {
        "link_f1": s["link"]["f1"],
        "division_f1": s["division"]["f1"],
        "n_divisions": s["division"]["n_found"],
        "spanning": spanning,
    }


def run_cytotrail(det, columns):
    from cytotrail.track import track

    out = track(det[columns])
    return out, out.attrs["track"]


def run_trackpy(det, search_range):
    import trackpy

    trackpy.quiet()
    linked = trackpy.link(
        det[["frame", "y", "x"]],
        search_range,
        memory=2,
        pos_columns=["y", "x"],
        adaptive_stop=0.5,
        adaptive_step=0.9,
    )
    out = det.copy()
    out["track_id"] = linked.loc[det.index, "particle"].to_numpy() + 1
    out["parent_track_id"] = pd.array([pd.NA] * len(out), dtype="Int64")
    return out


def run_laptrack(det, cutoff, split_cutoff, gap_frames):
    from laptrack import LapTrack

    df = det[["frame", "y", "x"]].reset_index(drop=True).assign(row=lambda d: np.arange(len(d)))
    lt = LapTrack(
        cutoff=cutoff**2,
        splitting_cutoff=split_cutoff**2,
        gap_closing_cutoff=cutoff**2 if gap_frames else False,
        gap_closing_max_frame_count=max(gap_frames, 1),
    )
    tracks, splits, _ = lt.predict_dataframe(df, ["y", "x"], only_coordinate_cols=False)
    tracks = tracks.sort_values("row")  # laptrack may return the rows in its own order
    assert (tracks["row"].to_numpy() == df["row"].to_numpy()).all()
    out = det.copy()
    out["track_id"] = tracks["track_id"].to_numpy() + 1
    parent = dict(zip(splits["child_track_id"] + 1, splits["parent_track_id"] + 1))
    out["parent_track_id"] = pd.array(out["track_id"].map(parent), dtype="Int64")
    return out


def split(det, lo, hi):
    return det[(det["frame"] >= lo) & (det["frame"] <= hi)]


def truth_row(truth, lo, hi):
    part = split(truth, lo, hi)
    ids = part["cell_id"]
    parents = part["parent_id"].where(part["parent_id"].isin(ids))
    part = part.assign(track_id=ids, parent_track_id=parents.astype("Int64"))
    return scores(part, part, lo, hi)


def grid(name, runner, settings, det, truth):
    """Every setting on every split: {setting: {split: scores}}."""
    table = {}
    for setting in settings:
        table[setting] = {}
        for label, (lo, hi) in SPLITS.items():
            t0 = time.perf_counter()
            out = runner(split(det, lo, hi), *setting)
            table[setting][label] = {**scores(truth, out, lo, hi), "seconds": time.perf_counter() - t0}
    return table


def pick(table, label):
    return max(table, key=lambda s: table[s][label]["link_f1"] + table[s][label]["division_f1"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DATA, help="the shared data folder (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the row shuffle")
    args = parser.parse_args()
    truth, det = load(args.data, args.seed)
    rows = []

    def add(method, setting, label, s):
        rows.append({"split": label, "method": method, **s, "setting": setting})

    for label, (lo, hi) in SPLITS.items():
        add("curation (truth)", "", label, {**truth_row(truth, lo, hi), "seconds": 0.0})
        for columns, name in (
            (["frame", "y", "x", "area"], "cytotrail defaults (positions + area)"),
            (["frame", "y", "x"], "cytotrail defaults (positions only)"),
        ):
            t0 = time.perf_counter()
            out, info = run_cytotrail(split(det, lo, hi), columns)
            s = {**scores(truth, out, lo, hi), "seconds": time.perf_counter() - t0}
            ds = info["division_scales"]
            add(
                name,
                f"search {info['search_range_px']:.1f} px, step sigma "
                f"{info['displacement_sigma_px']:.2f} px (t dof {info['displacement_t_dof']}), "
                f"missed-frame cost {info['gap_cost_per_frame']:.1f}, division sum-area "
                f"{ds['sum_area_mean']:+.2f}+-{ds['sum_area_sigma']:.2f}",
                label,
                s,
            )
    for name, runner, settings, fmt in (
        ("trackpy.link", run_trackpy, [(r,) for r in TRACKPY_GRID], "search_range {} px, memory 2"),
        ("laptrack", run_laptrack, LAPTRACK_GRID, "cutoff {} px, splitting {} px, gap frames {}"),
    ):
        table = grid(name, runner, settings, det, truth)
        chosen = pick(table, SELECT)
        for label in SPLITS:
            add(f"{name} tuned on frames 0-7", fmt.format(*chosen), label, table[chosen][label])
        oracle = pick(table, "whole movie")
        add(
            f"{name} best on whole movie (oracle)",
            fmt.format(*oracle),
            "whole movie",
            table[oracle]["whole movie"],
        )
    result = pd.DataFrame(rows)
    print(
        f"W-R1 epidermis lineages ({len(det):,d} detections, rows shuffled with seed {args.seed}); "
        "cytotrail untuned, peers tuned on this movie\n"
    )
    for label in SPLITS:
        print(f"== {label}")
        part = result[result["split"] == label]
        for r in part.itertuples():
            print(
                f"  {r.method:<42} link F1 {r.link_f1:.4f}  division F1 {r.division_f1:.3f} "
                f"({r.n_divisions:3d} found)  spanning {r.spanning:.3f}  {r.seconds:5.2f} s  {r.setting}"
            )
    return result


if __name__ == "__main__":
    main()
