"""Label stacks in and out: (T, Y, X) uint32 TIFFs, one id per object per frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cytotrail.io.files import InputError, atomic_path
from cytotrail.io.images import frame_files


def write_labels(path, labels):
    """Write a (T, Y, X) label stack as a zlib-compressed uint32 TIFF, atomically.

    The file opens in napari and Fiji as a stack of integer label images.
    """
    import tifffile

    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = labels[np.newaxis]
    if labels.ndim != 3:
        raise ValueError(f"labels must be (T, Y, X), got shape {labels.shape}")
    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp,
            labels.astype(np.uint32, copy=False),
            compression="zlib",
            photometric="minisblack",
            metadata={"axes": "TYX"},
        )


def read_labels(path):
    """Read a label stack (T, Y, X) or a single label image (Y, X) as uint32 (T, Y, X).

    ``path`` may also be a folder of one label image per frame (``mask000.tif``, ... in
    natural name order, as :func:`cytotrail.io.frame_files`), all of one size.
    """
    import tifffile

    path = Path(path)
    if path.is_dir():
        frames = []
        for file in frame_files(path):
            frame = read_labels(file)
            if len(frame) != 1 or (frames and frame.shape != frames[0].shape):
                raise InputError(
                    f"label folder {path}: {file.name} has shape {frame.shape}; every file holds "
                    f"one frame of the first's size {frames[0].shape[1:] if frames else frame.shape[1:]}"
                )
            frames.append(frame)
        return np.concatenate(frames)
    if not path.is_file():
        raise InputError(f"label file not found: {path}")
    try:
        with tifffile.TiffFile(path) as tif:
            axes = tif.series[0].axes
            labels = tif.asarray()
    except Exception as err:
        raise InputError(f"cannot read labels {path}: not a readable TIFF ({err})") from err
    if axes.endswith("S"):  # colour samples per pixel; a planar "SYX" is a plain 3- or 4-frame stack
        raise InputError(
            f"labels {path} are a colour (RGB) image (axes {axes}): a label image holds one integer "
            "object id per pixel"
        )
    labels = np.squeeze(labels) if labels.ndim > 3 else labels
    if labels.ndim == 2:
        labels = labels[np.newaxis]
    if labels.ndim != 3:
        raise InputError(f"labels {path} have shape {labels.shape}; expected (T, Y, X) or (Y, X)")
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.mod(labels, 1) == 0):
            raise InputError(f"labels {path} are not integers (dtype {labels.dtype})")
    if labels.min(initial=0) < 0:
        raise InputError(f"labels {path} contain negative values")
    top = labels.max(initial=0)
    if top > np.iinfo(np.uint32).max:  # would wrap around (to 0: no cells) as uint32
        raise InputError(
            f"labels {path} hold ids up to {int(top)}, beyond uint32 (4294967295); "
            "number each frame's labels from 1 (e.g. skimage.segmentation."
            "relabel_sequential) and save them as uint32"
        )
    check_instance_labels(labels, f"labels {path}")
    return labels.astype(np.uint32, copy=False)


SCATTER_LIMIT = 4.0  # separate pieces per label value beyond which an image is not labels
SCATTER_CROP = 512  # side of the centre crop of the first non-empty frame that is looked at


def check_instance_labels(labels, name):
    """InputError when ``labels`` are not instance labels: a binary mask or an intensity image.

    Each object of a label image is one connected region (a few split objects aside: at most
    1.4 regions per value on dsb2018's masks); the one value of a binary mask covers three or
    more separate objects (two may be one object in two pieces), and each value of an
    intensity image lies in many separate places (at least 60 on dsb2018's images). The
    first frame with objects is looked at (its centre ``SCATTER_CROP`` px).

    Parameters
    ----------
    labels : (Y, X) or (T, Y, X) ndarray
        Integer (or boolean) labels.
    name : str
        The file or sample named in the error.
    """
    from skimage.measure import label as connected

    labels = np.asarray(labels)
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise InputError(f"{name}: labels must be integers, got dtype {labels.dtype}")
    labels = labels.reshape(-1, *labels.shape[-2:])
    filled = np.flatnonzero(labels.reshape(len(labels), -1).any(axis=1))
    if not len(filled):
        return
    frame = labels[filled[0]]
    y0, x0 = (max((n - SCATTER_CROP) // 2, 0) for n in frame.shape)
    frame = frame[y0 : y0 + SCATTER_CROP, x0 : x0 + SCATTER_CROP]
    values = np.unique(frame[frame > 0])
    n_regions = int(connected(frame, background=0, connectivity=1).max())
    if len(values) == 1 and n_regions > 2:  # one object may come in two pieces
        raise InputError(
            f"{name}: a binary mask (every object has the value {values[0]}), not instance "
            "labels; give each object its own id (e.g. skimage.measure.label)"
        )
    if n_regions >= 8 and n_regions > SCATTER_LIMIT * len(values):
        raise InputError(
            f"{name}: looks like an intensity image, not labels: each of its {len(values)} values "
            f"lies in {n_regions / len(values):.0f} separate places on average (frame "
            f"{filled[0]}); were the image and the labels swapped, or did ids wrap around in a "
            f"{labels.dtype} file?"
        )
