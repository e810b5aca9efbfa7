"""Per-cell marker intensities and morphology, vectorised over labels.

One row per cell per frame. Every statistic is computed for all cells of a frame at once
on a flat label index: means, sums, standard deviations, minima and maxima in one pass
over the pixels per channel (a small numba kernel walking the runs of equal label along
the rows and accumulating per-cell sums, squares, minima and maxima for the nucleus and
the cytoplasm together, 8 channels per pass, the cell combined from both; without numba,
``ufunc.reduceat`` over the pixels sorted by cell), medians and
percentiles from one integer sort of ``(cell, value)`` keys per channel. Channels are
streamed one at a time, so memory does not grow with the number of channels. Integer
images of up to 16 bits give exact sums and standard deviations. The morphology equals
:func:`skimage.measure.regionprops_table` to float precision, computed for all labels at
once except the convex hull (solidity), which loops over labels.

Columns of the returned table
-----------------------------
``frame, label``
    Frame index and label id of the cell (its nucleus label).
``y, x``
    Centroid of the nucleus, in **pixels** (the coordinates of the tracks table).
``area, perimeter, eccentricity, solidity, axis_major_length, axis_minor_length, orientation``
    As in ``regionprops`` of the nucleus label: lengths in µm and area in µm² (pixels
    when ``pixel_size_um=1``), orientation in radians.
``border_distance``
    Distance from the centroid to the nearest image edge, in µm.
``n_neighbours``
    Other cells of the same frame whose centroids lie within ``neighbour_radius_um``.
``<marker>_<compartment>_<statistic>``
    Intensity statistics, e.g. ``CD3_cell_mean`` or ``Ki67_nucleus_p90``.

Compartments: ``nucleus`` is the label itself; ``cytoplasm`` is a ring grown from it by
``cytoplasm_um`` that never crosses into a neighbour (as
:func:`skimage.segmentation.expand_labels`); ``cell`` is both together. With whole-cell
masks (``cells=``, e.g. from :func:`cytotrail.segment.cells.grow_cells`), ``cell`` is the
mask of the same label and ``cytoplasm`` the cell less its nucleus. A cytoplasm that is
empty (a nucleus surrounded by other nuclei) gives NaN statistics and a zero sum.
"""

from __future__ import annotations

import re
from collections import namedtuple

import numpy as np
import pandas as pd

from cytotrail.checks import label_stack, labels_and_image
from cytotrail.io import InputError

__all__ = ["MORPHOLOGY_COLUMNS", "STATISTICS", "quantify"]

STATISTICS = ("mean", "median", "std", "sum", "min", "max")
COMPARTMENTS = ("nucleus", "cytoplasm", "cell")
MORPHOLOGY_COLUMNS = (
    "area",
    "perimeter",
    "eccentricity",
    "solidity",
    "axis_major_length",
    "axis_minor_length",
    "orientation",
    "border_distance",
    "n_neighbours",
)
_PERCENTILE = re.compile(r"^p(\d+(?:\.\d+)?)$")

# perimeter weights of skimage.measure.perimeter (4-connectivity border, Benkrid & Crookes)
_PERIMETER_WEIGHTS = np.zeros(50)
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1.0
_PERIMETER_WEIGHTS[[21, 33]] = np.sqrt(2.0)
_PERIMETER_WEIGHTS[[13, 23]] = (1.0 + np.sqrt(2.0)) / 2.0


def quantify(
    labels,
    image,
    *,
    channel_names,
    markers=None,
    statistics=("mean",),
    compartments=COMPARTMENTS,
    cytoplasm_um=3.0,
    pixel_size_um=1.0,
    background=None,
    percentiles=(),
    neighbour_radius_um=30.0,
    morphology=True,
    background_block_um=50.0,
    threads=1,
    cells=None,
):
    """Measure every cell of every frame: morphology plus per-channel intensity statistics.

    Parameters
    ----------
    labels : (T, Y, X) or (Y, X) int ndarray
        Nucleus labels, 0 = background. The label of a cell is kept as its ``label``.
    image : (T, C, Y, X) or (C, Y, X) ndarray
        Intensities; frames and pixels aligned with ``labels``.
    channel_names : sequence of str
        One unique name per channel C.
    markers : sequence of str, optional
        Channels to measure (default: all), in the order of the output columns.
    statistics : sequence of str
        Any of ``mean, median, std, sum, min, max`` and percentiles written ``pNN``
        (``p90``, ``p99.5``). ``std`` is the population standard deviation (ddof 0).
        Percentiles interpolate linearly, like :func:`numpy.percentile`.
    compartments : sequence of str
        Any of ``nucleus, cytoplasm, cell``.
    cytoplasm_um : float
        Width of the cytoplasm ring grown from each nucleus, in µm.
    pixel_size_um : float
        Pixel size in µm: scales the morphology and converts ``cytoplasm_um`` to pixels.
    background : None, "auto", "local", dict or sequence of float
        Subtracted from each channel before the statistics: a value per channel
        (``{marker: value}`` or one value per channel of ``channel_names``); ``"auto"``,
        the median of the pixels outside every cell (nucleus plus ring) of each frame; or
        ``"local"``, that median per block of ``background_block_um`` interpolated
        (bilinear) at each cell's centroid, for uneven illumination. Values are not
        clipped at zero.
    percentiles : sequence of float
        Extra percentiles, same as adding ``pNN`` to ``statistics``.
    neighbour_radius_um : float
        Radius for ``n_neighbours`` (centroid to centroid), in µm.
    morphology : bool
        Measure the shape columns (the centroid, ``frame`` and ``label`` are always there).
    background_block_um : float
        Block size of ``background="local"``, in µm.
    threads : int
        Threads for the per-channel accumulation (blocks of 8 channels run in parallel;
        the results do not depend on it).
    cells : ndarray like ``labels``, optional
        Whole-cell labels, each cell labelled like its nucleus: they replace the ring
        (``cytoplasm_um`` is then unused). A nucleus pixel always belongs to its cell;
        cell pixels whose label is not a nucleus of the frame are ignored.

    Returns
    -------
    DataFrame
        One row per cell per frame, sorted by frame then label; columns described in the
        module docstring.

    Raises
    ------
    InputError
        Unknown markers (naming them and the available channels), duplicated channel
        names, unknown statistics or compartments, shapes that do not match, or NaN /
        infinite pixels in a measured channel. Negative intensities are measured as they
        are.
    """
    labels, image = labels_and_image(labels, image)
    names = [str(n) for n in channel_names]
    if len(names) != image.shape[1]:
        raise InputError(
            f"image has {image.shape[1]} channel(s) but {len(names)} channel name(s) were given: {names}"
        )
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise InputError(f"duplicated channel names {duplicated}; channel names must be unique")
    markers = names if markers is None else [str(m) for m in markers]
    missing = [m for m in markers if m not in names]
    if missing:
        raise InputError(f"markers {missing} are not channels of the image; available channels: {names}")
    if len(set(markers)) != len(markers):
        raise InputError(f"markers are duplicated: {markers}")
    stats = _parse_statistics(statistics, percentiles)
    compartments = list(dict.fromkeys(compartments))
    unknown = [c for c in compartments if c not in COMPARTMENTS]
    if unknown:
        raise InputError(f"unknown compartments {unknown}; choose from {list(COMPARTMENTS)}")
    if pixel_size_um is None or not pixel_size_um > 0:
        raise InputError(f"pixel_size_um must be positive, got {pixel_size_um}")
    if cytoplasm_um is None or cytoplasm_um < 0:
        raise InputError(f"cytoplasm_um must be >= 0, got {cytoplasm_um}")
    channels = [names.index(m) for m in markers]
    bg = _background_values(background, names, channels)
    if cells is not None:
        cells = label_stack(cells, name="cell labels")
        if cells.shape != labels.shape:
            raise InputError(
                f"cell labels {cells.shape} and nucleus labels {labels.shape} do not "
                "match: expected the same (T, Y, X)"
            )

    frames = []
    for t in range(labels.shape[0]):
        frames.append(
            _quantify_frame(
                labels[t],
                image[t],
                t,
                markers=markers,
                channels=channels,
                stats=stats,
                compartments=compartments,
                grow_px=cytoplasm_um / pixel_size_um,
                pixel_size_um=pixel_size_um,
                background=bg,
                neighbour_radius_um=neighbour_radius_um,
                morphology=morphology,
                block_px=max(int(round(background_block_um / pixel_size_um)), 2),
                threads=threads,
                cells=None if cells is None else cells[t],
            )
        )
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------------------
# options


