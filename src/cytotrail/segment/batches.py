"""Host side of inference: tiles normalised, rescaled, padded and stacked into batches,
optionally prepared in a background thread ahead of the device."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from cytotrail.segment.preprocess import normalize
from cytotrail.segment.tiles import _pad_to


def _resize(array, size, *, antialias=True):
    """Bilinear resize of (N, C, H, W) float32 ndarray (or tensor, on its device) to (N, C, *size)."""
    import torch

    if tuple(array.shape[-2:]) == tuple(size):
        return array
    tensor = isinstance(array, torch.Tensor)
    t = array if tensor else torch.from_numpy(np.ascontiguousarray(array))
    down = size[0] < array.shape[-2] or size[1] < array.shape[-1]
    out = torch.nn.functional.interpolate(
        t, size=tuple(size), mode="bilinear", align_corners=False, antialias=bool(antialias and down)
    )
    return out if tensor else out.numpy()


def _host_batches(frames, tiles, *, ranges, batch_size, batch_pixels):
    """Yield (tiles, batch (N, H, W) float32): tiles normalised, smoothed, rescaled, padded and
    stacked on the host, grouped by padded shape.

    ``ranges``: per frame, (low, high) intensity that map to 0 and 1, and the Gaussian sigma
    (frame pixels, 0: none) of :func:`cytotrail.segment.preprocess.denoise_sigma`.
    """
    pending = []

    def stack():
        group = [tile for tile, _ in pending]
        batch = np.stack([_pad_to(img, tile.padded) for tile, img in pending])
        pending.clear()
        return group, batch

    for tile in tiles:
        y0, y1, x0, x1 = tile.crop
        p_lo, p_hi, sigma = ranges[tile.frame]
        img = normalize(frames[tile.frame][y0:y1, x0:x1], p_lo, p_hi)
        if sigma > 0:  # the tile's margin is far wider than the kernel
            img = ndi.gaussian_filter(img, sigma, mode="reflect")
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
