"""The tile loop: frames cut into tiles, the network pass over batches of tiles, labels pasted back.

Frames are cut into tiles (a core plus a margin of context on each side) in the
original pixel grid (:mod:`.tiles`). Each tile is normalised with its frame's
percentiles, smoothed when its frame is noisier than the training images (ion counts:
:func:`.preprocess.denoise_sigma`), rescaled so that nuclei have the model's training
diameter, run through the network (:func:`predict_maps`), and its maps are scaled back
and turned into labels (:mod:`.tile_labels`). A tile keeps only the nuclei whose seed
lies in its core; the margin is wider than a nucleus, so every nucleus is segmented
whole by exactly one tile. Only one batch of tiles is held at a time, so memory is
bounded by the output label stack plus a few tiles. Tests and benchmarks patch
``predict_maps``, ``_postprocess_path`` and ``denoise_sigma`` on this module, where the
loop looks them up.
"""

from __future__ import annotations

import itertools
import logging
import time

import numpy as np
from scipy import ndimage as ndi

from cytotrail.segment.batches import _host_batches, _prefetch, _resize
from cytotrail.segment.preprocess import denoise_sigma, percentiles
from cytotrail.segment.resources import _batch_pixels, _postprocess_path, _release_memory, _workers
from cytotrail.segment.tile_labels import _labels_for_tiles, _labels_for_tiles_torch
from cytotrail.segment.tiles import _paste, _scale_for, _tiles

log = logging.getLogger("cytotrail.segment")


def predict_maps(net, batch, *, device, amp=True, keep_on_device=False):
    """Run the network on a batch of normalised images.

    Parameters
    ----------
    net : torch.nn.Module
    batch : (N, H, W) float32 ndarray
        H and W multiples of ``net.multiple``.
    device : torch.device
    amp : bool
        Use float16 autocast on CUDA.
    keep_on_device : bool
        Return the maps as a tensor on ``device`` (for post-processing there) instead of
        copying them to the host.

    Returns
    -------
    (N, 2, H, W) float32 ndarray (or tensor on ``device``)
        Foreground probability and centre-ness.
    """
    import torch

    x = torch.from_numpy(np.ascontiguousarray(batch, np.float32))[:, None]
    if device.type == "cuda":  # pinned host memory: the copy overlaps the work queued before it
        x = x.pin_memory().to(device, non_blocking=True)
    else:
        x = x.to(device)
    with torch.inference_mode():
        if amp and device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.float16):
                y = net(x)
        else:
            y = net(x)
        y = torch.sigmoid(y.float())
    return y if keep_on_device else y.cpu().numpy()


def _maps_for_tiles(frames, tiles, net, *, device, ranges, batch_size, amp, on_device=False):
    """Yield (tile, maps (2, h, w) in original pixels) for tiles, batched by padded shape.

    ``on_device``: the maps stay torch tensors on ``device`` (and, on a GPU, the host
    prepares the next batches in a background thread meanwhile); else float32 ndarrays.
    """
    batches = _host_batches(
        frames, tiles, ranges=ranges, batch_size=batch_size, batch_pixels=_batch_pixels(device)
    )
    if on_device and device.type != "cpu":
        batches = _prefetch(batches, 2)
    for group, batch in batches:
        maps = predict_maps(net, batch, device=device, amp=amp, keep_on_device=on_device)
        for tile, m in zip(group, maps):
            m = m[:, : tile.scaled[0], : tile.scaled[1]]
            h, w = tile.crop[1] - tile.crop[0], tile.crop[3] - tile.crop[2]
            yield tile, _resize(m[None], (h, w), antialias=True)[0]


