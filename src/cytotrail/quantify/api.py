"""The entry point: :func:`quantify` checks every option, then measures one frame at a time."""

from __future__ import annotations

import pandas as pd

from cytotrail.checks import label_stack, labels_and_image, number, whole_number
from cytotrail.io import InputError
from cytotrail.quantify.frame import quantify_frame
from cytotrail.quantify.options import (
    COMPARTMENTS,
    background_values,
    channel_selection,
    parse_compartments,
    parse_statistics,
)


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
        Threads (>= 1) for growing the ring (blocks of rows) and for the per-channel
        accumulation (blocks of 8 channels run in parallel); the results do not depend on it.
    cells : ndarray like ``labels``, optional
        Whole-cell labels, each cell labelled like its nucleus: they replace the ring
        (``cytoplasm_um`` is then unused). A nucleus pixel always belongs to its cell;
        cell pixels whose label is not a nucleus of the frame are ignored.

    Returns
    -------
    DataFrame
        One row per cell per frame, sorted by frame then label; columns described in
        :mod:`cytotrail.quantify`.

    Raises
    ------
    InputError
        Unknown markers (naming them and the available channels), duplicated channel
        names, unknown statistics or compartments, shapes that do not match, or NaN /
        infinite pixels in a measured channel. Negative intensities are measured as they
        are.
    """
    labels, image = labels_and_image(labels, image)
    names, markers, channels = channel_selection(channel_names, image.shape[1], markers)
    stats = parse_statistics(statistics, percentiles)
    compartments = parse_compartments(compartments)
    number(pixel_size_um, "pixel_size_um", above=0)
    number(cytoplasm_um, "cytoplasm_um", minimum=0)
    number(neighbour_radius_um, "neighbour_radius_um", minimum=0)
    threads = whole_number(threads, "threads", minimum=1)
    bg = background_values(background, names, channels)
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
            quantify_frame(
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
