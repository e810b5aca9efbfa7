"""Bounded memory of the unet backend: one 10,000 x 10,000 frame on the CPU.

Builds a 10k x 10k uint16 frame by tiling a synthetic 1000 x 1000 frame 10 x 10 times,
segments it with the default model (tiles streamed, post-processed per tile with
ownership by seed), and prints the wall time, the peak resident memory of this process
(ru_maxrss) and the number of nuclei against the count expected from the 1000 x 1000
frame. Target: peak RSS < 4 GB.

Usage: .venv/bin/python benchmarks/bench_segment_memory.py [--size 10000] [--threads 2]
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import time

import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000, help="frame side in px (a multiple of 1000)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--diameter-px", type=float, default=None, help="nucleus diameter in px (default: estimated)"
    )
    args = parser.parse_args()
    import torch

    from cytotrail.segment import segment
    from cytotrail.synth import make_timelapse

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    data = make_timelapse(n_frames=1, shape=(1000, 1000), n_cells=750, seed=3)
    block = data.image[0, 0]
    reps = args.size // 1000
    frame = np.tile(block, (reps, reps))
    del data
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    one = segment(block, device="cpu", diameter_px=args.diameter_px)
    n_block = int(one.max())
    started = time.perf_counter()
    labels = segment(frame, device="cpu", diameter_px=args.diameter_px, progress=True)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    n = int(labels[0].max())
    print(f"\nframe {frame.shape[0]} x {frame.shape[1]} {frame.dtype}, {args.threads} thread(s)")
    print(f"  wall time          {seconds:8.1f} s  ({frame.size / 1e6 / seconds:.2f} MP/s)")
    print(
        f"  peak RSS           {peak:8.2f} GB (before segmenting: {rss_before:.2f} GB; input "
        f"{frame.nbytes / 1e9:.2f} GB, output {labels.nbytes / 1e9:.2f} GB)"
    )
    print(
        f"  nuclei             {n} (one 1000 x 1000 block alone: {n_block}; x {reps * reps} = "
        f"{n_block * reps * reps}; nuclei cut by the block seams differ)"
    )
    print(f"  target peak RSS < 4 GB: {'met' if peak < 4 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
