"""Network maps to instance labels on the torch device (CUDA, MPS or CPU), in pure torch.

The same steps as :func:`cytotrail.segment.postprocess.maps_to_labels` (h-maxima seeds,
seeded watershed over the foreground, size filter, hole filling), written with
whole-array torch operations so that the maps never leave the GPU and only the labels
come back to the host:

- **h-maxima** by a morphological reconstruction by dilation (iterated 3 x 3 max over
  8 neighbours, stopped when a check every few iterations finds no change) on an int64
  key that makes the result *identical* to the numba union-find: a plateau of height
  ``T`` is an h-maximum when no 8-connected path through pixels above
  ``v*(T) = max{v : float32(T - v) >= h}`` reaches a higher pixel;
- **connected components** (seed cores, foreground components, background holes) by
  min-label hooking and pointer jumping (FastSV), numbered in raster order of their
  first pixel like :func:`scipy.ndimage.label`;
- **seeded watershed** as the fixed point of the priority flood that
  :func:`skimage.segmentation.watershed` runs: every pixel takes the label of its
  4-neighbour reached first, ordered by flood level (the minimax path value of
  ``-centre``), then by steps within a level, then by a fixed direction order.
  Relaxed Bellman-Ford style until nothing changes; equal to skimage's labels except
  where two labels reach a pixel at exactly the same level (skimage then uses its heap
  age);
- **holes** (background components not touching the frame border, 4-connected) take
  the label of the nearest object pixel, found by propagating nearest-source
  coordinates (exact Euclidean distance to each candidate source).

All steps work on a batch (B, Y, X) of equally sized maps at once, which keeps the
number of kernel launches per frame small.
"""

from __future__ import annotations

import numpy as np

from cytotrail.segment.postprocess import DEFAULT_THRESHOLDS

__all__ = ["maps_to_labels_torch", "h_maxima_torch", "label_components"]

# iterative steps (reconstruction, watershed, hole filling) check for a fixed point every
# this many iterations: each check is one device synchronisation
_CHECK_EVERY = 8
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_NEIGHBOURS8 = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx)


def _torch():
    import torch

    return torch


# --------------------------------------------------------------------------------------
# small array helpers


def _ordered(x):
    """Order-preserving int32 image of float32 values (-0.0 and +0.0 map alike)."""
    torch = _torch()
    bits = (x.to(torch.float32) + 0.0).contiguous().view(torch.int32)
    return torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)


def _from_ordered(o):
    """Inverse of :func:`_ordered`."""
    torch = _torch()
    bits = torch.where(o < 0, o ^ 0x7FFFFFFF, o)
    return bits.contiguous().view(torch.float32)


def _nbr(x, dy, dx, fill):
    """The value of each pixel's neighbour at (+dy, +dx) in the last two axes; ``fill`` outside."""
    torch = _torch()
    out = torch.full_like(x, fill)
    h, w = x.shape[-2:]
    ys, yd = (slice(dy, h), slice(0, h - dy)) if dy >= 0 else (slice(0, h + dy), slice(-dy, h))
    xs, xd = (slice(dx, w), slice(0, w - dx)) if dx >= 0 else (slice(0, w + dx), slice(-dx, w))
    out[..., yd, xd] = x[..., ys, xs]
    return out


def _max8(x, fill):
    """3 x 3 maximum (separable)."""
    torch = _torch()
    r = torch.maximum(torch.maximum(x, _nbr(x, 0, -1, fill)), _nbr(x, 0, 1, fill))
    return torch.maximum(torch.maximum(r, _nbr(r, -1, 0, fill)), _nbr(r, 1, 0, fill))


def _until_stable(step, state):
    """Apply ``step`` to the tuple ``state`` until a check every few iterations finds no change."""
    torch = _torch()
    while True:
        before = state
        for _ in range(_CHECK_EVERY):
            state = step(state)
        if all(torch.equal(a, b) for a, b in zip(before, state)):
            return state


def _neighbour_index(at, shape, offsets):
    """(P, K) flat indices of the neighbours at ``offsets`` of the flat pixels ``at`` of a
    (B, Y, X) batch; a neighbour outside its frame gets the sentinel index B * Y * X."""
    torch = _torch()
    b, ny, nx = shape
    py, px = (at % (ny * nx)) // nx, at % nx
    out = []
    for dy, dx in offsets:
        inside = (py + dy >= 0) & (py + dy < ny) & (px + dx >= 0) & (px + dx < nx)
        out.append(torch.where(inside, at + dy * nx + dx, b * ny * nx))
    return torch.stack(out, 1)


