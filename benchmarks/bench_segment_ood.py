"""Leave-family-out segmentation benchmark: in-distribution val against held-out acquisition families.

The dsb2018_fluo images are grouped into acquisition families by a fixed rule in code
(:func:`cytotrail.segment.data.acquisition_family`: dtype, image size, intensity level) and
whole families are held out (:func:`cytotrail.segment.data.held_out_families`, at most 15 % of
the images, families taken in sha1 order of their names, blind to any score). Prints, in one
run, AP@0.5/0.75/0.9 (TP / (TP + FP + FN), automatic diameter, each image segmented alone as a
user would) of the unet backend and of the classical watershed backend on:

- ``in-distribution val``: the manifest's `val` images outside the held-out families;
- ``held-out families``: every image (train or val split) of the held-out families.

The held-out families are never used for any choice (thresholds, rescaling band, augmentation,
architecture, training length): those are chosen on in-distribution val only; the held-out score
is only reported. A model whose training records (its own and those of the models it was
fine-tuned from) do not all list the held-out families as excluded has seen their `train`
images, and the script says so beside its score. One use of the held-out score: new shipped
weights (already chosen on val) are not adopted when it would drop (a veto, never a ranking).

Usage: .venv/bin/python benchmarks/bench_segment_ood.py [--model DIR] [--limit N] [--threads N] [--tta]
    [--true-diameter]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DSB = ROOT / ".." / "shared" / "data" / "nuclei" / "dsb2018_fluo"


def family_splits(limit=None, root=None):
    """{"in-distribution val": [...], "held-out families": [...]} of (id, image, labels, family)."""
    import pandas as pd
    import tifffile

    from cytotrail.segment.data import HOLD_OUT_FRACTION, acquisition_family, held_out_families

    root = Path(root or DSB)
    table = pd.read_csv(root / "manifest.csv")
    rows = []
    for i, split in zip(table["id"], table["split"]):
        image = tifffile.imread(root / "images" / f"{i}.tif")
        rows.append((i, split, image, acquisition_family(image)))
    held = held_out_families([r[3] for r in rows], HOLD_OUT_FRACTION)
    out = {"in-distribution val": [], "held-out families": []}
    for i, split, image, family in rows:
        key = "held-out families" if family in held else ("in-distribution val" if split == "val" else None)
        if key and (limit is None or len(out[key]) < limit):
            out[key].append((i, image, tifffile.imread(root / "masks" / f"{i}.tif"), family))
    return out, held


def scores(cases, options):
    from cytotrail.segment import segment
    from cytotrail.segment.metrics import average_precision
    from cytotrail.segment.preprocess import equivalent_diameters

    aps, started = [], time.perf_counter()
    for _, image, truth, _ in cases:
        given = dict(options)
        if given.get("diameter_px") == "true":  # the oracle: the annotation's median diameter
            given["diameter_px"] = float(np.median(equivalent_diameters(truth)))
        aps.append(average_precision(truth, segment(image, device="cpu", **given)[0]))
    row = {k: float(np.mean([a[k] for a in aps])) for k in (0.5, 0.75, 0.9)}
    row["seconds"] = time.perf_counter() - started
    row["per_image"] = [a[0.5] for a in aps]
    return row


def main(argv=None):
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: the shipped nuclei_unet)")
    parser.add_argument(
        "--data", type=Path, default=DSB, help="the dsb2018_fluo folder (default: ../shared's)"
    )
    parser.add_argument("--limit", type=int, default=None, help="at most N images per split (a quick look)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--tta", action="store_true", help="also the unet backend with flip test-time augmentation"
    )
    parser.add_argument(
        "--true-diameter",
        action="store_true",
        help="also the unet backend given each image's true median nucleus diameter (an oracle no user "
        "has: how much of the gap is the diameter estimate, how much the network)",
    )
    args = parser.parse_args(argv)
    if not (args.data / "manifest.csv").is_file():
        print(f"{args.data} not found: nothing to benchmark")
        return 0
    torch.set_num_threads(args.threads)
    from cytotrail.segment.model import load_model

    _, config, _ = load_model(args.model)
    splits, held = family_splits(args.limit, args.data)
    # every training in the model's lineage (a fine-tune's init, its init, ...) must have excluded them
    record, lineage = config.get("training"), []
    while record:
        lineage.append(set(record.get("held_out_families") or []))
        record = record.get("init_training")
    excluded = set.intersection(*lineage) if lineage else set()
    print(f"model: {args.model or 'nuclei_unet (shipped)'}, weights sha256 {config['weights_sha256'][:12]}")
    print(f"held-out families ({len(held)}, never used for any choice): {', '.join(sorted(held))}")
    if held <= excluded:
        print("the model's training excluded every held-out family: the held-out score is leave-family-out")
    else:
        print(
            "WARNING: a training in the model's lineage did not exclude the held-out families (it saw "
            "their train images): its held-out score is not a leave-family-out score"
        )
    backends = {"unet": {"model": args.model}}
    if args.tta:
        backends["unet + flip TTA"] = {"model": args.model, "tta": True}
    if args.true_diameter:
        backends["unet, true diameter"] = {"model": args.model, "diameter_px": "true"}
    backends["watershed (classical)"] = {"backend": "watershed"}
    for title, cases in splits.items():
        fams = Counter(c[3] for c in cases)
        print(f"\n{title}: {len(cases)} images, {len(fams)} families")
        print(f"  {'backend':<24} {'AP@0.5':>7} {'AP@0.75':>8} {'AP@0.9':>7} {'time s':>7}")
        rows = {name: scores(cases, options) for name, options in backends.items()}
        for name, r in rows.items():
            print(f"  {name:<24} {r[0.5]:7.3f} {r[0.75]:8.3f} {r[0.9]:7.3f} {r['seconds']:7.1f}")
        if title.startswith("held-out"):
            print(
                "  per family, AP@0.5 (n): "
                + "; ".join(
                    f"{f} "
                    + "/".join(
                        f"{np.mean([a for a, c in zip(r['per_image'], cases) if c[3] == f]):.3f}"
                        for r in rows.values()
                    )
                    + f" ({n})"
                    for f, n in sorted(fams.items())
                )
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
