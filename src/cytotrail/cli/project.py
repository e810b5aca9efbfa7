"""``cytotrail init`` (a project for the user's images) and ``cytotrail demo`` (the synthetic one)."""

from __future__ import annotations

from pathlib import Path

from cytotrail.io import InputError

from ._common import _add_image_options, log


def _parser_init(sub):
    p = sub.add_parser(
        "init",
        help="write a config and sample sheet for your own images",
        description="Write OUTDIR/config/config.yaml and OUTDIR/config/samples.tsv for IMAGES: axes, "
        "channel names and pixel size are read from the files, the nuclear channel is guessed from "
        "names like DNA, DAPI, Hoechst, H2B or H3 (or given with --nuclear-channel), the other "
        "channels every image has become the clustered markers (but further DNA channels and "
        "elements such as Au or Si; a Background channel becomes cluster.background), whole cells "
        "are grown over the channels named like membrane or cytoplasm markers (E-cadherin, PanCK, "
        "CD45, Na/K-ATPase, ...: segment.cells), and no cell-type signatures are written. Then run the workflow in OUTDIR: snakemake --snakefile PATH/TO/cytotrail/Snakefile "
        "--directory OUTDIR --cores all",
    )
    p.add_argument("images", nargs="+", help="TIFF/OME-TIFF images (or PNG/JPEG planes), one sample each")
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
