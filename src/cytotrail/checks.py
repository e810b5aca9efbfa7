"""Checks of the arrays and options that pass between stages: one home for each, one wording.

Every stage that takes a label stack (tracking, quantification, whole-cell growth) checks
it here, and every numeric option (threads, neighbours, lengths in µm or px) is checked by
:func:`whole_number` or :func:`number`, so that the command line, the API and the workflow
refuse the same input with the same words.
"""

from __future__ import annotations

import numpy as np

from cytotrail.io import InputError

__all__ = ["label_stack", "labels_and_image", "number", "whole_number"]


def whole_number(value, name, *, minimum):
    """``value`` as an int if it is a whole number >= ``minimum`` (not a bool).

    Raises
    ------
    InputError
        Naming ``name``, the bound and the value.
    """
    whole = isinstance(value, (int, np.integer)) or (
        isinstance(value, (float, np.floating)) and np.isfinite(value) and float(value).is_integer()
    )
    if isinstance(value, bool) or not whole or value < minimum:
        raise InputError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def number(value, name, *, minimum=None, above=None, maximum=None):
    """``value`` as a float if it is finite and within the bounds (``above``: strictly).

    Raises
    ------
    InputError
        Naming ``name``, the bounds and the value.
    """
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    ok = ok and bool(np.isfinite(value))
    bounds = []
    if minimum is not None:
        ok = ok and value >= minimum
        bounds.append(f">= {minimum:g}")
    if above is not None:
        ok = ok and value > above
        bounds.append(f"> {above:g}")
    if maximum is not None:
        ok = ok and value <= maximum
        bounds.append(f"<= {maximum:g}")
    if not ok:
        raise InputError(
            f"{name} must be a number{' ' + ' and '.join(bounds) if bounds else ''}, got {value!r}"
        )
    return float(value)


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
