"""Training the U-Net: ``cytotrail train`` and :func:`train_model`.

Crops are drawn at a random scale so that nuclei are 10-32 px across (the model's
training diameter is 18 px; inference rescales images to that range), with flips,
90-degree rotations and intensity augmentation for images unlike the training set:
gamma, contrast/offset, background ramps, blur, saturation (clipped highlights), low bit
depth (few grey levels), Gaussian and shot noise. Crop ``i`` of a run is drawn from its
own random generator seeded by ``(seed, i)``, in ``torch.utils.data`` worker processes,
so the crops, and a run on the CPU, are the same for any number of workers and a
resumed run continues exactly where it stopped.

The network runs on the device of :func:`cytotrail.segment.device.select_device` (CUDA,
then MPS, then CPU), under bf16 autocast on CUDA (fp16 with a gradient scaler where bf16
is missing). Loss: binary cross-entropy on the foreground and on the centre-ness map;
Adam with a cosine learning-rate decay. A checkpoint (``checkpoint.pt`` in the output
folder: weights, optimiser, schedule, gradient scaler and RNG state, plus a fingerprint of
the training data) is written every ``checkpoint_every`` steps and when a sitting ends;
``resume=`` continues from it. After training, post-processing thresholds are tuned on
the validation samples (grid search for the best mean AP@0.5) and saved in
``thresholds.json``.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import os
import time
from pathlib import Path

import numpy as np

from cytotrail.io import InputError

__all__ = [
    "train_model",
    "read_checkpoint",
    "tune_thresholds",
    "evaluate",
    "add_parser",
    "CropDataset",
    "default_batch_size",
    "default_workers",
]

log = logging.getLogger("cytotrail.train")

TRAIN_DIAMETER = 18.0
DIAMETER_RANGE = (10.0, 32.0)
# the recipe's defaults (train_model, the CLI and a resumed run without its checkpoint share them)
DEFAULTS = {
    "steps": 4000,
    "crop": 128,
    "lr": 2e-3,
    "seed": 0,
    "base": 16,
    "depth": 4,
    "synthetic_weight": 0.35,
}
CHECKPOINT = "checkpoint.pt"
_CHECKPOINT_FORMAT = "cytotrail-train-checkpoint/1"
# activation memory of one training crop pixel (forward + backward, autocast) for batch sizing on CUDA
_TRAIN_BYTES_PER_PIXEL = 2500


# --------------------------------------------------------------------------------------
# crops and augmentation


def _draw_crop(sample, rng, crop, diameter_range):
    """One augmented (image, fg, centre) crop of side ``crop``, float32 ndarray (3, crop, crop)."""
    import torch
    from torch.nn import functional as F

    d_native = sample.diameter if np.isfinite(sample.diameter) else TRAIN_DIAMETER
    target = math.exp(rng.uniform(math.log(diameter_range[0]), math.log(diameter_range[1])))
    scale = float(np.clip(target / d_native, 0.2, 5.0))
    side = max(8, int(round(crop / scale)))
    ny, nx = sample.image.shape
    y0 = int(rng.integers(0, max(1, ny - side + 1)))
    x0 = int(rng.integers(0, max(1, nx - side + 1)))
    win = np.stack(
        [
            sample.image[y0 : y0 + side, x0 : x0 + side],
            sample.fg[y0 : y0 + side, x0 : x0 + side].astype(np.float32),
            sample.centre[y0 : y0 + side, x0 : x0 + side],
        ]
    )
    if win.shape[1] < side or win.shape[2] < side:  # image smaller than the window: pad
        ph, pw = side - win.shape[1], side - win.shape[2]
        fill = float(np.percentile(win[0], 5))
        win = np.stack(
            [
                np.pad(win[0], ((0, ph), (0, pw)), constant_values=fill),
                np.pad(win[1], ((0, ph), (0, pw))),
                np.pad(win[2], ((0, ph), (0, pw))),
            ]
        )
    t = torch.from_numpy(np.ascontiguousarray(win))[None]
    with torch.no_grad():
        img = F.interpolate(
            t[:, :1], size=(crop, crop), mode="bilinear", align_corners=False, antialias=scale < 1
        )[0, 0].numpy()
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
    """Acquisition and display changes on a normalised (Y, X) crop (0 background, 1 bright nuclei).

    In the order a microscope would make them: defocus, clipped highlights (saturation),
    Gaussian and shot noise, few grey levels (low bit depth or a dim 8-bit image), then
    gamma, contrast/offset and a background ramp.
    """
    from scipy import ndimage as ndi

    img = img.astype(np.float32, copy=True)
    if rng.random() < 0.25:  # defocus
        img = ndi.gaussian_filter(img, rng.uniform(0.5, 2.0))
    if rng.random() < 0.15:  # saturation: highlights clipped, then the clip level is the new maximum
        level = rng.uniform(0.3, 0.9)
        img = np.minimum(img, level) / level
    if rng.random() < 0.5:
        img = img + rng.normal(0, rng.uniform(0, 0.08), size=img.shape).astype(np.float32)
    if rng.random() < 0.2:  # shot noise: variance grows with the signal
        img = img + (
            rng.normal(0, 1, size=img.shape) * np.sqrt(np.clip(img, 0, None)) * rng.uniform(0.02, 0.15)
        ).astype(np.float32)
    if rng.random() < 0.2:  # few grey levels between background and the brightest nuclei
        levels = float(2 ** rng.integers(3, 7))
        img = np.round(img * levels) / levels
    if rng.random() < 0.8:  # gamma on the positive part
        gamma = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
        img = np.clip(img, 0, None) ** gamma
    img = img * rng.uniform(0.5, 1.5) + rng.uniform(-0.2, 0.2)
    if rng.random() < 0.5:  # background ramp
        n = img.shape[-1]
        angle = rng.uniform(0, 2 * math.pi)
        ramp = np.linspace(-0.5, 0.5, n, dtype=np.float32)
        img = img + rng.uniform(0, 0.6) * (math.cos(angle) * ramp[:, None] + math.sin(angle) * ramp[None, :])
    return img.astype(np.float32)


def _empty_crop(rng, crop):
    """A crop with no nucleus: flat background, noise, maybe a ramp (teaches 'nothing here')."""
    img = rng.normal(0, rng.uniform(0.02, 0.3), size=(crop, crop)).astype(np.float32)
    img = img + np.float32(rng.uniform(-0.1, 0.5))
    return np.concatenate([img[None], np.zeros((2, crop, crop), np.float32)])


def sample_weights(samples, synthetic_weight):
    """Drawing probabilities: synthetic samples (names ``synth...``) share ``synthetic_weight``."""
    is_synth = np.array([s.name.startswith("synth") for s in samples])
    weights = np.ones(len(samples))
    if is_synth.any() and (~is_synth).any():
        weights[is_synth] = synthetic_weight / is_synth.sum()
        weights[~is_synth] = (1 - synthetic_weight) / (~is_synth).sum()
    return weights / weights.sum()


class CropDataset:
    """Map-style dataset of augmented training crops: item ``i`` is crop ``i`` of the run.

    Crop ``i`` comes from ``numpy.random.default_rng((seed, i))`` alone, so it is the same
    whichever worker process draws it and however many there are.

    Parameters
    ----------
    samples : list of Sample
    weights : (n_samples,) ndarray
        Probability of drawing each sample.
    seed : int
    crop : int
        Crop side in px.
    diameter_range : (float, float)
        Nuclei are rescaled to a log-uniform diameter in this range.
    empty_fraction : float
        Share of crops with no nucleus (noise and background only).
    """

    def __init__(self, samples, weights, *, seed, crop, diameter_range=DIAMETER_RANGE, empty_fraction=0.03):
        self.samples, self.weights = samples, np.asarray(weights, float)
        self.seed, self.crop, self.diameter_range = int(seed), int(crop), tuple(diameter_range)
        self.empty_fraction = empty_fraction

    def __getitem__(self, i):
        rng = np.random.default_rng((self.seed, int(i)))
        if rng.random() < self.empty_fraction:
            return _empty_crop(rng, self.crop)
        s = self.samples[int(rng.choice(len(self.samples), p=self.weights))]
        return _draw_crop(s, rng, self.crop, self.diameter_range)


def _seed_worker(worker_id):
    """Seed a data-loader worker's global generators from torch's per-worker seed."""
    import random

    import torch

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def _cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_workers(device):
    """Crop-drawing worker processes: the cores the network leaves (1-12; 1 on a 2-core CPU)."""
    cores = _cores()
    if device.type == "cpu":
        return max(1, min(4, cores // 2))
    return max(1, min(12, cores - 1))


def default_batch_size(device, crop):
    """Crops per step: 8 on the CPU and MPS; on CUDA as many as a quarter of its memory holds (8-64)."""
    if device.type != "cuda":
        return 8
    import torch

    total = torch.cuda.get_device_properties(device).total_memory
    return int(np.clip(total // 4 // (crop * crop * _TRAIN_BYTES_PER_PIXEL), 8, 64))


# --------------------------------------------------------------------------------------
# checkpoints


def _fingerprint(samples):
    """sha1 of the training samples' names and shapes, in order (a resumed run needs the same data)."""
    digest = hashlib.sha1()
    for s in samples:
        digest.update(f"{s.name}:{s.image.shape}\n".encode())
    return digest.hexdigest()


