"""Instance segmentation metrics: one-to-one IoU matching, AP (TP / (TP + FP + FN)), F1."""

from __future__ import annotations

import numpy as np

from cytotrail.io import InputError

__all__ = ["iou_matrix", "match_labels", "average_precision", "f1_score"]


def _check_pair(true, pred):
    true = np.asarray(true)
    pred = np.asarray(pred)
    if true.shape != pred.shape:
        raise InputError(f"true labels have shape {true.shape} but predicted labels {pred.shape}")
    if true.ndim != 2:
        raise InputError(f"labels must be 2-D (Y, X) images, got shape {true.shape}")
    return true, pred


def iou_matrix(true, pred):
    """IoU of every true object with every predicted object.

    Parameters
    ----------
    true, pred : (Y, X) integer ndarray
        Label images, 0 is background.

    Returns
    -------
    iou : (n_true, n_pred) ndarray
        Rows follow ``true_ids``, columns ``pred_ids`` (both sorted, background excluded).
    true_ids, pred_ids : 1-D ndarray
    """
    true, pred = _check_pair(true, pred)
    t = true.ravel().astype(np.int64)
    p = pred.ravel().astype(np.int64)
    true_ids, t_inv = np.unique(t, return_inverse=True)
    pred_ids, p_inv = np.unique(p, return_inverse=True)
    overlap = np.zeros((len(true_ids), len(pred_ids)), np.int64)
    np.add.at(overlap, (t_inv, p_inv), 1)
    area_t = overlap.sum(axis=1, keepdims=True)
    area_p = overlap.sum(axis=0, keepdims=True)
    union = area_t + area_p - overlap
    iou = np.where(union > 0, overlap / np.maximum(union, 1), 0.0)
    keep_t = true_ids != 0
    keep_p = pred_ids != 0
    return iou[np.ix_(keep_t, keep_p)], true_ids[keep_t], pred_ids[keep_p]


def match_labels(true, pred, iou=0.5):
    """Match true and predicted objects one-to-one at an IoU threshold.

    Pairs are matched by optimal assignment (maximum total IoU) among pairs with
    IoU >= ``iou``; for ``iou`` >= 0.5 the match is unique anyway.

    Parameters
    ----------
    true, pred : (Y, X) integer ndarray
        Label images, 0 is background.
    iou : float
        Smallest IoU of a match.

    Returns
    -------
    dict
        ``tp``, ``fp``, ``fn`` (counts), ``pairs`` ((n_tp, 2) array of matched
        (true id, pred id)) and ``mean_iou`` of the matched pairs (nan when none).
    """
    from scipy.optimize import linear_sum_assignment

    m, true_ids, pred_ids = iou_matrix(true, pred)
    if m.size:
        cost = np.where(m >= iou, m, 0.0)
        rows, cols = linear_sum_assignment(cost, maximize=True)
        ok = m[rows, cols] >= iou
        rows, cols = rows[ok], cols[ok]
    else:
        rows = cols = np.zeros(0, int)
    tp = len(rows)
    pairs = np.stack([true_ids[rows], pred_ids[cols]], axis=1) if tp else np.zeros((0, 2), np.int64)
    return {
        "tp": tp,
        "fp": len(pred_ids) - tp,
        "fn": len(true_ids) - tp,
        "pairs": pairs,
        "mean_iou": float(m[rows, cols].mean()) if tp else float("nan"),
    }


def average_precision(true, pred, thresholds=(0.5, 0.75, 0.9)):
    """AP = TP / (TP + FP + FN) at each IoU threshold (the DSB2018 / StarDist definition).

    Parameters
    ----------
    true, pred : (Y, X) integer ndarray
    thresholds : sequence of float

    Returns
    -------
    dict
        ``{threshold: ap}``; 1.0 when both images are empty.
    """
    out = {}
    for thr in thresholds:
        r = match_labels(true, pred, iou=thr)
        denom = r["tp"] + r["fp"] + r["fn"]
        out[float(thr)] = r["tp"] / denom if denom else 1.0
    return out


def f1_score(true, pred, iou=0.5):
    """F1 = 2 TP / (2 TP + FP + FN) at one IoU threshold; 1.0 when both are empty.

    ``true`` and ``pred`` may be (Y, X) or (T, Y, X); counts are summed over frames.
    """
    true = np.asarray(true)
    pred = np.asarray(pred)
    if true.shape != pred.shape:
        raise InputError(f"true labels have shape {true.shape} but predicted labels {pred.shape}")
    if true.ndim == 2:
        true, pred = true[np.newaxis], pred[np.newaxis]
    tp = fp = fn = 0
    for t, p in zip(true, pred):
        r = match_labels(t, p, iou=iou)
        tp, fp, fn = tp + r["tp"], fp + r["fp"], fn + r["fn"]
    denom = 2 * tp + fp + fn
    return 2 * tp / denom if denom else 1.0
