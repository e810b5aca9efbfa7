"""GEFF export: tracks in, a graph that the ``geff`` package reads back unchanged."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cytotrail.cli import main
from cytotrail.export.geff import geff_metadata, tracks_to_graph, write_geff
from cytotrail.io import InputError
from cytotrail.synth import make_timelapse
from cytotrail.track import detections_from_labels, track


def _tiny_tracks():
    """Track 1 (frames 0-2) divides into tracks 2 and 3; track 4 skips frame 1."""
    rows = [
        (0, 1, 10.0, 10.0, 1, None, 1),
        (1, 1, 11.0, 10.0, 1, None, 1),
        (2, 1, 12.0, 10.0, 1, None, 1),
        (3, 2, 8.0, 10.0, 2, 1, 1),
        (4, 2, 7.0, 10.0, 2, 1, 1),
        (3, 3, 16.0, 10.0, 3, 1, 1),
        (0, 4, 40.0, 40.0, 4, None, 4),
        (2, 5, 41.0, 40.0, 4, None, 4),
    ]
    table = pd.DataFrame(
        rows, columns=["frame", "label", "y", "x", "track_id", "parent_track_id", "lineage_id"]
    )
    table["parent_track_id"] = table["parent_track_id"].astype("Int64")
    return table.sample(frac=1.0, random_state=0)  # row order must not matter


def _edges(graph, table):
    """Edges as ((track, frame), (track, frame), division) from a tracks_to_graph result."""
    ordered = table.sort_values(["track_id", "frame"]).reset_index(drop=True)
    key = list(zip(ordered["track_id"], ordered["frame"]))
    return {
        (key[a], key[b], bool(d)) for (a, b), d in zip(graph["edge_ids"], graph["edge_props"]["division"])
    }


def test_graph_of_a_literal_lineage():
    table = _tiny_tracks()
    before = table.copy()
    graph = tracks_to_graph(table)
    pd.testing.assert_frame_equal(table, before)  # input not modified
    assert _edges(graph, table) == {
        ((1, 0), (1, 1), False),
        ((1, 1), (1, 2), False),
        ((2, 3), (2, 4), False),
        ((1, 2), (2, 3), True),
        ((1, 2), (3, 3), True),
        ((4, 0), (4, 2), False),  # a gap keeps its link
    }
    assert graph["tracklets_valid"] and graph["lineages_valid"]
    assert graph["node_props"]["seg_id"].dtype == np.int64


def test_a_single_daughter_breaks_geffs_tracklet_rule():
    table = _tiny_tracks()
    graph = tracks_to_graph(table[table["track_id"] != 3])
    assert not graph["tracklets_valid"]  # 1 -> 2 alone is one tracklet in GEFF's sense


def test_bad_tables_name_the_problem():
    table = _tiny_tracks()
    with pytest.raises(InputError, match="track_id"):
        tracks_to_graph(table.drop(columns="track_id"))
    with pytest.raises(InputError, match="samples"):
        tracks_to_graph(table.assign(sample=np.where(table["track_id"] > 2, "a", "b")))
    with pytest.raises(InputError, match="two detections in one frame"):
        tracks_to_graph(pd.concat([table, table.iloc[:1]]))
    # a word in a coordinate was a ValueError from numpy; a NaN track id a cast warning
    text = table.astype({"x": object})
    text.iloc[2, text.columns.get_loc("x")] = "oops"
    with pytest.raises(
        InputError, match=r"column 'x': 1 value\(s\) are not finite numbers \(the first: 'oops' in row 2\)"
    ):
        tracks_to_graph(text)
    with pytest.raises(InputError, match="column 'track_id': 1 value"):
        tracks_to_graph(table.assign(track_id=table["track_id"].where(table["frame"] != 4)))
    own = table.assign(parent_track_id=table["parent_track_id"].mask(table["track_id"] == 2, 2))
    with pytest.raises(InputError, match=r"track\(s\) \[2\] are their own parent"):
        tracks_to_graph(own)
    for bad in ({"pixel_size_um": -1.0}, {"frame_interval_s": 0.0}):
        with pytest.raises(InputError, match=f"{next(iter(bad))} must be"):
            geff_metadata(tracks_to_graph(table), **bad)


def test_writes_the_geff_layout_without_the_geff_package(tmp_path):
    write_geff(tmp_path / "t.geff", _tiny_tracks(), pixel_size_um=0.5)
    attrs = json.loads((tmp_path / "t.geff" / ".zattrs").read_text())["geff"]
    assert attrs["directed"] is True
    assert [a["name"] for a in attrs["axes"]] == ["t", "y", "x"]
    assert attrs["axes"][1]["scale"] == 0.5 and attrs["axes"][1]["scaled_unit"] == "micrometer"
    assert attrs["track_node_props"] == {"tracklet": "track_id", "lineage": "lineage_id"}
    for part in ("nodes/ids", "edges/ids", "nodes/props/t/values", "edges/props/division/values"):
        assert (tmp_path / "t.geff" / part / ".zarray").is_file()
    write_geff(tmp_path / "t.geff", _tiny_tracks().iloc[:3])  # replaces the old graph whole
    assert json.loads((tmp_path / "t.geff" / "nodes" / "ids" / ".zarray").read_text())["shape"] == [3]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


@pytest.fixture(scope="module")
def demo_tracks():
    data = make_timelapse(n_frames=12, shape=(128, 128), n_cells=12, seed=4)
    return data, track(detections_from_labels(data.labels))


def test_round_trip_with_the_geff_package(demo_tracks, tmp_path):
    geff = pytest.importorskip("geff", reason="the geff reader is in the `export` extra")
    from geff.validate.data import ValidationConfig

    _, tracks = demo_tracks
    assert tracks["parent_track_id"].notna().any(), "the demo must hold divisions"
    graph = write_geff(tmp_path / "demo.geff", tracks)
    checks = ValidationConfig(graph=True, lineage=True, tracklet=True)
    nx_graph, meta = geff.read(tmp_path / "demo.geff", data_validation=checks)
    assert meta.track_node_props == {"tracklet": "track_id", "lineage": "lineage_id"}
    assert [a.name for a in meta.axes] == ["t", "y", "x"]

    # same nodes with the same positions and ids as the track table
    nodes = pd.DataFrame.from_dict(dict(nx_graph.nodes(data=True)), orient="index").sort_index()
    ordered = tracks.sort_values(["track_id", "frame"]).reset_index(drop=True)
    assert len(nodes) == len(tracks)
    np.testing.assert_array_equal(nodes["t"], ordered["frame"])
    np.testing.assert_allclose(nodes[["y", "x"]], ordered[["y", "x"]])
    np.testing.assert_array_equal(nodes["track_id"], ordered["track_id"])
    np.testing.assert_array_equal(nodes["seg_id"], ordered["label"])

    # same edges; every daughter track has one division edge from its mother's last node
    written = {
        (int(a), int(b), bool(d)) for (a, b), d in zip(graph["edge_ids"], graph["edge_props"]["division"])
    }
    read = {(a, b, bool(d["division"])) for a, b, d in nx_graph.edges(data=True)}
    assert read == written
    n_daughters = tracks.drop_duplicates("track_id")["parent_track_id"].notna().sum()
    divisions = [(a, b) for a, b, d in read if d]
    assert len(divisions) == n_daughters
    for a, b in divisions:
        mother, daughter = nodes.loc[a], nodes.loc[b]
        assert ordered.loc[b, "parent_track_id"] == mother["track_id"]
        assert mother["t"] < daughter["t"]
    # links within a track go forward in time, one per consecutive pair of detections
    links = [(a, b) for a, b, d in read if not d]
    assert len(links) == len(tracks) - tracks["track_id"].nunique()
    assert all(nodes.loc[a, "track_id"] == nodes.loc[b, "track_id"] for a, b in links)


def _track_with_geff(data, tmp_path, geff):
    """Exit status of `cytotrail track labels.tif -o t.csv --geff GEFF` on the demo's labels."""
    from cytotrail import io

    io.write_labels(tmp_path / "labels.tif", data.labels)
    labels, table = str(tmp_path / "labels.tif"), str(tmp_path / "t.csv")
    return main(["-q", "track", labels, "-o", table, "--geff", str(geff)])


