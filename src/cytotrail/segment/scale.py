"""The scale loop: the nucleus diameter of a stack, estimated by segmenting a few frames
(the rescaling factor a diameter implies is :func:`.tiles._scale_for`)."""

from __future__ import annotations

import math

import numpy as np

from cytotrail.segment.diameter import check_measure, network_diameter
from cytotrail.segment.tiled import _segment_tiles
from cytotrail.segment.tiles import _scale_for

# a classical (Otsu) diameter estimate more than this many times the network's native-scale
# estimate is taken for clumps and replaced by the network's (checked only above this x d0)
_CLASSICAL_TRUST = 2.5


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
