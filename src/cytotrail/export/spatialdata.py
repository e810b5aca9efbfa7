"""A results folder as one SpatialData zarr store (OME-Zarr images and labels + AnnData).

SpatialData has no time axis, so each frame of a timelapse becomes its own pair of
elements, ``{sample}_t{frame}_image`` (multiscale, channels named) and
``{sample}_t{frame}_labels`` (the nuclei, same scales), in its own coordinate system
``{sample}_t{frame}`` (pixel units); a single-frame sample gives ``{sample}_image`` and
``{sample}_labels`` in the coordinate system ``{sample}``. The table ``cells`` is the
AnnData of ``cytotrail cluster`` (one row per cell per frame) annotating those labels:
its ``region`` column names each row's labels element and ``label`` its instance, so
napari-spatialdata colours nuclei by any marker or cell type. Needs the ``export`` extra
(``spatialdata``).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from cytotrail.io import InputError

__all__ = [
    "REGION_KEY",
    "INSTANCE_KEY",
    "TABLE_NAME",
    "element_names",
    "scale_factors",
    "annotate_regions",
    "to_spatialdata",
    "write_spatialdata",
]

REGION_KEY = "region"
INSTANCE_KEY = "label"
TABLE_NAME = "cells"
# pyramid levels are added (halving) while the coarsest level keeps at least this many px
_MIN_LEVEL_PX = 64
_MAX_LEVELS = 5


def _import_spatialdata():
    try:
        import spatialdata
    except ImportError as err:
        raise InputError(
            "the SpatialData export needs the `spatialdata` package: pip install 'cytotrail[export]'"
        ) from err
    return spatialdata


def element_names(sample, n_frames):
    """Coordinate system, image and labels element names of every frame of a sample.

    Returns
    -------
    list of (str, str, str)
        ``(coordinate_system, image, labels)`` per frame.
    """
    if n_frames == 1:
        bases = [str(sample)]
    else:
        width = max(3, len(str(n_frames - 1)))
        bases = [f"{sample}_t{t:0{width}d}" for t in range(n_frames)]
    return [(b, f"{b}_image", f"{b}_labels") for b in bases]


def scale_factors(shape):
    """Halving factors of a pyramid whose coarsest level keeps >= 64 px on its short side."""
    factors = []
    side = min(shape)
    while side // 2 >= _MIN_LEVEL_PX and len(factors) < _MAX_LEVELS - 1:
        factors.append(2)
        side //= 2
    return factors


def annotate_regions(obs, n_frames):
    """The labels element (``region``) of every row of a cell table.

    Parameters
    ----------
    obs : DataFrame
        One row per cell per frame with ``sample``, ``frame``, ``label``.
    n_frames : dict
        {sample: number of frames}.

    Returns
    -------
    (N,) ndarray of str

    Raises
    ------
    InputError
        A column is missing, or a row names a sample or frame that is not exported.
    """
    missing = [c for c in ("sample", "frame", "label") if c not in obs.columns]
    if missing:
        raise InputError(
            f"cell table has no column(s) {missing}: the SpatialData table needs one "
            "row per cell per frame (cluster with --level cell)"
        )
    samples = obs["sample"].astype(str).to_numpy()
    frames = obs["frame"].to_numpy(np.int64)
    unknown = sorted(set(samples) - set(n_frames))
    if unknown:
        raise InputError(
            f"cell table holds sample(s) {unknown} that have no image and labels "
            f"to export (exported: {sorted(n_frames)})"
        )
    regions = np.empty(len(obs), dtype=object)
    for sample, count in n_frames.items():
        rows = samples == sample
        if not rows.any():
            continue
        bad = frames[rows][(frames[rows] < 0) | (frames[rows] >= count)]
        if len(bad):
            raise InputError(
                f"cell table: sample {sample!r} has frame(s) {sorted(set(bad))[:5]} "
                f"but its labels have {count} frame(s)"
            )
        names = np.array([labels for _, _, labels in element_names(sample, count)], dtype=object)
        regions[rows] = names[frames[rows]]
    return regions.astype(str)


def to_spatialdata(samples, adata=None):
    """Build an in-memory SpatialData object.

    Parameters
    ----------
    samples : dict
        {sample: (image, labels, channel_names)} with ``image`` a (T, C, Y, X) ndarray,
        ``labels`` a (T, Y, X) integer ndarray and ``channel_names`` a list of C names.
    adata : AnnData, optional
        Cell table with ``obs`` columns ``sample``, ``frame``, ``label``; written as the
        table ``cells`` annotating the labels elements (not modified).

    Returns
    -------
    spatialdata.SpatialData
    """
    sd = _import_spatialdata()
    from spatialdata.models import Image2DModel, Labels2DModel, TableModel
    from spatialdata.transformations import Identity

    images, label_elements = {}, {}
    for sample, (image, labels, channel_names) in samples.items():
        image, labels = np.asarray(image), np.asarray(labels)
        if (
            image.ndim != 4
            or labels.ndim != 3
            or image.shape[0] != labels.shape[0]
            or image.shape[2:] != labels.shape[1:]
        ):
            raise InputError(
                f"sample {sample!r}: image {image.shape} (T, C, Y, X) and labels "
                f"{labels.shape} (T, Y, X) do not match"
            )
        factors = scale_factors(labels.shape[1:]) or None
        for t, (system, image_name, labels_name) in enumerate(element_names(sample, len(labels))):
            transform = {system: Identity()}
            images[image_name] = Image2DModel.parse(
                image[t],
                dims=("c", "y", "x"),
                c_coords=list(channel_names),
                transformations=transform,
                scale_factors=factors,
            )
            label_elements[labels_name] = Labels2DModel.parse(
                labels[t].astype(np.uint32, copy=False),
                dims=("y", "x"),
                transformations=transform,
                scale_factors=factors,
            )
    tables = {}
    if adata is not None:
        table = adata.copy()
        n_frames = {s: np.asarray(v[1]).shape[0] for s, v in samples.items()}
        regions = annotate_regions(table.obs, n_frames)
        table.obs[REGION_KEY] = pd.Categorical(regions)
        table.obs[INSTANCE_KEY] = table.obs[INSTANCE_KEY].to_numpy(np.int64)
        tables[TABLE_NAME] = TableModel.parse(
            table, region=sorted(set(regions)), region_key=REGION_KEY, instance_key=INSTANCE_KEY
        )
    return sd.SpatialData(images=images, labels=label_elements, tables=tables)


def write_spatialdata(path, sdata):
    """Write a SpatialData object as a zarr store, atomically (an existing one is replaced)."""
    from cytotrail.export._files import atomic_dir

    with atomic_dir(path) as tmp, warnings.catch_warnings():
        # zarr announces a future default once per array written: noise for the user
        warnings.filterwarnings("ignore", "zarr v3 autosharding", UserWarning)
        tmp.rmdir()  # spatialdata creates the store itself
        sdata.write(tmp, update_sdata_path=False)
    return path