def _segment_tiles(
    frames,
    *,
    net,
    config,
    thresholds,
    device,
    diameter,
    batch_size,
    tile_size,
    amp,
    progress,
    out=None,
    maps_cache=None,
    keep_maps=None,
    workers=None,
    postprocess="auto",
    info=None,
):
    """Segment frames (T, Y, X) at a known diameter into ``out`` (T, Y, X) uint32.

    ``postprocess``: where maps become labels (see :func:`_postprocess_path`). ``info``: a
    dict that receives ``frames_smoothed`` and ``smoothing_sigma_px`` (0 for none) of the
    noisy frames smoothed before the network (:func:`.preprocess.denoise_sigma`).

    ``maps_cache``: a dict {(frame, scale): maps} of whole-frame network outputs; frames
    found in it at this call's scale skip the network (and leave it). ``keep_maps``: a dict
    that receives this call's whole-frame outputs the same way.
    """
    n_frames, ny, nx = frames.shape
    scale = _scale_for(diameter, config)
    tile_size = int(tile_size or config.get("tile_size", 1024) * (2 if device.type == "cuda" else 1))
    margin = int(config.get("tile_margin", 64))
    multiple = net.multiple
    tile_size = max(tile_size, 2 * margin + multiple)
    if out is None:
        out = np.zeros((n_frames, ny, nx), np.uint32)
    ranges = []
    flat = []
    lo, hi = config.get("normalization", {}).get("percentiles", (1.0, 99.8))
    for t in range(n_frames):
        p_lo, p_hi = percentiles(frames[t], lo, hi)
        sigma = denoise_sigma(frames[t], p_lo, p_hi)
        if sigma > 0:  # the range of the smoothed frame: hot pixels no longer set the top
            p_lo, p_hi = percentiles(ndi.gaussian_filter(np.asarray(frames[t], np.float32), sigma), lo, hi)
        ranges.append((p_lo, p_hi, sigma))
        flat.append(p_hi - p_lo <= 1e-6 * max(1.0, abs(p_hi)))
    smoothed = [r[2] for r in ranges if r[2] > 0]
    if info is not None:
        info.update(frames_smoothed=len(smoothed), smoothing_sigma_px=float(max(smoothed, default=0.0)))
    if smoothed:
        log.debug(
            "segment: %d of %d frame(s) smoothed (Gaussian sigma %.2g px), their pixel noise "
            "above the training images' (ion counts?)",
            len(smoothed),
            n_frames,
            max(smoothed),
        )
    tiles = [
        tile
        for tile in _tiles(
            n_frames, (ny, nx), scale=scale, tile_size=tile_size, margin=margin, multiple=multiple
        )
        if not flat[tile.frame]
    ]
    next_id = np.ones(n_frames, np.int64)
    many_tiles = len(tiles) > n_frames
    cached, todo = [], tiles
    if maps_cache and not many_tiles:  # one tile per frame: whole frames
        hits = {tile.frame for tile in tiles if (tile.frame, scale) in maps_cache}
        cached = [(tile, maps_cache.pop((tile.frame, scale))) for tile in tiles if tile.frame in hits]
        todo = [tile for tile in tiles if tile.frame not in hits]
    on_device = _postprocess_path(postprocess, device) == "torch"
    predicted = _maps_for_tiles(
        frames, todo, net, device=device, ranges=ranges, batch_size=batch_size, amp=amp, on_device=on_device
    )
    if on_device:
        labelled = _labels_for_tiles_torch(
            itertools.chain(cached, predicted),
            diameter=diameter,
            thresholds=thresholds,
            device=device,
            group=batch_size,
        )
    else:
        labelled = _labels_for_tiles(
            itertools.chain(cached, predicted),
            diameter=diameter,
            thresholds=thresholds,
            workers=_workers(workers, device),
        )
    started = last = time.monotonic()
    for i, (tile, maps, lab, seeds) in enumerate(labelled):
        if keep_maps is not None and not many_tiles:
            keep_maps[tile.frame, scale] = maps
        _paste(out[tile.frame], lab, seeds, tile, next_id, tile.frame)
        if many_tiles and i % 8 == 7:
            _release_memory()
        now = time.monotonic()
        if progress and (now - last > 10 or i + 1 == len(tiles)):
            log.info("segment: %d/%d tiles (%.0f s)", i + 1, len(tiles), now - started)
            last = now
    return out


def _segment_maps_frame(image, *, net, config, device, diameter, normalized=True):
    """Network maps (2, Y, X) of one whole frame at a known diameter (no tiling).

    ``image`` is already normalised when ``normalized`` (training samples are).
    """
    image = np.asarray(image, np.float32)
    ranges = [(0.0, 1.0, 0.0)] if normalized else [(*percentiles(image), 0.0)]
    scale = _scale_for(diameter, config)
    tiles = list(_tiles(1, image.shape, scale=scale, tile_size=10**9, margin=0, multiple=net.multiple))
    ((_, maps),) = _maps_for_tiles(
        image[None], tiles, net, device=device, ranges=ranges, batch_size=1, amp=True
    )
    return maps
