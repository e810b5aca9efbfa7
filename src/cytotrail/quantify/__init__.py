"""Per-cell marker intensities and morphology, vectorised over labels.

One row per cell per frame. Every statistic is computed for all cells of a frame at once
on a flat label index: means, sums, standard deviations, minima and maxima in one pass
over the pixels per channel (a small numba kernel walking the runs of equal label along
the rows and accumulating per-cell sums, squares, minima and maxima for the nucleus and
the cytoplasm together, 8 channels per pass, the cell combined from both), medians and
percentiles from a small sort of each cell's pixels. Channels are streamed one at a time,
so memory does not grow with the number of channels. Integer images of up to 16 bits give
exact sums and standard deviations. The morphology equals
:func:`skimage.measure.regionprops_table` to float precision, computed for all labels at
once, the convex hull (solidity) included.

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

Modules
-------
``api``
    :func:`quantify`, the entry point: checks every option, then one frame at a time.
``options``
    Names of the statistics, compartments and morphology columns; parsing and checks.
``frame``
    One frame: its compartments, morphology, then each channel's statistics.
``index``
    The flat label index (labels mapped to 1..n) and the cells grown from the nuclei.
``stats``, ``background``
    Per-cell statistics of a channel; the background subtracted from it.
``morphology``
    Shape features, as ``regionprops``.
``kernels``, ``shape_kernels``
    The numba kernels, compiled on first use and cached on disk; numba is imported only
    when a frame is first measured.
``_reference``
    The plain numpy implementations, kept as the tests' oracle only.
"""

from cytotrail.quantify.api import quantify
from cytotrail.quantify.options import COMPARTMENTS, MORPHOLOGY_COLUMNS, STATISTICS

__all__ = ["COMPARTMENTS", "MORPHOLOGY_COLUMNS", "STATISTICS", "quantify"]
