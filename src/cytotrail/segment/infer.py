"""U-Net inference: diameter estimate, rescaling, batched and tiled prediction, stitching.

Frames are cut into tiles (a core plus a margin of context on each side) in the
original pixel grid. Each tile is normalised with its frame's percentiles, rescaled so
that nuclei have the model's training diameter, run through the network, and its maps
are scaled back and turned into labels. A tile keeps only the nuclei whose seed lies
in its core; the margin is wider than a nucleus, so every nucleus is segmented whole
by exactly one tile. Only one batch of tiles is held at a time, so memory is bounded
by the output label stack plus a few tiles.

Beside a GPU (CUDA or MPS) the maps stay on the device and become labels there
(:mod:`.postprocess_torch`): the host prepares the next batches in a thread, copies
them from pinned memory, and gets back only the labels. On the CPU the numba path of
:mod:`.postprocess` is used, which is the faster there.
"""

from __future__ import annotations

import itertools
import logging
import math
import time

import numpy as np

from cytotrail.deprecations import renamed_keywords
from cytotrail.segment.diameter import check_measure, network_diameter
from cytotrail.segment.postprocess import maps_to_labels
from cytotrail.segment.preprocess import normalize, percentiles

__all__ = ["predict_maps", "segment_unet", "estimate_diameter"]

log = logging.getLogger("cytotrail.segment")

# diameters within this factor of the training diameter are segmented without rescaling
# (1.5 merged just-divided daughters of 8 px on the demo: nuclei near the low end of the
# training range are better upscaled; 1.2 scored best on dsb2018 val and synthetic frames)
_SCALE_TOLERANCE = 1.2
# a classical (Otsu) diameter estimate more than this many times the network's native-scale
# estimate is taken for clumps and replaced by the network's (checked only above this x d0)
_CLASSICAL_TRUST = 2.5
# at most this many model-scale pixels per network batch (bounds activation memory:
# about 0.6 GB per 1024 x 1024 tile for the shipped network); a CUDA device gets batches
# of up to a quarter of its memory, and tiles twice as wide (a 2048 x 2048 frame is one)
_MAX_BATCH_PIXELS = 2**20
_ACTIVATION_BYTES_PER_PIXEL = 600
# device memory of post-processing on the device, per pixel of a batch (a dozen int64 images)
_POSTPROCESS_BYTES_PER_PIXEL = 120


