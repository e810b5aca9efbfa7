"""Benchmark of cytotrail.track against plain trackpy and laptrack, and its speed.

Accuracy: seeded synthetic timelapses (cytotrail.synth) with divisions, crowding and
randomly missed detections. Every tracker gets the same detections (``frame, y, x`` and,
for cytotrail, ``area``); scores against the ground truth:

* link F1: a link is a pair of detections that are consecutive appearances of one track
  (gaps from missed detections included);
* division F1: a division matches when the mother's last detection and the daughters'
  first detections are the same;
* CTC TRA from the exported CTC files (cytotrail.track.ctc.write_ctc), computed by
  py-ctcmetrics: ``TRA`` from the masks as they are (a missed detection is a missing
  object), ``TRA filled`` with ``write_ctc(..., fill_gaps=True)`` (the frames a track
  skips get an interpolated object).

Peers, in the same run: ``trackpy.link`` (memory 2) at its best search range of a sweep, and
``laptrack.LapTrack`` with splitting and gap closing at its best cutoffs of a small sweep.

Speed: random-walk points without images, 1,000 cells for 10, 100 and 1,000 frames
(10^4, 10^5, 10^6 detections), each size in a fresh process: wall time, detections/s and
peak RSS.

Usage::

    .venv/bin/python benchmarks/bench_track.py               # accuracy + speed
    .venv/bin/python benchmarks/bench_track.py --no-speed --seeds 2 3
    .venv/bin/python benchmarks/bench_track.py --speed-only

Needs, for the benchmark only: ``pip install py-ctcmetrics laptrack``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

SYNTH = dict(n_frames=40, shape=(256, 256), n_cells=120, division_every=15)
MISSED = 0.02


def scenario(seed, missed=MISSED):
    from cytotrail.synth import make_timelapse
    from cytotrail.track import detections_from_labels

    data = make_timelapse(**SYNTH, seed=seed)
    # the pipeline's own detections (centroid, area, border flag), indexed like the truth
    det = detections_from_labels(data.labels)
    key = pd.MultiIndex.from_frame(data.tracks[["frame", "label"]])
    det.index = pd.Index(key.get_indexer(pd.MultiIndex.from_frame(det[["frame", "label"]])))
    assert (det.index >= 0).all()
    rng = np.random.default_rng(1000 + seed)
    keep = rng.random(len(det)) >= missed
    return data, det.loc[keep].sort_index()


def scores(truth, result):
    from cytotrail.track.metrics import tracking_scores

    s = tracking_scores(truth, result)
    return s["link"]["f1"], s["division"]["f1"]


def interior_division_f1(truth, result, shape, margin=12.0):
    """Division F1 over events whose mother and daughters lie >= ``margin`` px inside the frame."""
    from cytotrail.track.metrics import division_events

    gt = truth.loc[result.index, ["frame", "y", "x", "track_id", "parent_track_id"]]
    y, x = truth["y"], truth["x"]
    inside = np.minimum(np.minimum(y, x), np.minimum(shape[0] - 1 - y, shape[1] - 1 - x)) >= margin

    def keep(events):
        return {ev for ev in events if inside[ev[0]] and all(inside[d] for d in ev[1])}

    t, f = keep(division_events(gt)), keep(division_events(result))
    tp = len(t & f)
    return 2 * tp / (len(t) + len(f)) if t or f else 1.0


def tra(data, result, tmp):
    """CTC TRA of ``result`` (rows with frame, label, track_id, parent_track_id).

    Returns (TRA of the masks as they are, TRA with the gaps filled).
    """
    from ctc_metrics.scripts.evaluate import evaluate_sequence

    from cytotrail.track.ctc import write_ctc

    gt = Path(tmp) / "gt"
    if not (gt / "TRA" / "man_track.txt").exists():
        write_ctc(gt / "TRA", data.labels, data.tracks, ground_truth=True)
    scores = []
    for fill in (False, True):
        res = Path(tmp) / f"res_{fill}"
        write_ctc(res, data.labels, result, fill_gaps=fill)
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = evaluate_sequence(str(res), str(gt), metrics=["TRA"], threads=1)
        scores.append(float(out["TRA"]))
    return tuple(scores)


def run_cytotrail(det):
    from cytotrail.track import track

    return track(det)


def run_trackpy(det, search_range):
    import trackpy
    from trackpy.linking.utils import SubnetOversizeException

    trackpy.quiet()
    try:
        linked = trackpy.link(det, search_range, memory=2, pos_columns=["y", "x"])
    except SubnetOversizeException:  # trackpy's own remedy for crowds
        linked = trackpy.link(
            det, search_range, memory=2, pos_columns=["y", "x"], adaptive_stop=1.0, adaptive_step=0.9
        )
    out = det.copy()
    out["track_id"] = linked.loc[det.index, "particle"].to_numpy() + 1
    out["parent_track_id"] = pd.array([pd.NA] * len(out), dtype="Int64")
    return out


def run_laptrack(det, cutoff, split_cutoff):
    from laptrack import LapTrack

    df = det[["frame", "y", "x"]].reset_index(drop=True)
    lt = LapTrack(
        cutoff=cutoff**2,
        splitting_cutoff=split_cutoff**2,
        gap_closing_cutoff=cutoff**2 * 2,
        gap_closing_max_frame_count=2,
    )
    tracks, splits, _ = lt.predict_dataframe(df, ["y", "x"], only_coordinate_cols=False)
    assert np.allclose(tracks[["frame", "y", "x"]].to_numpy(), df.to_numpy())
    out = det.copy()
    out["track_id"] = tracks["track_id"].to_numpy() + 1
    parent = dict(zip(splits["child_track_id"] + 1, splits["parent_track_id"] + 1))
    out["parent_track_id"] = pd.array(out["track_id"].map(parent), dtype="Int64")
    return out


def result_row(seed, method, data, result, tmp, *, link, div, seconds, setting):
    """One table row: a tracker's scores on one scenario (TRA and interior divisions added)."""
    return dict(
        seed=seed,
        method=method,
        link_f1=link,
        division_f1=div,
        interior_division_f1=interior_division_f1(data.tracks, result, data.labels.shape[1:]),
        **dict(zip(("tra", "tra_filled"), tra(data, result, tmp))),
        seconds=seconds,
        setting=setting,
    )