def _parse_statistics(statistics, percentiles):
    """List of (column suffix, kind, q) for the requested statistics, duplicates removed."""
    if isinstance(statistics, str):
        statistics = [statistics]
    out = {}
    for s in list(statistics) + [f"p{_fmt_q(q)}" for q in percentiles]:
        s = str(s).strip().lower()
        if s in STATISTICS:
            out[s] = (s, s, None)
            continue
        match = _PERCENTILE.match(s)
        if match is None or not 0 <= float(match.group(1)) <= 100:
            raise InputError(
                f"unknown statistic {s!r}; choose from {list(STATISTICS)} or a "
                "percentile pNN with 0 <= NN <= 100 (e.g. p90)"
            )
        q = float(match.group(1))
        name = f"p{_fmt_q(q)}"
        out[name] = (name, "percentile", q)
    if not out:
        raise InputError("no statistics requested")
    return list(out.values())


def _fmt_q(q):
    q = float(q)
    return str(int(q)) if q.is_integer() else f"{q:g}"


def _background_values(background, names, channels):
    """Per measured channel: a float, or None for "auto" (estimated per frame)."""
    if background is None:
        return [0.0] * len(channels)
    if isinstance(background, str):
        if background not in ("auto", "local"):
            raise InputError(
                f"background must be None, 'auto', 'local', a dict or one value per "
                f"channel; got {background!r}"
            )
        return [None if background == "auto" else "local"] * len(channels)
    if isinstance(background, dict):
        unknown = [k for k in background if k not in names]
        if unknown:
            raise InputError(f"background given for unknown channels {unknown}; channels: {names}")
        return [float(background.get(names[c], 0.0)) for c in channels]
    values = np.asarray(background, dtype=float).ravel()
    if len(values) != len(names):
        raise InputError(f"background has {len(values)} value(s) but the image has {len(names)} channel(s)")
    return [float(values[c]) for c in channels]


# --------------------------------------------------------------------------------------
# one frame


class _Index:
    """Flat label index of one compartment: ``idx`` in 0..n (0 = not in the compartment).

    ``pos`` lists the flat positions of the compartment's pixels sorted by cell (one
    counting sort per frame), so that every per-channel statistic is a gather plus a
    ``ufunc.reduceat`` over contiguous segments.
    """

    def __init__(self, idx, n, counts=None):
        self.idx = idx
        self.n = n
        if counts is None:
            kernels = _numba_kernels()
            if kernels is not None:  # no int64 copy of the index, as bincount makes
                counts = kernels.count_slots(idx, n + 1)[1:]
            else:
                counts = np.bincount(idx, minlength=n + 1)[1:]
        self.counts = counts
        self._pos = None

    @property
    def pos(self):
        if self._pos is None:
            fg = np.flatnonzero(self.idx)
            cells = self.idx[fg]
            # radix sort for small ids
            cells = cells.astype(np.uint16 if self.n < 2**16 else np.int64)
            self._pos = fg[np.argsort(cells, kind="stable")]
        return self._pos

    @property
    def cell(self):
        """Cell id (1..n) of every position of ``pos``."""
        return np.repeat(np.arange(1, self.n + 1), self.counts)

    @property
    def nonempty(self):
        return np.flatnonzero(self.counts)

    @property
    def starts(self):
        """Start of each non-empty cell's segment in ``pos``."""
        ends = np.cumsum(self.counts)
        return (ends - self.counts)[self.counts > 0]


def _label_index(lab):
    """Label ids of a frame (sorted), the (Y*X,) index image mapping pixels to 1..n, the
    lookup table from label to index (None for very large label values) and the pixel
    count of every label (None when not counted on the way)."""
    flat = lab.ravel()
    top = int(flat.max(initial=0))
    kernels = _numba_kernels()
    if kernels is not None and top <= 4 * flat.size + 1024 and top < 2**31 - 1:
        # one counting pass and one relabelling pass, no int64 copy of the labels
        counts = kernels.count_slots(flat, top + 1)
        ids = np.flatnonzero(counts[1:]) + 1
        lut = np.zeros(top + 1, np.int32)
        lut[ids] = np.arange(1, len(ids) + 1, dtype=np.int32)
        return ids, kernels.relabel(flat, lut), lut, counts[ids]
    if top <= 4 * flat.size + 1024:
        present = np.bincount(flat, minlength=top + 1).astype(bool)
        present[0] = False
        ids = np.flatnonzero(present)
        lut = np.zeros(top + 1, np.int32 if 2 * len(ids) + 1 < 2**31 else np.int64)
        lut[ids] = np.arange(1, len(ids) + 1)
        return ids, lut[flat], lut, None
    ids, inverse = np.unique(flat, return_inverse=True)
    if len(ids) and ids[0] == 0:
        ids = ids[1:]
    else:
        inverse = inverse + 1
    return ids, inverse.astype(np.int64), None, None


