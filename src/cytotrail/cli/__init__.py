"""Command-line interface: ``cytotrail <stage> ...``.

Every stage of the workflow is usable alone on files a user already has. Each
subcommand reads its inputs with :mod:`cytotrail.io`, calls one public function of the
package, and writes its output atomically. Errors in the input end with one line naming
the file or option at fault and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from cytotrail import __version__
from cytotrail.checks import whole_number
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


# --------------------------------------------------------------------------------------
# segment


def _parser_segment(sub):
    p = sub.add_parser(
        "segment",
        help="nuclei instance segmentation of every frame",
        description="Segment the nuclei of every frame of IMAGE's nuclear channel. Writes a (T, Y, X) "
        "uint32 label stack as a compressed TIFF (opens in napari and Fiji).",
    )
    p.add_argument("image", help="TIFF/OME-TIFF image, axes TCYX, CYX, TYX or YX")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help="output label stack (.tif); beside it, OUTPUT's name with .segment.json records the diameter used and where it came from",
    )
    p.add_argument("--channel", default=None, help="nuclear channel name or index (default: the first)")
    p.add_argument(
        "--backend",
        default="unet",
        choices=["unet", "watershed", "labels", "cellpose"],
        help="segmentation method (default: unet, the model shipped with cytotrail)",
    )
    p.add_argument(
        "--labels", default=None, help="with --backend labels: your own masks (TIFF, (T, Y, X) or (Y, X))"
    )
    p.add_argument("--model", default=None, help="model folder written by `cytotrail train` (unet backend)")
    p.add_argument(
        "--diameter-px",
        type=float,
        default=None,
        help="typical nucleus diameter in pixels (default: estimated from the image)",
    )
    _add_renamed(p, "--diameter", type=float)
    p.add_argument(
        "--device", default=None, help="auto (CUDA, then MPS, then CPU: the default), cuda, mps or cpu"
    )
    p.add_argument(
        "--batch-size", type=int, default=None, help="frames per network batch (default: segment()'s)"
    )
    p.add_argument(
        "--workers",
        type=_workers_arg,
        default=None,
        help="unet: threads that turn network maps into labels beside the network, or auto "
        "(the default: 1 on the CPU, beside a GPU up to 8 of the threads less one; labels do not depend on it)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads of this command: the network's on the CPU, the cap on --workers' "
        "default beside a GPU (default: as many as torch takes, OMP_NUM_THREADS or the cores)",
    )
    p.add_argument(
        "--tta",
        action="store_true",
        help="unet: average the network's maps over the image's flips (test-time "
        "augmentation; about 4x the network's time)",
    )
    _add_image_options(p)
    p.set_defaults(func=_cmd_segment)


def _workers_arg(text):
    """--workers: a whole number >= 1, or auto (the default)."""
    if text == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1 or auto, got {text!r}")
    return value


def _cmd_segment(args):
    from cytotrail import io
    from cytotrail.segment import segment

    diameter_px = _renamed_value(args, "--diameter", "--diameter-px")
    if args.threads is not None:
        whole_number(args.threads, "--threads", minimum=1)
    if args.threads is not None and args.backend in ("unet", "cellpose"):  # the others use one
        import torch

        torch.set_num_threads(args.threads)
    frames, _ = _nuclear_frames(args)
    options = dict(
        backend=args.backend,
        diameter_px=diameter_px,
        device=args.device,
        model=args.model,
        batch_size=args.batch_size,
        workers=args.workers,
        progress=True,
        tta=args.tta,
    )
    if args.backend == "labels":
        if args.labels is None:
            raise InputError("--backend labels needs --labels MASKS.tif")
        options["labels"] = io.read_labels(args.labels)
        if options["labels"].shape != frames.shape:
            raise InputError(
                f"labels {args.labels} have shape {options['labels'].shape} but image "
                f"{args.image} has frames of shape {frames.shape}"
            )
    info = {}
    options = {key: value for key, value in options.items() if value is not None}  # None: segment()'s
    labels = segment(frames, **options, info=info)
    io.write_labels(args.output, labels)
    io.write_json(
        _provenance_path(args.output, "segment"), {"image": str(args.image), "model": args.model, **info}
    )
    log.info("wrote %s: %d frame(s), largest label %d", args.output, len(labels), labels.max(initial=0))


# --------------------------------------------------------------------------------------
# track


def _parser_track(sub):
    p = sub.add_parser(
        "track",
        help="link cells across frames into tracks with divisions",
        description="Link the cells of successive frames into tracks. INPUT is a label stack (T, Y, X), "
        "a detections table (.csv/.parquet with columns frame, x, y; other columns are kept) or a Cell "
        "Tracking Challenge folder (man_track.txt or res_track.txt plus masks: its masks are re-linked, "
        "its links ignored). OUTPUT (.csv/.parquet) has one row per detection with track_id, "
        "parent_track_id (empty when none), lineage_id and generation added; beside it, "
        "OUTPUT's name with .track.json holds the motion and division model fitted to the movie "
        "(search range, step scale, division scales, missed-frame cost) and the event counts.",
    )
    p.add_argument("input", help="label stack (.tif), detections table (.csv/.parquet) or CTC folder")
    p.add_argument("-o", "--output", required=True, help="output table (.csv or .parquet)")
    p.add_argument(
        "--search-range-px",
        type=float,
        default=None,
        help="largest displacement between frames, in px (default: adapted to the data)",
    )
    _add_renamed(p, "--search-range", type=float)
    p.add_argument(
        "--memory",
        type=int,
        default=None,
        help="frames a cell may vanish and still be linked (default: track()'s)",
    )
    p.add_argument("--no-divisions", action="store_true", help="do not detect cell divisions")
    p.add_argument(
        "--min-length",
        type=int,
        default=None,
        help="drop tracks with fewer detections, unless they take part in a division (default: track()'s)",
    )
    p.add_argument(
        "--ctc",
        default=None,
        metavar="DIR",
        help="also write Cell Tracking Challenge files (res_track.txt + mask###.tif) to DIR "
        "(needs a label stack or CTC folder as INPUT)",
    )
    p.add_argument(
        "--fill-gaps",
        action="store_true",
        help="with --ctc: give the frames a track skips an interpolated mask instead of splitting the track",
    )
    p.add_argument(
        "--geff",
        default=None,
        metavar="OUT.geff",
        help="also write the lineages as a GEFF graph (zarr folder: one node per detection "
        "with t, y, x, track_id, seg_id; edges along tracks and from mothers to daughters)",
    )
    _add_sample(p)
    p.set_defaults(func=_cmd_track)


def _provenance_path(output, stage="track"):
    """``tracks.parquet`` -> ``tracks.track.json`` (``labels.tif`` -> ``labels.segment.json``):
    the parameters a stage used or fitted, saved beside its output."""
    output = Path(output)
    return output.with_name(output.stem + f".{stage}.json")


def _cmd_track(args):
    from cytotrail import io
    from cytotrail.track import detections_from_labels, track

    search_range_px = _renamed_value(args, "--search-range", "--search-range-px")
    labels = None
    if Path(args.input).is_dir():
        from cytotrail.track.ctc import read_ctc_masks

        labels = read_ctc_masks(args.input)
    elif Path(args.input).suffix.lower() in (".tif", ".tiff"):
        labels = io.read_labels(args.input)
    if labels is not None:
        detections = detections_from_labels(labels)
        detections.insert(0, "sample", _sample_name(args, args.input))
    else:
        if args.ctc:
            raise InputError(f"--ctc needs masks: {args.input} is a table, give a label stack or CTC folder")
        detections = io.read_table(args.input)
    options = dict(search_range_px=search_range_px, memory=args.memory, min_length=args.min_length)
    tracks = track(
        detections,
        **{key: value for key, value in options.items() if value is not None},  # None: track()'s
        divisions=not args.no_divisions,
    )
    if args.geff:
        from cytotrail.export.geff import write_geff

        write_geff(args.geff, tracks)
    io.write_table(args.output, tracks)
    io.write_json(_provenance_path(args.output), tracks.attrs.get("track", {}))
    if args.ctc:
        from cytotrail.track.ctc import write_ctc

        written = write_ctc(args.ctc, labels, tracks, fill_gaps=args.fill_gaps)
        log.info(
            "wrote %s: %d CTC tracks (%d gap fills)", args.ctc, len(written), written.attrs.get("n_filled", 0)
        )
    log.info("wrote %s: %d detections in %d tracks", args.output, len(tracks), tracks["track_id"].nunique())


# --------------------------------------------------------------------------------------
# quantify


def _parser_quantify(sub):
    from cytotrail.quantify import quantify

    p = sub.add_parser(
        "quantify",
        help="per-cell marker intensities and morphology",
        description="Measure every cell of LABELS in every channel of IMAGE: one row per cell per frame "
        "with `sample, frame, label`, morphology and `<marker>_<compartment>_<statistic>` columns.",
    )
    p.add_argument("image", help="TIFF/OME-TIFF image, axes TCYX, CYX, TYX or YX")
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


def _parser_segment_cells(sub):
    from cytotrail.segment.cells import grow_cells

    p = sub.add_parser(
        "segment-cells",
        help="whole cells grown from the nuclei over membrane/cytoplasm channels",
        description="Grow every nucleus of LABELS into its whole cell: a seeded watershed on the sum "
        "of IMAGE's --channels, bounded by --max-um from the nucleus. Writes a (T, Y, X) uint32 "
        "label stack, each cell labelled like its nucleus.",
    )
    p.add_argument("image", help="TIFF/OME-TIFF image, axes TCYX, CYX, TYX or YX")
    p.add_argument("labels", help="nucleus label stack (.tif), (T, Y, X) or (Y, X)")
    p.add_argument("-o", "--output", required=True, help="output cell label stack (.tif)")
    p.add_argument("--channels", nargs="+", required=True, help="membrane and/or cytoplasm channels, summed")
    p.add_argument(
        "--max-um",
        type=float,
        default=None,
        help=f"farthest a cell reaches from its nucleus, in µm (default {_default(grow_cells, 'max_um')})",
    )
    p.add_argument(
        "--min-um",
        type=float,
        default=None,
        help="every cell covers the pixels this close to its nucleus whatever the signal, "
        f"in µm (default {_default(grow_cells, 'min_um')}; 0: unstained cells stay at their nucleus)",
    )
    p.add_argument(
        "--pixel-size-um",
        type=float,
        default=None,
        help=f"pixel size in µm (default {_default(grow_cells, 'pixel_size_um')})",
    )
    _add_image_options(p)
    p.set_defaults(func=_cmd_segment_cells)


def _cmd_segment_cells(args):
    from cytotrail import io
    from cytotrail.segment.cells import grow_cells, membrane_channels

    image, names = io.read_image(args.image, axes=args.axes, channel_names=args.channel_names)
    channels = membrane_channels(image, names, args.channels)  # checked before the labels are read
    labels = io.read_labels(args.labels)
    if labels.shape[0] != image.shape[0] or labels.shape[1:] != image.shape[2:]:
        raise InputError(
            f"labels {args.labels} have shape {labels.shape} but image {args.image} has "
            f"{image.shape[0]} frame(s) of {image.shape[2:]}"
        )
    cells = grow_cells(labels, channels, **_given(args, "max_um", "min_um", "pixel_size_um"))
    io.write_labels(args.output, cells)
    log.info(
        "wrote %s: whole cells of %d frame(s) grown over %s",
        args.output,
        len(cells),
        ", ".join(args.channels),
    )


# --------------------------------------------------------------------------------------
# cluster


def _parser_cluster(sub):
    from cytotrail.cluster import cluster, merge_tables

    p = sub.add_parser(
        "cluster",
        help="cluster cells into types (scanpy) and annotate them from marker signatures",
        description="Assemble per-cell tables (one row per cell, one column per marker) into one AnnData, "
        "transform, PCA, neighbours, Leiden, UMAP, and name cell types from marker signatures or gates. "
        "Any per-cell table will do: cytotrail's own (<marker>_<compartment>_<stat> columns), or one whose "
        "columns are named like the markers (MCMICRO/MCQuant, steinbock, scimap, a spreadsheet); "
        "sample, frame and label columns are optional (fov or imageid name the sample).",
    )
    p.add_argument("tables", nargs="+", help="per-cell tables (.csv/.tsv/.parquet/.h5ad)")
    p.add_argument("-o", "--output", required=True, help="output AnnData (.h5ad)")
    p.add_argument(
        "--markers",
        nargs="*",
        default=None,
        help="markers to cluster on; none: the table is written without clustering",
    )
    p.add_argument(
        "--tracks", nargs="+", default=None, help="track tables joined to the cells on (sample, frame, label)"
    )
    p.add_argument(
        "--feature",
        default=None,
        help="column suffix of the marker features: <marker>_<feature>, e.g. cell_mean; "
        "'' takes columns named exactly like the markers (default: cell_mean when every "
        "marker has such a column, else the columns named like the markers)",
    )
    p.add_argument(
        "--cell-types",
        default=None,
        help="cell-type signatures: a YAML/JSON file, the same inline (e.g. "
        "'{T_cell: {pos: [CD3], neg: [CD20]}, CD8_T: {pos: [CD8], parent: T_cell}}'), or "
        "a scimap phenotype workflow (.csv: parent, child, then pos/neg/anypos/anyneg/"
        "allpos/allneg per marker)",
    )
    p.add_argument(
        "--gates",
        default=None,
        help="how signatures type cells: 'auto' (gating, a threshold estimated "
        "per marker), 'none' (percentile signature scores, see --min-score), a gates table "
        "(.csv, as scimap's manual_gates.csv: markers, gate) or a mapping "
        "'{CD3: 1.2, CD20: 0.8}', on the transformed scale "
        "(scimap's gates are log1p: use --transform log1p); markers without a gate get "
        f"an estimated one (default {_default(cluster, 'gates')})",
    )
    p.add_argument(
        "--background",
        nargs="+",
        default=None,
        metavar="CHANNEL",
        help="background channel(s): cells where it is high are flagged "
        "(obs background_high) and typed unknown",
    )
    p.add_argument(
        "--drop-na",
        action="store_true",
        help="leave out rows with NaN or infinite marker values instead of failing",
    )
    p.add_argument(
        "--transform",
        default=None,
        choices=["arcsinh", "percentile", "log1p", "none"],
        help=f"per-marker transform (default {_default(cluster, 'transform')})",
    )
    p.add_argument("--cofactor", type=float, default=None, help="arcsinh cofactor (default: per marker)")
    p.add_argument(
        "--resolution",
        type=float,
        default=None,
        help="Leiden resolution (default: chosen from the data, the most stable across seeds)",
    )
    p.add_argument(
        "--n-neighbors",
        type=int,
        default=None,
        help=f"neighbours in the kNN graph (default {_default(cluster, 'n_neighbors')})",
    )
    p.add_argument(
        "--level",
        default=None,
        choices=["cell", "track"],
        help=f"cluster cell-frames or whole tracks (default {_default(cluster, 'level')})",
    )
    p.add_argument(
        "--annotate",
        default=None,
        choices=["cell", "cluster"],
        help="cell types from each cell's own signature scores or its cluster's "
        f"(default {_default(cluster, 'annotate')})",
    )
    p.add_argument(
        "--min-score",
        type=float,
        default=None,
        help="with --gates none: signature score below which a cell is 'unknown' "
        f"(default {_default(cluster, 'min_score')})",
    )
    p.add_argument(
        "--unmatched",
        default=None,
        choices=["error", "keep", "drop"],
        help="cells without a track row (and track rows without a cell): fail, keep "
        f"them without track_id, or drop them (default {_default(merge_tables, 'unmatched')})",
    )
    p.add_argument("--no-umap", action="store_true", help="skip the UMAP embedding")
    p.add_argument(
        "--seed", type=int, default=None, help=f"random seed (default {_default(cluster, 'seed')})"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads of the neighbour search (the exact search, up to 50,000 cells, gives the same "
        "neighbours with any number; the workflow passes "
        f"the threads of rule cluster_cells; default {_default(cluster, 'threads')})",
    )
    p.set_defaults(func=_cmd_cluster)


def _cmd_cluster(args):
    import pandas as pd

    from cytotrail import io
    from cytotrail.cluster import cluster, merge_tables, write_anndata
    from cytotrail.cluster.pipeline import without_clustering
    from cytotrail.cluster.tables import check_marker_columns, with_sample

    tables = {}
    for path in args.tables:
        table = with_sample(_read_cells(path))
        if "sample" not in table.columns and len(args.tables) > 1:
            table.insert(0, "sample", _sample_name(argparse.Namespace(sample=None), path))
        tables[str(path)] = table
    markers = list(args.markers or [])
    extra = list(args.background or [])
    if markers:
        check_marker_columns(tables, markers + extra, args.feature)
    cells = pd.concat(list(tables.values()), ignore_index=True)
    tracks = None
    if args.tracks:
        tracks = pd.concat([io.read_table(path) for path in args.tracks], ignore_index=True)
    table = merge_tables(cells, tracks, **_given(args, "unmatched"))
    signatures = _read_signatures(args.cell_types) if args.cell_types else None
    gates = _read_gates(args.gates) if args.gates not in (None, "auto", "none") else args.gates
    if not markers:
        if signatures or extra:
            raise InputError("--cell-types and --background need --markers")
        adata = without_clustering(table)
    else:
        adata = cluster(
            table,
            markers=markers,
            feature=args.feature,
            signatures=signatures,
            cofactor=args.cofactor,
            resolution=args.resolution,
            umap=not args.no_umap,
            background=extra or None,
            drop_na=args.drop_na,
            **({} if gates is None else {"gates": gates}),
            **_given(args, "transform", "n_neighbors", "level", "annotate", "min_score", "seed", "threads"),
        )
    write_anndata(args.output, adata)
    log.info("wrote %s: %d observations x %d markers", args.output, adata.n_obs, adata.n_vars)


def _read_gates(text):
    """{marker: gate} from a gates table (.csv/.tsv), or given inline as YAML/JSON."""
    import yaml

    from cytotrail import io
    from cytotrail.cluster.gating import thresholds_from_gates

    if Path(text).suffix.lower() in (".csv", ".tsv"):
        return thresholds_from_gates(io.read_table(text))
    try:
        gates = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise InputError(f"--gates: not 'auto', a .csv table or a YAML/JSON mapping ({err})") from err
    if not isinstance(gates, dict):
        raise InputError(
            f"--gates: expected 'auto', a .csv gates table or a mapping {{marker: gate}}, got {text!r}"
        )
    return gates


def _read_signatures(text):
    """Cell-type signatures from a YAML/JSON file, or given inline as YAML/JSON text."""
    import yaml

    path = Path(text)
    if path.suffix.lower() in (".csv", ".tsv"):  # a scimap phenotype workflow
        from cytotrail import io
        from cytotrail.cluster.gating import signatures_from_workflow

        return signatures_from_workflow(io.read_table(path))
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        if not path.is_file():
            raise InputError(f"cell-type file not found: {path}")
        text = path.read_text()
    try:
        signatures = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise InputError(f"--cell-types: not valid YAML/JSON ({err})") from err
    if signatures is None:  # an empty file: no types
        return None
    if not isinstance(signatures, dict):
        raise InputError("--cell-types: expected a mapping {type: {pos: [...], neg: [...]}}")
    return signatures


def _read_cells(path):
    from cytotrail import io

    if str(path).endswith(".h5ad"):
        import anndata

        adata = anndata.read_h5ad(path)
        frame = adata.to_df()
        return frame.join(adata.obs.drop(columns=frame.columns, errors="ignore"))
    return io.read_table(path)


# --------------------------------------------------------------------------------------
# report


def _parser_report(sub):
    p = sub.add_parser(
        "report",
        help="QC figures and summary tables",
        description="`cytotrail report sample IMAGE LABELS TRACKS -o DIR` writes segmentation.png and "
        "tracks.png for one sample; `cytotrail report summary CELLS.h5ad -o DIR` writes umap.png, "
        "heatmap.png and summary.tsv for all samples.",
    )
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    one = kinds.add_parser("sample", help="figures of one sample")
    one.add_argument("image", help="TIFF/OME-TIFF image")
    one.add_argument("labels", help="label stack (.tif)")
    one.add_argument("tracks", help="track table (.csv/.parquet)")
    one.add_argument("-o", "--outdir", required=True, help="output folder")
    one.add_argument("--channel", default=None, help="nuclear channel name or index (default: the first)")
    one.add_argument("--frames", type=int, default=3, help="frames shown in the overlays")
    _add_image_options(one)
    _add_sample(one)
    one.set_defaults(func=_cmd_report_sample)
    summary = kinds.add_parser("summary", help="figures and table of all samples")
    summary.add_argument("adata", help="clustered AnnData (.h5ad) written by `cytotrail cluster`")
    summary.add_argument("-o", "--outdir", required=True, help="output folder")
    summary.add_argument(
        "--samples",
        nargs="+",
        default=None,
        help="every sample of the run: one without cells gets a row of zeros",
    )
    summary.set_defaults(func=_cmd_report_summary)
    prov = kinds.add_parser("provenance", help="the configuration and software versions of a run")
    prov.add_argument("-o", "--outdir", required=True, help="output folder")
    prov.add_argument("--config", required=True, help="the run's configuration as JSON text")
    prov.add_argument("--model", default=None, help="segmentation model folder (default: shipped)")
    prov.set_defaults(func=_cmd_report_provenance)


def _cmd_report_sample(args):
    from cytotrail import io, report

    frames, _ = _nuclear_frames(args)
    labels = io.read_labels(args.labels)
    tracks = io.read_table(args.tracks)
    sample = _sample_name(args, args.image)
    out = Path(args.outdir)
    io.save_figure(
        out / "segmentation.png",
        report.segmentation_figure(frames, labels, n_frames=args.frames, title=sample),
    )
    io.save_figure(
        out / "worst_frames.png",
        report.worst_frames_figure(frames, labels, n_frames=args.frames, title=sample),
    )
    io.save_figure(out / "tracks.png", report.tracks_figure(tracks, title=sample))
    io.save_figure(out / "lineages.png", report.lineage_figure(tracks, title=sample))
    napari_data, graph = report.napari_tracks(tracks)
    io.write_table(out / "napari_tracks.csv", napari_data)
    io.write_json(out / "napari_graph.json", graph)


def _cmd_report_summary(args):
    import anndata

    from cytotrail import io, report

    adata = anndata.read_h5ad(args.adata)
    out = Path(args.outdir)
    io.save_figure(out / "umap.png", report.umap_figure(adata))
    io.save_figure(out / "heatmap.png", report.heatmap_figure(adata))
    io.save_figure(out / "composition.png", report.composition_figure(adata.obs))
    io.save_figure(out / "timeseries.png", report.timeseries_figure(adata))
    io.write_table(out / "summary.tsv", report.summary_table(adata.obs, samples=args.samples))


def _cmd_report_provenance(args):
    import json

    import yaml

    from cytotrail import io, report

    out = Path(args.outdir)
    config = json.loads(args.config)
    with io.atomic_path(out / "config.yaml") as tmp:
        tmp.write_text(yaml.safe_dump(config, sort_keys=True))
    io.write_table(out / "versions.tsv", report.versions(model=args.model))


# --------------------------------------------------------------------------------------
# init


def _parser_init(sub):
    p = sub.add_parser(
        "init",
        help="write a config and sample sheet for your own images",
        description="Write OUTDIR/config/config.yaml and OUTDIR/config/samples.tsv for IMAGES: axes, "
        "channel names and pixel size are read from the files, the nuclear channel is guessed from "
        "names like DNA, DAPI, Hoechst, H2B or H3 (or given with --nuclear-channel), the other "
        "channels every image has become the clustered markers, and no cell-type signatures are "
        "written. Then run the workflow in OUTDIR: snakemake --snakefile PATH/TO/cytotrail/Snakefile "
        "--directory OUTDIR --cores all",
    )
    p.add_argument("images", nargs="+", help="TIFF/OME-TIFF images, one sample each")
    p.add_argument("-o", "--outdir", required=True, help="project folder (created)")
    p.add_argument(
        "--nuclear-channel",
        default=None,
        help="the nuclear channel's name (default: guessed from the channel names)",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing config and sample sheet")
    _add_image_options(p)
    p.set_defaults(func=_cmd_init)


def _cmd_init(args):
    import os

    import pandas as pd

    from cytotrail import io, project

    out = Path(args.outdir)
    config, sheet = out / "config" / "config.yaml", out / "config" / "samples.tsv"
    existing = [str(p) for p in (config, sheet) if p.exists()]
    if existing and not args.force:
        raise InputError(f"{existing[0]} exists; use --force to overwrite it")
    metadata = [
        io.image_metadata(path, axes=args.axes, channel_names=args.channel_names) for path in args.images
    ]
    nuclear = [
        project.guess_nuclear_channel(
            meta["channel_names"], given=args.nuclear_channel, source=f"image {path}"
        )
        for path, meta in zip(args.images, metadata)
    ]
    text = project.config_text(metadata, nuclear, images=args.images)
    images = []
    for path in args.images:  # relative to the project folder, where the workflow runs
        full = Path(path).resolve()
        inside = full.is_relative_to(out.resolve())
        images.append(os.path.relpath(full, out.resolve()) if inside else str(full))
    header, rows = project.sample_sheet(
        images, metadata, nuclear=nuclear, axes=args.axes, channel_names=args.channel_names
    )
    io.write_table(sheet, pd.DataFrame(rows, columns=header))
    io.write_yaml(config, text)
    for path, meta in zip(args.images, metadata):
        log.info(
            "%s: %s (T, C, Y, X), channels %s, nuclear %s, pixel size %s",
            path,
            meta["shape"],
            meta["channel_names"],
            nuclear[args.images.index(path)],
            f"{meta['pixel_size_um']:g} µm" if meta["pixel_size_um"] else "not recorded",
        )
        if not meta["named"] and meta["shape"][1] > 1:
            log.warning(
                "%s records no channel names: set them with --channel-names (or the sheet's "
                "channel_names column)",
                path,
            )
    snakefile = Path(__file__).resolve().parents[3] / "Snakefile"
    snakefile = snakefile if snakefile.is_file() else "PATH/TO/cytotrail/Snakefile"
    log.info(
        "wrote %s and %s; check them, then run:\n  snakemake --snakefile %s --directory %s --cores all",
        config,
        sheet,
        snakefile,
        out,
    )


# --------------------------------------------------------------------------------------
# demo and main


def _parser_demo(sub):
    p = sub.add_parser(
        "demo",
        help="write the synthetic demo dataset with its ground truth",
        description="Generate a seeded synthetic timelapse (nuclear stain plus marker channels) for each "
        "sample and write SAMPLE.ome.tif plus truth/SAMPLE_labels.tif and truth/SAMPLE_tracks.csv into "
        "OUTDIR.",
    )
    p.add_argument("outdir", help="output folder")
    p.add_argument("--samples", nargs="+", default=["demo_a", "demo_b"], help="sample names")
    p.add_argument("--frames", type=int, default=20, help="frames per sample")
    p.add_argument("--size", type=int, default=256, help="frame height and width in px")
    p.add_argument("--cells", type=int, default=50, help="nuclei in the first frame")
    p.add_argument("--seed", type=int, default=0, help="random seed of the first sample")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args):
    from cytotrail.synth import make_timelapse, write_dataset

    for i, sample in enumerate(args.samples):
        data = make_timelapse(
            n_frames=args.frames, shape=(args.size, args.size), n_cells=args.cells, seed=args.seed + i
        )
        write_dataset(args.outdir, data, sample=sample)
        log.info("wrote demo sample %s to %s", sample, args.outdir)


# --------------------------------------------------------------------------------------
# exports to the ecosystem's formats (cytotrail.export)


def _parser_export_model(sub):
    p = sub.add_parser(
        "export-model",
        help="write a segmentation model as a bioimage.io model package",
        description="Write MODEL (the shipped nuclei_unet, or a folder written by `cytotrail train`) as a "
        "bioimage.io model package (format 0.5) for the BioImage Model Zoo, ilastik, deepImageJ and "
        "bioimageio.core: rdf.yaml, TorchScript and state-dict weights, test tensors, README.md. "
        "Check it with `bioimageio test DIR/rdf.yaml` (pip install 'cytotrail[export]').",
    )
    p.add_argument(
        "model", nargs="?", default=None, help="shipped model name or model folder (default: nuclei_unet)"
    )
    p.add_argument("-o", "--output", required=True, help="output folder (replaced if it exists)")
    p.add_argument(
        "--author",
        action="append",
        default=None,
        metavar="NAME",
        help="an author of the package (repeat for several; default: cytotrail contributors)",
    )
    p.set_defaults(func=_cmd_export_model)


def _cmd_export_model(args):
    from cytotrail.export.bioimageio import DEFAULT_AUTHORS, export_model

    authors = [{"name": name} for name in args.author] if args.author else DEFAULT_AUTHORS
    rdf = export_model(args.output, args.model, authors=authors)
    log.info("wrote %s", rdf)


def _parser_export(sub):
    p = sub.add_parser(
        "export",
        help="write results in the ecosystem's formats (SpatialData, GEFF)",
        description="`cytotrail export spatialdata RESULTS -o OUT.zarr` writes every sample's image "
        "(multiscale OME-Zarr), labels and the cell table (RESULTS/cells.h5ad) as one SpatialData "
        "store, one image and labels element per frame; `cytotrail export geff TRACKS -o OUT.geff` "
        "writes one sample's track table as a GEFF graph.",
    )
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    sd = kinds.add_parser("spatialdata", help="images, labels and the cell table as SpatialData")
    sd.add_argument("results", help="results folder: RESULTS/<sample>/labels.tif (and cells.h5ad)")
    sd.add_argument("-o", "--output", required=True, help="output zarr store (replaced if it exists)")
    sd.add_argument(
        "--samples",
        dest="sample_sheet",
        default="config/samples.tsv",
        metavar="SHEET",
        help="sample sheet naming each sample's image (columns sample, image, optional "
        "axes and channel_names; default config/samples.tsv)",
    )
    sd.add_argument(
        "--table",
        default=None,
        help="cell table (.h5ad, one row per cell per frame; default RESULTS/cells.h5ad)",
    )
    sd.add_argument("--no-table", action="store_true", help="images and labels only")
    sd.set_defaults(func=_cmd_export_spatialdata)
    geff = kinds.add_parser("geff", help="one sample's tracks as a GEFF graph")
    geff.add_argument("tracks", help="track table (.csv/.parquet) of one sample")
    geff.add_argument("-o", "--output", required=True, help="output GEFF folder (OUT.geff)")
    geff.add_argument("--pixel-size-um", type=float, default=None, help="pixel size in µm")
    geff.add_argument("--frame-interval-s", type=float, default=None, help="time between frames, in s")
    geff.set_defaults(func=_cmd_export_geff)


def _cmd_export_geff(args):
    from cytotrail import io
    from cytotrail.export.geff import write_geff

    graph = write_geff(
        args.output,
        io.read_table(args.tracks),
        pixel_size_um=args.pixel_size_um,
        frame_interval_s=args.frame_interval_s,
    )
    log.info(
        "wrote %s: %d nodes, %d edges (%d divisions)",
        args.output,
        len(graph["node_ids"]),
        len(graph["edge_ids"]),
        int(graph["edge_props"]["division"].sum()),
    )


def _export_plan(args):
    """{sample: (image, axes, channel names, labels, (T, C, Y, X))} and the table path, checked."""
    from cytotrail import io
    from cytotrail.export._files import check_output_dir

    results, out = Path(args.results), Path(args.output).resolve()
    if not results.is_dir():
        raise InputError(f"results folder not found: {results}")
    if out == results.resolve() or out in results.resolve().parents:
        raise InputError(f"output {args.output} would replace the results folder {results}")
    check_output_dir(Path(args.output))
    sheet = io.read_table(args.sample_sheet)
    missing = [c for c in ("sample", "image") if c not in sheet.columns]
    if missing:
        raise InputError(f"sample sheet {args.sample_sheet}: no column(s) {missing}")
    sheet = sheet.astype(object).where(sheet.notna(), None)
    plan = {}
    for row in sheet.to_dict("records"):
        sample = str(row["sample"])
        labels = results / sample / "labels.tif"
        if not labels.is_file():
            raise InputError(f"sample {sample!r} (sample sheet {args.sample_sheet}): no labels at {labels}")
        names = [n.strip() for n in row["channel_names"].split(",")] if row.get("channel_names") else None
        channels, shape = io.image_channels(row["image"], axes=row.get("axes"), channel_names=names)
        plan[sample] = (row["image"], row.get("axes"), channels, labels, shape)
    table = None
    if not args.no_table:
        table = Path(args.table) if args.table else results / "cells.h5ad"
        if not table.is_file():
            raise InputError(f"cell table not found: {table} (give --table or --no-table)")
    return plan, table


def _cmd_export_spatialdata(args):
    from cytotrail import io
    from cytotrail.export.spatialdata import _import_spatialdata, to_spatialdata, write_spatialdata

    plan, table = _export_plan(args)
    _import_spatialdata()  # a missing extra fails before any image is read
    samples = {}
    for sample, (image_path, axes, channels, labels_path, shape) in plan.items():
        labels = io.read_labels(labels_path)
        if labels.shape[0] != shape[0] or labels.shape[1:] != tuple(shape[2:]):
            raise InputError(
                f"sample {sample!r}: labels {labels_path} have shape {labels.shape} but "
                f"image {image_path} has {shape[0]} frame(s) of {tuple(shape[2:])}"
            )
        image, names = io.read_image(image_path, axes=axes, channel_names=channels)
        samples[sample] = (image, labels, names)
    adata = None
    if table is not None:
        import anndata

        adata = anndata.read_h5ad(table)
    write_spatialdata(args.output, to_spatialdata(samples, adata))
    log.info(
        "wrote %s: %d sample(s)%s",
        args.output,
        len(samples),
        f", table of {adata.n_obs} cells" if adata is not None else "",
    )


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


def _refuse_overwriting_inputs(args):
    """InputError when an output path is one of the command's inputs (a typo must not destroy data)."""
    from cytotrail.io import check_output_is_not_input

    inputs = []
    for name in _INPUT_ARGS:
        value = getattr(args, name, None)
        inputs.extend(value if isinstance(value, list) else [value])
    for name in _OUTPUT_ARGS:
        if getattr(args, name, None):
            check_output_is_not_input(getattr(args, name), inputs)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
    )
    try:
        _refuse_overwriting_inputs(args)
        args.func(args)
    except InputError as err:
        print(f"cytotrail {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # disk full, read-only or missing output folder, ...
        where = f" {err.filename}" if err.filename else ""
        print(f"cytotrail {args.command}: error: cannot write{where}: {err.strerror or err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
