"""The demo workflow through `--profile profiles/slurm` on a real (local, one-node) SLURM.

Start one with `bash profiles/slurm/local-slurm.sh start` (root, Debian); `.ci/run` does.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, prepare_demo, snakemake
from test_faults import _assert_same_results

pytestmark = [pytest.mark.cluster, pytest.mark.workflow]

JOBCOMP = "/var/tmp/cytotrail-slurm/jobcomp.log"


def _slurm_node_state():
    if shutil.which("sinfo") is None:
        return None
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


@pytest.fixture
def slurm():
    state = _slurm_node_state()
    if state not in ("idle", "mixed", "allocated", "completing"):
        pytest.skip(
            "no SLURM cluster answers here: start one with "
            "`bash profiles/slurm/local-slurm.sh start` (needs root and apt)"
        )


def test_demo_runs_as_slurm_jobs_and_matches_the_local_run(slurm, demo_run, tmp_path):
    workdir = prepare_demo(tmp_path)
    proc = snakemake(
        workdir,
        "--profile",
        str(ROOT / "profiles" / "slurm"),
        "--jobs",
        "4",
        "--default-resources",
        "slurm_partition=debug",
        "mem_mb=1500",
        "runtime=30",
        # the one local node has no GPU: ask for none
        "--set-resources",
        "segment_nuclei:gpu=0",
        "--slurm-no-account",
        "--slurm-init-seconds-before-status-checks",
        "1",
        "--seconds-between-status-checks",
        "2",
        timeout=1500,
    )
    out = proc.stdout + proc.stderr
    submitted = dict(re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", out))
    run_id = re.search(r"SLURM run ID: ([0-9a-f-]+)", out).group(1)
    # SLURM's own record of every job of this run (jobcomp/filetxt)
    records = [line for line in Path(JOBCOMP).read_text().splitlines() if f"Name={run_id}" in line]
    completed = {re.search(r"JobId=(\d+)", r).group(1) for r in records if "JobState=COMPLETED" in r}
    assert submitted and set(submitted.values()) <= completed
    # every rule but the local target ran under SLURM: per-sample CPU steps grouped
    assert "segment_nuclei" in out and "cluster_cells" in out
    n_jobs = len(submitted)
    assert n_jobs >= 2 + 2 + 1 + 1  # demo + segmentation per sample, clustering, summary (+ groups)
    _assert_same_results(workdir, demo_run)