def _with_sentinel(image, value):
    """Flat copy of ``image`` with one more element, ``value``, for :func:`_neighbour_index`."""
    torch = _torch()
    return torch.cat([image.reshape(-1), torch.full((1,), value, dtype=image.dtype, device=image.device)])


def _as_batch(array, device):
    """(Y, X) or (B, Y, X) ndarray or tensor -> (B, Y, X) tensor on ``device``, float32 or float64."""
    torch = _torch()
    t = array if isinstance(array, torch.Tensor) else torch.as_tensor(np.asarray(array))
    if device is not None:
        t = t.to(device)
    if t.ndim == 2:
        t = t[None]
    if t.ndim != 3:
        raise ValueError(f"maps must be (Y, X) or (B, Y, X), got shape {tuple(t.shape)}")
    if t.dtype not in (torch.float32, torch.float64):
        t = t.to(torch.float64 if t.device.type != "mps" else torch.float32)
    return t


# --------------------------------------------------------------------------------------
# h-maxima


def _v_star(top, h):
    """Largest float32 ``v`` with ``float32(top - v) >= h``, elementwise (top float32)."""
    torch = _torch()
    h = torch.tensor(h, dtype=torch.float32, device=top.device)
    v = top - h
    ok = (top - v) >= h
    for _ in range(64):  # a few ulps from the first guess; 64 is a safety bound
        up = _from_ordered(_ordered(v) + 1)
        go_up = ok & ((top - up) >= h)
        go_down = ~ok
        if not bool((go_up | go_down).any()):
            break
        v = torch.where(go_up, up, torch.where(go_down, _from_ordered(_ordered(v) - 1), v))
        ok = (top - v) >= h
    return v


def h_maxima_torch(image, h, *, floor=None):
    """Regional maxima of dynamic >= ``h``, 8-connected: the same pixels as
    :func:`cytotrail.segment.postprocess.h_maxima`.

    Parameters
    ----------
    image : (Y, X) or (B, Y, X) tensor or ndarray
        Compared in float32 (as the numba kernel does); NaN pixels are ignored.
    h : float
        Smallest dynamic, > 0.
    floor : float, optional
        Pixels <= ``floor`` are ignored; exact for maxima >= ``floor + h``, no lower ones.

    Returns
    -------
    bool tensor of the shape of ``image`` (on its device)
    """
    torch = _torch()
    if not h > 0:
        raise ValueError(f"h_maxima needs h > 0, got {h!r}")
    t = image if isinstance(image, torch.Tensor) else torch.as_tensor(np.asarray(image, np.float32))
    squeeze = t.ndim == 2
    f = (t[None] if squeeze else t).to(torch.float32)
    floor32 = torch.tensor(-np.inf if floor is None else floor, dtype=torch.float32, device=f.device)
    valid = f > floor32  # False for NaN
    vstar = _v_star(torch.where(valid, f, torch.zeros_like(f)), np.float32(h))
    # key of a pixel as a source: (v*(f), f), lexicographic; as a path pixel: (f, -inf)
    lo = _ordered(f).to(torch.int64) + 2**31 + 1  # >= 1, so that (f, 0) < (f, anything)
    marker = torch.where(valid, (_ordered(vstar).to(torch.int64) << 32) + lo, _INT64_MIN)
    ceiling = torch.where(valid, _ordered(f).to(torch.int64) << 32, _INT64_MIN)

    # relaxed only at the valid pixels (a list), reading their 8 neighbours by index
    at = torch.nonzero(valid.reshape(-1)).squeeze(1)
    nbr = torch.cat([at[:, None], _neighbour_index(at, f.shape, _NEIGHBOURS8)], 1)
    rec = _with_sentinel(marker, _INT64_MIN)
    cap = ceiling.reshape(-1)[at]

    def step(state):
        (r,) = state
        r = torch.minimum(rec[nbr].amax(1), cap)
        rec[at] = r
        return (r,)

    _until_stable(step, (rec[at],))
    out = valid & (rec[:-1].view(f.shape) == marker) & (vstar >= floor32)
    return out[0] if squeeze else out


# --------------------------------------------------------------------------------------
# connected components


