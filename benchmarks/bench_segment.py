"""Segmentation benchmark: accuracy (AP, F1) and CPU speed of the unet backend.

Prints, in one run:
- AP@0.5/0.75/0.9 (TP / (TP + FP + FN)), mean over the dsb2018_fluo `val` images, for the
  unet backend (automatic diameter) beside the watershed backend on the same images;
- the same on held-out synthetic frames (seeds 100-..., never used in training);
- F1@0.5 of the demo data (make_timelapse(n_frames=20, shape=(256, 256), n_cells=50, seed=0));
- F1@0.5 of synthetic nuclei recorded as ion counts (peak 50 to 3 ions a pixel), with the
  smoothing of noisy frames and without it, same run. Last run (2-core CPU): 50 / 20 / 10 /
  5 / 3 counts 0.988 / 0.988 / 0.981 / 0.939 / 0.774 smoothed, 0.989 / 0.985 / 0.946 /
  0.427 / 0.026 as given;
- F1@0.5 of synthetic fluorescence with dense noise above that target: left as it is by
  default (not counts), and smoothed as counts are, same run. Last run: the default kept
  0.960 / 0.995 / 0.951 / 0.993 / 0.920 / 0.990 / 0.859 / 0.980 (noise 3, 4, 6, 8 x
  diameters 9 and 14), smoothing would have given 0.915 / 0.993 / 0.907 / 0.982 / 0.909 /
  0.990 / 0.906 / 0.978;
- CPU speed: median megapixels/s over 512 x 512 frames, end to end, and, when a cellpose
  venv exists (CELLPOSE_PYTHON, default /tmp/cpvenv/bin/python), cellpose's network on the
  same frames in the same run (random weights: timing only);
- with --throughput: frames per second for batches of 2048 x 2048 frames on the best device
  (CUDA when present), the network alone and end to end, and their ratio (issue #3 asks
  for end to end >= half the network-alone rate on a GPU).

Usage: .venv/bin/python benchmarks/bench_segment.py [--quick] [--threads N] [--throughput]
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
DSB = ROOT / ".." / "shared" / "data" / "nuclei" / "dsb2018_fluo"


def ap_table(samples, backends):
    from cytotrail.segment import segment
    from cytotrail.segment.metrics import average_precision

    rows = {}
    for name, options in backends.items():
        aps, started = [], time.perf_counter()
        for image, truth in samples:
            pred = segment(image, device="cpu", **options)[0]
            aps.append(average_precision(truth, pred))
        seconds = time.perf_counter() - started
        rows[name] = {k: float(np.mean([a[k] for a in aps])) for k in (0.5, 0.75, 0.9)}
        rows[name]["seconds"] = seconds
    return rows


def print_table(title, rows, n):
    print(f"\n{title} (n={n})")
    print(f"  {'backend':<22} {'AP@0.5':>7} {'AP@0.75':>8} {'AP@0.9':>7} {'time s':>7}")
    for name, r in rows.items():
        print(f"  {name:<22} {r[0.5]:7.3f} {r[0.75]:8.3f} {r[0.9]:7.3f} {r['seconds']:7.1f}")


def dsb_val(limit=None):
    import pandas as pd
    import tifffile

    manifest = DSB / "manifest.csv"
    if not manifest.is_file():
        print(f"\n{DSB} not found: skipping the dsb2018 benchmark")
        return []
    table = pd.read_csv(manifest)
    ids = table.loc[table["split"] == "val", "id"].tolist()[:limit]
    return [
        (tifffile.imread(DSB / "images" / f"{i}.tif"), tifffile.imread(DSB / "masks" / f"{i}.tif"))
        for i in ids
    ]


def synth_heldout(n):
    from cytotrail.synth import make_timelapse

    out = []
    rng = np.random.default_rng(2024)
    for i in range(n):
        diameter = [9.0, 14.0, 20.0, 30.0, 45.0][i % 5]
        noise = [0.5, 1.0, 2.0][i % 3]
        shape = (256, 256)
        n_cells = int(rng.uniform(0.15, 0.4) * shape[0] * shape[1] / (np.pi * diameter**2 / 4))
        data = make_timelapse(
            n_frames=1, shape=shape, n_cells=n_cells, diameter=diameter, noise=noise, seed=100 + i
        )
        out.append((data.image[0, 0], data.labels[0]))
    return out


def demo_f1():
    from cytotrail.segment import segment
    from cytotrail.segment.metrics import average_precision, f1_score
    from cytotrail.synth import make_timelapse

    data = make_timelapse(n_frames=20, shape=(256, 256), n_cells=50, seed=0)
    print("\nDemo data: make_timelapse(n_frames=20, shape=(256, 256), n_cells=50, seed=0), channel 0")
    for backend in ("unet", "watershed"):
        started = time.perf_counter()
        labels = segment(data.image[:, 0], backend=backend, device="cpu")
        seconds = time.perf_counter() - started
        ap = np.mean([average_precision(t, p, thresholds=(0.5,))[0.5] for t, p in zip(data.labels, labels)])
        print(
            f"  {backend:<10} F1@0.5 {f1_score(data.labels, labels):.3f}  F1@0.75 "
            f"{f1_score(data.labels, labels, iou=0.75):.3f}  AP@0.5 {ap:.3f}  ({seconds:.1f} s)"
        )


def _f1_with_smoothing(frames, labels, sigma):
    """F1@0.5 of the unet backend on ``frames``: smoothing as the default decides (None), or
    with this Gaussian sigma for every frame (0: none). The tile loop looks
    ``denoise_sigma`` up on its module, where it is replaced for the call."""
    from cytotrail.segment import segment, tiled
    from cytotrail.segment.metrics import f1_score

    auto = tiled.denoise_sigma
    if sigma is not None:
        tiled.denoise_sigma = lambda *args, **kwargs: sigma
    try:
        return f1_score(labels, segment(frames, device="cpu"), iou=0.5)
    finally:
        tiled.denoise_sigma = auto


def ion_counts(peaks=(50, 20, 10, 5, 3)):
    """F1@0.5 of synthetic nuclei recorded as ion counts (IMC, MIBI), with and without the
    smoothing of noisy frames (:func:`cytotrail.segment.preprocess.denoise_sigma`), same run.

    Six 256 x 256 frames of ``make_timelapse(seed=11)``, rescaled so that the brightest
    nuclei expect ``peak`` ions a pixel over 0.3 of background, then Poisson-sampled.
    """
    from cytotrail.segment.preprocess import noise_ratio, percentiles
    from cytotrail.synth import make_timelapse

    data = make_timelapse(n_frames=6, shape=(256, 256), n_cells=60, seed=11, noise=0.5)
    signal = data.image[:, 0].astype(np.float64)
    signal = np.clip(signal - np.percentile(signal, 1), 0, None)
    signal /= np.percentile(signal, 99)
    rng = np.random.default_rng(0)
    print("\nSynthetic nuclei as ion counts (6 frames of 256 x 256, seed 11), F1@0.5")
    print(f"  {'peak counts':>11} {'pixel noise':>11} {'smoothed':>9} {'as given':>9}")
    for peak in peaks:
        counts = rng.poisson(signal * peak + 0.3).astype(np.float32)
        noise = np.median([noise_ratio(f, *percentiles(f)) for f in counts])
        f1 = {
            "smoothed": _f1_with_smoothing(counts, data.labels, None),
            "as given": _f1_with_smoothing(counts, data.labels, 0.0),
        }
        print(f"  {peak:>11} {noise:>11.3f} {f1['smoothed']:>9.3f} {f1['as given']:>9.3f}")


def dense_noise(noises=(3.0, 4.0, 6.0, 8.0), diameters=(9.0, 14.0)):
    """F1@0.5 of synthetic fluorescence with dense noise above the noise target: as the
    default leaves it (not counts), and smoothed as ion counts are, same run."""
    from cytotrail.segment.preprocess import DENOISE_SIGMA, looks_like_counts, noise_ratio, percentiles
    from cytotrail.synth import make_timelapse

    print("\nSynthetic fluorescence with dense noise (4 frames of 256 x 256, seed 21), F1@0.5")
    print(f"  {'noise':>5} {'diameter':>8} {'pixel noise':>11} {'counts?':>7} {'default':>8} {'smoothed':>9}")
    for noise in noises:
        for diameter in diameters:
            data = make_timelapse(
                n_frames=4, shape=(256, 256), n_cells=60, seed=21, noise=noise, diameter=diameter
            )
            frames = data.image[:, 0]
            f1 = {
                "default": _f1_with_smoothing(frames, data.labels, None),
                "smoothed": _f1_with_smoothing(frames, data.labels, DENOISE_SIGMA),
            }
            ratio = np.median([noise_ratio(f, *percentiles(f)) for f in frames])
            counts = "yes" if looks_like_counts(frames[0]) else "no"
            print(
                f"  {noise:>5} {diameter:>8} {ratio:>11.3f} {counts:>7} {f1['default']:>8.3f} "
                f"{f1['smoothed']:>9.3f}"
            )


_CELLPOSE_TIMER = r"""
import json, sys, time, types
import numpy as np


