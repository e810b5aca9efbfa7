"""What the device and the host can take during inference: batch size in pixels,
post-processing threads, where maps become labels, and handing freed memory back."""

from __future__ import annotations

# at most this many model-scale pixels per network batch (bounds activation memory:
# about 0.6 GB per 1024 x 1024 tile for the shipped network); a CUDA device gets batches
# of up to a quarter of its memory, and tiles twice as wide (a 2048 x 2048 frame is one)
_MAX_BATCH_PIXELS = 2**20
_ACTIVATION_BYTES_PER_PIXEL = 600
# device memory of post-processing on the device, per pixel of a batch (a dozen int64 images)
_POSTPROCESS_BYTES_PER_PIXEL = 120


def _batch_pixels(device):
    """Model-scale pixels per network batch on ``device``: on CUDA, from the memory free now."""
    if device.type != "cuda":
        return _MAX_BATCH_PIXELS
    import torch

    free, _ = torch.cuda.mem_get_info(device)
    return max(_MAX_BATCH_PIXELS, free // 4 // (_ACTIVATION_BYTES_PER_PIXEL + _POSTPROCESS_BYTES_PER_PIXEL))


def _postprocess_path(postprocess, device):
    """ "torch" (maps to labels on the device) or "host" (numba and scipy on the CPU).

    ``"auto"``: torch on CUDA and MPS, where the maps already are; host on the CPU, where
    the numba path is the faster (same-run A/B in benchmarks/bench_segment_throughput.py).
    """
    if postprocess not in ("auto", "torch", "host"):
        raise ValueError(f"postprocess must be 'auto', 'torch' or 'host', got {postprocess!r}")
    if postprocess != "auto":
        return postprocess
    return "host" if device.type == "cpu" else "torch"


def _workers(workers, device):
    """Post-processing threads: as given, else 1 on the CPU (the network has the cores) and
    up to 8 of this process's CPU threads less one beside a GPU: its cores, at most torch's
    thread count (``OMP_NUM_THREADS``, which Snakemake sets to a job's threads, or
    ``cytotrail segment --threads``)."""
    if workers is not None:
        return max(1, int(workers))
    if device.type == "cpu":
        return 1
    import os

    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(8, cores - 1, torch.get_num_threads() - 1))


def _release_memory():
    """Hand freed heap memory back to the OS (glibc keeps it otherwise, inflating RSS)."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
