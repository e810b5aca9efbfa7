"""Network maps of tiles to labels: on the host (numba and scipy, optionally in a thread
pool) or on the device (:mod:`.postprocess_torch`, in groups of the same shape)."""

from __future__ import annotations

import numpy as np

from cytotrail.segment.postprocess import maps_to_labels


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
    import torch

    from cytotrail.segment.postprocess_torch import maps_to_labels_torch

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
