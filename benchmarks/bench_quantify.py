"""Benchmark cytotrail.quantify against skimage.measure.regionprops_table.

Usage::

    .venv/bin/python benchmarks/bench_quantify.py [--size 4096] [--channels 40] [--cells 50000]
        [--methods intensity compartments shape default median_p90] [--threads-too]
        [--repeat 3]

A synthetic frame of touching cells (seeds on a jittered grid grown with
``expand_labels``) and a uint16 image with C channels. Every measurement runs in a fresh
subprocess that builds the data, imports the libraries (numpy, pandas, scikit-image,
numba, cytotrail; imports are outside the clock for both tools), then times the call:
wall time, process CPU time (fairer than wall time on a shared machine) and peak RSS
(``resource.getrusage``, read right after the first call; the RSS of the data alone is
printed beside it). The machine is shared, so every measurement is repeated
(``--repeat``, cytotrail and regionprops interleaved) and the medians are printed.

cytotrail compiles its numba kernels on the first call ever and caches them on disk
(``cache=True``: in ``__pycache__`` beside the module, or under ``NUMBA_CACHE_DIR`` / the
user cache when the package directory is read-only). So each cytotrail case runs in two
processes that share one new, empty ``NUMBA_CACHE_DIR``:

``cold``
    the first call ever: empty cache, every kernel it needs is compiled (once per
    installation and numba version);
``fresh``
    a new process with the cache filled: what every Snakemake job pays (loading numba's
    code generator and the cached kernels is inside the clock);
``steady``
    a second call in that same process (every frame after the first of a timelapse).

Cases, same statistics for both tools:
``intensity``
    per-cell mean, std, min, max of every channel in the nucleus label
    (``quantify(..., compartments=("nucleus",), morphology=False)`` vs
    ``regionprops_table`` with ``intensity_mean, intensity_std, intensity_min,
    intensity_max`` on the channel-last image);
``compartments``
    the same in nucleus, cytoplasm and cell (regionprops: ``expand_labels`` by 3 px, then
    the nucleus, ring and cell label images);
``shape``
    area, centroid, perimeter, eccentricity, solidity, axis lengths, orientation (one
    channel, so that the intensity part is negligible);
``default`` and ``median_p90`` (cytotrail only)
    the default call (mean in the three compartments plus morphology), and the same with
    median and p90 added, to show their cost.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

INTENSITY_PROPS = ("label", "intensity_mean", "intensity_std", "intensity_min", "intensity_max")
SHAPE_PROPS = (
    "label",
    "area",
    "centroid",
    "perimeter",
    "eccentricity",
    "solidity",
    "axis_major_length",
    "axis_minor_length",
    "orientation",
)
STATS = ("mean", "std", "min", "max")
CASES = ("intensity", "compartments", "shape", "default", "median_p90")
REGIONPROPS = {"intensity": "rp_intensity", "compartments": "rp_compartments", "shape": "rp_shape"}


def make_data(size, channels, cells, seed=0):
    import numpy as np
    from skimage.segmentation import expand_labels

    rng = np.random.default_rng(seed)
    step = size / np.sqrt(cells)
    grid = np.arange(step / 2, size, step)
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    pts = np.column_stack([yy.ravel(), xx.ravel()]) + rng.uniform(-step / 4, step / 4, (yy.size, 2))
    pts = np.clip(np.round(pts), 0, size - 1).astype(int)[:cells]
    labels = np.zeros((size, size), np.uint32)
    labels[pts[:, 0], pts[:, 1]] = np.arange(1, len(pts) + 1)
    labels = expand_labels(labels, distance=step * 0.45)
    image = rng.integers(0, 4000, size=(channels, size, size), dtype=np.uint16)
    return labels, image


def _rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _call(method, labels, image, names, threads):
    """One measured call; returns the output table (or dict of columns)."""
    import numpy as np

    case = method.removeprefix("ct_")
    if method.startswith("ct_"):
        from cytotrail.quantify import quantify

        opts = {
            "intensity": dict(statistics=STATS, compartments=("nucleus",), morphology=False),
            "compartments": dict(statistics=STATS, morphology=False),
            "shape": dict(statistics=("mean",), compartments=("nucleus",)),
            "default": {},
            "median_p90": dict(statistics=("mean", "median", "p90")),
        }[case]
        return quantify(labels, image, channel_names=names, threads=threads, **opts)
    from skimage.measure import regionprops_table

    if method == "rp_intensity":
        return regionprops_table(labels, np.moveaxis(image, 0, -1), properties=INTENSITY_PROPS)
    if method == "rp_compartments":
        from skimage.segmentation import expand_labels

        cells = expand_labels(labels, distance=3.0)  # quantify's default 3 µm at 1 µm/px
        ring = np.where(labels > 0, 0, cells)
        channel_last = np.moveaxis(image, 0, -1)
        out = {}
        for name, lab in (("nucleus", labels), ("cytoplasm", ring), ("cell", cells)):
            table = regionprops_table(lab, channel_last, properties=INTENSITY_PROPS)
            out.update({f"{name}_{k}": v for k, v in table.items()})
        return out
    if method == "rp_shape":
        return regionprops_table(labels, properties=SHAPE_PROPS)
    raise SystemExit(f"unknown method {method}")


def child(method, size, channels, cells, calls, threads):
    import numpy as np

    one_channel = method in ("rp_shape", "ct_shape")
    labels, image = make_data(size, 1 if one_channel else channels, cells)
    n_cells = len(np.unique(labels)) - 1
    names = [f"ch{i}" for i in range(image.shape[0])]
    t0 = time.perf_counter()
    import numba  # noqa: F401
    import pandas  # noqa: F401
    import skimage.measure  # noqa: F401
    import skimage.segmentation  # noqa: F401

    import cytotrail.quantify  # noqa: F401

    import_s = time.perf_counter() - t0
    before = _rss_mb()
    times = []
    peak = None
    for _ in range(calls):
        t0 = time.perf_counter()
        c0 = time.process_time()
        out = _call(method, labels, image, names, threads)
        times.append((time.perf_counter() - t0, time.process_time() - c0))
        if peak is None:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n_cols = len(out.columns) if hasattr(out, "columns") else len(out)
    print(
        json.dumps(
            {
                "method": method,
                "times": times,
                "rss_before_mb": before,
                "peak_rss_mb": peak,
                "cells": int(n_cells),
                "columns": n_cols,
                "import_s": import_s,
            }
        )
    )


def run(method, args, *, calls=1, cache_dir=None, threads=1):
    cmd = [
        sys.executable,
        __file__,
        "--child",
        method,
        "--size",
        str(args.size),
        "--channels",
        str(args.channels),
        "--cells",
        str(args.cells),
        "--calls",
        str(calls),
        "--threads",
        str(threads),
    ]
    env = dict(os.environ)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if res.returncode != 0:
        raise SystemExit(f"{method} failed:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _median(results):
    """Element-wise median of the times and peak RSS of repeated runs (None stays None)."""
    import numpy as np

    if results[0] is None:
        return None
    out = dict(results[0])
    out["times"] = np.median([r["times"] for r in results], axis=0).tolist()
    for key in ("peak_rss_mb", "rss_before_mb"):
        out[key] = float(np.median([r[key] for r in results]))
    return out


def _fmt(seconds, cpu):
    return f"{seconds:6.2f} s ({cpu:6.2f} CPU)"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--channels", type=int, default=40)
    p.add_argument("--cells", type=int, default=50000)
    p.add_argument("--methods", nargs="+", default=list(CASES), choices=CASES, help="cases to run")
    p.add_argument("--skip-regionprops", action="store_true")
    p.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="processes per measurement; medians are printed (the machine is shared)",
    )
    p.add_argument(
        "--threads-too",
        action="store_true",
        help="also time cytotrail with threads=2 (fresh process, warm cache)",
    )
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--calls", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child, args.size, args.channels, args.cells, args.calls, args.threads)
        return
    print(
        f"frame {args.size}x{args.size}, {args.channels} channels (uint16), ~{args.cells} cells; "
        "one fresh process per measurement; wall seconds (process CPU seconds), median of "
        f"{args.repeat} runs"
    )
    print(
        "cytotrail: cold = first call ever (empty NUMBA_CACHE_DIR), fresh = new process with "
        "the kernel cache filled (every Snakemake job), steady = second call in that process"
    )
    rows = []
    for case in args.methods:
        reps = []
        for _ in range(args.repeat):  # cytotrail and regionprops interleaved
            cache = tempfile.mkdtemp(prefix="bench_quantify_numba_")
            try:
                cold = run(f"ct_{case}", args, cache_dir=cache)
                warm = run(f"ct_{case}", args, calls=2, cache_dir=cache)
                two = run(f"ct_{case}", args, cache_dir=cache, threads=2) if args.threads_too else None
            finally:
                shutil.rmtree(cache, ignore_errors=True)
            rp = None
            if case in REGIONPROPS and not args.skip_regionprops:
                rp = run(REGIONPROPS[case], args)
            reps.append((cold, warm, two, rp))
        cold, warm, two, rp = (_median([r[i] for r in reps]) for i in range(4))
        rows.append((case, cold, warm, two, rp))
        (cs, cc), (fs, fc), (ss, sc) = cold["times"][0], *warm["times"]
        line = (
            f"{case:12s} cytotrail cold {_fmt(cs, cc)} | fresh {_fmt(fs, fc)} | steady "
            f"{_fmt(ss, sc)} | peak RSS {warm['peak_rss_mb']:6.0f} MB (data alone "
            f"{warm['rss_before_mb']:5.0f} MB)"
        )
        if two is not None:
            line += f" | threads=2 fresh {_fmt(*two['times'][0])}"
        print(line, flush=True)
        if rp is not None:
            rs, rc = rp["times"][0]
            print(
                f"{'':12s} regionprops_table {_fmt(rs, rc)} | peak RSS "
                f"{rp['peak_rss_mb']:6.0f} MB "
                f"(data alone {rp['rss_before_mb']:5.0f} MB); {rp['cells']} cells, "
                f"{rp['columns']} columns (cytotrail {warm['columns']})",
                flush=True,
            )
    if any(r[4] is not None for r in rows):
        print("\nspeed-up over regionprops_table, wall (CPU):")
        print(f"{'case':12s} {'cold':>15s} {'fresh':>15s} {'steady':>15s}")
        for case, cold, warm, _, rp in rows:
            if rp is None:
                continue
            rs, rc = rp["times"][0]
            cells = [cold["times"][0], *warm["times"]]
            print(f"{case:12s} " + " ".join(f"{rs / w:6.1f}x ({rc / c:5.1f}x)" for w, c in cells))


if __name__ == "__main__":
    main()
