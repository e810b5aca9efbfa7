"""Post-processing benchmark: network maps to labels, cytotrail's h-maxima against skimage's.

The unet backend turns its two maps into labels with a seeded watershed whose seeds are
the h-maxima of the centre-ness map. cytotrail computes them with a union-find over the
pixels above the seed floor (numba); skimage.morphology.h_maxima uses a grey
reconstruction. This script runs the shipped network once per image and then, on the
same maps, in the same run:

- ``h_maxima`` alone: cytotrail against skimage, and whether they mark the same pixels
  above the seed threshold (skimage also marks a pixel within float rounding, ~1e-6,
  below a neighbour: such pixels are the only differences);
- ``maps_to_labels`` whole: as shipped, against the same function with skimage's
  h_maxima, and how many label images are identical.

- ``maps_to_labels_torch`` (the device path of issue 14, here on the CPU or ``--device``)
  against ``maps_to_labels``: time, identical label images, objects matched at
  IoU >= 0.95, and, on dsb2018, AP@0.5 against the true masks for both.

Images: a synthetic 2048 x 2048 frame (4000 nuclei), and the dsb2018_fluo `val` images
at 3 diameters when ../shared/data is present.

Usage: .venv/bin/python benchmarks/bench_postprocess.py [--threads N] [--device D] [--skip-skimage]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from bench_segment import dsb_val


def _skimage_h_maxima(image, h, *, floor=None):
    from skimage.morphology import h_maxima

    return h_maxima(np.asarray(image, np.float32), np.float32(h)).astype(bool)


def _timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def compare(cases, thresholds):
    """Time and compare both ways on (name, fg, centre, diameter) cases."""
    from cytotrail.segment import postprocess

    shipped_h_maxima = postprocess.h_maxima
    t_ours = t_sk = t_lab_ours = t_lab_sk = 0.0
    same_peaks = same_labels = differing_pixels = 0
    floor = thresholds["seed"] - thresholds["h"]
    for _, fg, centre, diameter in cases:
        ours, t = _timed(shipped_h_maxima, centre, thresholds["h"], floor=floor)
        t_ours += t
        ref, t = _timed(_skimage_h_maxima, centre, thresholds["h"])
        t_sk += t
        above = centre > thresholds["seed"]
        same_peaks += bool(np.array_equal(ours & above, ref & above))
        differing_pixels += int(((ours != ref) & above).sum())
        (lab_ours, _), t = _timed(
            postprocess.maps_to_labels, fg, centre, diameter=diameter, thresholds=thresholds
        )
        t_lab_ours += t
        postprocess.h_maxima = _skimage_h_maxima
        try:
            (lab_ref, _), t = _timed(
                postprocess.maps_to_labels, fg, centre, diameter=diameter, thresholds=thresholds
            )
        finally:
            postprocess.h_maxima = shipped_h_maxima
        t_lab_sk += t
        same_labels += bool(np.array_equal(lab_ours, lab_ref))
    n = len(cases)
    print(
        f"  h_maxima        cytotrail {t_ours:7.2f} s   skimage {t_sk:7.2f} s   "
        f"{t_sk / t_ours:5.1f}x   same seeds above `seed` in {same_peaks}/{n} "
        f"({differing_pixels} pixel(s) differ)"
    )
    print(
        f"  maps_to_labels  cytotrail {t_lab_ours:7.2f} s   with skimage's {t_lab_sk:7.2f} s   "
        f"{t_lab_sk / t_lab_ours:5.1f}x   identical labels in {same_labels}/{n}"
    )


def compare_torch(cases, thresholds, device, truths=None):
    """maps_to_labels_torch against maps_to_labels on (name, fg, centre, diameter) cases."""
    import torch

    from cytotrail.segment.metrics import average_precision, match_labels
    from cytotrail.segment.postprocess import maps_to_labels
    from cytotrail.segment.postprocess_torch import maps_to_labels_torch

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    t_host = t_dev = 0.0
    identical = matched = objects = 0
    ap_host, ap_dev = [], []
    for k, (_, fg, centre, diameter) in enumerate(cases):
        (host, _), t = _timed(maps_to_labels, fg, centre, diameter=diameter, thresholds=thresholds)
        t_host += t
        fg_d, centre_d = torch.from_numpy(fg).to(device), torch.from_numpy(centre).to(device)
        sync()
        t = time.perf_counter()
        dev, _ = maps_to_labels_torch(fg_d, centre_d, diameter=diameter, thresholds=thresholds)
        dev = dev[0].cpu().numpy()
        t_dev += time.perf_counter() - t
        identical += bool(np.array_equal(host, dev))
        n = max(int(host.max()), int(dev.max()))
        objects += n
        matched += match_labels(host, dev, iou=0.95)["tp"] if n else 0
        if truths is not None:
            ap_host.append(average_precision(truths[k], host, thresholds=(0.5,))[0.5])
            ap_dev.append(average_precision(truths[k], dev, thresholds=(0.5,))[0.5])
    n = len(cases)
    print(
        f"  torch ({device.type})  {t_dev:7.2f} s   numba/scipy {t_host:7.2f} s   "
        f"torch / host time {t_dev / t_host:5.2f}   identical labels in {identical}/{n}   "
        f"objects matched at IoU >= 0.95: {matched}/{objects} ({100 * matched / max(objects, 1):.2f} %)"
    )
    if truths is not None:
        print(
            f"  AP@0.5 against the true masks: numba/scipy {np.mean(ap_host):.4f}   torch "
            f"{np.mean(ap_dev):.4f}   difference {np.mean(ap_dev) - np.mean(ap_host):+.4f}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="device of the torch post-processing")
    parser.add_argument("--skip-skimage", action="store_true", help="only the torch comparison")
    args = parser.parse_args()
    import torch

    from cytotrail.segment.device import select_device
    from cytotrail.segment.model import load_model
    from cytotrail.segment.postprocess import h_maxima
    from cytotrail.segment.tiled import _segment_maps_frame
    from cytotrail.synth import make_timelapse

    torch.set_num_threads(args.threads)
    device = select_device(args.device)
    net, config, thresholds = load_model(None)
    h_maxima(np.zeros((8, 8), np.float32), 0.1)  # numba: load or compile the kernel first

    def maps(image, diameter):
        return _segment_maps_frame(
            image, net=net, config=config, device=torch.device("cpu"), diameter=diameter, normalized=False
        )

    frame = make_timelapse(n_frames=1, shape=(2048, 2048), n_cells=4000, diameter=18, seed=3).image[0, 0]
    m = maps(frame, 18.0)
    print("synthetic 2048 x 2048 frame, 4000 nuclei, 1 map")
    if not args.skip_skimage:
        compare([("synthetic", m[0], m[1], 18.0)], thresholds)
    compare_torch([("synthetic", m[0], m[1], 18.0)], thresholds, device)
    val = dsb_val()
    if not val:  # dsb_val() has said why
        return 0
    cases, truths = [], []
    for k, (image, truth) in enumerate(val):
        for d in (9.0, 18.0, 30.0):
            m = maps(image, d)
            cases.append((f"val{k}@{d}", m[0], m[1], d))
            truths.append(truth)
    print(f"dsb2018_fluo val: {len(val)} images x 3 diameters (9, 18, 30 px) = {len(cases)} maps")
    if not args.skip_skimage:
        compare(cases, thresholds)
    compare_torch(cases, thresholds, device, truths)
    return 0


if __name__ == "__main__":
    sys.exit(main())