class _Stub(types.ModuleType):
    # the torchvision wheel on this machine is a CUDA build that does not import with the CPU
    # torch; cellpose's network never calls it (segment_anything imports it for box NMS)
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        mod = _Stub(self.__name__ + "." + name)
        sys.modules[mod.__name__] = mod
        return mod


try:
    import torchvision  # noqa: F401
except Exception:
    for name in list(sys.modules):
        if name.startswith("torchvision"):
            del sys.modules[name]
    for name in ("torchvision", "torchvision.ops", "torchvision.ops.boxes", "torchvision.transforms",
                 "torchvision.transforms.functional"):
        sys.modules[name] = _Stub(name)
import torch

torch.set_num_threads(int(sys.argv[2]))
frames = np.load(sys.argv[1])
from importlib.metadata import version as _version
from cellpose import core
from cellpose.vit import CPSAM

net = CPSAM(dtype=torch.float32)  # random weights: nothing is downloaded
net.eval()
out = {"version": _version("cellpose"), "network": "CPSAM (ViT-L, cellpose 4 default), float32, "
       "random weights, core.run_net bsize 256, tile_overlap 0.1, no augmentation",
       "params": sum(p.numel() for p in net.parameters())}
times = []
for f in frames:
    x = f.astype(np.float32)
    x = (x - x.min()) / (np.ptp(x) + 1e-6)
    x = np.stack([x, np.zeros_like(x), np.zeros_like(x)], -1)[None]
    t = time.perf_counter()
    with torch.no_grad():
        core.run_net(net, x, batch_size=8, augment=False, tile_overlap=0.1, bsize=256)
    times.append(time.perf_counter() - t)
