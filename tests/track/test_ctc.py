"""Tests of the Cell Tracking Challenge interchange (cytotrail.track.ctc)."""

import numpy as np
import pandas as pd
import pytest
import tifffile

from cytotrail.io import InputError
from cytotrail.synth import make_timelapse
from cytotrail.track import detections_from_labels, track
from cytotrail.track.ctc import ctc_table, gap_fills, read_ctc, write_ctc


@pytest.fixture(scope="module")
def synth():
    return make_timelapse(n_frames=10, shape=(128, 128), n_cells=30, division_every=10, seed=8)


def test_ctc_table_splits_gaps_and_maps_parents():
    tracks = pd.DataFrame(
        {
            "frame": [0, 1, 3, 4, 5, 5],
            "track_id": [4, 4, 4, 4, 7, 9],  # track 4 misses frame 2, then divides into 7 and 9
            "parent_track_id": pd.array([pd.NA, pd.NA, pd.NA, pd.NA, 4, 4], dtype="Int64"),
        }
    )
    table, labels = ctc_table(tracks)
    assert table.values.tolist() == [[1, 0, 1, 0], [2, 3, 4, 1], [3, 5, 5, 2], [4, 5, 5, 2]]
    assert labels.tolist() == [1, 1, 2, 2, 3, 4]


def test_write_read_round_trip(tmp_path, synth):
    det = detections_from_labels(synth.labels)
    tracks = track(det)
    table = write_ctc(tmp_path / "res", synth.labels, tracks)
    files = sorted(p.name for p in (tmp_path / "res").iterdir())
    assert files == [f"mask{t:03d}.tif" for t in range(10)] + ["res_track.txt"]
    mask = tifffile.imread(tmp_path / "res" / "mask004.tif")
    assert mask.shape == (128, 128) and mask.dtype == np.uint16
    labels, back = read_ctc(tmp_path / "res")
    assert labels.shape == synth.labels.shape
    # same objects; one CTC track per track plus one per gap inside a track
    assert ((labels > 0) == (synth.labels > 0)).all()
    steps = tracks.sort_values("frame").groupby("track_id")["frame"].diff()
    assert len(back) == len(tracks)
    assert len(table) == tracks["track_id"].nunique() + int((steps > 1).sum())
    merged = back.merge(det, on=["frame", "y", "x"], suffixes=("_ctc", ""))
    merged = merged.merge(
        tracks[["frame", "label", "track_id"]], on=["frame", "label"], suffixes=("_ctc", "")
    )
    pairs = merged[["track_id_ctc", "track_id"]].drop_duplicates()
    assert pairs["track_id_ctc"].is_unique
    assert len(pairs) == len(table)
    # parents map through
    n_children = tracks.drop_duplicates("track_id")["parent_track_id"].notna().sum()
    n_ctc_children = back.drop_duplicates("track_id")["parent_track_id"].notna().sum()
    assert n_ctc_children == n_children + int((steps > 1).sum())


def test_ground_truth_layout_and_tra(tmp_path, synth):
    ctc_metrics = pytest.importorskip("ctc_metrics.scripts.evaluate", reason="py-ctcmetrics not installed")
    write_ctc(tmp_path / "gt" / "TRA", synth.labels, synth.tracks, ground_truth=True)
    assert (tmp_path / "gt" / "TRA" / "man_track.txt").is_file()
    labels, truth = read_ctc(tmp_path / "gt" / "TRA")
    assert truth["parent_track_id"].notna().any()
    tracks = track(detections_from_labels(synth.labels))
    write_ctc(tmp_path / "res", synth.labels, tracks)
    result = ctc_metrics.evaluate_sequence(
        str(tmp_path / "res"), str(tmp_path / "gt"), metrics=["TRA"], threads=1
    )
    assert result["TRA"] >= 0.98
    # a result that ignores divisions scores lower
    plain = track(detections_from_labels(synth.labels), divisions=False)
    write_ctc(tmp_path / "plain", synth.labels, plain)
    worse = ctc_metrics.evaluate_sequence(
        str(tmp_path / "plain"), str(tmp_path / "gt"), metrics=["TRA"], threads=1
    )
    assert worse["TRA"] < result["TRA"]


def test_bad_ctc_input(tmp_path, synth):
    with pytest.raises(InputError, match="no man_track.txt or res_track.txt"):
        read_ctc(tmp_path)
    (tmp_path / "res_track.txt").write_text("1 0 2 0\n")
    with pytest.raises(InputError, match="masks"):
        read_ctc(tmp_path)
    tracks = track(detections_from_labels(synth.labels))
    with pytest.raises(InputError, match="label"):
        write_ctc(tmp_path / "x", synth.labels, tracks.drop(columns="label"))
    with pytest.raises(InputError, match="frame"):
        write_ctc(tmp_path / "x", synth.labels[:3], tracks)


