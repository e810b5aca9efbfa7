"""The training recipe's defaults and the hardware-dependent ones (workers, batch size).

:data:`DEFAULTS` is the one home of the recipe: :func:`~cytotrail.segment.train.train_model`,
``cytotrail train`` and a resumed run without its checkpoint share it, and the workflow's
schema is compared with it by a convention test.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = [
    "DEFAULTS",
    "TRAIN_DIAMETER",
    "DIAMETER_RANGE",
    "default_batch_size",
    "default_workers",
]

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
# activation memory of one training crop pixel (forward + backward, autocast) for batch sizing on CUDA
_TRAIN_BYTES_PER_PIXEL = 2500


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
