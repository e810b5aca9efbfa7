"""Segmentation throughput on whatever device is present: network alone against end to end.

Issue 14 asks that, on a GPU, ``segment()`` end to end runs at >= half the network-alone
rate and >= 50 MP/s on 2048 x 2048 frames, with the maps turned into labels on the device
(:mod:`cytotrail.segment.postprocess_torch`). This script prints, in one run, on the
best device (or ``--device``):

- network alone: frames/s of the normalised frames through the network, the maps left
  on the device (what the device path needs of the network);
- end to end: frames/s of ``segment_unet`` (diameter given, so no estimate pass) with
  the automatic choice of post-processing, their ratio and MP/s;
- the share of time per stage in a separate, synchronised run (host preparation,
  network, maps to labels including the labels' copy to the host, pasting);
- with ``--compare-cpu-postprocess``: the same end to end with the host (numba) and
  the torch post-processing forced, same frames, same run, their speed ratio and how
  many objects agree (IoU >= 0.95);
- with ``--baseline REV``: the CPU end to end of git revision REV of cytotrail (run
  from a ``git archive`` of it, in a subprocess, interleaved with this tree's runs):
  the same-run A/B that shows whether the CPU path regressed.

Defaults: 8 frames of 2048 x 2048 in batches of 4 on CUDA; 8 frames of 512 x 512 on the
CPU (a run of under two minutes on 2 cores). Medians of ``--repeats`` runs after a warm-up.

Usage: .venv/bin/python benchmarks/bench_segment_throughput.py [--side N] [--frames N]
    [--batch-size N] [--repeats N] [--threads N] [--device D] [--compare-cpu-postprocess]
    [--baseline REV]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DIAMETER = 18.0  # the synthetic nuclei's diameter, given to segment (no estimate pass)


def make_frames(n_frames, side, seed=9):
    """(T, side, side) synthetic frames at the density of 4000 nuclei per 2048 x 2048."""
    from cytotrail.synth import make_timelapse

    n_cells = max(4, int(4000 * (side / 2048) ** 2))
    return make_timelapse(
        n_frames=n_frames, shape=(side, side), n_cells=n_cells, diameter=DIAMETER, seed=seed
    ).image[:, 0]


def median_seconds(run, repeats):
    run()  # warm-up: kernels, numba cache, allocator
    secs = []
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        secs.append(time.perf_counter() - t)
    return float(np.median(secs))


def stage_shares(frames, net, config, thresholds, device, batch_size, postprocess):
    """Seconds per stage of one synchronised pass (each stage waits for the device)."""
    import torch

    from cytotrail.segment.batches import _host_batches, _resize
    from cytotrail.segment.preprocess import denoise_sigma, percentiles
    from cytotrail.segment.resources import _batch_pixels, _postprocess_path, _workers
    from cytotrail.segment.tile_labels import _labels_for_tiles, _labels_for_tiles_torch
    from cytotrail.segment.tiled import predict_maps
    from cytotrail.segment.tiles import _paste, _scale_for, _tiles

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    on_device = _postprocess_path(postprocess, device) == "torch"
    n, ny, nx = frames.shape
    scale = _scale_for(DIAMETER, config)
    tile_size = int(config.get("tile_size", 1024) * (2 if device.type == "cuda" else 1))
    tiles = list(
        _tiles(
            n,
            (ny, nx),
            scale=scale,
            tile_size=tile_size,
            margin=int(config.get("tile_margin", 64)),
            multiple=net.multiple,
        )
    )
    seconds = dict.fromkeys(("host preparation", "network", "maps to labels", "paste"), 0.0)
    out = np.zeros(frames.shape, np.uint32)
    next_id = np.ones(n, np.int64)
    t = time.perf_counter()
    ranges = [(lo, hi, denoise_sigma(f, lo, hi)) for f in frames for lo, hi in [percentiles(f)]]
    seconds["host preparation"] += time.perf_counter() - t
    batches = _host_batches(
        frames, tiles, ranges=ranges, batch_size=batch_size, batch_pixels=_batch_pixels(device)
    )
    while True:
        t = time.perf_counter()
        try:
            group, batch = next(batches)
        except StopIteration:
            break
        seconds["host preparation"] += time.perf_counter() - t
        t = time.perf_counter()
        maps = predict_maps(net, batch, device=device, keep_on_device=on_device)
        sync()
        seconds["network"] += time.perf_counter() - t
        t = time.perf_counter()
        items = []
        for tile, m in zip(group, maps):
            m = m[:, : tile.scaled[0], : tile.scaled[1]]
            h, w = tile.crop[1] - tile.crop[0], tile.crop[3] - tile.crop[2]
            items.append((tile, _resize(m[None], (h, w))[0]))
        if on_device:
            done = list(
                _labels_for_tiles_torch(
                    items, diameter=DIAMETER, thresholds=thresholds, device=device, group=batch_size
                )
            )
        else:
            done = list(
                _labels_for_tiles(
                    items, diameter=DIAMETER, thresholds=thresholds, workers=_workers(None, device)
                )
            )
        sync()
        seconds["maps to labels"] += time.perf_counter() - t
        t = time.perf_counter()
        for tile, _, lab, seeds in done:
            _paste(out[tile.frame], lab, seeds, tile, next_id, tile.frame)
        seconds["paste"] += time.perf_counter() - t
    return seconds


# `diameter=` (renamed diameter_px, still accepted) so that revisions before the rename run it too
_BASELINE_TIMER = r"""
import json, sys, time
import numpy as np
import torch
torch.set_num_threads(int(sys.argv[2]))
from cytotrail.segment import segment
frames = np.load(sys.argv[1])
segment(frames, device="cpu", diameter=float(sys.argv[3]), batch_size=int(sys.argv[4]))  # warm-up
t = time.perf_counter()
labels = segment(frames, device="cpu", diameter=float(sys.argv[3]), batch_size=int(sys.argv[4]))
import cytotrail
print(json.dumps({"seconds": time.perf_counter() - t, "objects": int(sum(int(l.max()) for l in labels)),
                  "module": cytotrail.__file__}))
