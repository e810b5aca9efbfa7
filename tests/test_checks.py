"""The one home of option checks: every stage refuses a bad number with the same words."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cytotrail.checks import number, whole_number
from cytotrail.io import InputError


def test_whole_number():
    assert whole_number(3, "threads", minimum=1) == 3
    assert whole_number(np.int64(2), "threads", minimum=1) == 2
    assert whole_number(4.0, "memory", minimum=0) == 4
    for bad in (0, -1, 1.5, True, None, "2", float("nan")):
        with pytest.raises(InputError, match=r"^threads must be a whole number >= 1, got "):
            whole_number(bad, "threads", minimum=1)


def test_number():
    assert number(0, "cytoplasm_um", minimum=0) == 0.0
    assert number(0.5, "min_score", minimum=0, maximum=1) == 0.5
    for bad in (0, -2.0, float("inf"), float("nan"), None, True, "1"):
        with pytest.raises(InputError, match=r"^pixel_size_um must be a number > 0, got "):
            number(bad, "pixel_size_um", above=0)
    with pytest.raises(InputError, match=r"min_score must be a number >= 0 and <= 1, got 2"):
        number(2, "min_score", minimum=0, maximum=1)


def test_every_stage_refuses_bad_numbers_with_the_same_words():
    from cytotrail.cluster import cluster
    from cytotrail.quantify import quantify
    from cytotrail.track import track

    labels = np.zeros((1, 16, 16), np.uint32)
    labels[0, 4:8, 4:8] = 1
    image = np.ones((1, 1, 16, 16), np.float32)
    with pytest.raises(InputError, match="neighbour_radius_um must be a number >= 0, got -3"):
        quantify(labels, image, channel_names=["DNA"], neighbour_radius_um=-3)
    with pytest.raises(InputError, match="threads must be a whole number >= 1, got 0"):
        quantify(labels, image, channel_names=["DNA"], threads=0)
    detections = pd.DataFrame({"frame": [0, 1], "y": [5.0, 5.5], "x": [5.0, 5.2], "label": [1, 1]})
    with pytest.raises(InputError, match="memory must be a whole number >= 0, got -1"):
        track(detections, memory=-1)
    with pytest.raises(InputError, match="search_range_px must be a number > 0, got 0"):
        track(detections, search_range_px=0)
    table = pd.DataFrame(np.random.default_rng(0).random((40, 2)), columns=["A", "B"])
    for option, value, words in [
        ("n_neighbors", 1, "n_neighbors must be a whole number >= 2, got 1"),
        ("n_pcs", 0, "n_pcs must be a whole number >= 1, got 0"),
        ("seed", -1, "seed must be a whole number >= 0, got -1"),
        ("min_score", 1.5, "min_score must be a number >= 0 and <= 1, got 1.5"),
        ("threads", 0, "threads must be a whole number >= 1, got 0"),
    ]:
        with pytest.raises(InputError, match=words):
            cluster(table, markers=["A", "B"], umap=False, **{option: value})
