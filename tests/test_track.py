"""Tests of cytotrail.track: contract suite on seeded synthetic ground truth, bad input."""

import numpy as np
import pandas as pd
import pytest

from cytotrail.io import InputError
from cytotrail.synth import make_timelapse
from cytotrail.track import detections_from_labels, track, track_features


@pytest.fixture(scope="session")
def _synth():
    return make_timelapse(n_frames=12, shape=(128, 128), n_cells=24, seed=5)


@pytest.fixture
def synth(_synth):
    return _synth


def test_detections_from_labels_matches_truth(synth):
    det = detections_from_labels(synth.labels)
    truth = synth.tracks.sort_values(["frame", "label"]).reset_index(drop=True)
    assert list(det[["frame", "label"]].itertuples(index=False)) == list(
        truth[["frame", "label"]].itertuples(index=False))
    np.testing.assert_allclose(det[["y", "x"]], truth[["y", "x"]], atol=1e-9)
    np.testing.assert_array_equal(det["area"], truth["area"])
    assert det.attrs["image_shape"] == (128, 128)


def test_track_adds_columns_and_keeps_input(synth):
    det = synth.tracks[["frame", "y", "x", "area"]]
    before = det.copy()
    out = track(det)
    pd.testing.assert_frame_equal(det, before)
    for col in ("track_id", "parent_track_id", "lineage_id", "generation"):
        assert col in out
    assert out["parent_track_id"].dtype == "Int64"
    assert (out["track_id"] >= 1).all()
    assert out.index.equals(det.index)
    assert out.attrs["track"]["search_range_px"] > 0