"""


def baseline_ab(frames, rev, threads, batch_size, repeats):
    """CPU end to end of revision ``rev`` and of this tree, interleaved, in fresh processes."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", rev, "src"], capture_output=True, check=True
        ).stdout
        (tmp / "rev").mkdir()
        subprocess.run(["tar", "-x", "-C", str(tmp / "rev")], input=archive, check=True)
        np.save(tmp / "frames.npy", frames)
        (tmp / "timer.py").write_text(_BASELINE_TIMER)
        trees = {f"revision {rev}": tmp / "rev" / "src", "this tree": ROOT / "src"}
        secs = {name: [] for name in trees}
        for _ in range(repeats):
            for name, src in trees.items():
                env = dict(os.environ, PYTHONPATH=str(src))
                proc = subprocess.run(
                    [
                        sys.executable,
                        str(tmp / "timer.py"),
                        str(tmp / "frames.npy"),
                        str(threads),
                        str(DIAMETER),
                        str(batch_size),
                    ],
                    capture_output=True,
                    text=True,
                    env=env,
                )
                if proc.returncode != 0:
                    raise RuntimeError(f"{name}: {proc.stderr.strip().splitlines()[-1:]}")
                res = json.loads(proc.stdout.strip().splitlines()[-1])
                secs[name].append(res["seconds"])
                print(f"    {name:<22} {res['seconds']:7.2f} s  ({res['objects']} objects, {res['module']})")
    a, b = secs.values()
    pairs = [x / y for x, y in zip(a, b)]
    print(
        f"    speed ratio of each interleaved pair (this tree / revision): "
        f"{', '.join(f'{p:.2f}' for p in pairs)}; median {np.median(pairs):.2f}; best run of each: "
        f"{min(b):.2f} s (this tree) vs {min(a):.2f} s (revision), {min(a) / min(b):.2f}x"
    )
    return {name: float(np.median(s)) for name, s in secs.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--side", type=int, default=None, help="frame side (default 2048 on CUDA, 512 else)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads on the CPU")
    parser.add_argument(
        "--compare-cpu-postprocess",
        action="store_true",
        help="also run end to end with the host (numba) and the torch post-processing",
    )
    parser.add_argument(
        "--baseline",
        default=None,
        metavar="REV",
        help="CPU end to end of git revision REV against this tree, same run",
    )
    args = parser.parse_args()
    import torch

    from cytotrail.segment.device import select_device
    from cytotrail.segment.infer import predict_maps, segment_unet
    from cytotrail.segment.metrics import match_labels
    from cytotrail.segment.model import load_model
    from cytotrail.segment.preprocess import normalize, percentiles
    from cytotrail.segment.resources import _postprocess_path

    torch.set_num_threads(args.threads)
    device = select_device(args.device)
    side = args.side or (2048 if device.type == "cuda" else 512)
    frames = make_frames(args.frames, side)
    net, config, thresholds = load_model(None, device=device)
    normed = np.stack([normalize(f, *percentiles(f)) for f in frames])
    pad = (-side) % net.multiple
    normed = np.pad(normed, ((0, 0), (0, pad), (0, pad)), mode="reflect") if pad else normed

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def network_alone():
        for i in range(0, len(normed), args.batch_size):
            predict_maps(net, normed[i : i + args.batch_size], device=device, keep_on_device=True)
        sync()

    results = {}

    def end_to_end(postprocess):
        def run():
            results[_postprocess_path(postprocess, device)] = segment_unet(
                frames,
                device=str(device),
                diameter_px=DIAMETER,
                batch_size=args.batch_size,
                postprocess=postprocess,
            )
            sync()

        return run

    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{device.type} ({torch.get_num_threads()} torch threads)"
    )
    mp = side * side / 1e6
    auto = _postprocess_path("auto", device)
    print(
        f"throughput, {len(frames)} frames of {side} x {side} in batches of {args.batch_size}, "
        f"diameter given ({DIAMETER:g} px), {name}, median of {args.repeats} runs"
    )
    rates = {"network alone": len(frames) / median_seconds(network_alone, args.repeats)}
    rates[f"end to end ({auto})"] = len(frames) / median_seconds(end_to_end("auto"), args.repeats)
    for label, rate in rates.items():
        print(f"  {label:<32} {rate:8.3f} frames/s  {rate * mp:8.2f} MP/s")
    ratio = rates[f"end to end ({auto})"] / rates["network alone"]
    print(f"  end to end / network alone: {ratio:.2f} (issue 14 asks >= 0.5 and >= 50 MP/s on a GPU)")

    seconds = stage_shares(frames, net, config, thresholds, device, args.batch_size, "auto")
    total = sum(seconds.values())
    print(f"  share of time per stage (one synchronised pass, {total:.2f} s, post-processing: {auto}):")
    for stage, s in seconds.items():
        print(f"    {stage:<18} {s:7.3f} s  {100 * s / total:5.1f} %")

    if args.compare_cpu_postprocess:
        other = "host" if auto == "torch" else "torch"
        rates[f"end to end ({other})"] = len(frames) / median_seconds(end_to_end(other), args.repeats)
        a, b = results["torch"], results["host"]
        objects = sum(max(int(x.max()), int(y.max())) for x, y in zip(a, b))
        matched = sum(match_labels(y, x, iou=0.95)["tp"] for x, y in zip(a, b))
        identical = sum(bool(np.array_equal(x, y)) for x, y in zip(a, b))
        print(f"  same frames, post-processing forced (the {auto} run above, the {other} run now):")
        for path in ("torch", "host"):
            rate = rates[f"end to end ({path})"]
            print(f"    {path:<6} {rate:8.3f} frames/s  {rate * mp:8.2f} MP/s")
        print(
            f"    torch / host speed: {rates['end to end (torch)'] / rates['end to end (host)']:.2f}; "
            f"objects matched at IoU >= 0.95: {matched}/{objects} ({100 * matched / max(objects, 1):.2f} %), "
            f"identical label frames {identical}/{len(frames)}"
        )
        stage = stage_shares(frames, net, config, thresholds, device, args.batch_size, other)
        total = sum(stage.values())
        print(
            f"    stages with {other}: " + ", ".join(f"{k} {100 * v / total:.0f} %" for k, v in stage.items())
        )

    if args.baseline:
        print(f"  CPU end to end, revision {args.baseline} against this tree (fresh processes, interleaved):")
        ab = baseline_ab(frames, args.baseline, args.threads, args.batch_size, args.repeats)
        base, ours = ab[f"revision {args.baseline}"], ab["this tree"]
        print(
            f"    median {base:.2f} s -> {ours:.2f} s: this tree runs at {base / ours:.2f}x the "
            f"baseline's speed (>= 1: no regression)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
