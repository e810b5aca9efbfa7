"""Whole-cell masks on the synthetic multiplexed demo: grown cells vs the nucleus + ring.

Usage::

    .venv/bin/python benchmarks/bench_cells.py [--nuclei true unet] [--frames N] [--dev]
        [--steinbock]

The demo's two samples (``cytotrail.synth.make_timelapse`` with the demo config's size,
frames, cells and seeds 0 and 1) and their true whole cells (``Timelapse.cells``). From the
same nuclei, in the same run, two cell masks are scored with F1@0.5 and the mean IoU of
the matched cells (``cytotrail.segment.metrics``) against the true cells:

- ``ring``: today's default, the nucleus grown by the demo config's ``quantify.cytoplasm_um``
  (``expand_labels``, what ``quantify`` measures as the cell without ``cells=``);
- ``grown``: :func:`cytotrail.segment.cells.grow_cells` over the four type markers
  (CD3, CD20: membrane; CD68, PanCK: cytoplasm) with its defaults.

The nuclei are the true ones (``--nuclei true``) and/or cytotrail's U-Net segmentation of
the DNA channel (``--nuclei unet``, about a minute on 2 CPU cores). The defaults of
``grow_cells`` (``EDGE_FRACTION``, ``SMOOTH_PX``, ``MIN_UM``) were chosen on a separate dev
timelapse (``--dev``: seed 100, 5 frames), never on the demo seeds reported here.

Note on the synthetic truth: a true cell is its nucleus grown by 4 px, and the demo's ring
is 3 µm = 3 px, so the ring is close to the truth by construction; the grown cells do not
know that width and find the edges from the marker signal alone.

Last run (``python benchmarks/bench_cells.py --steinbock``, shared 2-core CPU, demo seeds
0/1, 20 frames of 256 x 256 each; defaults EDGE_FRACTION 0.5, SMOOTH_PX 0, MIN_UM 2)::

    sample   nuclei method  F1@0.5  mean IoU  time s
    demo_a   true   ring     1.000     0.865    0.05
    demo_a   true   grown    0.991     0.824    0.34
    demo_a   unet   ring     0.993     0.842    0.06
    demo_a   unet   grown    0.982     0.816    0.34
    demo_b   true   ring     1.000     0.858    0.05
    demo_b   true   grown    0.983     0.822    0.33
    demo_b   unet   ring     0.992     0.841    0.05
    demo_b   unet   grown    0.976     0.817    0.33
    steinbock unet   ring     0.524     0.684
    steinbock unet   grown    0.585     0.692

The target (grown cells F1@0.5 >= 0.9 against the true cells) is met on both samples, from
true and from segmented nuclei; the ring scores higher on the demo only because the
synthetic truth is a ring of nearly its width (see above). On the real IMC images (scored
against DeepCell's masks, reported only) the grown cells beat the ring: 0.585 vs 0.524.
Before the nuclear channel's shot noise was smoothed ahead of the network
(:func:`cytotrail.segment.preprocess.denoise_sigma`) they did not: 0.411 vs 0.462 (0.077
before MIN_UM, when cells negative for Cytokeratin 5 stayed at their
nucleus). Dev timelapse (``--dev``, the only data that chose the defaults): grown 0.936
(true nuclei) without the minimum ring, 0.991 with MIN_UM 2 (2 and 3 µm tied; the smaller
kept).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
MARKERS = ["CD3", "CD20", "CD68", "PanCK"]


def score(true, pred):
    from cytotrail.segment.metrics import f1_score, match_labels

    ious = [match_labels(t, p)["mean_iou"] for t, p in zip(true, pred)]
    return f1_score(true, pred, iou=0.5), float(np.nanmean(ious))


def pad_stack(frames):
    """Frames of different sizes as one (T, Y, X) stack, zero-padded at the bottom right."""
    h = max(f.shape[0] for f in frames)
    w = max(f.shape[1] for f in frames)
    return np.stack([np.pad(f, ((0, h - f.shape[0]), (0, w - f.shape[1]))) for f in frames])


def steinbock(ring_um):
    """Real IMC (steinbock mock, 15 images): cells grown from cytotrail's nuclei over the
    membrane channel DeepCell used (Cytokeratin 5) vs the same nuclei + ring, both scored
    against DeepCell's whole-cell masks (another tool's output, not a curated truth)."""
    import pandas as pd
    from skimage.segmentation import expand_labels

    from cytotrail import io
    from cytotrail.segment import segment
    from cytotrail.segment.cells import grow_cells, membrane_channels

    folder = ROOT.parent / "shared" / "data" / "multiplex" / "steinbock-mock"
    if not folder.is_dir():
        print(f"steinbock: skipped, {folder} not found")
        return
    names = pd.read_csv(folder / "panel.csv")["name"].tolist()
    true, ring, grown = [], [], []
    for path in sorted((folder / "img").glob("*.tiff")):
        image, _ = io.read_image(path, axes="CYX", channel_names=names)
        nuclei = segment(image[:, names.index("H3K27Ac")], device="cpu")
        true.append(io.read_labels(folder / "masks_deepcell" / path.name)[0])
        ring.append(expand_labels(nuclei[0], ring_um))  # 1 px = 1 µm
        grown.append(grow_cells(nuclei, membrane_channels(image, names, ["Cytokeratin 5"]))[0])
    for method, cells in (("ring", ring), ("grown", grown)):
        f1, iou = score(pad_stack(true), pad_stack(cells))
        print(f"{'steinbock':9} {'unet':6} {method:6} {f1:7.3f} {iou:9.3f}", flush=True)


def main():
    from skimage.segmentation import expand_labels

    from cytotrail.segment import segment
    from cytotrail.segment.cells import grow_cells, membrane_channels
    from cytotrail.synth import make_timelapse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nuclei", nargs="+", default=["true", "unet"], choices=["true", "unet"])
    parser.add_argument("--frames", type=int, default=None, help="frames per sample (default: demo's)")
    parser.add_argument("--dev", action="store_true", help="the dev timelapse (seed 100) instead")
    parser.add_argument(
        "--steinbock",
        action="store_true",
        help="also the real IMC images of ../shared/data (reported, not tuned on)",
    )
    args = parser.parse_args()

    logging.basicConfig(level=logging.WARNING)
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    demo = config["demo"]
    ring_px = config["quantify"]["cytoplasm_um"] / config["pixel_size_um"]
    if args.dev:
        samples = {"dev": dict(seed=100, frames=5)}
    else:
        samples = {
            name: dict(seed=demo["seed"] + i, frames=demo["frames"])
            for i, name in enumerate(["demo_a", "demo_b"])
        }
    print(f"{'sample':8} {'nuclei':6} {'method':6} {'F1@0.5':>7} {'mean IoU':>9} {'time s':>7}")
    for sample, spec in samples.items():
        data = make_timelapse(
            n_frames=args.frames or spec["frames"],
            shape=(demo["size"], demo["size"]),
            n_cells=demo["cells"],
            seed=spec["seed"],
        )
        channels = membrane_channels(data.image, data.channel_names, MARKERS)
        for source in args.nuclei:
            if source == "true":
                nuclei = data.labels
            else:
                nuclei = segment(data.image[:, data.channel_names.index("DNA")], device="cpu")
            start = time.perf_counter()
            ring = np.stack([expand_labels(lab, ring_px) for lab in nuclei])
            t_ring = time.perf_counter() - start
            start = time.perf_counter()
            grown = grow_cells(nuclei, channels, pixel_size_um=config["pixel_size_um"])
            t_grown = time.perf_counter() - start
            for method, cells, seconds in (("ring", ring, t_ring), ("grown", grown, t_grown)):
                f1, iou = score(data.cells, cells)
                print(f"{sample:8} {source:6} {method:6} {f1:7.3f} {iou:9.3f} {seconds:7.2f}", flush=True)
    if args.steinbock:
        steinbock(config["quantify"]["cytoplasm_um"])


if __name__ == "__main__":
    main()
