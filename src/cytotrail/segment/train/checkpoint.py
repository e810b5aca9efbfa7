"""Training checkpoints: write, read and check one, and check a resumed run against it.

A checkpoint (``checkpoint.pt`` in the output folder) holds the weights, optimiser,
schedule, gradient scaler and RNG state, the model config with its training record, and
a fingerprint of the training data, so that ``resume=`` continues a run exactly.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cytotrail.io import InputError

__all__ = ["CHECKPOINT", "read_checkpoint", "resume_recipe"]

CHECKPOINT = "checkpoint.pt"
_CHECKPOINT_FORMAT = "cytotrail-train-checkpoint/1"


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


def resume_recipe(ckpt, resume, *, arch, recipe, samples):
    """Check the options of a resumed run against its checkpoint; return its architecture and recipe.

    Parameters
    ----------
    ckpt : dict
        As returned by :func:`read_checkpoint`.
    resume : str or Path
        The checkpoint file or the folder holding it (named in the errors).
    arch, recipe : dict
        The architecture and recipe options given (None: not given).
    samples : list of Sample
        The training samples; they must be the checkpoint's (same names and shapes, in order).

    Returns
    -------
    arch, recipe : dict
        The checkpoint's architecture, and its recipe (every key of ``recipe``).

    Raises
    ------
    cytotrail.io.InputError
        An option given disagrees with the checkpoint, or the samples are not its data.
    """
    recipe = dict(recipe)
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
    return arch, recipe


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
