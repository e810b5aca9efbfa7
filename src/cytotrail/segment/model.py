"""Model folders: network config, weights (sha256-checked) and tuned thresholds.

A model folder holds ``config.json`` (architecture, training scale, weights file name and
its sha256), ``weights.pt`` (a state dict loaded with ``weights_only=True``),
``thresholds.json`` (post-processing thresholds tuned on a validation split) and
``MODEL_CARD.md``. The folders shipped with cytotrail live in ``cytotrail/models/``.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from cytotrail.io import InputError, atomic_path, write_json
from cytotrail.segment.postprocess import DEFAULT_THRESHOLDS

__all__ = ["DEFAULT_MODEL", "model_dir", "load_model", "save_model", "sha256_file", "build_net"]

DEFAULT_MODEL = "nuclei_unet"
_SHIPPED = Path(__file__).resolve().parents[1] / "models"


def model_dir(model=None):
    """Resolve ``model`` (None, a shipped model's name, or a folder path) to a folder."""
    if model is None:
        model = DEFAULT_MODEL
    path = Path(model)
    if not path.is_dir() and (_SHIPPED / str(model)).is_dir():
        path = _SHIPPED / str(model)
    if not path.is_dir():
        shipped = sorted(p.name for p in _SHIPPED.iterdir() if p.is_dir()) if _SHIPPED.is_dir() else []
        raise InputError(f"model {model!r} not found: not a folder and not a shipped model {shipped}")
    if not (path / "config.json").is_file():
        raise InputError(f"model folder {path} has no config.json (write one with `cytotrail train`)")
    return path


def sha256_file(path):
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"cannot read {path}: {err}") from err


def build_net(config):
    """A fresh network from a model config's ``architecture``."""
    from cytotrail.segment.net import UNet

    arch = config["architecture"]
    return UNet(in_channels=arch.get("in_channels", 1), out_channels=arch.get("out_channels", 2),
                base=arch["base"], depth=arch["depth"])


def load_model(model=None, *, device="cpu"):
    """Load a model folder: network in eval mode on ``device``, config and thresholds.

    Parameters
    ----------
    model : str or Path, optional
        Shipped model name or model folder (default: the shipped ``nuclei_unet``).
    device : str or torch.device

    Returns
    -------
    net : torch.nn.Module
    config : dict
    thresholds : dict
    """
    path = model_dir(model)
    stamp = tuple((p.name, p.stat().st_mtime_ns) for p in sorted(path.iterdir()) if p.is_file())
    return _load_cached(str(path.resolve()), str(device), stamp)


@functools.lru_cache(maxsize=4)
def _load_cached(path, device, _stamp):
    import torch

    path = Path(path)
    config = _read_json(path / "config.json")
    weights = path / config.get("weights", "weights.pt")
    if not weights.is_file():
        raise InputError(f"model {path}: weights file {weights.name} is missing")
    expected = config.get("weights_sha256")
    actual = sha256_file(weights)
    if expected != actual:
        raise InputError(f"model {path}: {weights.name} has sha256 {actual} but config.json records "
                         f"{expected}; the weights are corrupt or were replaced")
    thresholds = dict(DEFAULT_THRESHOLDS)
    if (path / "thresholds.json").is_file():
        thresholds.update(_read_json(path / "thresholds.json"))
    net = build_net(config)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    net.eval()
    net.to(torch.device(device))
    return net, config, thresholds


def save_model(path, net, config, thresholds=None):
    """Write a model folder: weights.pt, config.json (with the weights' sha256), thresholds.json."""
    import torch

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = dict(config)
    config.setdefault("weights", "weights.pt")
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    with atomic_path(path / config["weights"]) as tmp:
        torch.save(state, tmp)
    config["weights_sha256"] = sha256_file(path / config["weights"])
    write_json(path / "config.json", config)
    write_json(path / "thresholds.json", dict(DEFAULT_THRESHOLDS, **(thresholds or {})))
    return path