def test_gap_fills_interpolate_tracks_and_divisions():
    tracks = pd.DataFrame(
        {
            # track 4 misses frame 2 and its last frame before dividing (4); daughter 9 is missed
            # in its first frame (5), when its sister 7 is already seen
            "frame": [0, 1, 3, 5, 6, 6],
            "track_id": [4, 4, 4, 7, 7, 9],
            "parent_track_id": pd.array([pd.NA, pd.NA, pd.NA, 4, 4, 4], dtype="Int64"),
            "y": [10.0, 12.0, 16.0, 20.0, 21.0, 30.0],
            "x": [5.0, 5.0, 5.0, 8.0, 8.0, 8.0],
        },
        index=[10, 11, 13, 15, 16, 17],
    )
    fills = gap_fills(tracks)
    got = fills[["frame", "track_id", "source", "y", "x"]].values.tolist()
    # frame 2 of track 4: the earlier neighbour's mask (tie), halfway between 12 and 16;
    # frame 4: the mother, halfway to the one daughter seen at frame 5 (stays put: one daughter);
    # frame 5 of daughter 9: from the mother's frame-4 position towards its first detection
    assert got == [[2, 4, 11, 14.0, 5.0], [4, 4, 13, 16.0, 5.0], [5, 9, 17, 23.0, 6.5]]
    assert fills["parent_track_id"].tolist() == [pd.NA, pd.NA, 4]
    # two daughters seen together: the mother moves towards their midpoint
    both = tracks.assign(frame=[0, 1, 3, 5, 6, 5])
    fills = gap_fills(both)
    assert fills[["frame", "track_id", "y", "x"]].values.tolist() == [[2, 4, 14.0, 5.0], [4, 4, 20.5, 6.5]]
    assert gap_fills(tracks.assign(frame=[0, 1, 2, 3, 4, 3])).empty
    with pytest.raises(InputError, match="'y'"):
        gap_fills(tracks.drop(columns="y"))


def test_write_ctc_fill_gaps(tmp_path, synth):
    det = detections_from_labels(synth.labels)
    rng = np.random.default_rng(0)
    det = det[rng.random(len(det)) >= 0.05]  # missed detections: gaps for the linker to close
    tracks = track(det)
    assert tracks.attrs["track"]["n_gaps_closed"] > 0
    plain = write_ctc(tmp_path / "plain", synth.labels, tracks)
    filled = write_ctc(tmp_path / "filled", synth.labels, tracks, fill_gaps=True)
    assert plain.attrs["n_filled"] == 0 and filled.attrs["n_filled"] > 0
    assert len(filled) < len(plain)  # gaps bridged instead of split
    assert len(filled) >= tracks["track_id"].nunique()
    labels_p, back_p = read_ctc(tmp_path / "plain")
    labels_f, back_f = read_ctc(tmp_path / "filled")
    # every detection keeps its pixels; fills only take pixels that were background
    assert (labels_f[labels_p > 0] > 0).all()
    assert ((labels_p > 0) == (labels_f > 0)).mean() < 1.0
    assert len(back_f) == len(back_p) + filled.attrs["n_filled"]
    # a filled CTC track has its label in every frame from B to E
    present = back_f.groupby("track_id")["frame"].agg(["min", "max", "size"])
    assert (present["max"] - present["min"] + 1 == present["size"]).all()
    table = filled.set_index("L")
    assert (table.loc[present.index, "B"] == present["min"]).all()
    assert (table.loc[present.index, "E"] == present["max"]).all()
    # the rows' order and index do not matter
    shuffled = tracks.sample(frac=1.0, random_state=0).reset_index(drop=True)
    again = write_ctc(tmp_path / "again", synth.labels, shuffled, fill_gaps=True)
    assert again.attrs["n_filled"] == filled.attrs["n_filled"]
    labels_a, _ = read_ctc(tmp_path / "again")
    assert ((labels_a > 0) == (labels_f > 0)).all()


def test_fill_gaps_raises_tra(tmp_path, synth):
    ctc_metrics = pytest.importorskip("ctc_metrics.scripts.evaluate", reason="py-ctcmetrics not installed")
    write_ctc(tmp_path / "gt" / "TRA", synth.labels, synth.tracks, ground_truth=True)
    det = detections_from_labels(synth.labels)
    det = det[np.random.default_rng(1).random(len(det)) >= 0.05]
    tracks = track(det)
    scores = {}
    for fill in (False, True):
        write_ctc(tmp_path / f"res{fill}", synth.labels, tracks, fill_gaps=fill)
        scores[fill] = ctc_metrics.evaluate_sequence(
            str(tmp_path / f"res{fill}"), str(tmp_path / "gt"), metrics=["TRA"], threads=1
        )["TRA"]
    assert scores[True] > scores[False] + 0.005
