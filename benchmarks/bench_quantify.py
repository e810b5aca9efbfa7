"""Benchmark cytotrail.quantify against skimage.measure.regionprops_table.

Usage::

    .venv/bin/python benchmarks/bench_quantify.py [--size 4096] [--channels 40] [--cells 50000]

A synthetic frame of touching cells (seeds on a jittered grid grown with
``expand_labels``) and a uint16 image with C channels. Each method runs in a fresh
subprocess that builds the data, then measures: wall time of the call and peak RSS
(``resource.getrusage``), also the RSS before the call (the data alone), and the
process CPU time (fairer than wall time on a shared machine).

Comparisons, same run, same statistics:
1. intensities: per-cell mean, std, min, max of every channel in the nucleus label
   (``quantify(..., compartments=("nucleus",), morphology=False)`` vs ``regionprops_table``
   with ``intensity_mean, intensity_std, intensity_min, intensity_max``); then the same in
   the three compartments (regionprops: ``expand_labels`` by 3 px, then the nucleus, ring
   and cell label images);
2. morphology: area, centroid, perimeter, eccentricity, solidity, axis lengths,
   orientation (one channel, so that the intensity part is negligible);
3. cytotrail only: the default full run (mean in nucleus, cytoplasm and cell, plus
   morphology) and one with median and p90 added, to show their cost.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

INTENSITY_PROPS = ("label", "intensity_mean", "intensity_std", "intensity_min", "intensity_max")
SHAPE_PROPS = ("label", "area", "centroid", "perimeter", "eccentricity", "solidity",
               "axis_major_length", "axis_minor_length", "orientation")


def make_data(size, channels, cells, seed=0):
    import numpy as np
    from skimage.segmentation import expand_labels

    rng = np.random.default_rng(seed)
    step = size / np.sqrt(cells)
    grid = np.arange(step / 2, size, step)
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    pts = np.column_stack([yy.ravel(), xx.ravel()]) + rng.uniform(-step / 4, step / 4,
                                                                  (yy.size, 2))
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


def child(method, size, channels, cells):
    import numpy as np

    labels, image = make_data(size, channels if method != "rp_shape" and method != "ct_shape"
                              else 1, cells)
    n_cells = len(np.unique(labels)) - 1
    names = [f"ch{i}" for i in range(image.shape[0])]
    # imports outside the timing (pandas, scipy, skimage load in both cases; numba, which
    # cytotrail's kernels use, costs about 0.2 s once per process)
    import numba  # noqa: F401
    import pandas  # noqa: F401
    import skimage.measure  # noqa: F401
    import skimage.segmentation  # noqa: F401

    import cytotrail.quantify  # noqa: F401

    if method == "ct_intensity_warm":
        from cytotrail.quantify import quantify

        opts = dict(statistics=("mean", "std", "min", "max"), compartments=("nucleus",),
                    morphology=False)
        quantify(labels, image, channel_names=names, **opts)
    before = _rss_mb()
    t0 = time.perf_counter()
    c0 = time.process_time()
    if method == "ct_intensity":
        from cytotrail.quantify import quantify

        out = quantify(labels, image, channel_names=names, statistics=("mean", "std", "min", "max"),
                       compartments=("nucleus",), morphology=False)
    elif method == "rp_intensity":
        from skimage.measure import regionprops_table

        out = regionprops_table(labels, np.moveaxis(image, 0, -1), properties=INTENSITY_PROPS)
    elif method == "ct_intensity_warm":
        # steady state, as from the second frame of a timelapse on: the same call made
        # once before the clock starts (kernels loaded, memory allocated once)
        out = quantify(labels, image, channel_names=names, **opts)
    elif method == "ct_intensity_2threads":
        from cytotrail.quantify import quantify

        out = quantify(labels, image, channel_names=names, statistics=("mean", "std", "min", "max"),
                       compartments=("nucleus",), morphology=False, threads=2)
    elif method == "ct_compartments":
        from cytotrail.quantify import quantify

        out = quantify(labels, image, channel_names=names, statistics=("mean", "std", "min", "max"),
                       morphology=False)
    elif method == "rp_compartments":
        from skimage.measure import regionprops_table
        from skimage.segmentation import expand_labels

        cells = expand_labels(labels, distance=3.0)  # quantify's default 3 µm at 1 µm/px
        ring = np.where(labels > 0, 0, cells)
        channel_last = np.moveaxis(image, 0, -1)
        out = {}
        for name, lab in (("nucleus", labels), ("cytoplasm", ring), ("cell", cells)):
            table = regionprops_table(lab, channel_last, properties=INTENSITY_PROPS)
            out.update({f"{name}_{k}": v for k, v in table.items()})
    elif method == "ct_shape":
        from cytotrail.quantify import quantify

        out = quantify(labels, image, channel_names=names, statistics=("mean",),
                       compartments=("nucleus",))
    elif method == "rp_shape":
        from skimage.measure import regionprops_table

        out = regionprops_table(labels, properties=SHAPE_PROPS)
    elif method == "ct_default":
        from cytotrail.quantify import quantify

        out = quantify(labels, image, channel_names=names)
    elif method == "ct_median_p90":
        from cytotrail.quantify import quantify

        out = quantify(labels, image, channel_names=names, statistics=("mean", "median", "p90"))
    else:
        raise SystemExit(f"unknown method {method}")
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n_cols = len(out.columns) if hasattr(out, "columns") else len(out)
    print(json.dumps({"method": method, "seconds": seconds, "cpu_s": cpu, "rss_before_mb": before,
                      "peak_rss_mb": peak, "cells": int(n_cells), "columns": n_cols}))


def run(method, args):
    cmd = [sys.executable, __file__, "--child", method, "--size", str(args.size), "--channels",
           str(args.channels), "--cells", str(args.cells)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"{method} failed:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--channels", type=int, default=40)
    p.add_argument("--cells", type=int, default=50000)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--skip-regionprops", action="store_true")
    p.add_argument("--methods", nargs="+", default=None, help="run only these methods")
    args = p.parse_args()
    if args.child:
        child(args.child, args.size, args.channels, args.cells)
        return
    print(f"frame {args.size}x{args.size}, {args.channels} channels (uint16), "
          f"~{args.cells} cells; one fresh process per method")
    results = {}
    methods = ["ct_intensity", "ct_intensity_warm", "ct_intensity_2threads", "rp_intensity",
               "ct_compartments", "rp_compartments", "ct_shape",
               "rp_shape", "ct_default", "ct_median_p90"]
    if args.skip_regionprops:
        methods = [m for m in methods if not m.startswith("rp_")]
    if args.methods:
        methods = [m for m in methods if m in args.methods]
    for m in methods:
        r = run(m, args)
        results[m] = r
        print(f"  {m:15s} {r['seconds']:8.2f} s wall {r['cpu_s']:8.2f} s CPU   peak RSS {r['peak_rss_mb']:8.0f} MB "
              f"(data alone {r['rss_before_mb']:6.0f} MB, +{r['peak_rss_mb'] - r['rss_before_mb']:.0f} MB)"
              f"   cells {r['cells']}, columns {r['columns']}", flush=True)
    if "rp_intensity" in results:
        for what, ours, theirs in (
                (f"nucleus mean/std/min/max x {args.channels} channels", "ct_intensity",
                 "rp_intensity"),
                (f"nucleus mean/std/min/max x {args.channels} channels, cytotrail warm "
                 "(second call: every frame after the first)", "ct_intensity_warm",
                 "rp_intensity"),
                (f"nucleus mean/std/min/max x {args.channels} channels, cytotrail threads=2",
                 "ct_intensity_2threads", "rp_intensity"),
                (f"nucleus+cytoplasm+cell mean/std/min/max x {args.channels} channels "
                 "(regionprops: expand_labels + 3 label images)", "ct_compartments",
                 "rp_compartments"),
                ("morphology (area, centroid, perimeter, eccentricity, solidity, axes, "
                 "orientation)", "ct_shape", "rp_shape")):
            if ours not in results or theirs not in results:
                continue
            a, b = results[ours], results[theirs]
            print(f"{what}:\n    cytotrail {a['seconds']:.2f} s wall / {a['cpu_s']:.2f} s CPU vs "
                  f"regionprops_table {b['seconds']:.2f} s / {b['cpu_s']:.2f} s -> "
                  f"{b['seconds'] / a['seconds']:.1f}x faster (wall), "
                  f"{b['cpu_s'] / a['cpu_s']:.1f}x (CPU)")


if __name__ == "__main__":
    main()
