"""Nuclei instance segmentation: one ``segment()`` over several backends.

Backends
--------
unet (default)
    The U-Net shipped in ``cytotrail/models/nuclei_unet`` (or a folder written by
    ``cytotrail train``): foreground + centre-ness maps, seeded watershed, automatic
    diameter estimate and rescaling, tiled inference with bounded memory.
watershed
    Classical: smoothing, Otsu (or local) threshold, distance-transform watershed.
labels
    Your own masks, validated against the frames and relabelled 1..n per frame.
cellpose
    Cellpose's network, only when the ``cellpose`` package and its weights are installed.

Modules: :mod:`.device` (device choice), :mod:`.net` (network), :mod:`.model` (model
folders), :mod:`.infer` (inference), :mod:`.tiled` (the tile loop), :mod:`.postprocess` (maps to labels),
:mod:`.classical` (watershed backend), :mod:`.metrics` (AP, F1), :mod:`.train` (training).
"""

from __future__ import annotations

import numpy as np

from cytotrail.deprecations import renamed_keywords
from cytotrail.io import InputError

__all__ = ["segment", "BACKENDS"]

BACKENDS = ("unet", "watershed", "labels", "cellpose")


def _as_frames(frames, name="frames"):
    arr = np.asarray(frames)
    if arr.ndim == 2:
        arr = arr[np.newaxis]
    if arr.ndim != 3:
        raise InputError(f"{name} must be (T, Y, X) or (Y, X), got shape {arr.shape}")
    if arr.shape[1] < 2 or arr.shape[2] < 2:
        raise InputError(f"{name} of shape {arr.shape} are too small to segment")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise InputError(f"{name} have unsupported dtype {arr.dtype}; expected integers or floats")
    if np.issubdtype(arr.dtype, np.floating) and not _all_finite(arr):
        raise InputError(f"{name} contain NaN or infinite values")
    return arr


def _all_finite(arr, rows_per_block=1024):
    """Whether every value of a (T, Y, X) float array is finite, checked in row blocks.

    The check holds at every image size: its scratch memory is one block of rows, not
    a boolean copy of the whole stack.
    """
    for frame in arr:
        for y in range(0, frame.shape[0], rows_per_block):
            if not np.isfinite(frame[y : y + rows_per_block]).all():
                return False
    return True