def _quantify_frame(
    lab,
    img,
    t,
    *,
    markers,
    channels,
    stats,
    compartments,
    grow_px,
    pixel_size_um,
    background,
    neighbour_radius_um,
    morphology,
    block_px,
    threads,
    cells=None,
):
    ids, nuc_idx, lut, nuc_counts = _label_index(lab)
    n = len(ids)
    shape = lab.shape
    cols = {"frame": np.full(n, t, np.int64), "label": ids.astype(np.int64)}
    nucleus = _Index(nuc_idx, n, counts=nuc_counts)

    index = {"nucleus": nucleus}
    needs_ring = (
        any(c in ("cytoplasm", "cell") for c in compartments) or None in background or "local" in background
    )
    if needs_ring:
        if cells is None:
            cell_idx = _grow_index(nuc_idx, lab, ids, lut, grow_px, threads)
        else:
            cell_idx = _cell_index(nuc_idx, cells.ravel(), ids)
        index["cell"] = _Index(cell_idx, n)
        ring = np.where(nuc_idx > 0, 0, cell_idx)
        index["cytoplasm"] = _Index(ring, n, counts=index["cell"].counts - nucleus.counts)
    outside = blocks = None
    if None in background or "local" in background:
        outside = index["cell"].idx == 0
    if "local" in background:
        blocks = _block_index(outside, shape, block_px)

    kernels = _numba_kernels() if any(k in _MOMENT_KINDS for _, k, _ in stats) else None
    combo = None
    if kernels is not None:
        # one flat index for both parts of the cell: nucleus 1..n, cytoplasm n+1..2n
        dtype = np.int32 if 2 * n + 1 < 2**31 else np.int64
        combo = nuc_idx.astype(dtype, copy="cytoplasm" in index)
        if "cytoplasm" in index:
            ring = index["cytoplasm"].idx
            combo[ring > 0] = ring[ring > 0] + n

    moments = [st for st in stats if st[1] in _MOMENT_KINDS]
    exact_ints = img.dtype.kind in "ui" and img.dtype.itemsize <= 2
    runs = position_sums = None
    if combo is not None:
        # runs of at most 2**15 pixels (the integer kernel sums 16-bit values of a run in
        # int32), and the nuclei's coordinate sums on the way
        *runs, ysum, xsum = kernels.runs(combo, 2**15, shape[1], n + 1)
        position_sums = (ysum, xsum)
    cols.update(
        _morphology(
            lab,
            nucleus,
            shape,
            pixel_size_um,
            neighbour_radius_um,
            full=morphology,
            position_sums=position_sums,
        )
    )
    squares = exact_ints and any(kind == "std" for _, kind, _ in moments)
    chunk = 8 * max(int(threads), 1)  # channels held as accumulators at a time
    accumulated = {}
    for j, (marker, c, bg) in enumerate(zip(markers, channels, background)):
        if moments and kernels is not None and j % chunk == 0:
            accumulated = dict(
                zip(
                    range(j, j + chunk),
                    _accumulate_channels(
                        img, channels[j : j + chunk], runs, 2 * n + 1, squares, kernels, threads
                    ),
                )
            )
        values = img[c].ravel()
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            bad = int(np.count_nonzero(~np.isfinite(values)))
            raise InputError(
                f"channel {marker!r} of frame {t} has {bad} NaN or infinite "
                "pixel(s); fill them (e.g. with 0) before quantifying"
            )
        if bg is None:
            bg = float(np.median(values[outside])) if outside.any() else 0.0
        elif isinstance(bg, str):  # "local"
            bg = _local_background(values, outside, blocks, cols["y"], cols["x"], block_px)
        results = {comp: {} for comp in compartments}
        if moments and kernels is not None:
            for comp, out in _moment_stats(
                values, accumulated.pop(j), combo, index, compartments, moments, bg, kernels
            ).items():
                results[comp].update(out)
        for comp in sorted(compartments, key=("nucleus", "cytoplasm", "cell").index):
            todo = [st for st in stats if st[0] not in results[comp]]
            if comp == "cell" and todo and {"nucleus", "cytoplasm"} <= set(compartments):
                results["cell"].update(_combine_parts(results["nucleus"], results["cytoplasm"], index, todo))
                todo = [st for st in stats if st[0] not in results[comp]]
            if todo:
                results[comp].update(_channel_stats(values, index[comp], todo, bg))
        for comp in compartments:
            for name, *_ in stats:
                cols[f"{marker}_{comp}_{name}"] = results[comp][name]
    return pd.DataFrame(cols)


_GROW_KERNEL_MAX_PX = 9.0


def _cell_index(nuc_idx, flat_cells, ids):
    """The flat cell index of whole-cell labels: each pixel mapped to the index (1..n) of the
    nucleus with its label, 0 where no nucleus has it; nucleus pixels keep their own."""
    pos = np.searchsorted(ids, flat_cells)
    pos = np.minimum(pos, max(len(ids) - 1, 0))
    found = (flat_cells > 0) & (ids[pos] == flat_cells) if len(ids) else flat_cells < 0
    cell_idx = np.where(found, pos + 1, 0).astype(nuc_idx.dtype)
    return np.where(nuc_idx > 0, nuc_idx, cell_idx)


def _grow_index(nuc_idx, lab, ids, lut, distance, threads):
    """The flat cell index: nuclei grown by ``distance`` px without crossing into each other.

    The same pixels as ``skimage.segmentation.expand_labels(lab, distance)``, ties included
    (a test compares them), computed on the index image in one numba pass over the offsets
    of the disc, nearest first, instead of a Euclidean feature transform of the whole
    frame: 6-10x faster at 3 px, in row blocks over ``threads``. Its cost grows with the
    area of the disc, so above ``_GROW_KERNEL_MAX_PX`` (where the two break even on sparse
    nuclei) ``expand_labels`` itself is called.
    """
    if distance <= 0:
        return nuc_idx
    kernels = _numba_kernels()
    if kernels is None or distance > _GROW_KERNEL_MAX_PX:
        from skimage.segmentation import expand_labels

        grown = expand_labels(lab, distance=distance).ravel()
        if lut is not None:
            return lut[grown]
        cell_idx = np.searchsorted(ids, grown) + 1
        cell_idx[grown == 0] = 0
        return cell_idx
    r = int(np.floor(distance))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    d2 = (dy * dy + dx * dx).ravel()
    keep = (np.sqrt(d2.astype(np.float64)) <= distance) & (d2 > 0)
    dy, dx, d2 = dy.ravel()[keep], dx.ravel()[keep], d2[keep]
    order = np.lexsort((dy, dx, d2))  # nearest first, then smaller column, then smaller row
    dy, dx = dy[order].astype(np.int64), dx[order].astype(np.int64)
    height, width = lab.shape
    out = np.empty_like(nuc_idx)
    bounds = np.linspace(0, height, max(int(threads), 1) + 1).astype(int)
    if threads > 1 and height >= 64:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(
                pool.map(
                    lambda b: kernels.grow(nuc_idx, width, dy, dx, b[0], b[1], out),
                    zip(bounds[:-1], bounds[1:]),
                )
            )
    else:
        kernels.grow(nuc_idx, width, dy, dx, 0, height, out)
    return out


