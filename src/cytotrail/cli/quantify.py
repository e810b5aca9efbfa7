"""``cytotrail quantify``: per-cell marker intensities and morphology."""

from __future__ import annotations

from cytotrail.io import InputError

from ._common import _add_image_options, _add_sample, _default, _given, _sample_name, log


def _parser_quantify(sub):
    from cytotrail.quantify import quantify

    p = sub.add_parser(
        "quantify",
        help="per-cell marker intensities and morphology",
        description="Measure every cell of LABELS in every channel of IMAGE: one row per cell per frame "
        "with `sample, frame, label`, morphology and `<marker>_<compartment>_<statistic>` columns.",
    )
    p.add_argument(
        "image",
        help="TIFF/OME-TIFF image, axes TCYX, CYX, TYX or YX (or a PNG/JPEG plane, or a folder of TIFF "
        "frames t000.tif, t001.tif, ...)",
    )
    p.add_argument("labels", help="label stack (.tif), (T, Y, X) or (Y, X)")
    p.add_argument("-o", "--output", required=True, help="output table (.csv or .parquet)")
    p.add_argument("--markers", nargs="+", default=None, help="channels to measure (default: all)")
    p.add_argument(
        "--statistics",
        nargs="+",
        default=None,
        help="per-channel statistics: mean, median, std, sum, min, max, pNN (percentile) "
        f"(default {_default(quantify, 'statistics')})",
    )
    p.add_argument(
        "--compartments",
        nargs="+",
        default=None,
        help="nucleus (the label), cytoplasm (a ring around it) and/or cell (both) "
        f"(default {_default(quantify, 'compartments')})",
    )
    p.add_argument(
        "--cytoplasm-um",
        type=float,
        default=None,
        help="width of the cytoplasm ring grown from the nucleus, in µm "
        f"(default {_default(quantify, 'cytoplasm_um')})",
    )
    p.add_argument(
        "--pixel-size-um",
        type=float,
        default=None,
        help=f"pixel size in µm (default {_default(quantify, 'pixel_size_um')})",
    )
    p.add_argument(
        "--background",
        nargs="+",
        default=None,
        metavar="VALUE",
        help="subtract a background per channel: 'local' (block medians of the pixels outside "
        "cells, at each cell's centroid), 'auto' (median of the pixels outside "
        "all cells, per frame) or MARKER=VALUE pairs",
    )
    p.add_argument(
        "--neighbour-radius-um",
        type=float,
        default=None,
        help=f"radius for the n_neighbours column, in µm (default {_default(quantify, 'neighbour_radius_um')})",
    )
    p.add_argument(
        "--no-morphology", action="store_true", help="skip the shape columns (area, perimeter, solidity, ...)"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for growing the cytoplasm ring and for the per-channel statistics "
        "(results do not depend on it; the workflow passes the threads of rule quantify_cells; "
        f"default {_default(quantify, 'threads')})",
    )
    p.add_argument(
        "--cells",
        dest="cell_labels",
        default=None,
        metavar="CELLS.tif",
        help="whole-cell label stack (e.g. from `cytotrail segment-cells`), each cell "
        "labelled like its nucleus: the cell and cytoplasm compartments come from it "
        "instead of the ring",
    )
    _add_image_options(p)
    _add_sample(p)
    p.set_defaults(func=_cmd_quantify)


def _cmd_quantify(args):
    from cytotrail import io
    from cytotrail.quantify import quantify

    background = None
    if args.background in (["auto"], ["local"]):
        background = args.background[0]
    elif args.background:
        background = {}
        for item in args.background:
            name, _, value = item.rpartition("=")
            try:
                background[name] = float(value)
            except ValueError:
                name = ""
            if not name:
                raise InputError(f"--background: expected 'auto', 'local' or MARKER=VALUE, got {item!r}")
    image, names = io.read_image(args.image, axes=args.axes, channel_names=args.channel_names)
    labels = io.read_labels(args.labels)
    if labels.shape[0] != image.shape[0] or labels.shape[1:] != image.shape[2:]:
        raise InputError(
            f"labels {args.labels} have shape {labels.shape} but image {args.image} has "
            f"{image.shape[0]} frame(s) of {image.shape[2:]}"
        )
    whole = None
    if args.cell_labels is not None:
        whole = io.read_labels(args.cell_labels)
        if whole.shape != labels.shape:
            raise InputError(
                f"cell labels {args.cell_labels} have shape {whole.shape} but nucleus "
                f"labels {args.labels} have shape {labels.shape}"
            )
    cells = quantify(
        labels,
        image,
        channel_names=names,
        markers=args.markers,
        background=background,
        morphology=not args.no_morphology,
        cells=whole,
        **_given(
            args,
            "statistics",
            "compartments",
            "cytoplasm_um",
            "pixel_size_um",
            "neighbour_radius_um",
            "threads",
        ),
    )
    cells.insert(0, "sample", _sample_name(args, args.image))
    io.write_table(args.output, cells)
    log.info("wrote %s: %d cells", args.output, len(cells))
