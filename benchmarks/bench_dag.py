"""How long Snakemake takes to plan cytotrail for many samples (issue 6's scale target).

    python benchmarks/bench_dag.py [--samples 500] [--frames 100]

Builds a sample sheet of N samples, each a TCYX image of F frames (symlinks to one real
OME-TIFF, so that every sample's header is really read and checked), and times a dry run
of the whole workflow for 1 sample and for N samples. Prints the wall times, the number of
jobs, and the per-job planning overhead. Target: 500 samples x 100 frames in under 15 s.

Job granularity: one job per sample and stage (not per frame), so the job count grows with
samples only: 5 jobs per sample + 3 joint jobs. A per-frame design would plan 100x more jobs.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]


def write_project(workdir, n_samples, image):
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    (workdir / "config").mkdir(parents=True, exist_ok=True)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    (workdir / "images").mkdir(exist_ok=True)
    rows = ["sample\timage"]
    for i in range(n_samples):
        link = workdir / "images" / f"field{i:04d}.ome.tif"
        if not link.exists():
            link.symlink_to(image)
        rows.append(f"field{i:04d}\timages/{link.name}")
    (workdir / "config" / "samples.tsv").write_text("\n".join(rows) + "\n")


def dry_run(workdir):
    snakemake = str(Path(sys.executable).parent / "snakemake")
    start = time.perf_counter()
    proc = subprocess.run(
        [
            snakemake,
            "--snakefile",
            str(ROOT / "Snakefile"),
            "--directory",
            str(workdir),
            "--cores",
            "2",
            "--dry-run",
            "--quiet",
            "rules",
        ],
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    total = re.search(r"^total\s+(\d+)", proc.stdout + proc.stderr, re.M)
    return elapsed, int(total.group(1)) if total else 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--frames", type=int, default=100)
    args = parser.parse_args(argv)

    from cytotrail import io
    from cytotrail.synth import NUCLEAR_CHANNEL, default_panel

    names = [NUCLEAR_CHANNEL] + [m.name for m in default_panel()]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        image = tmp / "movie.ome.tif"
        io.write_image(image, np.zeros((args.frames, len(names), 32, 32), np.uint16), channel_names=names)
        results = {}
        for n in (1, args.samples):
            workdir = tmp / f"n{n}"
            write_project(workdir, n, image)
            dry_run(workdir)  # warm the file-system cache
            results[n] = dry_run(workdir)
    (t1, jobs1), (tn, jobsn) = results[1], results[args.samples]
    print(f"samples x frames      : {args.samples} x {args.frames}")
    print(f"dry run, 1 sample     : {t1:6.2f} s ({jobs1} jobs)")
    print(
        f"dry run, {args.samples} samples : {tn:6.2f} s ({jobsn} jobs)  target < 15 s: "
        f"{'ok' if tn < 15 else 'MISSED'}"
    )
    print(f"planning per job      : {1000 * (tn - t1) / max(jobsn - jobs1, 1):6.2f} ms")
    print(f"planning per sample   : {1000 * (tn - t1) / max(args.samples - 1, 1):6.2f} ms")
    return 0 if tn < 15 else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