_MOMENT_KINDS = ("mean", "sum", "std", "min", "max")
_KERNELS = {}
_Kernels = namedtuple(
    "_Kernels",
    "accumulate accumulate_int deviations position_sums "
    "segment_quantiles hull_pixel_counts count_slots relabel runs int_std grow "
    "central_moments border_pixels",
)


def _numba_kernels():
    """One-pass per-cell accumulators compiled with numba (None when numba is missing)."""
    if "accumulate" in _KERNELS:
        return _KERNELS["accumulate"]
    try:
        import numba
    except ImportError:  # the numpy path (reduceat over cell-sorted pixels) takes over
        _KERNELS["accumulate"] = None
        return None

    @numba.njit(cache=True, nogil=True)
    def count_slots(idx, n_slots):
        # np.bincount without the int64 copy of the index
        counts = np.zeros(n_slots, np.int64)
        for i in range(idx.size):
            counts[idx[i]] += 1
        return counts

    @numba.njit(cache=True, nogil=True)
    def relabel(flat, lut):
        out = np.empty(flat.size, lut.dtype)
        for i in range(flat.size):
            out[i] = lut[flat[i]]
        return out

    @numba.njit(cache=True, nogil=True)
    def runs(combo, max_len, width, n_pos):
        # start, end and slot of every run of equal non-zero slot along the rows of the
        # flat index, runs longer than max_len cut into pieces; and, for the slots below
        # n_pos, the sums of the row and column coordinates of their pixels
        m = 0
        prev = 0
        length = 0
        for i in range(combo.size):
            v = combo[i]
            if v != prev or (v > 0 and (length == max_len or i % width == 0)):
                if v > 0:
                    m += 1
                prev = v
                length = 0
            length += 1
        start = np.empty(m, np.int64)
        end = np.empty(m, np.int64)
        slot = np.empty(m, combo.dtype)
        j = -1
        prev = 0
        length = 0
        for i in range(combo.size):
            v = combo[i]
            if v != prev or (v > 0 and (length == max_len or i % width == 0)):
                if prev > 0:
                    end[j] = i
                if v > 0:
                    j += 1
                    start[j] = i
                    slot[j] = v
                prev = v
                length = 0
            length += 1
        if prev > 0:
            end[j] = combo.size
        ys = np.zeros(n_pos)
        xs = np.zeros(n_pos)
        for r in range(m):
            k = slot[r]
            if k < n_pos:
                a = start[r]
                ln = end[r] - a
                y = a // width
                x = a - y * width
                ys[k] += y * ln
                xs[k] += x * ln + ln * (ln - 1) // 2
        return start, end, slot, ys, xs

    @numba.njit(cache=True, nogil=True)
    def accumulate_int(values, run_start, run_end, run_slot, n_slots, squares):
        # integer values of at most 16 bits, runs of at most 2**15 pixels: exact int32
        # sums along a run, int64 per slot. Two channels per pass over a run: half the
        # (mispredicted) loop exits of these short runs. Squares are always summed.
        nc = values.shape[0]
        s = np.zeros((nc, n_slots), np.int64)
        ss = np.zeros((nc, n_slots), np.int64)
        lo = np.full((nc, n_slots), np.int64(2**40))
        hi = np.full((nc, n_slots), np.int64(-(2**40)))
        for r in range(run_start.size):
            k = run_slot[r]
            a = run_start[r]
            b = run_end[r]
            for c in range(0, nc, 2):
                d = min(c + 1, nc - 1)  # the second channel (the first again when nc is odd)
                row0 = values[c]
                row1 = values[d]
                t0 = np.int32(0)
                t1 = np.int32(0)
                q0 = np.int64(0)
                q1 = np.int64(0)
                l0 = np.int32(2**30)
                l1 = np.int32(2**30)
                h0 = np.int32(-(2**30))
                h1 = np.int32(-(2**30))
                for i in range(a, b):
                    v0 = np.int32(row0[i])
                    v1 = np.int32(row1[i])
                    t0 += v0
                    t1 += v1
                    q0 += np.int64(v0) * v0
                    q1 += np.int64(v1) * v1
                    l0 = min(l0, v0)
                    l1 = min(l1, v1)
                    h0 = max(h0, v0)
                    h1 = max(h1, v1)
                s[c, k] += t0
                ss[c, k] += q0
                lo[c, k] = min(lo[c, k], l0)
                hi[c, k] = max(hi[c, k], h0)
                if d != c:
                    s[d, k] += t1
                    ss[d, k] += q1
                    lo[d, k] = min(lo[d, k], l1)
                    hi[d, k] = max(hi[d, k], h1)
        return s, ss, lo, hi

    @numba.njit(cache=True, nogil=True)
    def accumulate(values, run_start, run_end, run_slot, n_slots, squares):
        # values: (B, N) channels; runs of equal slot along the flat pixels. Per slot and
        # channel: sum, sum of squares, min, max (accumulated in registers along a run)
        nc = values.shape[0]
        s = np.zeros((nc, n_slots))
        ss = np.zeros((nc, n_slots))
        lo = np.full((nc, n_slots), np.inf)
        hi = np.full((nc, n_slots), -np.inf)
        for r in range(run_start.size):
            k = run_slot[r]
            a = run_start[r]
            b = run_end[r]
            for c in range(nc):
                t = 0.0
                q = 0.0
                low = np.inf
                high = -np.inf
                for i in range(a, b):
                    v = np.float64(values[c, i])
                    t += v
                    if squares:
                        q += v * v
                    low = min(low, v)
                    high = max(high, v)
                s[c, k] += t
                ss[c, k] += q
                lo[c, k] = min(lo[c, k], low)
                hi[c, k] = max(hi[c, k], high)
        return s, ss, lo, hi

    @numba.njit(cache=True, nogil=True)
    def int_std(total, squares, count):
        # population std from exact int64 sums and sums of squares, NaN where empty.
        # With a the mean rounded to an integer, the sum of squared deviations from a,
        # squares - 2 a total + m a**2, is an exact integer; the variance is that over m
        # minus ((total - a m) / m)**2 (at most 1/4): no large terms cancel in floats
        out = np.empty(total.size)
        for i in range(total.size):
            m = count[i]
            if m == 0:
                out[i] = np.nan
                continue
            a = np.int64(np.rint(total[i] / m))
            centred = squares[i] - 2 * a * total[i] + m * a * a
            frac = (total[i] - a * m) / m
            out[i] = np.sqrt(max(centred / m - frac * frac, 0.0))
        return out

    @numba.njit(cache=True, nogil=True)
    def deviations(values, combo, n, slot_mean, cell_mean):
        d = np.zeros(2 * n + 1)
        dc = np.zeros(n + 1)
        for i in range(values.size):
            k = combo[i]
            if k > 0:
                v = np.float64(values[i])
                x = v - slot_mean[k]
                d[k] += x * x
                c = k if k <= n else k - n
                y = v - cell_mean[c]
                dc[c] += y * y
        return d, dc

    @numba.njit(cache=True, nogil=True)
    def position_sums(idx, width, n_slots):
        ys = np.zeros(n_slots)
        xs = np.zeros(n_slots)
        for i in range(idx.size):
            k = idx[i]
            if k > 0:
                ys[k] += i // width
                xs[k] += i % width
        return ys, xs

    @numba.njit(cache=True, nogil=True)
    def segment_quantiles(values, starts, counts, qs):
        # linear-interpolated percentiles qs of each cell's segment (as numpy.percentile)
        out = np.full((counts.size, qs.size), np.nan)
        for i in range(counts.size):
            m = counts[i]
            if m == 0:
                continue
            seg = np.sort(values[starts[i] : starts[i] + m]).astype(np.float64)
            for j in range(qs.size):
                pos = qs[j] / 100.0 * (m - 1)
                lo = int(np.floor(pos))
                hi = min(lo + 1, m - 1)
                out[i, j] = seg[lo] + (seg[hi] - seg[lo]) * (pos - lo)
        return out

    @numba.njit(cache=True, nogil=True)
    def hull_pixel_counts(pts, bounds, heights):
        # pts: (P, 2) doubled integer (row, col) points, grouped by label between bounds;
        # returns the number of pixel centres (even doubled coordinates) in each hull
        n = bounds.size - 1
        out = np.zeros(n)
        for j in range(n):
            p = pts[bounds[j] : bounds[j + 1]]
            m = p.shape[0]
            key = (p[:, 0] + 2) * (4 * m + 1 << 20) + (p[:, 1] + 2)
            order = np.argsort(key)
            q = p[order]
            hull = np.empty((2 * m + 1, 2), np.int64)
            k = 0
            for i in range(m):  # lower chain
                while (
                    k >= 2
                    and (
                        (hull[k - 1, 0] - hull[k - 2, 0]) * (q[i, 1] - hull[k - 2, 1])
                        - (hull[k - 1, 1] - hull[k - 2, 1]) * (q[i, 0] - hull[k - 2, 0])
                    )
                    <= 0
                ):
                    k -= 1
                hull[k] = q[i]
                k += 1
            t = k + 1
            for i in range(m - 2, -1, -1):  # upper chain
                while (
                    k >= t
                    and (
                        (hull[k - 1, 0] - hull[k - 2, 0]) * (q[i, 1] - hull[k - 2, 1])
                        - (hull[k - 1, 1] - hull[k - 2, 1]) * (q[i, 0] - hull[k - 2, 0])
                    )
                    <= 0
                ):
                    k -= 1
                hull[k] = q[i]
                k += 1
            nv = k - 1
            total = 0
            for r in range(heights[j]):
                y = 2 * r
                # x-extent of the polygon on the line y as fractions num/den (den > 0)
                lo_n, lo_d, hi_n, hi_d = 1, 0, -1, 0
                found = False
                for e in range(nv):
                    ay, ax = hull[e, 0], hull[e, 1]
                    by, bx = hull[e + 1, 0], hull[e + 1, 1]
                    if y < min(ay, by) or y > max(ay, by):
                        continue
                    if ay == by:
                        cands = ((ax, 1), (bx, 1))
                    else:
                        num = ax * (by - ay) + (bx - ax) * (y - ay)
                        den = by - ay
                        if den < 0:
                            num, den = -num, -den
                        cands = ((num, den), (num, den))
                    for cn, cd in cands:
                        if not found:
                            lo_n, lo_d, hi_n, hi_d = cn, cd, cn, cd
                            found = True
                        else:
                            if cn * lo_d < lo_n * cd:
                                lo_n, lo_d = cn, cd
                            if cn * hi_d > hi_n * cd:
                                hi_n, hi_d = cn, cd
                if found:
                    # columns c with lo <= 2c <= hi
                    first = -((-lo_n) // (2 * lo_d))
                    last = hi_n // (2 * hi_d)
                    if last >= first:
                        total += last - first + 1
            out[j] = total
        return out

    @numba.njit(cache=True, nogil=True)
    def grow(idx, width, dy, dx, row0, row1, out):
        # rows row0:row1 of expand_labels on a flat index image: every background pixel
        # takes the first labelled pixel in the offset list (sorted by squared distance,
        # then column, then row: scipy's feature transform breaks ties that way)
        height = idx.size // width
        reach = 0
        for k in range(dy.size):
            reach = max(reach, abs(dy[k]))
        # horizontal distance from each pixel of the needed rows to the nearest label
        # (capped at reach + 1), so that pixels with no label in reach are skipped fast
        lo = max(row0 - reach, 0)
        hi = min(row1 + reach, height)
        near = np.empty((hi - lo, width), np.int16)
        for y in range(lo, hi):
            d = reach + 1
            for x in range(width):
                d = 0 if idx[y * width + x] != 0 else min(d + 1, reach + 1)
                near[y - lo, x] = d
            d = reach + 1
            for x in range(width - 1, -1, -1):
                d = 0 if idx[y * width + x] != 0 else min(d + 1, reach + 1)
                near[y - lo, x] = min(near[y - lo, x], d)
        r2 = 0
        for k in range(dy.size):
            r2 = max(r2, dy[k] * dy[k] + dx[k] * dx[k])
        for y in range(row0, row1):
            for x in range(width):
                p = y * width + x
                if idx[p] != 0:
                    out[p] = idx[p]
                    continue
                out[p] = 0
                hit = False
                for yy in range(max(y - reach, 0), min(y + reach + 1, height)):
                    h = near[yy - lo, x]
                    if h * h + (yy - y) * (yy - y) <= r2:
                        hit = True
                        break
                if not hit:
                    continue
                for k in range(dy.size):
                    yy = y + dy[k]
                    xx = x + dx[k]
                    if 0 <= yy < height and 0 <= xx < width:
                        v = idx[yy * width + xx]
                        if v != 0:
                            out[p] = v
                            break
        return out

    @numba.njit(cache=True, nogil=True)
    def central_moments(idx, width, n_slots, yc, xc):
        # second central moments of every slot's pixels (yc, xc: centroids by slot)
        mu20 = np.zeros(n_slots)
        mu02 = np.zeros(n_slots)
        mu11 = np.zeros(n_slots)
        for p in range(idx.size):
            v = idx[p]
            if v != 0:
                dr = p // width - yc[v]
                dc = p % width - xc[v]
                mu20[v] += dr * dr
                mu02[v] += dc * dc
                mu11[v] += dr * dc
        return mu20, mu02, mu11

    @numba.njit(cache=True, nogil=True)
    def border_pixels(idx, width, n_slots, weights):
        # skimage's 4-connectivity perimeter of every slot, and its border pixels (rows,
        # columns, slots) grouped by slot, row-major inside each
        height = idx.size // width
        flag = np.zeros(idx.size, np.uint8)
        ends = np.zeros(n_slots + 1, np.int64)
        for y in range(height):
            for x in range(width):
                p = y * width + x
                v = idx[p]
                if v != 0 and (
                    x == 0
                    or idx[p - 1] != v
                    or x == width - 1
                    or idx[p + 1] != v
                    or y == 0
                    or idx[p - width] != v
                    or y == height - 1
                    or idx[p + width] != v
                ):
                    flag[p] = 1
                    ends[v + 1] += 1
        for v in range(n_slots):
            ends[v + 1] += ends[v]
        fill = ends[:-1].copy()
        rows = np.empty(ends[-1], np.int64)
        cols = np.empty(ends[-1], np.int64)
        slots = np.empty(ends[-1], np.int64)
        perim = np.zeros(n_slots)
        for y in range(height):
            for x in range(width):
                p = y * width + x
                if flag[p] == 0:
                    continue
                v = idx[p]
                value = 1
                for oy in range(-1, 2):
                    for ox in range(-1, 2):
                        yy = y + oy
                        xx = x + ox
                        if (
                            (oy != 0 or ox != 0)
                            and 0 <= yy < height
                            and 0 <= xx < width
                            and flag[yy * width + xx] != 0
                            and idx[yy * width + xx] == v
                        ):
                            value += 10 if oy != 0 and ox != 0 else 2
                perim[v] += weights[value]
                k = fill[v]
                rows[k] = y
                cols[k] = x
                slots[k] = v
                fill[v] += 1
        return perim, rows, cols, slots

    _KERNELS["accumulate"] = _Kernels(
        accumulate,
        accumulate_int,
        deviations,
        position_sums,
        segment_quantiles,
        hull_pixel_counts,
        count_slots,
        relabel,
        runs,
        int_std,
        grow,
        central_moments,
        border_pixels,
    )
    return _KERNELS["accumulate"]


def _accumulate_channels(img, channels, runs, n_slots, squares, kernels, threads):
    """Per-slot (sum, sum of squares, min, max) of each channel, in blocks of channels.

    A block of up to 8 channels shares one pass over the index; with ``threads`` > 1,
    blocks run in parallel (the kernel releases the GIL).
    """
    exact_ints = img.dtype.kind in "ui" and img.dtype.itemsize <= 2
    accumulate = kernels.accumulate_int if exact_ints else kernels.accumulate
    blocks = [channels[i : i + 8] for i in range(0, len(channels), 8)]

    def run(block):
        if img.flags.c_contiguous and block == list(range(block[0], block[-1] + 1)):
            values = img[block[0] : block[-1] + 1].reshape(len(block), -1)
        else:
            values = np.stack([img[c].ravel() for c in block])
        return accumulate(values, *runs, n_slots, squares)

    if threads > 1 and len(blocks) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=threads) as pool:
            results = list(pool.map(run, blocks))
    else:
        results = [run(block) for block in blocks]
    out = []
    for res in results:  # (channels, slots) arrays
        out.extend(tuple(a[j] for a in res) for j in range(res[0].shape[0]))
    return out