def accuracy(seeds, missed=MISSED):
    rows = []
    for seed in seeds:
        data, det = scenario(seed, missed)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            ours = run_cytotrail(det)
            t_ours = time.perf_counter() - t0
            # the TRA of a perfect tracker on these detections (missed ones cost TRA too)
            perfect = data.tracks.loc[det.index]
            rows.append(
                dict(
                    seed=seed,
                    method="ground truth on these detections",
                    link_f1=1.0,
                    division_f1=1.0,
                    interior_division_f1=1.0,
                    **dict(zip(("tra", "tra_filled"), tra(data, perfect, tmp))),
                    seconds=0.0,
                    setting="TRA ceiling",
                )
            )
            link, div = scores(data.tracks, ours)
            rows.append(
                result_row(
                    seed,
                    "cytotrail",
                    data,
                    ours,
                    tmp,
                    link=link,
                    div=div,
                    seconds=t_ours,
                    setting=f"adaptive search {ours.attrs['track']['search_range_px']:.1f} px",
                )
            )
            best = None
            for sr in (3, 4, 5, 6, 7, 8, 10, 12):
                t0 = time.perf_counter()
                out = run_trackpy(det, sr)
                dt = time.perf_counter() - t0
                link, div = scores(data.tracks, out)
                if best is None or link > best[0]:
                    best = (link, div, sr, out, dt)
            rows.append(
                result_row(
                    seed,
                    "trackpy.link (best sweep)",
                    data,
                    best[3],
                    tmp,
                    link=best[0],
                    div=best[1],
                    seconds=best[4],
                    setting=f"search_range {best[2]} px, memory 2",
                )
            )
            best = None
            for cutoff in (6, 8, 10):
                for split in (10, 14):
                    t0 = time.perf_counter()
                    out = run_laptrack(det, cutoff, split)
                    dt = time.perf_counter() - t0
                    link, div = scores(data.tracks, out)
                    if best is None or link + div > best[0] + best[1]:
                        best = (link, div, (cutoff, split), out, dt)
            rows.append(
                result_row(
                    seed,
                    "laptrack (best sweep)",
                    data,
                    best[3],
                    tmp,
                    link=best[0],
                    div=best[1],
                    seconds=best[4],
                    setting=f"cutoff {best[2][0]} px, splitting {best[2][1]} px, gaps 2",
                )
            )
        for r in rows[-4:]:
            print(
                f"seed {r['seed']}  {r['method']:<32} link F1 {r['link_f1']:.4f}  division F1 "
                f"{r['division_f1']:.3f} (interior {r['interior_division_f1']:.3f})  TRA {r['tra']:.4f} "
                f"(filled {r['tra_filled']:.4f})  "
                f"{r['seconds']:6.2f} s  ({r['setting']})",
                flush=True,
            )
    table = pd.DataFrame(rows)
    mean = table.groupby("method", sort=False)[
        ["link_f1", "division_f1", "interior_division_f1", "tra", "tra_filled", "seconds"]
    ].mean()
    print("\nmean over seeds", list(seeds), f"({SYNTH}, {missed:.0%} detections missed):")
    print(mean.to_string(float_format=lambda v: f"{v:.4f}"))
    ours = mean.loc["cytotrail"]
    for peer in mean.index[2:]:
        p = mean.loc[peer]
        print(
            f"cytotrail vs {peer}: link F1 {ours.link_f1:.4f} vs {p.link_f1:.4f} "
            f"(errors x{(1 - p.link_f1) / max(1 - ours.link_f1, 1e-9):.1f}), division F1 "
            f"{ours.division_f1:.3f} vs {p.division_f1:.3f}, TRA {ours.tra:.4f} vs {p.tra:.4f}, "
            f"TRA filled {ours.tra_filled:.4f} vs {p.tra_filled:.4f}"
        )
    return table


