"""Score a workflow run against the synthetic demo's ground truth.

For every sample whose image was generated under resources/demo/, prints segmentation
F1@IoU0.5; link F1 and division F1, where a link counts only when both its nuclei were
segmented and matched to the truth (segmentation errors count against tracking); link F1
among matched nuclei only (the tracker alone); and over all samples the adjusted Rand
index of `cell_type` and of `leiden` against the true types.

    python benchmarks/score_demo.py [--results results] [--demo resources/demo]

Targets (issue 2): segmentation F1 >= 0.9, link F1 >= 0.95, ARI(cell_type) >= 0.8.
Each figure is printed with its verdict; with --strict, a missed target gives exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from cytotrail import io
from cytotrail.segment.metrics import match_labels

TARGETS = {"segmentation_f1": 0.9, "link_f1": 0.95, "ari_cell_type": 0.8}


def match_frames(true, pred):
    """Map (frame, predicted label) to the true label matched at IoU >= 0.5, per frame."""
    mapping = {}
    tp = fp = fn = 0
    for t, (true_t, pred_t) in enumerate(zip(true, pred)):
        m = match_labels(true_t, pred_t, iou=0.5)
        tp, fp, fn = tp + m["tp"], fp + m["fp"], fn + m["fn"]
        mapping.update({(t, int(p)): int(g) for g, p in m["pairs"]})
    return mapping, 2 * tp / max(2 * tp + fp + fn, 1)


def links(tracks, *, track="track_id", parent="parent_track_id", label="label"):
    """Links of a track table: consecutive appearances of a track, and mother -> daughter.

    Returns two sets of ((frame, label), (frame, label)) pairs: all links and division links.
    """
    ordered = tracks.sort_values([track, "frame"])
    nodes = list(zip(ordered["frame"], ordered[label]))
    same = ordered[track].to_numpy()
    all_links = {(nodes[i], nodes[i + 1]) for i in range(len(nodes) - 1) if same[i] == same[i + 1]}
    first = ordered.groupby(track).head(1)
    last = ordered.groupby(track).tail(1).set_index(track)
    divisions = set()
    for _, row in first[first[parent].notna()].iterrows():
        mother = int(row[parent])
        if mother in last.index:
            end = last.loc[mother]
            divisions.add(((int(end["frame"]), int(end[label])), (int(row["frame"]), int(row[label]))))
    return all_links | divisions, divisions


def f1(found, truth):
    tp = len(found & truth)
    return 2 * tp / max(len(found) + len(truth), 1)


def score_sample(sample, results, demo):
    true_labels = io.read_labels(demo / "truth" / f"{sample}_labels.tif")
    pred_labels = io.read_labels(results / sample / "labels.tif")
    mapping, seg_f1 = match_frames(true_labels, pred_labels)

    true_tracks = io.read_table(demo / "truth" / f"{sample}_tracks.csv")
    true_tracks["parent_track_id"] = true_tracks["parent_track_id"].astype("Int64")
    true_links, true_divisions = links(true_tracks)

    pred_tracks = io.read_table(results / sample / "tracks.parquet")
    pred_links, pred_divisions = links(pred_tracks)

    def to_truth(link_set):
        mapped = set()
        for a, b in link_set:
            if a in mapping and b in mapping:
                mapped.add(((a[0], mapping[a]), (b[0], mapping[b])))
            else:
                mapped.add((("unmatched",) + a, b))  # cannot be a true link
        return mapped

    # the tracker alone: links between nuclei that segmentation found (both ends matched)
    true_nodes = {(t, g) for (t, _), g in mapping.items()}
    matched_links = {link for link in true_links if link[0] in true_nodes and link[1] in true_nodes}
    found_matched = {link for link in to_truth(pred_links) if link[0][0] != "unmatched"}
    return (
        {
            "sample": sample,
            "segmentation_f1": seg_f1,
            "link_f1": f1(to_truth(pred_links), true_links),
            "link_f1_matched": f1(found_matched, matched_links),
            "division_f1": f1(to_truth(pred_divisions), true_divisions),
            "true_divisions": len(true_divisions),
            "found_divisions": len(pred_divisions),
        },
        mapping,
        true_tracks,
    )


def main(argv=None):
    from sklearn.metrics import adjusted_rand_score

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results", type=Path)
    parser.add_argument("--demo", default="resources/demo", type=Path)
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when a target is missed")
    args = parser.parse_args(argv)

    import anndata

    adata = anndata.read_h5ad(args.results / "cells.h5ad")
    obs = adata.obs
    rows, truth_rows = [], []
    for sample in sorted(obs["sample"].astype(str).unique()):
        if not (args.demo / "truth" / f"{sample}_labels.tif").is_file():
            continue
        row, mapping, true_tracks = score_sample(sample, args.results, args.demo)
        rows.append(row)
        true_type = dict(zip(zip(true_tracks["frame"], true_tracks["label"]), true_tracks["cell_type"]))
        cells = obs[obs["sample"].astype(str) == sample]
        for frame, label, cell_type, leiden in zip(
            cells["frame"], cells["label"], cells["cell_type"], cells["leiden"]
        ):
            key = (int(frame), int(label))
            if key in mapping:
                truth_rows.append((true_type[(key[0], mapping[key])], str(cell_type), str(leiden)))
    if not rows:
        sys.exit(f"no demo samples with ground truth under {args.demo}")
    table = pd.DataFrame(rows)
    truth = pd.DataFrame(truth_rows, columns=["truth", "cell_type", "leiden"])
    pd.set_option("display.width", 120)
    print(table.to_string(index=False, float_format="%.3f"))
    overall = {
        "segmentation_f1": table["segmentation_f1"].mean(),
        "link_f1": table["link_f1"].mean(),
        "link_f1_matched": table["link_f1_matched"].mean(),
        "division_f1": table["division_f1"].mean(),
        "ari_cell_type": adjusted_rand_score(truth["truth"], truth["cell_type"]),
        "ari_leiden": adjusted_rand_score(truth["truth"], truth["leiden"]),
        "unknown_fraction": float(np.mean(truth["cell_type"] == "unknown")),
    }
    print()
    missed = []
    for key, value in overall.items():
        target = TARGETS.get(key)
        verdict = (
            "" if target is None else (f"  (target >= {target}: " + ("ok)" if value >= target else "MISSED)"))
        )
        if target is not None and value < target:
            missed.append(key)
        print(f"{key:>16}: {value:.3f}{verdict}")
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
