"""Command-line interface: ``cytotrail <stage> ...``.

Every stage of the workflow is usable alone on files a user already has. Each
subcommand reads its inputs with :mod:`cytotrail.io`, calls one public function of the
package, and writes its output atomically. Errors in the input end with one line naming
the file or option at fault and exit status 2.

This module builds the parser and runs a command; each group of subcommands lives in its own
module (``segment``, ``track``, ``quantify``, ``cluster``, ``report``, ``project``, ``export``)
with its ``_parser_*`` and ``_cmd_*`` functions, and what they share in ``_common``. ``train``'s
parser lives with the training code (:func:`cytotrail.segment.train.add_parser`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from cytotrail import __version__
from cytotrail.io import InputError
from cytotrail.io.tables import TABLE_SUFFIXES

from .cluster import _parser_cluster
from .export import _parser_export, _parser_export_model
from .project import _parser_demo, _parser_init
from .quantify import _parser_quantify
from .report import _parser_report
from .segment import _parser_segment, _parser_segment_cells
from .track import _parser_track

__all__ = ["build_parser", "main"]


_PARSERS = [
    _parser_init,
    _parser_segment,
    _parser_segment_cells,
    _parser_track,
    _parser_quantify,
    _parser_cluster,
    _parser_report,
    _parser_demo,
    _parser_export_model,
    _parser_export,
]


def build_parser():
    """The ``cytotrail`` parser with every subcommand, in the order ``--help`` lists them.

    Returns
    -------
    argparse.ArgumentParser
        Each subcommand's parsed arguments carry ``func``, the function that runs it.
    """
    parser = argparse.ArgumentParser(
        prog="cytotrail",
        description="Segment, track, quantify and cluster cells in timelapse and multiplexed images.",
    )
    parser.add_argument("--version", action="version", version=f"cytotrail {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _PARSERS:
        add(sub)
    for add in _extra_parsers():
        add(sub)
    return parser


def _extra_parsers():
    """Subcommands that live with their stage (e.g. ``train`` in cytotrail.segment.train)."""
    extra = []
    try:
        from cytotrail.segment.train import add_parser as train_parser
    except ImportError:
        pass
    else:
        extra.append(train_parser)
    return extra


# the arguments of any subcommand that name files it reads, and those that name what it writes
_INPUT_ARGS = (
    "image",
    "labels",
    "input",
    "tables",
    "tracks",
    "adata",
    "results",
    "model",
    "sample_sheet",
    "table",
    "cell_labels",
)
_OUTPUT_ARGS = ("output", "ctc", "geff")


# what the stages write: the suffixes their -o accepts (checked before any work)
_OUTPUT_SUFFIXES = {
    "segment": (".tif", ".tiff"),
    "segment-cells": (".tif", ".tiff"),
    "track": TABLE_SUFFIXES,
    "quantify": TABLE_SUFFIXES,
    "cluster": (".h5ad",),
}


def _check_outputs(args):
    """InputError, before any work, when an output path is one of the command's inputs (a
    typo must not destroy data), or a stage's output is a folder or of a format it does not write."""
    from cytotrail.io import check_output_is_not_input

    inputs = []
    for name in _INPUT_ARGS:
        value = getattr(args, name, None)
        inputs.extend(value if isinstance(value, list) else [value])
    for name in _OUTPUT_ARGS:
        if getattr(args, name, None):
            check_output_is_not_input(
                getattr(args, name), inputs, frame_folders=[getattr(args, "image", None)]
            )
    suffixes = _OUTPUT_SUFFIXES.get(args.command)
    output = getattr(args, "output", None)
    if suffixes and output:
        if Path(output).is_dir():
            raise InputError(f"output {output} is a folder: give the path of the file to write")
        if Path(output).suffix.lower() not in suffixes:
            raise InputError(
                f"output {output}: cytotrail {args.command} writes {' or '.join(suffixes)} files, "
                f"not {Path(output).suffix or 'a file without a suffix'}"
            )


def main(argv=None):
    """Run one ``cytotrail`` command.

    Parameters
    ----------
    argv : list of str, optional
        The command line without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status: 0 on success, 2 for bad input (one line naming the file or option at
        fault), 1 when an output cannot be written.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
    )
    try:
        _check_outputs(args)
        args.func(args)
    except InputError as err:
        print(f"cytotrail {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # disk full, read-only or missing output folder, ...
        where = f" {err.filename}" if err.filename else ""
        print(f"cytotrail {args.command}: error: cannot write{where}: {err.strerror or err}", file=sys.stderr)
        return 1
    return 0
