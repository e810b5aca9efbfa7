"""Automatic nucleus diameter against the true one: the network's objects (the default) and its
foreground pieces (``measure="foreground"``), in one run.

The estimate is the one ``cytotrail segment IMAGE -o LABELS`` makes with its defaults
(:func:`cytotrail.segment.infer.estimate_diameter`, shipped model, CPU), ``measure="objects"``, beside
the same loop with ``measure="foreground"`` (:mod:`cytotrail.segment.diameter` says why it is not the
default: crowded large nuclei merge, and held-out AP@0.5 fell 0.795 -> 0.791). The true diameter of an image is
the median equivalent-circle diameter of its annotated masks. Printed per set: the median absolute
relative error |estimate / true - 1| and the shares of images within 15 % and 25 %.

- dsb2018_fluo (535 fluorescence images): all, in-distribution families, held-out families
  (:func:`cytotrail.segment.data.held_out_families`) and each acquisition family. Choices (the
  foreground threshold, the waist depth, keeping border pieces) were made on in-distribution images
  and the synthetic frames only; the held-out families are only reported.
- steinbock-mock (15 IMC images, 1 px = 1 um): the nuclear channel (H3K27Ac) against the whole-cell
  masks (DeepCell); nuclei are smaller than cells, so the right estimate is below 1 x. Reported only.
- synthetic tissue frames (:func:`cytotrail.synth.tissue_frame`: irregular textured nuclei ~30 px,
  specks, uneven background): seeds 0-4, a speck-dominated frame (75 specks per nucleus), a frame
  with four nuclei.

Usage: .venv/bin/python benchmarks/bench_diameter.py [--every N] [--threads N] [--no-dsb]

Last run (shared 2-core CPU, --threads 1, all 535 images; median |error| / share within 15 % / 25 %),
objects -> foreground: tissue frames 0.153/0.40/1.00 -> 0.026/1.00/1.00 (speck-dominated 14.5 ->
24.7 px, four nuclei 11.1 -> 26.8 px, true 27-28 px); dsb2018 all 0.065/0.82/0.92 -> 0.047/0.84/0.92,
in-distribution families 0.064/0.82/0.92 -> 0.045/0.85/0.93, held-out families 0.067/0.81/0.90 ->
0.054/0.76/0.85; steinbock-mock against whole cells: estimate / cell diameter 0.70 -> 0.64.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
DSB = DATA / "nuclei" / "dsb2018_fluo"
STEINBOCK = DATA / "multiplex" / "steinbock-mock"
MEASURES = {"objects (default)": "objects", "foreground": "foreground"}


def true_diameter(labels):
    from cytotrail.segment.preprocess import equivalent_diameters

    d = equivalent_diameters(labels)
    return float(np.median(d)) if len(d) else float("nan")


def estimates(image, unet):
    """{measure title: estimate (px) or nan} of one (Y, X) image."""
    from cytotrail.segment.infer import estimate_diameter

    out = {}
    for title, measure in MEASURES.items():
        d = estimate_diameter(np.asarray(image)[None], **unet, measure=measure)
        out[title] = float("nan") if d is None else float(d)
    return out


def summary(rows):
    """'median |err| / within 15 % / within 25 %' per measure of rows (truth, {title: estimate})."""
    cells = []
    for title in MEASURES:
        err = np.array([abs(r[1][title] / r[0] - 1) if np.isfinite(r[1][title]) else np.inf for r in rows])
        cells.append(f"{np.median(err):6.3f} {np.mean(err < 0.15):5.2f} {np.mean(err < 0.25):5.2f}")
    return "   ".join(cells)


def print_header(title):
    head = "   ".join(f"{t:^24}" for t in MEASURES)
    print(f"\n{title}\n  {'set':<34} {'n':>4}   {head}")
    print(f"  {'':<34} {'':>4}   " + "   ".join(f"{'med|err|':>8} {'<15%':>5} {'<25%':>5}" for _ in MEASURES))


def dsb(unet, every):
    import pandas as pd
    import tifffile

    from cytotrail.segment.data import HOLD_OUT_FRACTION, acquisition_family, held_out_families

    table = pd.read_csv(DSB / "manifest.csv")
    images = {i: tifffile.imread(DSB / "images" / f"{i}.tif") for i in table["id"]}
    families = {i: acquisition_family(image) for i, image in images.items()}
    held = held_out_families(list(families.values()), HOLD_OUT_FRACTION)
    groups = defaultdict(list)
    started = time.perf_counter()
    for k, i in enumerate(table["id"]):
        if k % every:
            continue
        row = (true_diameter(tifffile.imread(DSB / "masks" / f"{i}.tif")), estimates(images[i], unet))
        groups["all"].append(row)
        groups["held-out families" if families[i] in held else "in-distribution families"].append(row)
        groups[("held out: " if families[i] in held else "") + families[i]].append(row)
    print_header(f"dsb2018_fluo ({time.perf_counter() - started:.0f} s)")
    for name in ["all", "in-distribution families", "held-out families"] + sorted(
        k for k in groups if k not in ("all", "in-distribution families", "held-out families")
    ):
        print(f"  {name:<34} {len(groups[name]):>4}   {summary(groups[name])}")


def steinbock(unet):
    import pandas as pd
    import tifffile

    panel = pd.read_csv(STEINBOCK / "panel.csv")
    nuclear = int(np.flatnonzero(panel["name"] == "H3K27Ac")[0])
    rows, lines = [], []
    for path in sorted((STEINBOCK / "img").glob("*.tiff")):
        image = tifffile.imread(path)[nuclear]
        truth = true_diameter(tifffile.imread(STEINBOCK / "masks_deepcell" / path.name))
        rows.append((truth, estimates(image, unet)))
        lines.append(f"{path.stem[-7:]} {truth:.1f}: " + "/".join(f"{v:.1f}" for v in rows[-1][1].values()))
    print_header("steinbock-mock, H3K27Ac against whole-cell masks (cells > nuclei: below 1 x expected)")
    print(f"  {'all':<34} {len(rows):>4}   {summary(rows)}")
    ratios = {t: np.median([r[1][t] / r[0] for r in rows]) for t in MEASURES}
    print("  median estimate / cell diameter: " + ", ".join(f"{t} {v:.2f}" for t, v in ratios.items()))
    print("  per image (cell diameter: before/now): " + "; ".join(lines))


def synthetic(unet):
    from cytotrail.synth import tissue_frame

    cases = {f"tissue seed {s}": dict(seed=s, background=0.3 if s % 2 == 0 else 0.0) for s in range(5)}
    cases["speck-dominated (20 nuclei, 1500 specks)"] = dict(seed=5, n_nuclei=20, n_specks=1500)
    cases["very few nuclei (4)"] = dict(seed=6, n_nuclei=4, n_specks=300)
    rows = {}
    for name, options in cases.items():
        image, labels = tissue_frame(**options)
        rows[name] = (true_diameter(labels), estimates(image, unet))
    print_header("synthetic tissue frames (irregular nuclei, specks, uneven background)")
    print(f"  {'tissue seeds 0-4':<34} {5:>4}   {summary([r for n, r in rows.items() if 'seed' in n])}")
    for name, (truth, est) in rows.items():
        print(f"  {name:<34} true {truth:5.1f} px: " + ", ".join(f"{t} {v:5.1f}" for t, v in est.items()))


def main(argv=None):
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=1, help="every N-th dsb2018 image (a quick look)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--no-dsb", action="store_true", help="skip dsb2018 (the slow part)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from cytotrail.segment.model import load_model

    net, config, thresholds = load_model(None, device="cpu")
    unet = dict(net=net, config=config, thresholds=thresholds, device=torch.device("cpu"))
    synthetic(unet)
    if STEINBOCK.is_dir():
        steinbock(unet)
    else:
        print(f"\n{STEINBOCK} not found: steinbock-mock skipped")
    if args.no_dsb:
        return 0
    if not (DSB / "manifest.csv").is_file():
        print(f"\n{DSB} not found: dsb2018 skipped")
        return 0
    dsb(unet, max(1, args.every))
    return 0


if __name__ == "__main__":
    sys.exit(main())
