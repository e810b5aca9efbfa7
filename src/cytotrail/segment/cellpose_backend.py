"""The optional cellpose backend (only when cellpose and its weights are installed locally)."""

from __future__ import annotations

import numpy as np

from cytotrail.io import InputError

__all__ = ["segment_cellpose", "cellpose_available"]


def cellpose_available():
    """True when the ``cellpose`` package can be imported."""
    import importlib.util

    return importlib.util.find_spec("cellpose") is not None


def segment_cellpose(frames, *, diameter=None, device="auto", model=None, batch_size=4):
    """Segment (T, Y, X) frames with cellpose; returns (T, Y, X) uint32.

    Raises InputError when cellpose or its pretrained weights are not installed (cytotrail
    never downloads weights).
    """
    if not cellpose_available():
        raise InputError(
            "backend 'cellpose' needs the cellpose package (pip install cellpose) and its "
            "pretrained weights in ~/.cellpose/models; neither download happens here. "
            "Use backend 'unet' (shipped weights) instead"
        )
    from cellpose import models

    from cytotrail.segment.device import select_device

    dev = select_device(device)
    try:
        from cellpose.models import MODEL_DIR
    except ImportError:  # pragma: no cover - older cellpose
        MODEL_DIR = None
    name = model or "cpsam"
    from pathlib import Path

    if not Path(str(name)).exists() and MODEL_DIR is not None and not any(Path(MODEL_DIR).glob(f"{name}*")):
        raise InputError(
            f"backend 'cellpose': weights {name!r} are not installed in {MODEL_DIR}; "
            "download them once with cellpose itself, or pass model=PATH"
        )
    try:
        cp = models.CellposeModel(gpu=dev.type == "cuda", pretrained_model=str(name), device=dev)
    except Exception as err:  # cellpose raises many kinds when weights are absent
        raise InputError(f"backend 'cellpose': cannot load model {name!r}: {err}") from err
    out = np.zeros(frames.shape, np.uint32)
    for t in range(len(frames)):
        masks = cp.eval(frames[t], diameter=diameter, batch_size=batch_size)[0]
        out[t] = np.asarray(masks, np.uint32)
    return out
