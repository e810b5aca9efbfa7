"""Checks of the arrays that pass between stages: one home for each, one wording.

Every stage that takes a label stack (tracking, quantification, whole-cell growth) checks
it here, so that the command line, the API and the workflow refuse the same input with the
same words.
"""

from __future__ import annotations

import numpy as np

from cytotrail.io import InputError

__all__ = ["label_stack", "labels_and_image"]


def label_stack(labels, *, name="labels"):
    """A (T, Y, X) integer label stack from a (T, Y, X) or (Y, X) array.

    Raises
    ------
    InputError
        Another number of dimensions, a dtype that is not integer (booleans included),
        negative ids. The message names the array as ``name``.
    """
    arr = np.asarray(labels)
    if arr.ndim == 2:
        arr = arr[np.newaxis]
    if arr.ndim != 3:
        raise InputError(f"{name} must be (T, Y, X) or (Y, X), got shape {arr.shape}")
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"{name} must be integers, got dtype {arr.dtype}")
    if arr.size and arr.min() < 0:
        raise InputError(f"{name} contain negative values")
    return arr


def labels_and_image(labels, image, *, names=("labels", "image")):
    """A (T, Y, X) label stack and its (T, C, Y, X) image, checked to match frame for frame.

    ``labels`` may be (Y, X) and ``image`` (C, Y, X) for a single frame. ``names`` name the
    two arrays in the messages.
    """
    labels = label_stack(labels, name=names[0])
    image = np.asarray(image)
    if image.ndim == 3:
        image = image[np.newaxis]
    if image.ndim != 4:
        raise InputError(f"{names[1]} must be (T, C, Y, X) or (C, Y, X), got shape {image.shape}")
    if image.shape[0] != labels.shape[0] or image.shape[2:] != labels.shape[1:]:
        raise InputError(
            f"{names[0]} {labels.shape} and {names[1]} {image.shape} do not match: expected "
            "the same frames T and frame size (Y, X)"
        )
    return labels, image