def _edges(mask, connectivity):
    """Flat indices (u, v) of neighbouring pixel pairs that are both in ``mask`` (B, Y, X)."""
    torch = _torch()
    b, ny, nx = mask.shape
    idx = torch.arange(mask.numel(), device=mask.device).view(b, ny, nx)
    offsets = [(0, 1), (1, 0)] + ([(1, 1), (1, -1)] if connectivity == 2 else [])
    us, vs = [], []
    for dy, dx in offsets:
        ys, yd = slice(0, ny - dy), slice(dy, ny)
        xs, xd = (slice(0, nx - dx), slice(dx, nx)) if dx >= 0 else (slice(-dx, nx), slice(0, nx + dx))
        both = mask[:, ys, xs] & mask[:, yd, xd]
        us.append(idx[:, ys, xs][both])
        vs.append(idx[:, yd, xd][both])
    return torch.cat(us), torch.cat(vs)


def _roots(mask, connectivity=1):
    """Each pixel's component root: the smallest flat index of its component (itself off the mask)."""
    torch = _torch()
    n = mask.numel()
    parent = torch.arange(n, device=mask.device)
    u, v = _edges(mask, connectivity)
    if u.numel() == 0:
        return parent.view(mask.shape)
    while True:  # FastSV: stochastic + aggressive hooking on grandparents, then shortcutting
        grand = parent[parent]
        gu, gv = grand[u], grand[v]
        parent.scatter_reduce_(0, parent[u], gv, reduce="amin")
        parent.scatter_reduce_(0, parent[v], gu, reduce="amin")
        parent.scatter_reduce_(0, u, gv, reduce="amin")
        parent.scatter_reduce_(0, v, gu, reduce="amin")
        parent = torch.minimum(parent, grand)
        if torch.equal(parent[parent], grand):
            break
    while True:
        nxt = parent[parent]
        if torch.equal(nxt, parent):
            break
        parent = nxt
    return parent.view(mask.shape)


def _rank_roots(roots, mask):
    """Per-frame numbers 1..n of the components, in raster order of their first pixel.

    Returns labels (B, Y, X) int64 (0 off the mask) and counts (B,) int64.
    """
    torch = _torch()
    b = mask.shape[0]
    per_frame = mask[0].numel()
    labels = torch.zeros(mask.shape, dtype=torch.int64, device=mask.device)
    r = roots[mask]
    if r.numel() == 0:
        return labels, torch.zeros(b, dtype=torch.int64, device=mask.device)
    uniq, inverse = torch.unique(r, sorted=True, return_inverse=True)
    frame = uniq // per_frame
    counts = torch.bincount(frame, minlength=b)
    start = torch.cumsum(counts, 0) - counts
    labels[mask] = inverse - start[frame[inverse]] + 1
    return labels, counts


def label_components(mask, *, connectivity=1):
    """Connected components of a boolean image, numbered like :func:`scipy.ndimage.label`.

    Parameters
    ----------
    mask : (Y, X) or (B, Y, X) bool tensor or ndarray
    connectivity : {1, 2}
        1: 4-connected (scipy's default), 2: 8-connected.

    Returns
    -------
    labels : int64 tensor of the shape of ``mask``
        1..n per frame in raster order of each component's first pixel, 0 off the mask.
    counts : (B,) int64 tensor
        Components per frame.
    """
    torch = _torch()
    m = mask if isinstance(mask, torch.Tensor) else torch.as_tensor(np.asarray(mask, bool))
    squeeze = m.ndim == 2
    m = (m[None] if squeeze else m).bool()
    labels, counts = _rank_roots(_roots(m, connectivity), m)
    return (labels[0] if squeeze else labels), counts


# --------------------------------------------------------------------------------------
# seeded watershed

# 4-neighbours in the order that wins ties (after level and steps)
_DIRECTIONS = ((-1, 0), (0, -1), (0, 1), (1, 0))


