"""Per-marker intensity transforms and scaling (arrays in, arrays out)."""

from __future__ import annotations

import numpy as np

from cytotrail.io import InputError

TRANSFORMS = ("arcsinh", "percentile", "log1p", "none")


def _auto_cofactor(values):
    """Cofactor of one marker: the 10th percentile of its positive values (1 if none).

    That sits at the level of the negative population, so arcsinh is about linear
    through the noise of negative cells and logarithmic over the positive ones.
    """
    positive = values[values > 0]
    if len(positive) == 0:
        return 1.0
    return float(max(np.percentile(positive, 10), 1e-6))


def _transform(raw, markers, transform, cofactor):
    """Transformed values (float64) and the per-marker parameters used."""
    params = {}
    if transform == "arcsinh":
        if cofactor is None:
            cof = np.array([_auto_cofactor(raw[:, j]) for j in range(raw.shape[1])])
        elif isinstance(cofactor, dict):
            missing = [m for m in markers if m not in cofactor]
            if missing:
                raise InputError(f"cofactor dict lacks markers {missing}")
            cof = np.array([float(cofactor[m]) for m in markers])
        else:
            cof = np.full(raw.shape[1], float(cofactor))
        if not np.all(cof > 0):
            bad = {m: float(c) for m, c in zip(markers, cof) if not c > 0}
            raise InputError(f"arcsinh cofactors must be positive, got {bad}")
        params["cofactors"] = dict(zip(markers, cof.tolist()))
        return np.arcsinh(raw / cof), params
    if transform == "percentile":
        scaled, lo, hi = percentile_scale(raw)
        params["percentiles"] = {m: [float(a), float(b)] for m, a, b in zip(markers, lo, hi)}
        return scaled, params
    if transform == "log1p":
        return np.log1p(np.clip(raw, 0, None)), params
    if transform == "none":
        return raw.copy(), params
    raise InputError(f"unknown transform {transform!r}; choose from {list(TRANSFORMS)}")


def percentile_scale(values, lo=1.0, hi=99.0):
    """Each column mapped from its [``lo``, ``hi``] percentiles to [0, 1], clipped.

    Returns
    -------
    scaled : (N, M) ndarray
    low, high : (M,) ndarray
        The percentiles of each column (a constant column maps to 0).
    """
    low = np.percentile(values, lo, axis=0)
    high = np.percentile(values, hi, axis=0)
    span = np.where(high > low, high - low, 1.0)
    return np.clip((values - low) / span, 0, 1), low, high


def _scale(values, max_value=10.0):
    mean = values.mean(axis=0)
    std = values.std(axis=0)
    constant = ~(std > 1e-9 * np.maximum(1.0, np.abs(mean)))  # rounding: identical values
    scaled = (values - mean) / np.where(constant, 1.0, std)
    scaled[:, constant] = 0.0
    return np.clip(scaled, -max_value, max_value), constant