def _moment_stats(values, acc_channel, combo, index, compartments, stats, bg, kernels):
    """mean, sum, std, min and max of every compartment from one channel's accumulators."""
    deviations = kernels.deviations
    n = index["nucleus"].n
    exact_ints = values.dtype.kind in "ui" and values.dtype.itemsize <= 2
    want_std = any(kind == "std" for _, kind, _ in stats)
    s, ss, lo, hi = acc_channel
    parts = {"nucleus": slice(1, n + 1), "cytoplasm": slice(n + 1, 2 * n + 1)}
    counts = {"nucleus": index["nucleus"].counts}
    if "cytoplasm" in index:
        counts["cytoplasm"] = index["cytoplasm"].counts
    acc = {}
    for comp, sl in parts.items():
        if comp in counts:
            acc[comp] = (s[sl], ss[sl], lo[sl], hi[sl], counts[comp])
    if "cytoplasm" in acc:
        (s1, q1, l1, h1, c1), (s2, q2, l2, h2, c2) = acc["nucleus"], acc["cytoplasm"]
        acc["cell"] = (s1 + s2, q1 + q2, np.minimum(l1, l2), np.maximum(h1, h2), c1 + c2)
    var = {}
    if want_std and not exact_ints:
        with np.errstate(invalid="ignore", divide="ignore"):
            slot_mean = np.zeros(2 * n + 1)
            for comp, sl in parts.items():
                if comp in acc:
                    slot_mean[sl] = acc[comp][0] / np.maximum(acc[comp][4], 1)
            cell = acc.get("cell", acc["nucleus"])
            cell_mean = np.r_[0.0, cell[0] / np.maximum(cell[4], 1)]
        d, dc = deviations(values, combo, n, slot_mean, cell_mean)
        var = {"nucleus": d[1 : n + 1], "cytoplasm": d[n + 1 :], "cell": dc[1:]}
    out = {}
    for comp in compartments:
        total, squares, low, high, count = acc[comp]
        empty = count == 0
        res = {}
        with np.errstate(invalid="ignore", divide="ignore"):
            for name, kind, _ in stats:
                if kind == "sum":
                    res[name] = total - bg * count
                elif kind == "mean":
                    res[name] = total / count - bg
                elif kind == "min":
                    res[name] = np.where(empty, np.nan, low) - bg
                elif kind == "max":
                    res[name] = np.where(empty, np.nan, high) - bg
                elif exact_ints:
                    res[name] = kernels.int_std(total, squares, count.astype(np.int64))
                else:
                    res[name] = np.sqrt(var[comp] / count)
        out[comp] = res
    return out