def _relabel_masks(labels, shape):
    from skimage.segmentation import relabel_sequential

    arr = np.asarray(labels)
    if arr.ndim == 2:
        arr = arr[np.newaxis]
    if arr.shape != shape:
        raise InputError(f"labels have shape {np.asarray(labels).shape} but frames have shape {shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.floating) or not np.all(np.mod(arr, 1) == 0):
            raise InputError(f"labels must be integers, got dtype {arr.dtype}")
    if arr.size and arr.min() < 0:
        raise InputError("labels contain negative values")
    out = np.zeros(shape, np.uint32)
    for t, lab in enumerate(arr):
        out[t] = relabel_sequential(lab.astype(np.int64))[0]
    return out


@renamed_keywords(diameter="diameter_px")
def segment(
    frames,
    *,
    backend="unet",
    diameter_px=None,
    device="auto",
    model=None,
    batch_size=4,
    progress=False,
    labels=None,
    tile_size=None,
    thresholds=None,
    workers=None,
    tta=False,
    info=None,
):
    """Segment the nuclei of every frame.

    Parameters
    ----------
    frames : (T, Y, X) or (Y, X) ndarray
        Nuclear channel, uint8, uint16 or float. A single (Y, X) frame is treated as
        T = 1 and the result is still (1, Y, X).
    backend : {"unet", "watershed", "labels", "cellpose"}
        Segmentation method, see the module docstring.
    diameter_px : float, optional
        Typical nucleus diameter in pixels. Default: estimated from the image
        (unet: by segmenting a few frames until the scale is stable; watershed: from
        an Otsu mask; cellpose: cellpose's own estimate). The old keyword ``diameter``
        still works, with a FutureWarning, until cytotrail 0.2.
    device : str
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cuda"``, ``"mps"`` or ``"cpu"``.
    model : str or Path, optional
        unet backend: a shipped model name or a model folder written by ``cytotrail train``.
        cellpose backend: a cellpose model type or path.
    batch_size : int
        Frames (or tiles) per network batch.
    progress : bool
        Log progress lines (every ~10 s) on long runs.
    labels : (T, Y, X) or (Y, X) integer ndarray, optional
        With ``backend="labels"``: the masks to use.
    tile_size : int, optional
        unet backend: tile side in model-scale pixels (default from the model config,
        1024, doubled on CUDA); larger frames are tiled with overlap and stitched.
    thresholds : dict, optional
        unet backend: override the model's tuned post-processing thresholds
        (``foreground``, ``seed``, ``h``, ``min_area``).
    workers : int, optional
        unet backend: threads that turn network maps into labels while the network runs
        on the next tiles (default: 1 on the CPU, up to 8 of this process's cores beside a
        GPU). The labels do not depend on it.
    tta : bool
        unet backend: flip test-time augmentation, the network's outputs averaged over the
        four flips of each tile (four times the network time).
    info : dict, optional
        Receives the provenance of the result: ``backend``, the diameter used
        (``diameter_px``, None when the backend does not use one) and where it came from
        (``diameter_source``), and for the unet backend the device, thresholds, ``tta`` and
        the frames smoothed for their pixel noise (``frames_smoothed``, ``smoothing_sigma_px``).
        The command line and the workflow save it beside the labels.

    Returns
    -------
    (T, Y, X) uint32 ndarray
        Label stack: 0 is background, objects are numbered from 1 within each frame
        (ids are unique per frame, not linked across frames).

    Raises
    ------
    cytotrail.io.InputError
        Bad frames, labels, backend, device or model; cellpose requested but not installed.
    """
    if backend not in BACKENDS:
        raise InputError(f"unknown segmentation backend {backend!r}; expected one of {list(BACKENDS)}")
    if tta and backend != "unet":
        raise InputError(f"tta=True (flip test-time augmentation) is for backend 'unet', not {backend!r}")
    diameter = diameter_px
    if diameter is not None and not (np.isfinite(diameter) and diameter > 0):
        raise InputError(f"diameter_px must be a positive number of pixels, got {diameter!r}")
    if int(batch_size) < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size!r}")
    arr = _as_frames(frames)
    if diameter is not None and diameter > max(arr.shape[-2:]):
        raise InputError(
            f"diameter_px {diameter:g} is larger than the frames ({arr.shape[-2]} x {arr.shape[-1]} px): "
            "give the nuclei's diameter in pixels"
        )
    info = {} if info is None else info
    info.update(
        backend=backend,
        diameter_px=None if diameter is None else float(diameter),
        diameter_source="given" if diameter is not None else None,
    )
    if backend == "labels":
        if labels is None:
            raise InputError("backend 'labels' needs the masks passed as labels=")
        return _relabel_masks(labels, arr.shape)
    if labels is not None:
        raise InputError(f"labels= is only used by backend 'labels', not {backend!r}")
    if backend == "watershed":
        from cytotrail.segment.classical import estimate_diameter_classical, watershed_frame

        if diameter is None:
            found = [
                d
                for d in (
                    estimate_diameter_classical(arr[t]) for t in sorted({0, len(arr) // 2, len(arr) - 1})
                )
                if d
            ]
            diameter = float(np.median(found)) if found else None
            info.update(diameter_px=diameter, diameter_source="estimated" if found else "per frame")
        out = np.zeros(arr.shape, np.uint32)
        for t in range(len(arr)):
            out[t] = watershed_frame(arr[t], diameter=diameter)
        return out
    if backend == "cellpose":
        from cytotrail.segment.cellpose_backend import segment_cellpose

        return segment_cellpose(arr, diameter=diameter, device=device, model=model, batch_size=batch_size)
    from cytotrail.segment.infer import segment_unet

    return segment_unet(
        arr,
        model=model,
        diameter_px=diameter,
        device=device,
        batch_size=int(batch_size),
        tile_size=tile_size,
        progress=progress,
        thresholds=thresholds,
        workers=workers,
        tta=tta,
        info=info,
    )