def _watershed(centre, markers, mask):
    """Labels of the priority flood of ``-centre`` from ``markers`` over ``mask`` (4-connected).

    centre (B, Y, X) float32; markers (B, Y, X) int64 (0: none); mask bool.
    """
    torch = _torch()
    level = _ordered(-centre.to(torch.float32)).to(torch.int64)
    free = mask & (markers == 0)
    key = torch.where(mask & (markers > 0), level << 32, _INT64_MAX)
    labels = torch.where(mask, markers, 0)
    # relaxed only at the free pixels (a list), reading their 4 neighbours by index
    at = torch.nonzero(free.reshape(-1)).squeeze(1)
    nbr = _neighbour_index(at, free.shape, _DIRECTIONS)
    key, labels = _with_sentinel(key, _INT64_MAX), _with_sentinel(labels, 0)
    own = level.reshape(-1)[at]

    def step(state):
        # a pixel is popped after its first-popped neighbour (the smallest key; ties: the
        # first in _DIRECTIONS), at that neighbour's level one step later, or at its own
        # level (step 0) when it lies higher in the flood
        k = key[nbr]
        best, j = k.min(1)
        lab = labels[nbr].gather(1, j[:, None])[:, 0]
        new = torch.where((best >> 32) >= own, best + 1, own << 32)
        new = torch.where(best == _INT64_MAX, _INT64_MAX, new)
        key[at] = new
        labels[at] = lab
        return new, lab

    _until_stable(step, (key[at], labels[at]))
    return labels[:-1].view(free.shape)


# --------------------------------------------------------------------------------------
# holes


def _fill_holes(labels):
    """Background components (4-connected) that do not touch the frame border take the label
    of the nearest object pixel."""
    torch = _torch()
    b, ny, nx = labels.shape
    background = labels == 0
    if not bool(background.any()) or not bool((~background).any()):
        return labels
    roots = _roots(background, 1)
    border = torch.zeros_like(background)
    border[:, 0, :] = border[:, -1, :] = True
    border[:, :, 0] = border[:, :, -1] = True
    open_ = torch.zeros(labels.numel(), dtype=torch.bool, device=labels.device)
    open_[roots[border & background]] = True
    holes = background & ~open_[roots]
    if not bool(holes.any()):
        return labels
    # nearest object pixel: propagate (squared distance, source flat index) through the hole
    # pixels only (a short list), each taking the best source among its 8 neighbours'
    flat = holes.reshape(-1)
    at = torch.nonzero(flat).squeeze(1)  # hole pixels, flat indices
    py, px = (at % (ny * nx)) // nx, at % nx
    nbr = []
    for dy, dx in _NEIGHBOURS8:
        inside = (py + dy >= 0) & (py + dy < ny) & (px + dx >= 0) & (px + dx < nx)
        nbr.append(torch.where(inside, at + dy * nx + dx, at))
    nbr = torch.stack(nbr, 1)  # (P, 8)
    source = torch.where(flat, -1, torch.arange(flat.numel(), device=flat.device))
    near = labels.numel()  # candidate sources compare by (distance^2, index): ties go to the first
    best = torch.full(at.shape, _INT64_MAX, dtype=torch.int64, device=flat.device)
    rows = torch.arange(at.numel(), device=flat.device)

    def step(state):
        best, source = state
        s = source[nbr]
        sy, sx = (s % (ny * nx)) // nx, s % nx
        d2 = (py[:, None] - sy) ** 2 + (px[:, None] - sx) ** 2
        k, j = torch.where(s >= 0, d2 * near + s, _INT64_MAX).min(1)
        better = k < best
        source = source.clone()
        source[at] = torch.where(better, s[rows, j], source[at])
        return torch.where(better, k, best), source

    _, source = _until_stable(step, (best, source))
    filled = labels.reshape(-1).clone()
    got = source[at]
    filled[at] = torch.where(got >= 0, filled[got.clamp(min=0)], 0)
    return filled.view(labels.shape)


# --------------------------------------------------------------------------------------
# maps to labels


