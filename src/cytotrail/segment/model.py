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

__all__ = [
    "DEFAULT_MODEL",
    "SHIPPED_SHA256",
    "build_net",
    "check_architecture",
    "check_model",
    "load_model",
    "model_dir",
    "save_model",
    "sha256_file",
]

DEFAULT_MODEL = "nuclei_unet"
_SHIPPED = Path(__file__).resolve().parents[1] / "models"

# The package's own record of the shipped weights: a shipped folder whose weights and
# config.json were both replaced is refused. Update it with the weights (a test checks it).
SHIPPED_SHA256 = {
    "nuclei_unet": "0389dd76e22313fd8ae9869a9a3bebffa8a391d5612dd8935ff1571f5d71318e",
}

# Architecture bounds, checked before any allocation: a config.json describing a huge
# network is refused instead of allocating gigabytes (the shipped U-Net: base 16, depth 4).
ARCHITECTURE_BOUNDS = {"in_channels": (1, 16), "out_channels": (1, 16), "base": (1, 256), "depth": (1, 8)}
MAX_PARAMETERS = 200_000_000


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


def check_architecture(config, *, source="model config"):
    """The ``architecture`` of a model config as UNet keyword arguments, within bounds.

    Parameters
    ----------
    config : dict
        A model folder's config (``{"architecture": {"base", "depth", ...}}``).
    source : str
        What to name in the error message (e.g. the folder).

    Returns
    -------
    dict
        ``in_channels``, ``out_channels``, ``base``, ``depth`` as ints.

    Raises
    ------
    InputError
        A missing or non-integer value, one outside :data:`ARCHITECTURE_BOUNDS`, or a
        network of more than :data:`MAX_PARAMETERS` parameters; nothing is allocated.
    """
    arch = config.get("architecture") if isinstance(config, dict) else None
    if not isinstance(arch, dict):
        raise InputError(f"{source}: config.json has no `architecture` mapping")
    values = {}
    for key, (low, high) in ARCHITECTURE_BOUNDS.items():
        value = arch.get(key, {"in_channels": 1, "out_channels": 2}.get(key))
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InputError(
                f"{source}: architecture.{key} is {value!r}; expected an integer from {low} to {high}"
            )
        values[key] = value
    widths = [values["base"] * 2**i for i in range(values["depth"])]
    # two 3x3 convolutions per block (down and merge), 1x1 up-convolutions and the head
    c, n = values["in_channels"], 0
    for w in widths:
        n += 9 * (c * w + w * w) + 4 * w
        c = w
    for w in reversed(widths[:-1]):
        n += c * w + w + 9 * (2 * w * w + w * w) + 4 * w
        c = w
    n += c * values["out_channels"] + values["out_channels"]
    if n > MAX_PARAMETERS:
        raise InputError(
            f"{source}: the architecture in config.json describes a network of "
            f"{n:,} parameters (more than {MAX_PARAMETERS:,}); refusing to build it"
        )
    return values


def build_net(config, *, source="model config"):
    """A fresh network from a model config's ``architecture`` (bounds checked first)."""
    from cytotrail.segment.net import UNet

    return UNet(**check_architecture(config, source=source))


def _weights_path(path, config):
    """The weights file a model folder's config names; it must lie inside the folder."""
    name = config.get("weights", "weights.pt")
    if not isinstance(name, str) or not name:
        raise InputError(f"model {path}: config.json `weights` must be a file name, got {name!r}")
    weights = (path / name).resolve()
    if not weights.is_relative_to(path.resolve()) or weights == path.resolve():
        raise InputError(
            f"model {path}: config.json points the weights to {name!r}, outside "
            "the model folder; weights must lie inside it"
        )
    return weights


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


def check_model(model=None):
    """Check a model folder without loading it: config, weights inside it, hashes, bounds.

    Cheap (no torch import): the workflow runs it before any job starts.

    Parameters
    ----------
    model : str or Path, optional
        Shipped model name or model folder (default: the shipped ``nuclei_unet``).

    Returns
    -------
    path : Path
        The folder.
    config : dict
        Its config.json.
    weights : Path
        Its weights file.

    Raises
    ------
    InputError
        No such folder, an unreadable config.json, weights outside the folder or missing,
        a sha256 that differs from config.json's (or, for a shipped model, from the
        package's own record), or an architecture out of bounds.
    """
    path = model_dir(model)
    config = _read_json(path / "config.json")
    if not isinstance(config, dict):
        raise InputError(f"model {path}: config.json is not a mapping")
    weights = _weights_path(path, config)
    if not weights.is_file():
        raise InputError(f"model {path}: weights file {weights.name} is missing")
    actual = sha256_file(weights)
    shipped = SHIPPED_SHA256.get(path.name) if path.resolve().parent == _SHIPPED else None
    if shipped is not None and actual != shipped:
        raise InputError(
            f"shipped model {path}: {weights.name} has sha256 {actual} but cytotrail "
            f"{_version()} shipped {shipped}; the folder was replaced or is corrupt "
            "(reinstall cytotrail)"
        )
    expected = config.get("weights_sha256")
    if expected != actual:
        raise InputError(
            f"model {path}: {weights.name} has sha256 {actual} but config.json records "
            f"{expected}; the weights are corrupt or were replaced"
        )
    check_architecture(config, source=f"model {path}")
    return path, config, weights


@functools.lru_cache(maxsize=4)
def _load_cached(path, device, _stamp):
    import torch

    path, config, weights = check_model(path)
    thresholds = dict(DEFAULT_THRESHOLDS)
    if (path / "thresholds.json").is_file():
        thresholds.update(_read_json(path / "thresholds.json"))
    net = build_net(config, source=f"model {path}")
    try:
        net.load_state_dict(_read_state_dict(path, weights))
    except RuntimeError as err:  # missing or unexpected keys, wrong shapes
        first = str(err).strip().splitlines()
        raise InputError(
            f"model {path}: {weights.name} does not fit the architecture in config.json "
            f"({first[1].strip() if len(first) > 1 else first[0]})"
        ) from None
    net.eval()
    net.to(torch.device(device))
    return net, config, thresholds


def _version():
    from cytotrail import __version__

    return __version__


def _read_state_dict(path, weights):
    """A weights file's state dict (tensors only, never arbitrary pickled objects)."""
    import torch

    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as err:  # an unpickling error whose text must not reach the user
        raise InputError(
            f"model {path}: {weights.name} is not a weights file cytotrail can load safely "
            f"(a state dict of tensors saved by `cytotrail train`; {type(err).__name__}); "
            "it is refused and nothing in it was run"
        ) from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise InputError(
            f"model {path}: {weights.name} holds a {type(state).__name__}, not a state "
            "dict of tensors (write model folders with `cytotrail train`)"
        )
    return state


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
