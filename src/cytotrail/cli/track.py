"""``cytotrail track``: link cells across frames into tracks with divisions."""

from __future__ import annotations

from pathlib import Path

from cytotrail.io import InputError

from ._common import _add_renamed, _add_sample, _provenance_path, _renamed_value, _sample_name, log


def _parser_track(sub):
    p = sub.add_parser(
        "track",
        help="link cells across frames into tracks with divisions",
        description="Link the cells of successive frames into tracks. INPUT is a label stack (T, Y, X), "
        "a detections table (.csv/.parquet with columns frame, x, y; other columns are kept) or a Cell "
        "Tracking Challenge folder (man_track.txt or res_track.txt plus masks: its masks are re-linked, "
        "its links ignored) or a folder of one label image per frame (mask000.tif, ...). OUTPUT (.csv/.parquet) has one row per detection with track_id, "
        "parent_track_id (empty when none), lineage_id and generation added; beside it, "
        "OUTPUT's name with .track.json holds the motion and division model fitted to the movie "
        "(search range, step scale, division scales, missed-frame cost) and the event counts.",
    )
    p.add_argument(
        "input",
        help="label stack (.tif), detections table (.csv/.parquet), CTC folder or folder of label frames",
    )
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


def _cmd_track(args):
    from cytotrail import io
    from cytotrail.track import detections_from_labels, track

    search_range_px = _renamed_value(args, "--search-range", "--search-range-px")
    labels = None
    folder = Path(args.input).is_dir()
    if folder and any((Path(args.input) / txt).is_file() for txt in ("man_track.txt", "res_track.txt")):
        from cytotrail.track.ctc import read_ctc_masks

        labels = read_ctc_masks(args.input)
    elif folder or Path(args.input).suffix.lower() in (".tif", ".tiff"):  # a stack, or a folder of frames
        labels = io.read_labels(args.input)
    if labels is not None:
        detections = detections_from_labels(labels)
        detections.insert(0, "sample", _sample_name(args, args.input))
    else:
        if args.ctc:
            raise InputError(f"--ctc needs masks: {args.input} is a table, give a label stack or CTC folder")
        detections = io.read_table(args.input)
    if args.fill_gaps and not args.ctc:
        raise InputError("--fill-gaps fills the gaps of the CTC masks: it needs --ctc FOLDER")
    if not len(detections):
        log.warning("%s holds no detections: the track table will be empty", args.input)
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
    n_tracks = len(tracks.groupby([c for c in ("sample", "track_id") if c in tracks.columns]))
    if args.min_length is not None and len(detections) and not n_tracks:
        log.warning(
            "no track is at least --min-length %s frames long: the track table is empty", args.min_length
        )
    log.info("wrote %s: %d detections in %d tracks", args.output, len(tracks), n_tracks)
