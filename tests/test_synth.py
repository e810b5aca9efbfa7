"""The synthetic timelapse generator: seeded, consistent ground truth, realistic features."""

from __future__ import annotations

import numpy as np
import pytest

from cytotrail.synth import default_panel, make_timelapse, write_dataset


@pytest.fixture(scope="module")
def data():
    return make_timelapse(n_frames=12, shape=(128, 128), n_cells=25, seed=11, division_every=8)


def test_same_seed_same_data_other_seed_other_data(data):
    again = make_timelapse(n_frames=12, shape=(128, 128), n_cells=25, seed=11, division_every=8)
    np.testing.assert_array_equal(again.image, data.image)
    np.testing.assert_array_equal(again.labels, data.labels)
    other = make_timelapse(n_frames=12, shape=(128, 128), n_cells=25, seed=12, division_every=8)
    assert not np.array_equal(other.labels, data.labels)


def test_tracks_agree_with_labels(data):
    for t, frame in enumerate(data.labels):
        ids = set(np.unique(frame)) - {0}
        rows = data.tracks[data.tracks["frame"] == t]
        assert ids == set(rows["label"])
        for _, row in rows.sample(min(5, len(rows)), random_state=0).iterrows():
            yy, xx = np.nonzero(frame == row["label"])
            assert abs(yy.mean() - row["y"]) < 1e-6 and abs(xx.mean() - row["x"]) < 1e-6


def test_divisions_link_two_daughters_to_a_mother_that_ended(data):
    divisions = data.divisions
    assert len(divisions) >= 2
    last = data.tracks.groupby("track_id")["frame"].max()
    first = data.tracks.groupby("track_id")["frame"].min()
    for mother, daughters in divisions.groupby("parent_track_id"):
        assert len(daughters) <= 2
        for daughter in daughters["track_id"]:
            assert first[daughter] > last[mother]


def test_cells_touch_enter_and_leave(data):
    from skimage.segmentation import find_boundaries

    touching = sum(
        np.any(
            find_boundaries(f, mode="inner")
            & (f > 0)
            & (np.pad(f, 1, mode="edge")[2:, 1:-1] != f)
            & (np.pad(f, 1, mode="edge")[2:, 1:-1] > 0)
        )
        for f in data.labels
    )
    assert touching > 0
    first = data.tracks.groupby("track_id")["frame"].min()
    new_without_parent = (
        data.tracks.drop_duplicates("track_id").set_index("track_id")["parent_track_id"].isna()
    )
    assert ((first > 0) & new_without_parent).any()  # cells wander in


def test_marker_levels_follow_cell_types(data):
    panel = data.panel
    for m, marker in enumerate(panel):
        if marker.cell_type is None:
            continue
        channel = data.image[:, 1 + m].astype(float)
        from skimage.segmentation import expand_labels

        cells = np.stack([expand_labels(f, 4) for f in data.labels])
        means = {}
        for cell_type in data.tracks["cell_type"].unique():
            ids = data.tracks.loc[data.tracks["cell_type"] == cell_type, ["frame", "label"]]
            mask = np.zeros(cells.shape, bool)
            for t, lab in ids.itertuples(index=False):
                mask[t] |= cells[t] == lab
            means[cell_type] = channel[mask].mean()
        assert max(means, key=means.get) == marker.cell_type


def test_panel_grows_with_type_count():
    panel = default_panel(6)
    assert len(panel) == 7 and len({m.cell_type for m in panel} - {None}) == 6


def test_written_dataset_reads_back(tmp_path, data):
    from cytotrail import io

    write_dataset(tmp_path, data, sample="x")
    image, names = io.read_image(tmp_path / "x.ome.tif")
    assert names == data.channel_names
    np.testing.assert_array_equal(image, data.image)
    np.testing.assert_array_equal(io.read_labels(tmp_path / "truth" / "x_labels.tif"), data.labels)
