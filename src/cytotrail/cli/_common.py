"""What the subcommands share: sample names, the nuclear channel, image options, renamed
flags, the defaults --help shows and where a stage's provenance is written."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cytotrail.io import InputError

log = logging.getLogger("cytotrail")


def _add_sample(p):
    p.add_argument(
        "--sample",
        default=None,
        help="sample name written to the `sample` column (default: the input file's stem)",
    )


def _sample_name(args, path):
    if args.sample:
        return args.sample
    name = Path(path).name
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".parquet", ".csv", ".tsv"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def _nuclear_frames(args):
    """Read IMAGE and return its nuclear channel as (T, Y, X) plus all channel names."""
    from cytotrail import io

    image, names = io.read_image(args.image, axes=args.axes, channel_names=args.channel_names)
    channel = args.channel
    if channel is None:
        index = 0
    elif channel in names:
        index = names.index(channel)
    elif channel.isdigit() and int(channel) < len(names):
        index = int(channel)
    else:
        raise InputError(f"image {args.image}: no channel {channel!r}; channels are {names}")
    return image[:, index], names


def _given(args, *names):
    """The options among ``names`` that the user gave; the others (None) keep the function's default."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _default(function, name):
    """``function``'s default of parameter ``name`` as --help shows it: its signature is its one home."""
    import inspect

    value = inspect.signature(function).parameters[name].default
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _add_renamed(p, old, **kwargs):
    """The deprecated flag ``old`` of an option that was renamed: hidden from --help."""
    p.add_argument(old, dest=_renamed_dest(old), default=None, help=argparse.SUPPRESS, **kwargs)


def _renamed_dest(old):
    return "renamed_" + old.lstrip("-").replace("-", "_")


def _renamed_value(args, old, new):
    """The value given under ``new`` or under its deprecated flag ``old`` (logged, once)."""
    from cytotrail.deprecations import renamed_option

    value, message = renamed_option(
        getattr(args, _renamed_dest(old)), getattr(args, new.lstrip("-").replace("-", "_")), old=old, new=new
    )
    if message:
        log.warning("cytotrail: %s", message)
    return value


def _add_image_options(p):
    p.add_argument(
        "--axes",
        default=None,
        help="axes of the stored image when the file does not record them: TCYX, CYX, TYX or YX",
    )
    p.add_argument(
        "--channel-names",
        nargs="+",
        default=None,
        metavar="NAME",
        help="channel names, overriding the OME metadata",
    )


def _provenance_path(output, stage="track"):
    """``tracks.parquet`` -> ``tracks.track.json`` (``labels.tif`` -> ``labels.segment.json``):
    the parameters a stage used or fitted, saved beside its output."""
    output = Path(output)
    return output.with_name(output.stem + f".{stage}.json")
