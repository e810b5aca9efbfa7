"""Per-rule wall times of a workflow run, from Snakemake's `benchmark:` files.

    python benchmarks/rule_times.py [--results results]

Prints, per rule, the number of jobs, the total and the largest wall time in seconds, and
the peak resident memory (max_rss, MB) of its jobs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd


def collect(results):
    rows = []
    for path in sorted(Path(results, "benchmarks").rglob("*.tsv")):
        rule = path.parent.name if path.parent.name != "benchmarks" else path.stem
        bench = pd.read_csv(path, sep="\t")
        rows.append(
            {"rule": rule, "job": path.stem, "s": bench["s"].iloc[0], "max_rss_mb": bench["max_rss"].iloc[0]}
        )
    return pd.DataFrame(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results")
    args = parser.parse_args(argv)
    jobs = collect(args.results)
    if jobs.empty:
        raise SystemExit(f"no benchmark files under {args.results}/benchmarks: run the workflow first")
    jobs["max_rss_mb"] = pd.to_numeric(jobs["max_rss_mb"], errors="coerce")
    table = jobs.groupby("rule").agg(
        jobs=("s", "size"), total_s=("s", "sum"), max_s=("s", "max"), peak_rss_mb=("max_rss_mb", "max")
    )
    print(table.sort_values("total_s", ascending=False).to_string(float_format="%.1f"))
    print(f"\nsum of job wall times: {jobs['s'].sum():.1f} s")


if __name__ == "__main__":
    main()