# --------------------------------------------------------------------------------------
# speed


def random_walk(n_cells, n_frames, *, seed=0, spacing=30.0, step=2.0):
    """Random-walk points at a cell-like density: (frame, y, x) of every cell in every frame."""
    rng = np.random.default_rng(seed)
    side = spacing * np.sqrt(n_cells)
    pos = rng.uniform(0, side, (n_cells, 2))
    frames = []
    for _t in range(n_frames):
        frames.append(pos.copy())
        pos = np.abs(pos + rng.normal(0, step, pos.shape))
        pos = side - np.abs(side - pos)  # reflect at the walls
    pos = np.concatenate(frames)
    return pd.DataFrame({"frame": np.repeat(np.arange(n_frames), n_cells), "y": pos[:, 0], "x": pos[:, 1]})


def peak_rss_gb():
    """Peak resident memory of this process (VmHWM; ru_maxrss would include the parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024**2
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def speed_one(n_cells, n_frames):
    from cytotrail.track import track

    t0 = time.perf_counter()
    track(random_walk(100, 10, seed=1))  # warm-up: imports and trackpy's numba compilation
    warmup = time.perf_counter() - t0
    det = random_walk(n_cells, n_frames)
    t0 = time.perf_counter()
    out = track(det)
    seconds = time.perf_counter() - t0
    rss_gb = peak_rss_gb()
    from cytotrail.track.metrics import tracking_scores

    truth = det.assign(
        track_id=np.tile(np.arange(1, n_cells + 1), n_frames),
        parent_track_id=pd.array([pd.NA] * len(det), dtype="Int64"),
    )
    link_f1 = tracking_scores(truth, out)["link"]["f1"]
    # the peer: plain trackpy.link on the same table at the same search range
    import trackpy

    trackpy.quiet()
    t0 = time.perf_counter()
    trackpy.link(det, out.attrs["track"]["search_range_px"], memory=2, pos_columns=["y", "x"])
    trackpy_seconds = time.perf_counter() - t0
    print(
        json.dumps(
            dict(
                n=len(det),
                seconds=seconds,
                rss_gb=rss_gb,
                trackpy_seconds=trackpy_seconds,
                warmup_seconds=warmup,
                n_tracks=int(out["track_id"].nunique()),
                true_tracks=n_cells,
                link_f1=link_f1,
                search_range=out.attrs["track"]["search_range_px"],
            )
        )
    )


def speed():
    print(
        "\nspeed: random walks, 1,000 cells, no images; each size in a fresh process, timed after a "
        "warm-up on 1,000 detections (imports, numba compilation: its time is shown)"
    )
    results = []
    for n_frames in (10, 100, 1000):
        proc = subprocess.run(
            [sys.executable, __file__, "--speed-one", "1000", str(n_frames)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            print(proc.stderr[-3000:])
            raise SystemExit(1)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(r)
        print(
            f"{r['n']:>9,d} detections: {r['seconds']:7.2f} s  {r['n'] / r['seconds']:>10,.0f} det/s  "
            f"peak RSS {r['rss_gb']:.2f} GB  tracks {r['n_tracks']} (true {r['true_tracks']}), "
            f"link F1 {r['link_f1']:.4f}, search {r['search_range']:.1f} px; plain trackpy.link "
            f"{r['trackpy_seconds']:.2f} s; warm-up {r['warmup_seconds']:.1f} s",
            flush=True,
        )
    for a, b in zip(results[:-1], results[1:]):
        print(
            f"scaling {a['n']:,d} -> {b['n']:,d}: time x{b['seconds'] / a['seconds']:.1f} "
            f"for x{b['n'] / a['n']:.0f} detections"
        )
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument(
        "--missed", type=float, default=MISSED, help="fraction of detections dropped at random (default 0.02)"
    )
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--speed-only", action="store_true")
    parser.add_argument("--speed-one", type=int, nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.speed_one:
        speed_one(*args.speed_one)
        return
    if not args.speed_only:
        accuracy(args.seeds, args.missed)
    if not args.no_speed:
        speed()


if __name__ == "__main__":
    main()
