"""Drawing helpers shared by the report's figures: a figure, a message in place of a plot,
contrast, label outlines."""

from __future__ import annotations

import numpy as np


def subplots(*args, **kwargs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def say(ax, text):
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=11)
    ax.set_axis_off()


def contrast(frame):
    from cytotrail.segment.preprocess import normalize, percentiles

    return np.clip(normalize(frame, *percentiles(frame)), 0, 1)


CELL_OUTLINE = (0.2, 0.8, 1.0)  # whole cells: cyan, under the nuclei's outlines


def outlines(grey, labels, colour, cells=None):
    """RGB of a contrast-stretched ``grey`` plane with the inner boundaries of ``labels``
    in ``colour`` over those of the whole ``cells`` (cyan), when given."""
    from skimage.segmentation import find_boundaries

    rgb = np.repeat(grey[..., None], 3, axis=2)
    if cells is not None:
        rgb[find_boundaries(cells, mode="inner")] = CELL_OUTLINE
    rgb[find_boundaries(labels, mode="inner")] = colour
    return rgb
