"""The options of :func:`cytotrail.quantify.quantify`: names, checks and parsing, before any pixel is read."""

from __future__ import annotations

import re

import numpy as np

from cytotrail.io import InputError

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
# statistics that one pass of accumulators gives; the others (median, pNN) sort each cell
MOMENT_KINDS = ("mean", "sum", "std", "min", "max")
_PERCENTILE = re.compile(r"^p(\d+(?:\.\d+)?)$")


def channel_selection(channel_names, n_channels, markers):
    """The channel names, the markers to measure and their channel indices.

    Parameters
    ----------
    channel_names : sequence
        One unique name per channel of the image.
    n_channels : int
        Channels C of the image.
    markers : sequence of str or None
        Channels to measure, in the order of the output columns (None: all).

    Returns
    -------
    names, markers : list of str
    channels : list of int
        Index of each marker in ``names``.

    Raises
    ------
    InputError
        A name count that is not C, duplicated names or markers, unknown markers.
    """
    names = [str(n) for n in channel_names]
    if len(names) != n_channels:
        raise InputError(
            f"image has {n_channels} channel(s) but {len(names)} channel name(s) were given: {names}"
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
    return names, markers, [names.index(m) for m in markers]


def parse_compartments(compartments):
    """The requested compartments in order, duplicates removed; unknown ones refused."""
    compartments = list(dict.fromkeys(compartments))
    unknown = [c for c in compartments if c not in COMPARTMENTS]
    if unknown:
        raise InputError(f"unknown compartments {unknown}; choose from {list(COMPARTMENTS)}")
    return compartments


def parse_statistics(statistics, percentiles):
    """List of ``(column suffix, kind, q)`` for the requested statistics, duplicates removed.

    ``kind`` is one of :data:`STATISTICS` or ``"percentile"``; ``q`` is the percentile
    (0..100) or None.
    """
    if isinstance(statistics, str):
        statistics = [statistics]
    out = {}
    for s in list(statistics) + [f"p{format_q(q)}" for q in percentiles]:
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
        name = f"p{format_q(q)}"
        out[name] = (name, "percentile", q)
    if not out:
        raise InputError("no statistics requested")
    return list(out.values())


def format_q(q):
    """A percentile as written in column names: ``90`` for 90.0, ``99.5`` for 99.5."""
    q = float(q)
    return str(int(q)) if q.is_integer() else f"{q:g}"


def background_values(background, names, channels):
    """Per measured channel: a float, None (``"auto"``) or ``"local"``: estimated per frame.

    Parameters
    ----------
    background : None, "auto", "local", dict or sequence of float
        As :func:`cytotrail.quantify.quantify` takes it.
    names : list of str
        Channel names of the image.
    channels : list of int
        Indices of the measured channels.
    """
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