def read_checkpoint(path):
    """Read and check a training checkpoint (a ``checkpoint.pt`` or the model folder holding one).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    dict
        ``config`` (the model config with its ``training`` record), ``step``, ``net``,
        ``optimizer``, ``scheduler``, ``scaler``, ``torch_rng``, ``data`` (fingerprint).

    Raises
    ------
    cytotrail.io.InputError
        Missing, unreadable or corrupt file, or not a cytotrail training checkpoint.
    """
    import pickle
    import zipfile

    import torch

    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise InputError(f"--resume: checkpoint {path} not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
        raise InputError(
            f"--resume: {path} is not a readable checkpoint (corrupt or truncated?): "
            f"{str(err).splitlines()[0] if str(err) else type(err).__name__}"
        ) from err
    keys = {"format", "config", "step", "net", "optimizer", "scheduler", "torch_rng", "data"}
    if not isinstance(ckpt, dict) or ckpt.get("format") != _CHECKPOINT_FORMAT or not keys <= set(ckpt):
        raise InputError(
            f"--resume: {path} is not a cytotrail training checkpoint (expected format {_CHECKPOINT_FORMAT})"
        )
    return ckpt


def _write_checkpoint(path, *, config, step, net, opt, sched, scaler, data):
    import torch

    from cytotrail.io import atomic_path

    state = {
        "format": _CHECKPOINT_FORMAT,
        "config": config,
        "step": int(step),
        "net": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "torch_rng": torch.get_rng_state(),
        "data": data,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


# --------------------------------------------------------------------------------------
# training


def _cosine(steps):
    """LR factor at step k (0-based): cosine from 1 to 0.05 over ``steps``."""

    def factor(k):
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(k / max(steps, 1), 1.0)))

    return factor


