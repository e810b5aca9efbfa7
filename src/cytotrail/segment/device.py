"""The one place where cytotrail decides which torch device runs a network."""

from __future__ import annotations

from cytotrail.io import InputError

__all__ = ["select_device"]


def select_device(name="auto"):
    """Return the torch device to run on.

    Parameters
    ----------
    name : str or torch.device
        ``"auto"`` picks CUDA when available, then Apple MPS, then CPU; ``"cuda"``,
        ``"cuda:1"``, ``"mps"`` and ``"cpu"`` ask for that device and fail when it is absent.

    Returns
    -------
    torch.device
    """
    import torch

    if isinstance(name, torch.device):
        name = str(name)
    name = str(name or "auto").lower()
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps is not None and mps.is_available())
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if has_mps:
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(
                f"device {name!r} requested but CUDA is not available; use device='auto' or 'cpu'"
            )
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) present")
        return device
    if name == "mps":
        if not has_mps:
            raise InputError("device 'mps' requested but Apple MPS is not available; use 'auto' or 'cpu'")
        return torch.device("mps")
    raise InputError(f"unknown device {name!r}; expected auto, cpu, cuda, cuda:N or mps")
