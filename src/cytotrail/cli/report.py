"""``cytotrail report sample|summary|provenance``: QC figures and summary tables."""

from __future__ import annotations

from pathlib import Path

from cytotrail.io import InputError

from ._common import _add_image_options, _add_sample, _nuclear_frames, _sample_name


def _parser_report(sub):
    p = sub.add_parser(
        "report",
        help="QC figures and summary tables",
        description="`cytotrail report sample IMAGE LABELS TRACKS -o DIR` writes segmentation.png and "
        "tracks.png for one sample; `cytotrail report summary CELLS.h5ad -o DIR` writes umap.png, "
        "heatmap.png, composition.png, timeseries.png, spatial.png and summary.tsv for all samples.",
    )
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    one = kinds.add_parser("sample", help="figures of one sample")
    one.add_argument("image", help="TIFF/OME-TIFF image")
    one.add_argument("labels", help="label stack (.tif)")
    one.add_argument("tracks", help="track table (.csv/.parquet)")
    one.add_argument("-o", "--outdir", required=True, help="output folder")
    one.add_argument("--channel", default=None, help="nuclear channel name or index (default: the first)")
    one.add_argument("--frames", type=int, default=3, help="frames shown in the overlays")
    one.add_argument(
        "--cells",
        default=None,
        help="whole-cell label stack (.tif) outlined under the nuclei (segment.cells)",
    )
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
    cells = None if args.cells is None else io.read_labels(args.cells)
    if cells is not None and cells.shape != labels.shape:
        raise InputError(
            f"cells {args.cells} have shape {cells.shape} but labels {args.labels} have {labels.shape}"
        )
    tracks = io.read_table(args.tracks)
    sample = _sample_name(args, args.image)
    out = Path(args.outdir)
    io.save_figure(
        out / "segmentation.png",
        report.segmentation_figure(frames, labels, cells=cells, n_frames=args.frames, title=sample),
    )
    io.save_figure(
        out / "worst_frames.png",
        report.worst_frames_figure(frames, labels, cells=cells, n_frames=args.frames, title=sample),
    )
    io.save_figure(out / "tracks.png", report.tracks_figure(tracks, title=sample))
    io.save_figure(out / "lineages.png", report.lineage_figure(tracks, title=sample))
    napari_data, graph = report.napari_tracks(tracks)
    io.write_table(out / "napari_tracks.csv", napari_data)
    io.write_json(out / "napari_graph.json", graph)


def _cmd_report_summary(args):

    from cytotrail import io, report

    adata = io.read_anndata(args.adata)
    out = Path(args.outdir)
    io.save_figure(out / "umap.png", report.umap_figure(adata))
    io.save_figure(out / "heatmap.png", report.heatmap_figure(adata))
    io.save_figure(out / "composition.png", report.composition_figure(adata.obs))
    io.save_figure(out / "timeseries.png", report.timeseries_figure(adata))
    io.save_figure(out / "spatial.png", report.spatial_figure(adata))
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