def _autocast(device, amp):
    """(autocast context, GradScaler or None) for the device: bf16 on CUDA, fp16 + scaler without bf16."""
    import contextlib

    import torch

    if not amp or device.type != "cuda":
        return contextlib.nullcontext(), None
    if torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16), None
    return torch.autocast("cuda", dtype=torch.float16), torch.amp.GradScaler("cuda")


def train_model(
    samples,
    *,
    output,
    val_samples=(),
    init=None,
    resume=None,
    seed=None,
    steps=None,
    batch_size=None,
    crop=None,
    lr=None,
    base=None,
    depth=None,
    train_diameter=TRAIN_DIAMETER,
    diameter_range=DIAMETER_RANGE,
    synthetic_weight=None,
    device="auto",
    workers=None,
    amp=True,
    checkpoint_every=500,
    log_every=50,
    stop_after=None,
    max_minutes=None,
    command=None,
    extra=None,
):
    """Train a U-Net on samples and write a model folder that ``segment(model=output)`` accepts.

    Parameters
    ----------
    samples : list of Sample
        Training samples (:mod:`cytotrail.segment.data`); names starting with ``synth``
        are drawn with total probability ``synthetic_weight``.
    output : str or Path
        Model folder to write (weights.pt, config.json, thresholds.json, checkpoint.pt).
    val_samples : list of Sample
        Validation samples for threshold tuning and the scores in config.json.
    init : str or Path, optional
        Model folder to fine-tune from (its architecture is kept).
    resume : str or Path, optional
        A checkpoint (or the folder holding ``checkpoint.pt``) to continue: its weights,
        optimiser, schedule and recipe are used; the options given must agree with it
        and ``samples`` must be the data it was trained on.
    seed, steps, batch_size, crop, lr, base, depth, synthetic_weight : optional
        The recipe (None: :data:`DEFAULTS`, or the checkpoint's when resuming; batch size
        by :func:`default_batch_size`).
    device : str
        As :func:`cytotrail.segment.device.select_device`.
    workers : int, optional
        Data-loader processes drawing crops (0: in this process; default
        :func:`default_workers`). The crops do not depend on it.
    amp : bool
        bf16 (or fp16) autocast on CUDA.
    stop_after : int, optional
        End this sitting after this many steps in all (the schedule still plans for
        ``steps``; continue with ``resume``).
    max_minutes : float, optional
        End this sitting after this many minutes (checkpoint written; continue with ``resume``).
    extra : dict, optional
        More entries for the training record (e.g. the held-out families).

    Returns
    -------
    dict
        The model config written.
    """
    import torch

    from cytotrail.segment.device import select_device
    from cytotrail.segment.model import build_net, load_model, save_model

    ckpt = read_checkpoint(resume) if resume is not None else None
    recipe = dict(
        seed=seed, steps=steps, batch_size=batch_size, crop=crop, lr=lr, synthetic_weight=synthetic_weight
    )
    arch = {"in_channels": 1, "out_channels": 2, "base": base, "depth": depth}
    init_config = load_model(init, device="cpu")[1] if init is not None else None
    if init_config is not None:
        for key in ("base", "depth"):
            if arch[key] is not None and arch[key] != init_config["architecture"][key]:
                log.info("--%s %s ignored: fine-tuning keeps %s's architecture", key, arch[key], init)
        arch = dict(init_config["architecture"])
        train_diameter = init_config["train_diameter"]
    if ckpt is not None:
        where = Path(resume) / CHECKPOINT if Path(resume).is_dir() else Path(resume)
        theirs = ckpt["config"]["architecture"]
        if any(arch.get(k) is not None and arch[k] != theirs.get(k) for k in theirs):
            raise InputError(f"--resume: {where} holds a network of architecture {theirs}, not {arch}")
        arch = dict(theirs)
        recorded = ckpt["config"]["training"]
        for key, value in recipe.items():
            if value is not None and value != recorded[key]:
                raise InputError(f"--resume: {where} was trained with {key}={recorded[key]}, not {value}")
            recipe[key] = recorded[key]
        if ckpt["data"] != _fingerprint(samples):
            raise InputError(
                f"--resume: {where} was trained on other data ({recorded['n_samples']} samples); "
                f"give the data options of its run: {recorded.get('command')}"
            )
    for key in ("base", "depth"):
        arch[key] = DEFAULTS[key] if arch[key] is None else arch[key]
    for key in ("seed", "steps", "crop", "lr", "synthetic_weight"):
        recipe[key] = DEFAULTS[key] if recipe[key] is None else recipe[key]
    if not samples:
        raise InputError("no training samples")
    dev = select_device(device)
    if recipe["batch_size"] is None:
        recipe["batch_size"] = default_batch_size(dev, recipe["crop"])
    workers = default_workers(dev) if workers is None else int(workers)
    steps, batch_size = int(recipe["steps"]), int(recipe["batch_size"])
    torch.manual_seed(recipe["seed"])
    weights = sample_weights(samples, recipe["synthetic_weight"])
    config = {
        "name": Path(output).name,
        "architecture": arch,
        "train_diameter": float(train_diameter),
        "diameter_range": [float(d) for d in diameter_range],
        "tile_size": 1024,
        "tile_margin": 64,
        "normalization": {"percentiles": [1.0, 99.8]},
        "outputs": ["foreground", "centre-ness (distance to boundary / max distance in the nucleus)"],
    }
    config["training"] = dict(
        recipe,
        init=str(init) if init is not None else None,
        n_samples=len(samples),
        n_synthetic=int(sum(s.name.startswith("synth") for s in samples)),
        n_val_samples=len(val_samples),
        command=command,
        loss="BCE(foreground) + 2 * BCE(centre-ness)",
        optimizer="Adam, cosine decay",
        init_training=init_config.get("training") if init_config else None,
        **(extra or {}),
    )
    if ckpt is not None:
        config["training"] = dict(
            ckpt["config"]["training"], command=command or ckpt["config"]["training"]["command"]
        )
    net = build_net(config)
    if init_config is not None:
        net.load_state_dict(load_model(init, device="cpu")[0].state_dict())
    net.to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=recipe["lr"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _cosine(steps))
    autocast, scaler = _autocast(dev, amp)
    step, seconds = 0, 0.0
    if ckpt is not None:
        net.load_state_dict(ckpt["net"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        torch.set_rng_state(ckpt["torch_rng"])
        step = int(ckpt["step"])
        seconds = float(ckpt["config"]["training"].get("seconds", 0.0))
        log.info("resuming %s at step %d/%d", resume, step, steps)
    data = _fingerprint(samples)
    last = min(steps, stop_after) if stop_after is not None else steps
    dataset = CropDataset(
        samples, weights, seed=recipe["seed"], crop=recipe["crop"], diameter_range=diameter_range
    )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=range(step * batch_size, max(step, last) * batch_size),
        num_workers=workers,
        worker_init_fn=_seed_worker,
        pin_memory=dev.type == "cuda",
        generator=torch.Generator().manual_seed(recipe["seed"] * 100_003 + step),
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
    )
    log.info(
        "training on %s, %d crop worker(s), batch %d, crop %d, steps %d..%d of %d",
        dev,
        workers,
        batch_size,
        recipe["crop"],
        step + 1,
        last,
        steps,
    )
    bce = torch.nn.BCEWithLogitsLoss()
    net.train()
    started = last_log = time.monotonic()
    budget = 60.0 * max_minutes if max_minutes else None
    running, logged = [], step
    ckpt_path = Path(output) / CHECKPOINT
    for batch in loader:
        step += 1
        batch = batch.to(dev, non_blocking=True)
        x, fg, centre = batch[:, :1], batch[:, 1:2], batch[:, 2:3]
        with autocast:
            y = net(x)
        y = y.float()
        loss = bce(y[:, :1], fg) + 2.0 * bce(y[:, 1:2], centre)
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        sched.step()
        running.append(loss.detach())
        now = time.monotonic()
        out_of_time = budget is not None and now - started >= budget
        done = step >= last or out_of_time
        if step % log_every == 0 or done:
            rate = (step - logged) * batch_size / max(now - last_log, 1e-9)
            log.info(
                "step %d/%d loss %.4f lr %.2e %.1f crops/s (%.0f s)",
                step,
                steps,
                float(torch.stack(running).mean()),
                sched.get_last_lr()[0],
                rate,
                seconds + now - started,
            )
            running, logged, last_log = [], step, now
        if done or (checkpoint_every and step % checkpoint_every == 0):
            config["training"]["seconds"] = round(seconds + now - started, 1)
            config["training"]["steps_done"] = step
            _write_checkpoint(
                ckpt_path, config=config, step=step, net=net, opt=opt, sched=sched, scaler=scaler, data=data
            )
        if done:
            break
    net.eval()
    config["training"]["seconds"] = round(seconds + time.monotonic() - started, 1)
    config["training"]["steps_done"] = step
    config["training"]["device"] = str(dev)
    net.cpu()
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

    grid = grid or {
        "foreground": [0.4, 0.5],
        "seed": [0.2, 0.35, 0.5],
        "h": [0.05, 0.1, 0.15, 0.2, 0.3],
        "min_area": [0.05, 0.15],
    }
    maps = _val_maps(model, val_samples)
    best = None
    keys = sorted(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        th = dict(zip(keys, values))
        aps = [
            average_precision(
                s.labels, maps_to_labels(m[0], m[1], diameter=d, thresholds=th)[0], thresholds=(0.5,)
            )[0.5]
            for s, (m, d) in zip(val_samples, maps)
        ]
        score = float(np.mean(aps))
        if best is None or score > best[0] + 1e-9:
            best = (score, th)
    th = best[1]
    aps = [
        average_precision(s.labels, maps_to_labels(m[0], m[1], diameter=d, thresholds=th)[0])
        for s, (m, d) in zip(val_samples, maps)
    ]
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
        pred = segment(s.image, backend=backend, model=model, diameter_px=d, device="cpu")[0]
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