def test_cli_track_writes_geff_beside_the_table(demo_tracks, tmp_path):
    from cytotrail import io

    data, _ = demo_tracks
    assert _track_with_geff(data, tmp_path, tmp_path / "t.geff") == 0
    tracks = io.read_table(tmp_path / "t.csv")
    ids = json.loads((tmp_path / "t.geff" / "nodes" / "ids" / ".zarray").read_text())
    assert ids["shape"] == [len(tracks)]


def test_cli_track_refuses_geff_over_its_input(demo_tracks, tmp_path, capsys):
    data, _ = demo_tracks
    assert _track_with_geff(data, tmp_path, tmp_path / "labels.tif") == 2
    assert (tmp_path / "labels.tif").is_file()
    assert "labels.tif" in capsys.readouterr().err


def test_a_sample_without_cells_gives_an_empty_graph(tmp_path):
    empty = _tiny_tracks().iloc[:0]
    graph = write_geff(tmp_path / "empty.geff", empty)
    assert graph["node_ids"].shape == (0,) and graph["edge_ids"].shape == (0, 2)
    geff = pytest.importorskip("geff", reason="the geff reader is in the `export` extra")
    nx_graph, meta = geff.read(tmp_path / "empty.geff")
    assert nx_graph.number_of_nodes() == 0 and [a.name for a in meta.axes] == ["t", "y", "x"]


def test_refuses_to_replace_a_folder_that_is_not_an_export(tmp_path, capsys):
    from cytotrail import io

    folder = tmp_path / "results" / "s1"
    io.write_labels(
        folder / "labels.tif", make_timelapse(n_frames=2, shape=(64, 64), n_cells=4, seed=2).labels
    )
    # a typo that names the sample's folder instead of a new .geff: nothing there is touched
    assert (
        main(
            ["-q", "track", str(folder / "labels.tif"), "-o", str(tmp_path / "t.csv"), "--geff", str(folder)]
        )
        == 2
    )
    assert "refusing to replace" in capsys.readouterr().err
    assert (folder / "labels.tif").is_file() and not (tmp_path / "t.csv").exists()
    with pytest.raises(InputError, match="not a folder"):
        write_geff(folder / "labels.tif", _tiny_tracks())
    (tmp_path / "empty").mkdir()
    write_geff(tmp_path / "empty", _tiny_tracks())  # an empty folder is fine
    assert (tmp_path / "empty" / ".zattrs").is_file()


def test_output_folder_gets_the_umasks_mode(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        write_geff(tmp_path / "t.geff", _tiny_tracks())
    finally:
        os.umask(old)
    assert (tmp_path / "t.geff").stat().st_mode & 0o777 == 0o755
