"""``cytotrail segment`` (nuclei) and ``cytotrail segment-cells`` (whole cells grown from them)."""

from __future__ import annotations

import argparse

from cytotrail.checks import whole_number
from cytotrail.io import InputError

from ._common import (
    _add_image_options,
    _add_renamed,
    _default,
    _given,
    _nuclear_frames,
    _provenance_path,
    _renamed_value,
    log,
)


def _parser_segment(sub):
    p = sub.add_parser(
        "segment",
        help="nuclei instance segmentation of every frame",
        description="Segment the nuclei of every frame of IMAGE's nuclear channel. Writes a (T, Y, X) "
        "uint32 label stack as a compressed TIFF (opens in napari and Fiji).",
    )
    p.add_argument(
        "image",
        help="TIFF/OME-TIFF image, axes TCYX, CYX, TYX or YX (or a PNG/JPEG plane, or a folder of TIFF "
        "frames t000.tif, t001.tif, ...)",
    )
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
    if args.labels is not None and args.backend != "labels":
        raise InputError(f"--labels gives the masks of --backend labels, not of --backend {args.backend}")
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
    try:
        labels = segment(frames, **options, info=info)
    except InputError as err:  # "frames contain NaN ...": say which file they are
        if str(err).startswith("frames"):
            raise InputError(f"image {args.image}: {err}") from err
        raise
    io.write_labels(args.output, labels)
    io.write_json(
        _provenance_path(args.output, "segment"), {"image": str(args.image), "model": args.model, **info}
    )
    log.info("wrote %s: %d frame(s), largest label %d", args.output, len(labels), labels.max(initial=0))
    if not labels.any():
        log.warning(
            "no object was found in any frame of %s (channel %s): is it the nuclear channel, "
            "and is the diameter right?",
            args.image,
            args.channel or 0,
        )


def _parser_segment_cells(sub):
    from cytotrail.segment.cells import grow_cells

    p = sub.add_parser(
        "segment-cells",
        help="whole cells grown from the nuclei over membrane/cytoplasm channels",
        description="Grow every nucleus of LABELS into its whole cell: a seeded watershed on the sum "
        "of IMAGE's --channels, bounded by --max-um from the nucleus. Writes a (T, Y, X) uint32 "
        "label stack, each cell labelled like its nucleus.",
    )
    p.add_argument(
        "image",
        help="TIFF/OME-TIFF image, axes TCYX, CYX, TYX or YX (or a PNG/JPEG plane, or a folder of TIFF "
        "frames t000.tif, t001.tif, ...)",
    )
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
