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
        labels = tifffile.imread(path)
    except Exception as err:
        raise InputError(f"cannot read labels {path}: not a readable TIFF ({err})") from err
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
    return labels.astype(np.uint32, copy=False)
