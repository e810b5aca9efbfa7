"""Per-frame detections (centroid, area, intensity) from a label stack."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cytotrail.checks import label_stack
from cytotrail.io import InputError

__all__ = ["detections_from_labels"]


def detections_from_labels(labels, *, intensity=None):
    """One row per labelled object per frame: its centroid, area and mean intensity.

    Parameters
    ----------
    labels : (T, Y, X) or (Y, X) int ndarray
        Label stack; 0 is background. Label values need not be consecutive and need
        not mean the same object in two frames.
    intensity : (T, Y, X) or (Y, X) ndarray, optional
        Nuclear channel, same shape as ``labels``; adds ``mean_intensity``.

    Returns
    -------
    DataFrame
        Columns ``frame, label, y, x, area``, ``orientation`` (angle in radians of the
        object's long axis from the y axis, towards +x, in (-pi/2, pi/2]), ``elongation``
        (1 - minor / major second moment: 0 for a disc, towards 1 for a rod),
        (+ ``mean_intensity``) and ``touches_border`` (the object has a pixel on the frame's
        edge), sorted by ``(frame, label)``. Frames without objects contribute no rows.
        ``attrs["image_shape"]`` holds ``(Y, X)``.
    """
    labels = label_stack(labels)
    if intensity is not None:
        intensity = np.asarray(intensity)
        if intensity.ndim == 2:
            intensity = intensity[np.newaxis]
        if intensity.shape != labels.shape:
            raise InputError(f"intensity has shape {intensity.shape} but labels have {labels.shape}")

    n_frames, ny, nx = labels.shape
    yy = np.repeat(np.arange(ny, dtype=np.float64), nx)
    xx = np.tile(np.arange(nx, dtype=np.float64), ny)
    edge = np.zeros((ny, nx), bool)
    edge[[0, -1], :] = True
    edge[:, [0, -1]] = True
    edge = edge.ravel()
    parts = []
    for t in range(n_frames):
        lab = labels[t].ravel()
        fg = lab > 0
        if not fg.any():
            continue
        ids, inv = np.unique(lab[fg], return_inverse=True)
        area = np.bincount(inv, minlength=len(ids)).astype(np.int64)
        part = {
            "frame": np.full(len(ids), t, np.int64),
            "label": ids.astype(np.int64),
            "y": np.bincount(inv, weights=yy[fg], minlength=len(ids)) / area,
            "x": np.bincount(inv, weights=xx[fg], minlength=len(ids)) / area,
            "area": area,
        }
        # second central moments: the axis along which the object is longest
        cy, cx = yy[fg] - part["y"][inv], xx[fg] - part["x"][inv]
        myy = np.bincount(inv, weights=cy * cy, minlength=len(ids)) / area
        mxx = np.bincount(inv, weights=cx * cx, minlength=len(ids)) / area
        mxy = np.bincount(inv, weights=cy * cx, minlength=len(ids)) / area
        part["orientation"] = 0.5 * np.arctan2(2 * mxy, myy - mxx)
        half = np.sqrt(((myy - mxx) / 2) ** 2 + mxy**2)
        mean = (myy + mxx) / 2
        major = mean + half
        part["elongation"] = np.divide(2 * half, major, out=np.zeros_like(major), where=major > 0)
        if intensity is not None:
            val = intensity[t].ravel()[fg].astype(np.float64)
            part["mean_intensity"] = np.bincount(inv, weights=val, minlength=len(ids)) / area
        part["touches_border"] = np.bincount(inv, weights=edge[fg], minlength=len(ids)) > 0
        parts.append(pd.DataFrame(part))
    columns = ["frame", "label", "y", "x", "area", "orientation", "elongation"]
    columns += ["mean_intensity"] if intensity is not None else []
    columns += ["touches_border"]
    if parts:
        table = pd.concat(parts, ignore_index=True)[columns]
    else:
        table = pd.DataFrame({c: pd.Series(dtype=_DTYPES.get(c, np.float64)) for c in columns})
    table.attrs["image_shape"] = (int(ny), int(nx))
    return table


_DTYPES = {"frame": np.int64, "label": np.int64, "area": np.int64, "touches_border": bool}