out["seconds"] = times
print(json.dumps(out))
"""


def speed(threads, n_frames, cellpose_python, cellpose_frames=2):
    import torch

    from cytotrail.segment import segment
    from cytotrail.synth import make_timelapse

    torch.set_num_threads(threads)
    data = make_timelapse(n_frames=n_frames, shape=(512, 512), n_cells=200, seed=7)
    frames = data.image[:, 0]
    segment(frames[:1], device="cpu")  # warm-up: model load, first-call overheads
    timings = {}
    for label, options in (
        ("unet, auto diameter", {}),
        ("unet, diameter given", {"diameter_px": 14.0}),
        ("watershed", {"backend": "watershed", "diameter_px": 14.0}),
    ):
        secs = []
        for f in frames:
            t = time.perf_counter()
            segment(f, device="cpu", **options)
            secs.append(time.perf_counter() - t)
        timings[label] = secs
    print(f"\nCPU speed, 512 x 512 frames, {threads} torch thread(s), {n_frames} frames, end to end")
    mp = 512 * 512 / 1e6
    for label, secs in timings.items():
        print(f"  {label:<24} median {np.median(secs):6.3f} s/frame = {mp / np.median(secs):6.2f} MP/s")
    if cellpose_python and Path(cellpose_python).exists():
        with tempfile.TemporaryDirectory() as tmp:
            np.save(Path(tmp) / "frames.npy", frames[:cellpose_frames])
            script = Path(tmp) / "timer.py"
            script.write_text(_CELLPOSE_TIMER)
            proc = subprocess.run(
                [cellpose_python, str(script), str(Path(tmp) / "frames.npy"), str(threads)],
                capture_output=True,
                text=True,
            )
        if proc.returncode != 0:
            print(f"  cellpose timing failed: {proc.stderr.strip().splitlines()[-1:]}")
            return
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        cp = float(np.median(res["seconds"]))
        ours = float(np.median(timings["unet, auto diameter"]))
        print(f"  cellpose {res['version']}: {res['network']}")
        print(f"  {'cellpose network only':<24} median {cp:6.3f} s/frame = {mp / cp:6.4f} MP/s")
        print(f"  unet end to end vs cellpose network only: {cp / ours:.1f}x faster")
    else:
        print(f"  cellpose: no venv at {cellpose_python}; not compared")


def throughput(n_frames, batch_size):
    """Frames/s for (n_frames, 2048, 2048) stacks: the network alone and end to end."""
    import torch

    from cytotrail.segment import segment
    from cytotrail.segment.device import select_device
    from cytotrail.segment.infer import predict_maps
    from cytotrail.segment.model import load_model
    from cytotrail.segment.preprocess import normalize, percentiles
    from cytotrail.synth import make_timelapse

    device = select_device("auto")
    side = 2048
    data = make_timelapse(n_frames=n_frames, shape=(side, side), n_cells=4000, diameter=18, seed=9)
    frames = data.image[:, 0]
    net, config, _ = load_model(None, device=device)
    normed = np.stack([normalize(f, *percentiles(f)) for f in frames])

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def network_alone():
        # batches already normalised; the maps come back to the host, as segment() needs them
        for i in range(0, n_frames, batch_size):
            predict_maps(net, normed[i : i + batch_size], device=device)
        sync()

    def end_to_end():
        segment(frames, device=str(device), diameter_px=18.0, batch_size=batch_size)
        sync()

    rates = {}
    for label, run in (("network alone", network_alone), ("end to end", end_to_end)):
        run()  # warm-up: kernels, numba cache, allocator
        secs = []
        for _ in range(3):
            t = time.perf_counter()
            run()
            secs.append(time.perf_counter() - t)
        rates[label] = n_frames / float(np.median(secs))
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{device.type} ({torch.get_num_threads()} threads)"
    )
    print(
        f"\nthroughput, {n_frames} frames of {side} x {side} in batches of {batch_size}, "
        f"diameter given (18 px), {name}, median of 3 runs"
    )
    for label, rate in rates.items():
        print(f"  {label:<14} {rate:8.3f} frames/s")
    print(
        f"  end to end / network alone: {rates['end to end'] / rates['network alone']:.2f} (target >= 0.5 on a GPU)"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and frames")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default=None, help="unet model folder (default: shipped)")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument(
        "--cellpose-frames",
        type=int,
        default=1,
        help="frames timed with cellpose's network (it is slow on CPU)",
    )
    parser.add_argument(
        "--cellpose-python", default=os.environ.get("CELLPOSE_PYTHON", "/tmp/cpvenv/bin/python")
    )
    parser.add_argument(
        "--throughput",
        action="store_true",
        help="also time 2048 x 2048 batches on the best device (CUDA when present)",
    )
    parser.add_argument(
        "--throughput-frames",
        type=int,
        default=None,
        help="frames per throughput run (default: 32 on CUDA, 2 on the CPU)",
    )
    parser.add_argument("--batch-size", type=int, default=4, help="frames per batch for --throughput")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    backends = {"unet (auto diameter)": {"model": args.model}, "watershed": {"backend": "watershed"}}
    if not args.skip_accuracy:
        val = dsb_val(limit=10 if args.quick else None)
        if val:
            print_table("dsb2018_fluo val images", ap_table(val, backends), len(val))
        syn = synth_heldout(5 if args.quick else 20)
        print_table(
            "held-out synthetic frames (seeds 100+, diameters 9-45 px, noise 0.5-2)",
            ap_table(syn, backends),
            len(syn),
        )
        demo_f1()
        ion_counts()
        dense_noise()
    if not args.skip_speed:
        speed(args.threads, 3 if args.quick else 8, args.cellpose_python, args.cellpose_frames)
    if args.throughput:
        n = args.throughput_frames or (32 if torch.cuda.is_available() else 2)
        throughput(n, args.batch_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
