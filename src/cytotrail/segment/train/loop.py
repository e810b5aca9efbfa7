"""The training loop: :func:`train_model`.

The network runs on the device of :func:`cytotrail.segment.device.select_device` (CUDA,
then MPS, then CPU), under bf16 autocast on CUDA (fp16 with a gradient scaler where bf16
is missing). Loss: binary cross-entropy on the foreground and on the centre-ness map;
Adam with a cosine learning-rate decay. A checkpoint (:mod:`.checkpoint`) is written
every ``checkpoint_every`` steps and when a sitting ends; ``resume=`` continues from it.
After training, post-processing thresholds are tuned on the validation samples
(:mod:`.thresholds`) and saved in ``thresholds.json``.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

from cytotrail.io import InputError
from cytotrail.segment.train.checkpoint import (
    CHECKPOINT,
    _fingerprint,
    _write_checkpoint,
    read_checkpoint,
    resume_recipe,
)
from cytotrail.segment.train.crops import CropDataset, _seed_worker, sample_weights
from cytotrail.segment.train.defaults import (
    DEFAULTS,
    DIAMETER_RANGE,
    TRAIN_DIAMETER,
    default_batch_size,
    default_workers,
)
from cytotrail.segment.train.thresholds import tune_thresholds

__all__ = ["train_model"]

log = logging.getLogger("cytotrail.train")


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
        arch, recipe = resume_recipe(ckpt, resume, arch=arch, recipe=recipe, samples=samples)
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