def _batch_pixels(device):
    """Model-scale pixels per network batch on ``device``: on CUDA, from the memory free now."""
    if device.type != "cuda":
        return _MAX_BATCH_PIXELS
    import torch

    free, _ = torch.cuda.mem_get_info(device)
    return max(_MAX_BATCH_PIXELS, free // 4 // (_ACTIVATION_BYTES_PER_PIXEL + _POSTPROCESS_BYTES_PER_PIXEL))


def _postprocess_path(postprocess, device):
    """ "torch" (maps to labels on the device) or "host" (numba and scipy on the CPU).

    ``"auto"``: torch on CUDA and MPS, where the maps already are; host on the CPU, where
    the numba path is the faster (same-run A/B in benchmarks/bench_segment_throughput.py).
    """
    if postprocess not in ("auto", "torch", "host"):
        raise ValueError(f"postprocess must be 'auto', 'torch' or 'host', got {postprocess!r}")
    if postprocess != "auto":
        return postprocess
    return "host" if device.type == "cpu" else "torch"


def _torch():
    import torch

    return torch


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
    torch = _torch()
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


def _resize(array, size, *, antialias=True):
    """Bilinear resize of (N, C, H, W) float32 ndarray (or tensor, on its device) to (N, C, *size)."""
    torch = _torch()
    if tuple(array.shape[-2:]) == tuple(size):
        return array
    tensor = isinstance(array, torch.Tensor)
    t = array if tensor else torch.from_numpy(np.ascontiguousarray(array))
    down = size[0] < array.shape[-2] or size[1] < array.shape[-1]
    out = torch.nn.functional.interpolate(
        t, size=tuple(size), mode="bilinear", align_corners=False, antialias=bool(antialias and down)
    )
    return out if tensor else out.numpy()


def _pad_to(image, shape):
    """Pad (H, W) at the bottom/right to ``shape`` by reflection (edge for tiny images)."""
    ph, pw = shape[0] - image.shape[0], shape[1] - image.shape[1]
    if ph == 0 and pw == 0:
        return image
    mode = "reflect" if ph < image.shape[0] and pw < image.shape[1] else "edge"
    return np.pad(image, ((0, ph), (0, pw)), mode=mode)


class _Tile:
    __slots__ = ("frame", "crop", "core", "scaled", "padded")

    def __init__(self, frame, crop, core, scaled, padded):
        self.frame, self.crop, self.core, self.scaled, self.padded = frame, crop, core, scaled, padded


def _tiles(n_frames, shape, *, scale, tile_size, margin, multiple):
    """Plan tiles: crop and core boxes (y0, y1, x0, x1) in original pixels, model-scale sizes."""
    ny, nx = shape
    m = int(math.ceil(margin / scale))
    if max(ny, nx) * scale <= tile_size:
        boxes = [((0, ny, 0, nx), (0, ny, 0, nx))]
    else:
        core = max(16, int((tile_size - 2 * margin) / scale))
        boxes = []
        for y0 in range(0, ny, core):
            for x0 in range(0, nx, core):
                y1, x1 = min(y0 + core, ny), min(x0 + core, nx)
                crop = (max(0, y0 - m), min(ny, y1 + m), max(0, x0 - m), min(nx, x1 + m))
                boxes.append((crop, (y0, y1, x0, x1)))
    for t in range(n_frames):
        for crop, core in boxes:
            h, w = crop[1] - crop[0], crop[3] - crop[2]
            scaled = (max(1, round(h * scale)), max(1, round(w * scale)))
            padded = tuple(int(math.ceil(s / multiple) * multiple) for s in scaled)
            yield _Tile(t, crop, core, scaled, padded)


def _host_batches(frames, tiles, *, ranges, batch_size, batch_pixels):
    """Yield (tiles, batch (N, H, W) float32): tiles normalised, rescaled, padded and stacked
    on the host, grouped by padded shape."""
    pending = []

    def stack():
        group = [tile for tile, _ in pending]
        batch = np.stack([_pad_to(img, tile.padded) for tile, img in pending])
        pending.clear()
        return group, batch

    for tile in tiles:
        y0, y1, x0, x1 = tile.crop
        p_lo, p_hi = ranges[tile.frame]
        img = normalize(frames[tile.frame][y0:y1, x0:x1], p_lo, p_hi)
        img = _resize(img[None, None], tile.scaled, antialias=True)[0, 0]
        limit = max(1, min(batch_size, batch_pixels // (tile.padded[0] * tile.padded[1])))
        if pending and (pending[0][0].padded != tile.padded or len(pending) >= limit):
            yield stack()
        pending.append((tile, img))
    if pending:
        yield stack()


def _prefetch(items, depth):
    """Iterate ``items`` in a background thread, up to ``depth`` items ahead (0: in this thread).

    Beside a GPU the host prepares the next batches (reading, normalising, rescaling) while
    the device runs the network and the post-processing on the current one.
    """
    if depth <= 0:
        yield from items
        return
    import queue
    import threading

    q = queue.Queue(depth)
    stop = threading.Event()

    def put(item):
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for item in items:
                if not put((True, item)):
                    return
        except BaseException as err:  # handed to the consumer, raised there
            put((False, err))
            return
        put((False, None))

    thread = threading.Thread(target=work, name="cytotrail-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stop.set()
        thread.join()


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
):
    """Segment frames (T, Y, X) at a known diameter into ``out`` (T, Y, X) uint32.

    ``postprocess``: where maps become labels (see :func:`_postprocess_path`).

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
        ranges.append((p_lo, p_hi))
        flat.append(p_hi - p_lo <= 1e-6 * max(1.0, abs(p_hi)))
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


def _workers(workers, device):
    """Post-processing threads: as given, else 1 on the CPU (the network has the cores) and
    up to 8 of this process's CPU threads less one beside a GPU: its cores, at most torch's
    thread count (``OMP_NUM_THREADS``, which Snakemake sets to a job's threads, or
    ``cytotrail segment --threads``)."""
    if workers is not None:
        return max(1, int(workers))
    if device.type == "cpu":
        return 1
    import os

    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(8, cores - 1, torch.get_num_threads() - 1))


def _labels_for_tiles(items, *, diameter, thresholds, workers):
    """Yield (tile, maps, labels, seeds) for (tile, maps) items, in their order.

    With ``workers > 1`` the post-processing runs in a thread pool while the next batches
    go through the network: the watershed, the h-maxima kernel and torch release the
    GIL, so a GPU is not left waiting for the CPU. At most ``2 * workers + 1`` tiles are
    in flight, which bounds memory.
    """

    def labels(maps):
        if not isinstance(maps, np.ndarray):  # device maps kept by the diameter estimate
            maps = maps.cpu().numpy()
        return maps_to_labels(maps[0], maps[1], diameter=diameter, thresholds=thresholds)

    if workers <= 1:
        for tile, maps in items:
            yield (tile, maps, *labels(maps))
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers, thread_name_prefix="cytotrail-postprocess") as pool:
        pending = deque()
        for tile, maps in items:
            pending.append((tile, maps, pool.submit(labels, maps)))
            if len(pending) > 2 * workers:
                tile, maps, job = pending.popleft()
                yield (tile, maps, *job.result())
        while pending:
            tile, maps, job = pending.popleft()
            yield (tile, maps, *job.result())


def _labels_for_tiles_torch(items, *, diameter, thresholds, device, group):
    """Yield (tile, maps, labels, seeds) for (tile, maps) items, post-processed on ``device``.

    Consecutive maps of the same shape are turned into labels together, up to ``group`` at
    a time (one batch of kernel launches); the labels are the only image copied back.
    """
    from cytotrail.segment.postprocess_torch import maps_to_labels_torch

    torch = _torch()
    pending = []

    def flush():
        maps = torch.stack([m for _, m in pending])
        labels, seeds = maps_to_labels_torch(maps[:, 0], maps[:, 1], diameter=diameter, thresholds=thresholds)
        labels = labels.cpu().numpy()
        done = list(zip(pending, labels, seeds))
        pending.clear()
        for (tile, m), lab, s in done:
            yield tile, m, lab, s

    for tile, maps in items:
        if isinstance(maps, np.ndarray):  # host maps kept by the diameter estimate
            maps = torch.from_numpy(maps).to(device)
        if pending and (pending[0][1].shape != maps.shape or len(pending) >= group):
            yield from flush()
        pending.append((tile, maps))
    if pending:
        yield from flush()


def _release_memory():
    """Hand freed heap memory back to the OS (glibc keeps it otherwise, inflating RSS)."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _paste(out, lab, seeds, tile, next_id, t):
    """Write the objects of a tile whose seed lies in its core into ``out`` (one frame)."""
    if len(seeds) == 0:
        return
    y0, y1, x0, x1 = tile.crop
    cy0, cy1, cx0, cx1 = tile.core
    sy, sx = seeds[:, 0] + y0, seeds[:, 1] + x0
    owned = (sy >= cy0) & (sy < cy1) & (sx >= cx0) & (sx < cx1)
    if not owned.any():
        return
    region = out[y0:y1, x0:x1]
    if owned.all() and next_id[t] == 1 and not region.any():
        # the frame's first tile and all its objects owned (a whole frame): labels as they are
        region[...] = lab
        next_id[t] += len(seeds)
        return
    lut = np.zeros(len(seeds) + 1, np.int64)
    lut[1:][owned] = 1
    new = lut[lab]  # 1 where an owned object is
    write = (new > 0) & (region == 0)
    if not write.any():
        return
    ids = np.unique(lab[write])
    remap = np.zeros(len(seeds) + 1, np.int64)
    remap[ids] = np.arange(next_id[t], next_id[t] + len(ids))
    next_id[t] += len(ids)
    region[write] = remap[lab[write]].astype(np.uint32)


def _scale_for(diameter, config):
    d0 = float(config["train_diameter"])
    if diameter is None:
        return 1.0
    ratio = d0 / float(diameter)
    if 1.0 / _SCALE_TOLERANCE <= ratio <= _SCALE_TOLERANCE:
        return 1.0
    return ratio


def estimate_diameter(
    frames,
    *,
    net,
    config,
    thresholds,
    device,
    amp=True,
    max_iter=3,
    max_side=768,
    max_frames=3,
    maps_cache=None,
    measure="objects",
):
    """Estimate the median nucleus diameter (px) by segmenting a few frames.

    Starts from a classical estimate (the mean distance-to-edge in an Otsu mask, which
    fragmenting cannot bias low; when it is over 2.5 times the network's estimate at
    native scale it is taken for merged clumps and the network's is used), segments at
    the scale it implies and rescales until the nucleus size measured on the network's
    output is stable (``measure``: see :func:`.diameter.network_diameter`; pieces touching
    the crop border are not counted).
    Uses up to ``max_frames`` frames (evenly spaced), centrally cropped to
    ``max_side`` x ``max_side`` *model-scale* pixels, so its cost is bounded. Frames that
    fit whole in the crop leave their network outputs in ``maps_cache`` (see
    ``_segment_tiles``), so that segmenting them at the estimated scale costs no second pass.

    Returns
    -------
    float or None
        None when no nucleus is found (the caller then segments at the native scale).
    """
    from cytotrail.segment.diameter import estimate_diameter_otsu

    check_measure(measure)
    n = frames.shape[0]
    picks = sorted({int(round(i)) for i in np.linspace(0, n - 1, min(n, max_frames))})
    d0 = float(config["train_diameter"])
    found = [d for d in (estimate_diameter_otsu(frames[t]) for t in picks) if d]
    current = float(np.median(found)) if found else None

    def measured_at(diameter):  # the network's typical diameter at diameter's scale (None: native)
        return _median_diameter(
            frames,
            picks,
            diameter,
            net=net,
            config=config,
            thresholds=thresholds,
            device=device,
            amp=amp,
            max_side=max_side,
            maps_cache=maps_cache,
            measure=measure,
        )

    if current is not None and current > _CLASSICAL_TRUST * d0:
        # clumps inflate the Otsu estimate: check it against the network at native scale
        native = measured_at(None)
        if native is not None and current > _CLASSICAL_TRUST * native:
            current = native
    for _ in range(max_iter):
        new = measured_at(current)
        if new is None:
            return current
        if current is not None and abs(math.log(new / current)) < math.log(1.15):
            return new
        if current is None and _scale_for(new, config) == 1.0:
            return new
        if current is not None and _scale_for(new, config) == _scale_for(current, config):
            return new
        current = new
    return current


def _median_diameter(
    frames, picks, diameter, *, net, config, thresholds, device, amp, max_side, maps_cache=None, measure
):
    """Typical nucleus diameter of the network's output at ``diameter``'s scale (None: native)."""
    d0 = float(config["train_diameter"])
    scale = _scale_for(diameter, config)
    side = int(max_side / scale)
    crops = []
    for t in picks:
        f = frames[t]
        y0 = max(0, (f.shape[0] - side) // 2)
        x0 = max(0, (f.shape[1] - side) // 2)
        crops.append(np.asarray(f[y0 : y0 + side, x0 : x0 + side]))
    stack = np.stack(crops)
    whole = stack.shape[1:] == frames.shape[1:]
    local = {}
    labels = _segment_tiles(
        stack,
        net=net,
        config=config,
        thresholds=thresholds,
        device=device,
        diameter=diameter if diameter is not None else d0,
        batch_size=len(picks),
        tile_size=max_side + 2 * int(config.get("tile_margin", 64)),
        amp=amp,
        progress=False,
        keep_maps=local,
    )
    if maps_cache is not None and whole:
        for (i, scale), maps in local.items():
            maps_cache[picks[i], scale] = maps
    maps = [m if isinstance(m, np.ndarray) else m.float().cpu().numpy() for m in local.values()]
    return network_diameter(maps, labels, measure=measure)


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
    was found), the device and the thresholds.
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
    )


def _segment_maps_frame(image, *, net, config, device, diameter, normalized=True):
    """Network maps (2, Y, X) of one whole frame at a known diameter (no tiling).

    ``image`` is already normalised when ``normalized`` (training samples are).
    """
    image = np.asarray(image, np.float32)
    ranges = [(0.0, 1.0)] if normalized else [percentiles(image)]
    scale = _scale_for(diameter, config)
    tiles = list(_tiles(1, image.shape, scale=scale, tile_size=10**9, margin=0, multiple=net.multiple))
    ((_, maps),) = _maps_for_tiles(
        image[None], tiles, net, device=device, ranges=ranges, batch_size=1, amp=True
    )
    return maps