def maps_to_labels_torch(fg, centre, *, diameter, thresholds=None, device=None):
    """Instance labels from foreground probability and centre-ness maps, on the torch device.

    The torch twin of :func:`cytotrail.segment.postprocess.maps_to_labels` (same seeds,
    watershed, size filter and hole filling; see the module docstring for where labels
    may differ), for a batch of equally sized maps.

    Parameters
    ----------
    fg, centre : (Y, X) or (B, Y, X) float tensor or ndarray
        Foreground probability and centre-ness, both in [0, 1].
    diameter : float
        Typical nucleus diameter in pixels of these maps (sets the smallest object).
    thresholds : dict, optional
        Keys of :data:`cytotrail.segment.postprocess.DEFAULT_THRESHOLDS`.
    device : torch.device, optional
        Where to compute (default: the device of ``fg`` when it is a tensor, else the CPU).

    Returns
    -------
    labels : (B, Y, X) int32 tensor on the device
        Objects numbered 1..n per frame in the order of their seeds (row-major).
    seeds : list of (n, 2) float ndarray
        Per frame, the centroid (y, x) of each object's seed.
    """
    torch = _torch()
    th = dict(DEFAULT_THRESHOLDS)
    th.update(thresholds or {})
    fg = _as_batch(fg, device)
    centre = _as_batch(centre, fg.device)
    if fg.shape != centre.shape:
        raise ValueError(f"fg {tuple(fg.shape)} and centre {tuple(centre.shape)} differ in shape")
    b = fg.shape[0]
    dev = fg.device
    empty = [np.zeros((0, 2)) for _ in range(b)]
    min_area = max(4.0, th["min_area"] * np.pi * diameter**2 / 4.0)
    mask = fg > torch.tensor(th["foreground"], dtype=fg.dtype, device=dev)
    if not bool(mask.any()):
        return torch.zeros(fg.shape, dtype=torch.int32, device=dev), empty
    if th["h"] > 0:
        peaks = h_maxima_torch(centre, th["h"], floor=th["seed"] - th["h"])
    else:
        peaks = torch.ones_like(mask)
    cores = peaks & (centre > torch.tensor(th["seed"], dtype=centre.dtype, device=dev)) & mask
    markers, n_core = _rank_roots(_roots(cores, 1), cores)
    # orphan foreground: components without a core become their own seed
    comp = _roots(mask, 1)
    has_core = torch.zeros(mask.numel(), dtype=torch.bool, device=dev)
    has_core[comp[cores]] = True
    orphan = mask & ~has_core[comp]
    extra, _ = _rank_roots(comp, orphan)
    markers = torch.where(orphan, extra + n_core.view(b, 1, 1), markers)
    n = markers.reshape(b, -1).amax(1)  # seeds per frame (numbered 1..n)
    if not bool((n > 0).any()):
        return torch.zeros(fg.shape, dtype=torch.int32, device=dev), empty
    labels = _watershed(centre.to(torch.float32), markers, mask)
    # size filter: ids per frame -> global ids, areas, kept ids renumbered 1..k in seed order
    offset = torch.cumsum(n, 0) - n
    total = int(n.sum())
    gl = torch.where(labels > 0, labels + offset.view(b, 1, 1), 0).reshape(-1)
    area = torch.bincount(gl, minlength=total + 1)
    keep = area >= min_area
    keep[0] = False
    frame_of = torch.repeat_interleave(torch.arange(b, device=dev), n)
    kept = torch.cat([torch.zeros(1, dtype=torch.bool, device=dev), keep[1:]])
    rank = torch.cumsum(keep[1:].to(torch.int64), 0)
    kept_per_frame = torch.bincount(frame_of[keep[1:]], minlength=b)
    first = torch.cumsum(kept_per_frame, 0) - kept_per_frame
    lut = torch.zeros(total + 1, dtype=torch.int64, device=dev)
    lut[1:] = torch.where(keep[1:], rank - first[frame_of], 0)
    out = lut[gl].view(fg.shape).to(torch.int32)
    # seeds: exact centroids of the kept markers (integer sums, divided on the host)
    gm = torch.where(markers > 0, markers + offset.view(b, 1, 1), 0).reshape(-1)
    ny, nx = fg.shape[1:]
    yy = torch.arange(ny, device=dev).view(1, ny, 1).expand(b, ny, nx).reshape(-1)
    xx = torch.arange(nx, device=dev).view(1, 1, nx).expand(b, ny, nx).reshape(-1)
    sums = torch.zeros((3, total + 1), dtype=torch.int64, device=dev)
    sums[0].index_add_(0, gm, torch.ones_like(gm))
    sums[1].index_add_(0, gm, yy)
    sums[2].index_add_(0, gm, xx)
    sums = sums[:, kept].cpu().numpy()
    frames_kept = frame_of[keep[1:]].cpu().numpy()
    centroids = np.stack([sums[1] / sums[0], sums[2] / sums[0]], 1) if sums.shape[1] else np.zeros((0, 2))
    seeds = [centroids[frames_kept == i].reshape(-1, 2) for i in range(b)]
    if not bool((out > 0).any()):
        return out, seeds
    return _fill_holes(out), seeds
