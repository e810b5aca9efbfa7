"""U-Net inference: :func:`segment_unet`, the entry point of the unet backend.

It loads the model, estimates the nucleus diameter when none is given (:mod:`.scale`:
segmenting a few frames until the size is stable) and segments every frame at that
scale with the tile loop (:mod:`.tiled`: tiles, the network pass, labels pasted back).

Beside a GPU (CUDA or MPS) the maps stay on the device and become labels there
(:mod:`.postprocess_torch`): the host prepares the next batches in a thread, copies
them from pinned memory, and gets back only the labels. On the CPU the numba path of
:mod:`.postprocess` is used, which is the faster there.

The other parts: :mod:`.tiles` (rescaling factor, tile plan, stitching), :mod:`.batches`
(host batches, prefetch), :mod:`.tile_labels` (maps to labels on the host or the
device) and :mod:`.resources` (batch size, threads, memory).
"""

from __future__ import annotations

import logging

from cytotrail.deprecations import renamed_keywords
from cytotrail.segment.scale import estimate_diameter
from cytotrail.segment.tiled import _segment_tiles, predict_maps

__all__ = ["predict_maps", "segment_unet", "estimate_diameter"]

log = logging.getLogger("cytotrail.segment")


@renamed_keywords(diameter="diameter_px")
def segment_unet(
    frames,
    *,
    model=None,
    diameter_px=None,
    device="auto",
    batch_size=4,
    tile_size=None,
    progress=False,
    thresholds=None,
    amp=True,
    workers=None,
    postprocess="auto",
    tta=False,
    info=None,
):
    """Segment (T, Y, X) frames with a U-Net model folder; returns (T, Y, X) uint32.

    ``diameter_px``: the typical nucleus diameter in pixels (default: estimated; the old
    keyword ``diameter`` still works, with a FutureWarning, until cytotrail 0.2).
    ``thresholds`` (dict) overrides the model's tuned post-processing thresholds.
    ``workers``: host post-processing threads (default: 1 on the CPU, up to 8 beside a GPU);
    the labels do not depend on it.
    ``postprocess``: ``"auto"`` turns maps into labels on the device on CUDA and MPS
    (:mod:`.postprocess_torch`) and with numba on the CPU, where that is faster;
    ``"torch"`` or ``"host"`` force one (the labels agree up to watershed ties).
    ``tta``: average the network's outputs over the four flips of each tile in the final
    pass (:class:`.net.FlipTTA`; four times the network time; the diameter estimate runs without).
    ``info``: a dict that receives the diameter used (``diameter_px``) and where it came from
    (``diameter_source``: given, estimated, or the model's training diameter when no nucleus
    was found), the device, the thresholds, and how many frames were smoothed for their
    pixel noise (``frames_smoothed``, ``smoothing_sigma_px``).
    """
    if postprocess not in ("auto", "torch", "host"):
        from cytotrail.io import InputError

        raise InputError(f"postprocess must be 'auto', 'torch' or 'host', got {postprocess!r}")
    from cytotrail.segment.device import select_device
    from cytotrail.segment.model import load_model

    dev = select_device(device)
    net, config, tuned = load_model(model, device=dev)
    tuned = dict(tuned, **(thresholds or {}))
    maps_cache = None
    source = "given"
    diameter = diameter_px
    if diameter is None:
        maps_cache = {}
        diameter = estimate_diameter(
            frames, net=net, config=config, thresholds=tuned, device=dev, amp=amp, maps_cache=maps_cache
        )
        source = "estimated"
        if diameter is None:
            diameter, source = (
                float(config["train_diameter"]),
                "the model's training diameter (no nucleus found)",
            )
        if progress:
            log.info("segment: estimated nucleus diameter %.1f px", diameter)
    if tta:
        from cytotrail.segment.net import FlipTTA

        net, maps_cache = FlipTTA(net), None
    if info is not None:
        info.update(
            diameter_px=float(diameter),
            diameter_source=source,
            device=str(dev),
            thresholds={k: float(v) for k, v in tuned.items()},
            tta=bool(tta),
        )
    return _segment_tiles(
        frames,
        net=net,
        config=config,
        thresholds=tuned,
        device=dev,
        diameter=float(diameter),
        batch_size=batch_size,
        tile_size=tile_size,
        amp=amp,
        progress=progress,
        maps_cache=maps_cache,
        workers=workers,
        postprocess=postprocess,
        info=info,
    )
