"""Post-processing thresholds tuned on validation samples, and the mean AP of a model.

:func:`tune_thresholds` grid-searches the thresholds for the best mean AP@0.5 (the result
is saved beside the weights in ``thresholds.json``); :func:`evaluate` scores
``segment()`` over samples as a user would run it.
"""

from __future__ import annotations

import itertools
import logging

import numpy as np

__all__ = ["tune_thresholds", "evaluate"]

log = logging.getLogger("cytotrail.train")


def _val_maps(model, val_samples, *, device="cpu"):
    """Network maps of every validation sample at its known diameter."""
    from cytotrail.segment.model import load_model
    from cytotrail.segment.tiled import _segment_maps_frame

    net, config, _ = load_model(model, device=device)
    import torch

    out = []
    for s in val_samples:
        d = s.diameter if np.isfinite(s.diameter) else config["train_diameter"]
        maps = _segment_maps_frame(s.image, net=net, config=config, device=torch.device(device), diameter=d)
        out.append((maps, d))
    return out


def tune_thresholds(model, val_samples, *, grid=None):
    """Grid-search post-processing thresholds for the best mean AP@0.5 on validation samples.

    Returns
    -------
    thresholds : dict
    scores : dict
        Mean AP at 0.5/0.75/0.9 with the chosen thresholds, and the number of samples.
    """
    from cytotrail.segment.metrics import average_precision
    from cytotrail.segment.postprocess import maps_to_labels

    grid = grid or {
        "foreground": [0.4, 0.5],
        "seed": [0.2, 0.35, 0.5],
        "h": [0.05, 0.1, 0.15, 0.2, 0.3],
        "min_area": [0.05, 0.15],
    }
    maps = _val_maps(model, val_samples)
    best = None
    keys = sorted(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        th = dict(zip(keys, values))
        aps = [
            average_precision(
                s.labels, maps_to_labels(m[0], m[1], diameter=d, thresholds=th)[0], thresholds=(0.5,)
            )[0.5]
            for s, (m, d) in zip(val_samples, maps)
        ]
        score = float(np.mean(aps))
        if best is None or score > best[0] + 1e-9:
            best = (score, th)
    th = best[1]
    aps = [
        average_precision(s.labels, maps_to_labels(m[0], m[1], diameter=d, thresholds=th)[0])
        for s, (m, d) in zip(val_samples, maps)
    ]
    scores = {f"ap@{k}": round(float(np.mean([a[k] for a in aps])), 4) for k in (0.5, 0.75, 0.9)}
    scores["n"] = len(val_samples)
    log.info("tuned thresholds %s: %s", th, scores)
    return th, scores


def evaluate(samples, *, backend="unet", model=None, diameter="auto", thresholds=(0.5, 0.75, 0.9)):
    """Mean AP of ``segment()`` over samples (each segmented alone, as a user would).

    ``diameter``: "auto" (estimated), "true" (the sample's median true diameter) or a number.
    Returns a dict {threshold: mean AP} plus ``per_sample`` (list of dicts).
    """
    from cytotrail.segment import segment
    from cytotrail.segment.metrics import average_precision

    per = []
    for s in samples:
        d = None if diameter == "auto" else (s.diameter if diameter == "true" else float(diameter))
        pred = segment(s.image, backend=backend, model=model, diameter_px=d, device="cpu")[0]
        per.append(average_precision(s.labels, pred, thresholds=thresholds))
    out = {t: float(np.mean([p[t] for p in per])) for t in thresholds}
    out["per_sample"] = per
    return out
