"""``cytotrail export-model`` and ``cytotrail export spatialdata|geff``: the ecosystem's formats
(:mod:`cytotrail.export`)."""

from __future__ import annotations

from pathlib import Path

from cytotrail.io import InputError

from ._common import log


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
        adata = io.read_anndata(table)
    write_spatialdata(args.output, to_spatialdata(samples, adata))
    log.info(
        "wrote %s: %d sample(s)%s",
        args.output,
        len(samples),
        f", table of {adata.n_obs} cells" if adata is not None else "",
    )