def _combine_parts(nucleus, cytoplasm, index, stats):
    """Cell sums, means, minima and maxima from those of its nucleus and cytoplasm."""
    n_nuc, n_cyto = index["nucleus"].counts, index["cytoplasm"].counts
    out = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for name, kind, _ in stats:
            if kind == "sum":
                out[name] = nucleus[name] + cytoplasm[name]
            elif kind == "mean":
                total = np.nan_to_num(nucleus[name] * n_nuc) + np.nan_to_num(cytoplasm[name] * n_cyto)
                out[name] = total / (n_nuc + n_cyto)
            elif kind == "min":
                out[name] = np.fmin(nucleus[name], cytoplasm[name])
            elif kind == "max":
                out[name] = np.fmax(nucleus[name], cytoplasm[name])
    return out


def _block_index(outside, shape, block):
    """_Index of the background pixels by square block (ids 1..n_blocks, row-major)."""
    ny, nx = shape
    nby, nbx = -(-ny // block), -(-nx // block)
    rows = np.arange(ny) // block
    colsb = np.arange(nx) // block
    bid = (rows[:, None] * nbx + colsb[None, :] + 1).ravel()
    return _Index(np.where(outside, bid, 0), nby * nbx), (nby, nbx)


def _local_background(values, outside, blocks, yc, xc, block):
    """Per-cell background: block medians of the background pixels, bilinear at the centroid.

    Blocks without background pixels take the value of the nearest block that has some.
    """
    from scipy.ndimage import map_coordinates

    index, grid_shape = blocks
    if not outside.any():
        return 0.0
    med = _segment_percentile(_sort_segments(values[index.pos], index), index.counts, 50.0)
    med = med.reshape(grid_shape)
    empty = np.isnan(med)
    if empty.any():  # blocks without background pixels take the nearest block's value
        from scipy.ndimage import distance_transform_edt

        nearest = distance_transform_edt(empty, return_distances=False, return_indices=True)
        med = med[tuple(nearest)]
    coords = np.vstack([(yc - (block - 1) / 2) / block, (xc - (block - 1) / 2) / block])
    return map_coordinates(med, coords, order=1, mode="nearest")


def _channel_stats(values, index, stats, bg):
    """Statistics of one channel over every cell of one compartment (background removed).

    ``values`` is the flat channel in its own dtype. Cells with an empty compartment get
    NaN (and a zero sum).
    """
    n, counts = index.n, index.counts
    ok = index.nonempty
    starts = index.starts
    kinds = {kind for _, kind, _ in stats}
    v = values[index.pos]
    out = {}
    sums = means = var = ordered = None
    exact_ints = v.dtype.kind in "ui" and v.dtype.itemsize <= 2
    if kinds & {"mean", "sum", "std"}:
        sums = np.zeros(n)
        if len(ok):
            # small integers: exact int64 sums; floats: float64 sums
            acc = np.int64 if exact_ints else np.float64
            sums[ok] = np.add.reduceat(v, starts, dtype=acc)
        means = np.full(n, np.nan)
        means[ok] = sums[ok] / counts[ok]
    if "std" in kinds:
        var = np.full(n, np.nan)
        if len(ok) and exact_ints:
            # exact integer sums of squares; the difference in extended precision
            sq = np.add.reduceat(np.square(v, dtype=np.int64), starts)
            n_ok = counts[ok].astype(np.longdouble)
            s1 = np.add.reduceat(v, starts, dtype=np.int64).astype(np.longdouble)
            var[ok] = np.clip(sq.astype(np.longdouble) / n_ok - (s1 / n_ok) ** 2, 0, None)
        elif len(ok):
            dev = v - np.repeat(means[ok], counts[ok])
            var[ok] = np.add.reduceat(dev * dev, starts) / counts[ok]
            del dev
    quantiles = {}
    order_stats = [
        (name, {"median": 50.0}.get(kind, q)) for name, kind, q in stats if kind in ("median", "percentile")
    ]
    if order_stats:
        kernels = _numba_kernels()
        if kernels is not None:  # sort each cell's pixels on its own (small sorts)
            qs = np.array([q for _, q in order_stats], dtype=np.float64)
            table = kernels.segment_quantiles(v, np.cumsum(counts) - counts, counts, qs)
            quantiles = {name: table[:, j] for j, (name, _) in enumerate(order_stats)}
        else:
            ordered = _sort_segments(v, index)
    for name, kind, q in stats:
        if name in quantiles:
            out[name] = quantiles[name] - bg
            continue
        if kind == "mean":
            out[name] = means - bg
        elif kind == "sum":
            out[name] = sums - bg * counts
        elif kind == "std":
            out[name] = np.sqrt(var)
        elif kind in ("min", "max") and ordered is None:
            res = np.full(n, np.nan)
            if len(ok):
                ufunc = np.minimum if kind == "min" else np.maximum
                res[ok] = ufunc.reduceat(v, starts).astype(np.float64)
            out[name] = res - bg
        else:
            q = {"min": 0.0, "max": 100.0, "median": 50.0}.get(kind, q)
            out[name] = _segment_percentile(ordered, counts, q) - bg
    return out


def _sort_segments(v, index):
    """``v`` (grouped by cell) sorted by cell, then by value, as float64."""
    cell = index.cell
    if (v.dtype.kind in "ui" and v.dtype.itemsize <= 2) or v.dtype == np.float32:
        # one integer sort of (cell << 32 | order-preserving bits of the value)
        if v.dtype == np.float32:
            bits = v.view(np.uint32)
            low = np.where(bits >> 31, ~bits, bits | np.uint32(0x80000000))
        else:
            low = (v.astype(np.int64) + 2**31).astype(np.uint32)
        key = low.astype(np.uint64)
        key |= cell.astype(np.uint64) << np.uint64(32)
        key.sort()
        low = (key & np.uint64(0xFFFFFFFF)).astype(np.uint32)
        if v.dtype == np.float32:
            return np.where(low >> 31, low & np.uint32(0x7FFFFFFF), ~low).view(np.float32).astype(np.float64)
        return (low.astype(np.int64) - 2**31).astype(np.float64)
    order = np.lexsort((v, cell))
    return v[order].astype(np.float64)


def _segment_percentile(ordered, counts, q):
    """Linear-interpolated percentile ``q`` of each sorted segment; NaN for empty ones."""
    starts = np.cumsum(counts) - counts
    out = np.full(len(counts), np.nan)
    ok = counts > 0
    pos = q / 100.0 * (counts[ok] - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, counts[ok] - 1)
    frac = pos - lo
    a = ordered[starts[ok] + lo]
    b = ordered[starts[ok] + hi]
    out[ok] = a + (b - a) * frac
    return out


# --------------------------------------------------------------------------------------
# morphology


def _morphology(lab, nucleus, shape, pixel_size_um, neighbour_radius_um, *, full, position_sums=None):
    """Centroid (px) and, when ``full``, the shape columns of every nucleus.

    ``position_sums``: the (n + 1,) sums of the row and of the column coordinates of each
    nucleus' pixels (slot 0 unused), when already known.
    """
    n, counts = nucleus.n, nucleus.counts
    kernels = _numba_kernels()
    if kernels is not None or position_sums is not None:  # no sort: sums per label
        ysum, xsum = (
            position_sums
            if position_sums is not None
            else kernels.position_sums(nucleus.idx, shape[1], n + 1)
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            yc, xc = ysum[1:] / counts, xsum[1:] / counts
    if not full:
        return {"y": yc, "x": xc}
    if kernels is not None:  # one raster pass over the index image, no per-pixel arrays
        centres = np.r_[0.0, np.nan_to_num(yc)], np.r_[0.0, np.nan_to_num(xc)]
        mu20, mu02, mu11 = (m[1:] for m in kernels.central_moments(nucleus.idx, shape[1], n + 1, *centres))
    else:
        pos, cell = nucleus.pos, nucleus.cell
        rows, cols_ = np.divmod(pos, shape[1])
        rows = rows.astype(np.float64)
        cols_ = cols_.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            yc = np.bincount(cell, weights=rows, minlength=n + 1)[1:] / counts
            xc = np.bincount(cell, weights=cols_, minlength=n + 1)[1:] / counts
        dr = rows - yc[cell - 1]
        dc = cols_ - xc[cell - 1]
        mu20 = np.bincount(cell, weights=dr * dr, minlength=n + 1)[1:]
        mu02 = np.bincount(cell, weights=dc * dc, minlength=n + 1)[1:]
        mu11 = np.bincount(cell, weights=dr * dc, minlength=n + 1)[1:]
    out = {"y": yc, "x": xc}
    s = float(pixel_size_um)
    # inertia tensor as in skimage: [[a, b], [b, c]] with a = mu02/m, b = -mu11/m, c = mu20/m
    with np.errstate(invalid="ignore", divide="ignore"):
        a, b, c = mu02 / counts, -mu11 / counts, mu20 / counts
    half_trace = (a + c) / 2
    root = np.sqrt(((a - c) / 2) ** 2 + b * b)
    l1 = np.clip(half_trace + root, 0, None)
    l2 = np.clip(half_trace - root, 0, None)
    with np.errstate(invalid="ignore", divide="ignore"):
        ecc = np.where(l1 == 0, 0.0, np.sqrt(np.clip(1 - l2 / np.where(l1 == 0, 1, l1), 0, None)))
    orientation = np.where(
        a - c == 0, np.where(b < 0, np.pi / 4, -np.pi / 4), 0.5 * np.arctan2(-2 * b, c - a)
    )
    border, perim = _perimeter(lab, nucleus, shape)
    solidity = counts / _convex_areas(border, nucleus, shape)
    ny, nx = shape
    border_distance = np.minimum.reduce([yc, xc, ny - 1 - yc, nx - 1 - xc]) * s
    out.update(
        {
            "area": counts * s * s,
            "perimeter": perim * s,
            "eccentricity": ecc,
            "solidity": solidity,
            "axis_major_length": 4 * np.sqrt(l1) * s,
            "axis_minor_length": 4 * np.sqrt(l2) * s,
            "orientation": orientation,
            "border_distance": border_distance,
            "n_neighbours": _count_neighbours(yc, xc, neighbour_radius_um / s),
        }
    )
    return out


def _perimeter(lab, nucleus, shape):
    """The border pixels of every label, as (rows, columns, index 1..n) grouped by label and
    row-major inside each, and skimage's 4-connectivity perimeter of each label."""
    ny, nx = shape
    kernels = _numba_kernels()
    if kernels is not None:
        perim, rows, cols, slots = kernels.border_pixels(nucleus.idx, nx, nucleus.n + 1, _PERIMETER_WEIGHTS)
        return (rows, cols, slots), perim[1:]
    padded = np.pad(lab, 1)
    p_idx = np.pad(nucleus.idx.reshape(shape), 1)
    width = nx + 2
    flat = padded.ravel()
    pos, cell = nucleus.pos, nucleus.cell
    r, c = np.divmod(pos, nx)
    ppos = (r + 1) * width + (c + 1)
    lv = flat[ppos]
    is_border = np.zeros(len(ppos), bool)
    for off in (-1, 1, -width, width):
        is_border |= flat[ppos + off] != lv
    bpos = ppos[is_border]
    bcell = cell[is_border]
    border_img = np.zeros(flat.shape, np.int64)
    border_img[bpos] = p_idx.ravel()[bpos]
    value = np.ones(len(bpos), np.int64)
    for off, weight in (
        (-1, 2),
        (1, 2),
        (-width, 2),
        (width, 2),
        (-width - 1, 10),
        (-width + 1, 10),
        (width - 1, 10),
        (width + 1, 10),
    ):
        value += weight * (border_img[bpos + off] == bcell)
    perim = np.bincount(bcell, weights=_PERIMETER_WEIGHTS[value], minlength=nucleus.n + 1)[1:]
    # border positions back in unpadded coordinates, grouped by cell
    br, bc = np.divmod(bpos, width)
    return (br - 1, bc - 1, bcell), perim


def _convex_areas(border, nucleus, shape):
    """Pixel count of each label's convex hull image, as ``skimage.morphology.convex_hull_image``.

    The hull of a region is the hull of the pixel-edge midpoints (the ``diamond`` offsets
    skimage uses) of the leftmost and rightmost pixel of each of its rows; the count is of
    pixel centres inside or on the hull. With numba: Andrew's monotone chain and an exact
    count per row in doubled integer coordinates; without: Qhull and the same
    ``grid_points_in_poly`` call as skimage.
    """
    from scipy.spatial import ConvexHull, QhullError
    from skimage.measure import grid_points_in_poly

    br, bc, bcell = border  # grouped by cell, row-major inside each cell
    areas = np.full(nucleus.n, np.nan)
    if len(br) == 0:
        return areas
    key = bcell.astype(np.int64) * (shape[0] + 1) + br
    first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    last = np.r_[first[1:] - 1, len(key) - 1]
    ends = np.r_[first, last]
    ends.sort(kind="stable")
    er, ec, ecell = br[ends], bc[ends], bcell[ends]
    starts = np.flatnonzero(np.r_[True, ecell[1:] != ecell[:-1]])
    cells = ecell[starts] - 1
    r0 = np.minimum.reduceat(er, starts)
    c0 = np.minimum.reduceat(ec, starts)
    height = np.maximum.reduceat(er, starts) - r0 + 1
    width = np.maximum.reduceat(ec, starts) - c0 + 1
    seg = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(er)]))
    local = np.column_stack([er - r0[seg], ec - c0[seg]])
    diamond = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]])  # pixel-edge midpoints, doubled
    bounds = np.r_[starts, len(er)] * 4
    kernels = _numba_kernels()
    if kernels is not None:  # exact integer hull and row counts, all labels in one call
        doubled = (2 * local[:, None, :] + diamond).reshape(-1, 2)
        areas[cells] = kernels.hull_pixel_counts(doubled, bounds.astype(np.int64), height.astype(np.int64))
        return areas
    pts = (local[:, None, :] + diamond / 2).reshape(-1, 2)
    for j, i in enumerate(cells.tolist()):
        try:
            hull = ConvexHull(pts[bounds[j] : bounds[j + 1]])
        except QhullError:
            continue
        inside = grid_points_in_poly(
            (int(height[j]), int(width[j])), hull.points[hull.vertices], binarize=False
        )
        areas[i] = np.count_nonzero(inside)
    return areas


def _count_neighbours(yc, xc, radius_px):
    """Number of other centroids within ``radius_px`` of each centroid."""
    if len(yc) < 2 or not radius_px > 0:
        return np.zeros(len(yc), np.int64)
    from scipy.spatial import cKDTree

    pts = np.column_stack([yc, xc])
    return np.asarray(cKDTree(pts).query_ball_point(pts, radius_px, return_length=True), np.int64) - 1
