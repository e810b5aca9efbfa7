"""Training the U-Net: ``cytotrail train`` and :func:`train_model`.

Crops are drawn at a random scale so that nuclei are 10-32 px across (the model's
training diameter is 18 px; inference rescales images to that range), with flips,
90-degree rotations, gamma/contrast/offset changes, background ramps, blur and noise.
Loss: binary cross-entropy on the foreground and on the centre-ness map. After
training, post-processing thresholds are tuned on the validation samples (grid search
for the best mean AP@0.5) and saved in ``thresholds.json``.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from pathlib import Path

import numpy as np

from cytotrail.io import InputError

__all__ = ["train_model", "tune_thresholds", "evaluate", "add_parser"]

log = logging.getLogger("cytotrail.train")

TRAIN_DIAMETER = 18.0
DIAMETER_RANGE = (10.0, 32.0)


# --------------------------------------------------------------------------------------
# crops and augmentation


def _draw_crop(sample, rng, crop, diameter_range):
    """One augmented (image, fg, centre) crop of side ``crop``, float32 torch tensors (3, crop, crop)."""
    import torch
    from torch.nn import functional as F

    d_native = sample.diameter if np.isfinite(sample.diameter) else TRAIN_DIAMETER
    target = math.exp(rng.uniform(math.log(diameter_range[0]), math.log(diameter_range[1])))
    scale = float(np.clip(target / d_native, 0.2, 5.0))
    side = max(8, int(round(crop / scale)))
    ny, nx = sample.image.shape
    y0 = int(rng.integers(0, max(1, ny - side + 1)))
    x0 = int(rng.integers(0, max(1, nx - side + 1)))
    win = np.stack([sample.image[y0:y0 + side, x0:x0 + side],
                    sample.fg[y0:y0 + side, x0:x0 + side].astype(np.float32),
                    sample.centre[y0:y0 + side, x0:x0 + side]])
    if win.shape[1] < side or win.shape[2] < side:  # image smaller than the window: pad
        ph, pw = side - win.shape[1], side - win.shape[2]
        fill = float(np.percentile(win[0], 5))
        win = np.stack([np.pad(win[0], ((0, ph), (0, pw)), constant_values=fill),
                        np.pad(win[1], ((0, ph), (0, pw))), np.pad(win[2], ((0, ph), (0, pw)))])
    t = torch.from_numpy(np.ascontiguousarray(win))[None]
    with torch.no_grad():
        img = F.interpolate(t[:, :1], size=(crop, crop), mode="bilinear", align_corners=False,
                            antialias=scale < 1)[0, 0].numpy()
        tgt = F.interpolate(t[:, 1:], size=(crop, crop), mode="bilinear", align_corners=False)[0].numpy()
    fg = (tgt[0] > 0.5).astype(np.float32)
    out = np.stack([img, fg, tgt[1] * fg])
    out = np.rot90(out, int(rng.integers(4)), axes=(1, 2))
    if rng.random() < 0.5:
        out = out[:, :, ::-1]
    out = np.ascontiguousarray(out)
    out[0] = _augment_intensity(out[0], rng)
    return out


def _augment_intensity(img, rng):
    """Gamma, contrast/offset, background ramp, defocus and noise on a normalised (Y, X) crop."""
    from scipy import ndimage as ndi

    img = img.astype(np.float32, copy=True)
    if rng.random() < 0.8:  # gamma on the positive part
        gamma = math.exp(rng.uniform(math.log(0.6), math.log(1.6)))
        img = np.clip(img, 0, None) ** gamma
    img = img * rng.uniform(0.6, 1.4) + rng.uniform(-0.15, 0.15)
    n = img.shape[-1]
    if rng.random() < 0.5:  # background ramp
        angle = rng.uniform(0, 2 * math.pi)
        ramp = np.linspace(-0.5, 0.5, n, dtype=np.float32)
        img = img + rng.uniform(0, 0.6) * (math.cos(angle) * ramp[:, None] + math.sin(angle) * ramp[None, :])
    if rng.random() < 0.2:  # defocus
        img = ndi.gaussian_filter(img, rng.uniform(0.5, 1.5))
    if rng.random() < 0.5:
        img = img + rng.normal(0, rng.uniform(0, 0.06), size=img.shape).astype(np.float32)
    return img.astype(np.float32)


def _empty_crop(rng, crop):
    """A crop with no nucleus: flat background, noise, maybe a ramp (teaches 'nothing here')."""
    img = rng.normal(0, rng.uniform(0.02, 0.3), size=(crop, crop)).astype(np.float32)
    img = img + np.float32(rng.uniform(-0.1, 0.5))
    return np.concatenate([img[None], np.zeros((2, crop, crop), np.float32)])


def _batch(samples, weights, rng, *, batch_size, crop, diameter_range, empty_fraction=0.03):
    import torch

    crops = []
    for _ in range(batch_size):
        if rng.random() < empty_fraction:
            crops.append(_empty_crop(rng, crop))
        else:
            s = samples[int(rng.choice(len(samples), p=weights))]
            crops.append(_draw_crop(s, rng, crop, diameter_range))
    return torch.from_numpy(np.stack(crops))


# --------------------------------------------------------------------------------------
# training


def train_model(samples, *, output, val_samples=(), init=None, seed=0, steps=4000, batch_size=8, crop=128,
                lr=2e-3, base=16, depth=4, train_diameter=TRAIN_DIAMETER, diameter_range=DIAMETER_RANGE,
                synthetic_weight=0.35, checkpoint_every=500, log_every=50, stop_after=None, max_minutes=None,
                command=None):
    """Train a U-Net on samples and write a model folder that ``segment(model=output)`` accepts.

    Parameters
    ----------
    samples : list of Sample
        Training samples (:mod:`cytotrail.segment.data`); names starting with ``synth``
        are drawn with total probability ``synthetic_weight``.
    output : str or Path
        Model folder to write (weights.pt, config.json, thresholds.json).
    val_samples : list of Sample
        Validation samples for threshold tuning and the scores in config.json.
    init : str or Path, optional
        Model folder to fine-tune from (its architecture is kept).
    seed : int
        Seeds torch and the crop sampler.
    stop_after : int, optional
        Stop after this many steps, with the learning-rate schedule still planned for
        ``steps`` (reproduces an interrupted run exactly).
    max_minutes : float, optional
        Wall-clock budget: the schedule runs on max(step / steps, elapsed / budget) and
        training ends when either reaches 1 (the steps done are recorded in config.json;
        time-limited runs are not bit-reproducible).

    Returns
    -------
    dict
        The model config written.
    """
    import torch

    from cytotrail.segment.model import build_net, load_model, save_model

    if not samples:
        raise InputError("no training samples")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    config = {
        "name": Path(output).name,
        "architecture": {"in_channels": 1, "out_channels": 2, "base": base, "depth": depth},
        "train_diameter": float(train_diameter),
        "diameter_range": [float(d) for d in diameter_range],
        "tile_size": 1024,
        "tile_margin": 64,
        "normalization": {"percentiles": [1.0, 99.8]},
        "outputs": ["foreground", "centre-ness (distance to boundary / max distance in the nucleus)"],
    }
    if init is not None:
        init_net, init_config, _ = load_model(init, device="cpu")
        config["architecture"] = init_config["architecture"]
        config["train_diameter"] = init_config["train_diameter"]
        init_history = init_config.get("training")
        net = build_net(config)
        net.load_state_dict(init_net.state_dict())
    else:
        net = build_net(config)
        init_history = None
    is_synth = np.array([s.name.startswith("synth") for s in samples])
    weights = np.ones(len(samples))
    if is_synth.any() and (~is_synth).any():
        weights[is_synth] = synthetic_weight / is_synth.sum()
        weights[~is_synth] = (1 - synthetic_weight) / (~is_synth).sum()
    weights /= weights.sum()
    config["training"] = {
        "seed": seed, "steps": steps, "batch_size": batch_size, "crop": crop, "lr": lr,
        "init": str(init) if init is not None else None, "n_samples": len(samples),
        "n_synthetic": int(is_synth.sum()), "synthetic_weight": synthetic_weight,
        "n_val_samples": len(val_samples), "command": command,
        "loss": "BCE(foreground) + 2 * BCE(centre-ness)", "optimizer": "Adam, cosine decay",
        "init_training": init_history,
    }
    config["training"].update(stop_after=stop_after, max_minutes=max_minutes)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    bce = torch.nn.BCEWithLogitsLoss()
    net.train()
    started = time.monotonic()
    budget = 60.0 * max_minutes if max_minutes else None
    last = min(steps, stop_after or steps)
    running = []
    step = 0
    while step < last:
        step += 1
        progress = (step - 1) / steps  # as LambdaLR: the first step runs at the full rate
        if budget:
            progress = max(progress, (time.monotonic() - started) / budget)
        for group in opt.param_groups:
            group["lr"] = lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))
        batch = _batch(samples, weights, rng, batch_size=batch_size, crop=crop, diameter_range=diameter_range)
        x, fg, centre = batch[:, :1], batch[:, 1:2], batch[:, 2:3]
        y = net(x)
        loss = bce(y[:, :1], fg) + 2.0 * bce(y[:, 1:2], centre)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running.append(loss.detach().item())
        done = step == last or (budget is not None and progress >= 1.0)
        if step % log_every == 0 or done:
            log.info("step %d/%d loss %.4f lr %.2e (%.0f s)", step, steps, float(np.mean(running)),
                     opt.param_groups[0]["lr"], time.monotonic() - started)
            running = []
        if done:
            break
        if checkpoint_every and step % checkpoint_every == 0:
            net.eval()
            save_model(Path(output) / "checkpoint", net, dict(config, training=dict(config["training"],
                                                                               steps_done=step)))
            net.train()
    net.eval()
    config["training"]["seconds"] = round(time.monotonic() - started)
    config["training"]["steps_done"] = step
    save_model(output, net, config)
    if val_samples:
        thresholds, scores = tune_thresholds(output, val_samples)
        config["validation"] = scores
        save_model(output, net, config, thresholds)
    return config


# --------------------------------------------------------------------------------------
# threshold tuning and evaluation


def _val_maps(model, val_samples, *, device="cpu"):
    """Network maps of every validation sample at its known diameter."""
    from cytotrail.segment.infer import _segment_maps_frame
    from cytotrail.segment.model import load_model

    net, config, _ = load_model(model, device=device)
    import torch

    out = []
    for s in val_samples:
        d = s.diameter if np.isfinite(s.diameter) else config["train_diameter"]
        maps = _segment_maps_frame(s.image, net=net, config=config, device=torch.device(device), diameter=d)
        out.append((maps, d))
    return out


def tune_thresholds(model, val_samples, *, grid=None):
    """Grid-search post-processing thresholds for the best mean AP@0.5 on validation samples.

    Returns
    -------
    thresholds : dict
    scores : dict
        Mean AP at 0.5/0.75/0.9 with the chosen thresholds, and the number of samples.
    """
    from cytotrail.segment.metrics import average_precision
    from cytotrail.segment.postprocess import maps_to_labels

    grid = grid or {"foreground": [0.4, 0.5], "seed": [0.2, 0.35, 0.5], "h": [0.05, 0.1, 0.15, 0.2, 0.3],
                    "min_area": [0.05, 0.15]}
    maps = _val_maps(model, val_samples)
    best = None
    keys = sorted(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        th = dict(zip(keys, values))
        aps = [average_precision(s.labels, maps_to_labels(m[0], m[1], diameter=d, thresholds=th)[0],
                                 thresholds=(0.5,))[0.5] for s, (m, d) in zip(val_samples, maps)]
        score = float(np.mean(aps))
        if best is None or score > best[0] + 1e-9:
            best = (score, th)
    th = best[1]
    aps = [average_precision(s.labels, maps_to_labels(m[0], m[1], diameter=d, thresholds=th)[0])
           for s, (m, d) in zip(val_samples, maps)]
    scores = {f"ap@{k}": round(float(np.mean([a[k] for a in aps])), 4) for k in (0.5, 0.75, 0.9)}
    scores["n"] = len(val_samples)
    log.info("tuned thresholds %s: %s", th, scores)
    return th, scores


def evaluate(samples, *, backend="unet", model=None, diameter="auto", thresholds=(0.5, 0.75, 0.9)):
    """Mean AP of ``segment()`` over samples (each segmented alone, as a user would).

    ``diameter``: "auto" (estimated), "true" (the sample's median true diameter) or a number.
    Returns a dict {threshold: mean AP} plus ``per_sample`` (list of dicts).
    """
    from cytotrail.segment import segment
    from cytotrail.segment.metrics import average_precision

    per = []
    for s in samples:
        d = None if diameter == "auto" else (s.diameter if diameter == "true" else float(diameter))
        pred = segment(s.image, backend=backend, model=model, diameter=d, device="cpu")[0]
        per.append(average_precision(s.labels, pred, thresholds=thresholds))
    out = {t: float(np.mean([p[t] for p in per])) for t in thresholds}
    out["per_sample"] = per
    return out


# --------------------------------------------------------------------------------------
# CLI


def add_parser(sub):
    """Add the ``train`` subcommand to an argparse subparsers object."""
    p = sub.add_parser(
        "train",
        help="train (or fine-tune) the nuclei segmentation U-Net",
        description="Train the U-Net of the unet backend on image/label folder pairs plus generated "
        "synthetic frames, tune its post-processing thresholds on the validation split, and write a "
        "model folder that `cytotrail segment --model` accepts.",
    )
    p.add_argument("-o", "--output", required=True, help="model folder to write")
    p.add_argument("--images", nargs="+", action="extend", default=[], metavar="DIR",
                   help="folders of training images (paired with --labels in order)")
    p.add_argument("--labels", nargs="+", action="extend", default=[], metavar="DIR",
                   help="folder of label images with the same file names as --images")
    p.add_argument("--manifest", default=None,
                   help="CSV with columns id (file stem) and split (train/val); default: a fixed "
                   "hash split with --val-fraction")
    p.add_argument("--val-fraction", type=float, default=0.1, help="validation fraction without a manifest")
    p.add_argument("--synthetic", type=int, default=60,
                   help="synthetic timelapses generated for training (2 frames each; 0 for none)")
    p.add_argument("--synthetic-val", type=int, default=10, help="synthetic timelapses for validation")
    p.add_argument("--synthetic-weight", type=float, default=0.35,
                   help="share of training crops drawn from synthetic frames")
    p.add_argument("--init", default=None, help="model folder (or shipped name) to fine-tune from")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--steps", type=int, default=4000, help="optimisation steps")
    p.add_argument("--batch-size", type=int, default=8, help="crops per step")
    p.add_argument("--crop", type=int, default=128, help="crop side in px")
    p.add_argument("--lr", type=float, default=2e-3, help="initial learning rate (Adam, cosine decay)")
    p.add_argument("--base", type=int, default=16, help="channels of the first U-Net level")
    p.add_argument("--depth", type=int, default=4, help="U-Net resolution levels")
    p.add_argument("--stop-after", type=int, default=None,
                   help="stop after this many steps (the schedule still plans for --steps)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="wall-clock budget; the schedule is compressed to end within it")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints")
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
    manifest = io.read_table(args.manifest) if args.manifest else None
    train, val = [], []
    for images, labels in zip(args.images, args.labels):
        train += folder_samples(images, labels, split="train", manifest=manifest, val_fraction=args.val_fraction)
        val += folder_samples(images, labels, split="val", manifest=manifest, val_fraction=args.val_fraction)
    # synthetic seeds: training from 10_000 + 1000 * seed, validation from 5_000 (disjoint from 0-999,
    # which benchmarks and the demo use)
    if args.synthetic:
        train += synthetic_samples(args.synthetic, seed=10_000 + 1000 * args.seed)
    if args.synthetic_val:
        val += synthetic_samples(args.synthetic_val, seed=5_000, frames=(1,))
    log.info("training on %d samples (%d synthetic), validating on %d", len(train),
             sum(s.name.startswith("synth") for s in train), len(val))
    command = "cytotrail " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    train_model(train, output=args.output, val_samples=val, init=args.init, seed=args.seed, steps=args.steps,
                batch_size=args.batch_size, crop=args.crop, lr=args.lr, base=args.base, depth=args.depth,
                synthetic_weight=args.synthetic_weight, checkpoint_every=args.checkpoint_every,
                stop_after=args.stop_after, max_minutes=args.max_minutes, command=command)
    log.info("wrote model %s", args.output)
