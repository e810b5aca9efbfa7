"""Metrics: one-to-one IoU matching, AP = TP / (TP + FP + FN), F1."""

import numpy as np
import pytest

from cytotrail.io import InputError
from cytotrail.segment.metrics import average_precision, f1_score, iou_matrix, match_labels


def _two_squares():
    true = np.zeros((10, 10), np.int32)
    true[1:4, 1:4] = 1
    true[6:9, 6:9] = 2
    return true


def test_perfect_prediction_with_other_ids():
    true = _two_squares()
    pred = np.where(true == 1, 40, np.where(true == 2, 7, 0))
    r = match_labels(true, pred)
    assert (r["tp"], r["fp"], r["fn"]) == (2, 0, 0)
    assert sorted(map(tuple, r["pairs"])) == [(1, 40), (2, 7)]
    assert average_precision(true, pred) == {0.5: 1.0, 0.75: 1.0, 0.9: 1.0}


def test_merged_prediction_matches_at_most_one():
    true = np.zeros((4, 8), np.int32)
    true[:, :4] = 1
    true[:, 4:] = 2
    pred = np.ones_like(true)  # one object covering both: IoU 0.5 with each
    r = match_labels(true, pred, iou=0.5)
    assert (r["tp"], r["fp"], r["fn"]) == (1, 0, 1)
    assert average_precision(true, pred, thresholds=(0.5, 0.6)) == {0.5: 0.5, 0.6: 0.0}


def test_partial_overlap_counts_and_iou():
    true = _two_squares()
    pred = np.zeros_like(true)
    pred[1:4, 2:5] = 1  # IoU 6 / 12 = 0.5 with true 1
    pred[0, 9] = 5  # a false positive
    m, t_ids, p_ids = iou_matrix(true, pred)
    assert m.shape == (2, 2)
    assert m[0, 0] == pytest.approx(0.5)
    r = match_labels(true, pred, iou=0.5)
    assert (r["tp"], r["fp"], r["fn"]) == (1, 1, 1)
    assert f1_score(true, pred) == pytest.approx(2 / 4)
    assert match_labels(true, pred, iou=0.51)["tp"] == 0


def test_empty_images():
    z = np.zeros((5, 5), np.int32)
    assert average_precision(z, z) == {0.5: 1.0, 0.75: 1.0, 0.9: 1.0}
    assert f1_score(z, z) == 1.0
    assert average_precision(_two_squares()[:5, :5], z)[0.5] == 0.0


def test_f1_sums_counts_over_frames():
    true = np.stack([_two_squares(), _two_squares()])
    pred = true.copy()
    pred[1] = 0
    assert f1_score(true, pred) == pytest.approx(2 * 2 / (2 * 2 + 2))


def test_shape_mismatch_is_an_input_error():
    with pytest.raises(InputError, match="shape"):
        match_labels(np.zeros((3, 3)), np.zeros((3, 4)))
