"""Tiles of a frame: the rescaling factor, the plan (crop and core boxes), padding, and
stitching labels back.

A tile is a core plus a margin of context on each side, in the original pixel grid;
it keeps only the nuclei whose seed lies in its core (:func:`_paste`), and the margin is
wider than a nucleus, so every nucleus is segmented whole by exactly one tile.
"""

from __future__ import annotations

import math

import numpy as np

# diameters within this factor of the training diameter are segmented without rescaling
# (1.5 merged just-divided daughters of 8 px on the demo: nuclei near the low end of the
# training range are better upscaled; 1.2 scored best on dsb2018 val and synthetic frames)
_SCALE_TOLERANCE = 1.2


def _scale_for(diameter, config):
    """The factor that brings nuclei of ``diameter`` px to the model's training diameter.

    1.0 for None and within ``_SCALE_TOLERANCE`` of the training diameter.
    """
    d0 = float(config["train_diameter"])
    if diameter is None:
        return 1.0
    ratio = d0 / float(diameter)
    if 1.0 / _SCALE_TOLERANCE <= ratio <= _SCALE_TOLERANCE:
        return 1.0
    return ratio


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
