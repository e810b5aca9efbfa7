"""``cytotrail train``: the subcommand's options (:func:`add_parser`) and what it runs."""

from __future__ import annotations

import logging

from cytotrail.io import InputError
from cytotrail.segment.train.checkpoint import read_checkpoint
from cytotrail.segment.train.defaults import DEFAULTS
from cytotrail.segment.train.loop import train_model

__all__ = ["add_parser"]

log = logging.getLogger("cytotrail.train")


def add_parser(sub):
    """Add the ``train`` subcommand to an argparse subparsers object."""
    p = sub.add_parser(
        "train",
        help="train (or fine-tune) the nuclei segmentation U-Net",
        description="Train the U-Net of the unet backend on image/label folder pairs plus generated "
        "synthetic frames, tune its post-processing thresholds on the validation split, and write a "
        "model folder that `cytotrail segment --model` accepts. Runs on the GPU when there is one "
        "(--device); a checkpoint.pt in the output folder lets --resume continue a run exactly.",
    )
    p.add_argument("-o", "--output", required=True, help="model folder to write")
    p.add_argument(
        "--images",
        nargs="+",
        action="extend",
        default=[],
        metavar="DIR",
        help="folders of training images (paired with --labels in order)",
    )
    p.add_argument(
        "--labels",
        nargs="+",
        action="extend",
        default=[],
        metavar="DIR",
        help="folder of instance label images with the same file names as --images",
    )
    p.add_argument(
        "--manifest",
        default=None,
        help="CSV with columns id (file stem) and split (train/val); default: a fixed "
        "hash split with --val-fraction",
    )
    p.add_argument("--val-fraction", type=float, default=0.1, help="validation fraction without a manifest")
    p.add_argument(
        "--hold-out-families",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="leave whole acquisition families (dtype, size, intensity level) of up to this share "
        "of the images out of training and validation, for an honest out-of-distribution check "
        "(see benchmarks/bench_segment_ood.py; 0.15 there); default 0",
    )
    p.add_argument(
        "--synthetic",
        type=int,
        default=60,
        help="synthetic timelapses generated for training (2 frames each; 0 for none)",
    )
    p.add_argument("--synthetic-val", type=int, default=10, help="synthetic timelapses for validation")
    p.add_argument(
        "--synthetic-weight",
        type=float,
        default=None,
        help=f"share of training crops drawn from synthetic frames (default {DEFAULTS['synthetic_weight']})",
    )
    p.add_argument("--init", default=None, help="model folder (or shipped name) to fine-tune from")
    p.add_argument(
        "--resume",
        default=None,
        metavar="CHECKPOINT",
        help="continue the run of this checkpoint.pt (or model folder holding one) exactly; give the "
        "same data options; the recipe comes from the checkpoint",
    )
    p.add_argument("--seed", type=int, default=None, help=f"random seed (default {DEFAULTS['seed']})")
    p.add_argument(
        "--steps", type=int, default=None, help=f"optimisation steps (default {DEFAULTS['steps']})"
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="crops per step (default: 8 on the CPU, up to 64 from a CUDA device's memory)",
    )
    p.add_argument("--crop", type=int, default=None, help=f"crop side in px (default {DEFAULTS['crop']})")
    p.add_argument(
        "--lr",
        type=float,
        default=None,
        help=f"initial learning rate, Adam with cosine decay (default {DEFAULTS['lr']})",
    )
    p.add_argument(
        "--base",
        type=int,
        default=None,
        help=f"channels of the first U-Net level (default {DEFAULTS['base']})",
    )
    p.add_argument(
        "--depth", type=int, default=None, help=f"U-Net resolution levels (default {DEFAULTS['depth']})"
    )
    p.add_argument(
        "--device", default="auto", help="auto (CUDA, then MPS, then CPU), cuda, cuda:N, mps or cpu"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="data-loader processes drawing crops (0: in the main process; the crops do not depend on it)",
    )
    p.add_argument("--no-amp", action="store_true", help="no bf16/fp16 autocast on CUDA")
    p.add_argument(
        "--stop-after",
        type=int,
        default=None,
        help="end this sitting after this many steps in all (the schedule still plans for --steps)",
    )
    p.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="end this sitting after this many minutes (checkpoint written; continue with --resume)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints")
    p.add_argument("--log-every", type=int, default=50, help="steps between progress lines")
    p.set_defaults(func=_cmd_train)
    return p


def _cmd_train(args):
    import shlex
    import sys

    import torch

    from cytotrail import io
    from cytotrail.segment.data import folder_samples, synthetic_samples

    if args.threads:
        torch.set_num_threads(args.threads)
    if len(args.images) != len(args.labels):
        raise InputError(f"--images names {len(args.images)} folder(s) but --labels {len(args.labels)}")
    if not args.images and args.synthetic < 1:
        raise InputError("nothing to train on: give --images/--labels folders or --synthetic N > 0")
    seed = args.seed
    if args.resume:  # checked before any data is loaded; the run's seed decides its synthetic frames
        seed = read_checkpoint(args.resume)["config"]["training"]["seed"] if seed is None else seed
    seed = DEFAULTS["seed"] if seed is None else seed
    manifest = io.read_table(args.manifest) if args.manifest else None
    train, val, held = [], [], []
    for images, labels in zip(args.images, args.labels):
        pairs = folder_samples(
            images,
            labels,
            split="all",
            manifest=manifest,
            val_fraction=args.val_fraction,
            hold_out=args.hold_out_families,
        )
        if not any(s.split == "train" for s in pairs):
            raise InputError(
                f"no training pairs left in {images} after the split"
                f"{' and the held-out families' if args.hold_out_families else ''}"
                f" ({len(pairs)} pairs: {sum(s.split == 'val' for s in pairs)} val, "
                f"{sum(s.split == 'held_out' for s in pairs)} held out)"
            )
        train += [s for s in pairs if s.split == "train"]
        val += [s for s in pairs if s.split == "val"]
        held += [s for s in pairs if s.split == "held_out"]
    # synthetic seeds: training from 10_000 + 1000 * seed, validation from 5_000 (disjoint from 0-999,
    # which benchmarks and the demo use)
    if args.synthetic:
        train += synthetic_samples(args.synthetic, seed=10_000 + 1000 * seed)
    if args.synthetic_val:
        val += synthetic_samples(args.synthetic_val, seed=5_000, frames=(1,))
    log.info(
        "training on %d samples (%d synthetic), validating on %d, %d held out",
        len(train),
        sum(s.name.startswith("synth") for s in train),
        len(val),
        len(held),
    )
    extra = {
        "held_out_families": sorted({s.family for s in held}),
        "hold_out_fraction": args.hold_out_families,
    }
    command = "cytotrail " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    train_model(
        train,
        output=args.output,
        val_samples=val,
        init=args.init,
        resume=args.resume,
        seed=args.seed,
        steps=args.steps,
        batch_size=args.batch_size,
        crop=args.crop,
        lr=args.lr,
        base=args.base,
        depth=args.depth,
        synthetic_weight=args.synthetic_weight,
        device=args.device,
        workers=args.workers,
        amp=not args.no_amp,
        checkpoint_every=args.checkpoint_every,
        log_every=args.log_every,
        stop_after=args.stop_after,
        max_minutes=args.max_minutes,
        command=command,
        extra=extra,
    )
    log.info("wrote model %s", args.output)
