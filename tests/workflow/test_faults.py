"""Faults lose nothing: a killed run resumes to identical outputs, failed jobs are retried,
other samples go on, and a full or read-only disk gives a clear error and no corrupt file."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import prepare_demo, result_files, snakemake, snakemake_command

pytestmark = pytest.mark.workflow


def _processes(pattern):
    """PIDs of processes whose command line contains ``pattern``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if pattern in cmdline:
                found.append(int(entry.name))
    return found


def _start(workdir, *args):
    cmd, env = snakemake_command(workdir, *args)
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
    )


def _wait_for(pattern, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        pids = _processes(pattern)
        if pids:
            return pids
        time.sleep(0.05)
    raise AssertionError(f"no process matching {pattern!r} within {timeout} s")


def _assert_same_results(run, reference):
    import anndata

    from cytotrail import io

    files, expected = result_files(run), result_files(reference)
    assert files.keys() == expected.keys()
    for name, path in files.items():
        if name.endswith(".h5ad"):  # HDF5 embeds timestamps: compare content
            a, b = anndata.read_h5ad(path), anndata.read_h5ad(expected[name])
            pd.testing.assert_frame_equal(a.obs, b.obs)
            np.testing.assert_array_equal(a.X, b.X)
            np.testing.assert_array_equal(a.obsm["X_umap"], b.obsm["X_umap"])
        elif name.endswith(".html"):  # the report embeds run times and dates
            assert path.stat().st_size > 0
        elif name.endswith(".tif"):
            np.testing.assert_array_equal(io.read_labels(path), io.read_labels(expected[name]))
        else:
            assert path.read_bytes() == expected[name].read_bytes(), name


def test_sigkill_during_segmentation_then_same_command_resumes(demo_run, tmp_path):
    workdir = prepare_demo(tmp_path)
    run = _start(workdir)
    _wait_for("cytotrail segment")
    os.killpg(run.pid, signal.SIGKILL)  # snakemake and every job it started
    run.communicate()
    for pid in _processes(str(workdir)):
        os.kill(pid, signal.SIGKILL)
    assert not (workdir / "results" / "cells.h5ad").exists()
    snakemake(workdir)  # the very same command
    _assert_same_results(workdir, demo_run)


def test_job_killed_on_its_node_is_retried(tmp_path):
    workdir = prepare_demo(tmp_path)
    run = _start(workdir, "--retries", "1", "--keep-going")
    victim = _wait_for("cytotrail segment")
    for pid in victim:
        os.kill(pid, signal.SIGKILL)
    out, _ = run.communicate(timeout=600)
    assert run.returncode == 0, out[-3000:]
    # Snakemake's own retry line (job_scheduler: "Trying to restart job N."), nothing looser:
    # any other mention of a restart must not pass for a retry
    assert re.search(r"Trying to restart job \d+\.", out), out[-3000:]
    assert (workdir / "results" / "cells.h5ad").is_file()


def test_keep_going_finishes_the_other_samples(tmp_path):
    import tifffile

    from cytotrail import io
    from cytotrail.synth import make_timelapse, write_dataset

    workdir = prepare_demo(tmp_path, **{"segment.backend": "labels"})
    for sample, shape in (("good", (64, 64)), ("bad", (64, 64))):
        data = make_timelapse(n_frames=3, shape=shape, n_cells=6, seed=7)
        write_dataset(workdir / "data", data, sample=sample)
    io.write_labels(
        workdir / "data" / "good_masks.tif", io.read_labels(workdir / "data" / "truth" / "good_labels.tif")
    )
    tifffile.imwrite(
        workdir / "data" / "bad_masks.tif", np.zeros((3, 10, 10), np.uint16), photometric="minisblack"
    )  # the wrong size
    (workdir / "config" / "samples.tsv").write_text(
        "sample\timage\tlabels\n"
        "bad\tdata/bad.ome.tif\tdata/bad_masks.tif\n"
        "good\tdata/good.ome.tif\tdata/good_masks.tif\n"
    )
    proc = snakemake(
        workdir, "--keep-going", "results/good/cells.parquet", "results/bad/cells.parquet", check=False
    )
    assert proc.returncode != 0
    assert (workdir / "results" / "good" / "cells.parquet").is_file()
    assert not (workdir / "results" / "bad" / "labels.tif").exists()
    log = (workdir / "results" / "logs" / "segment_nuclei" / "bad.log").read_text()
    assert "bad_masks.tif" in log and "Traceback" not in log


@pytest.fixture
def small_mount(tmp_path):
    """A 256 KiB tmpfs (needs root and mount rights; skipped otherwise)."""
    target = tmp_path / "mnt"
    target.mkdir()
    if (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(target)], capture_output=True
        ).returncode
        != 0
    ):
        pytest.skip("cannot mount a tmpfs here (needs root and mount rights)")
    yield target
    subprocess.run(["umount", "-l", str(target)], check=False)


def _cli(*args):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(
        [str(Path(sys.executable).parent / "cytotrail"), *args], capture_output=True, text=True, env=env
    )


def test_disk_full_gives_a_clear_error_and_no_file(tmp_path, small_mount):
    from cytotrail import io

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2**31, size=(4, 256, 256), dtype=np.uint32)  # does not compress
    io.write_labels(tmp_path / "big.tif", labels)
    proc = _cli(
        "segment",
        str(tmp_path / "big.tif"),
        "--axes",
        "TYX",
        "--backend",
        "labels",
        "--labels",
        str(tmp_path / "big.tif"),
        "-o",
        str(small_mount / "labels.tif"),
    )
    assert proc.returncode != 0
    assert "No space left on device" in proc.stderr and "Traceback" not in proc.stderr
    assert list(small_mount.iterdir()) == []


def test_read_only_output_folder_gives_a_clear_error(tmp_path, small_mount):
    from cytotrail.synth import make_timelapse, write_dataset

    write_dataset(tmp_path, make_timelapse(n_frames=2, shape=(48, 48), n_cells=3, seed=1), sample="x")
    subprocess.run(["mount", "-o", "remount,ro", str(small_mount)], check=True)
    proc = _cli(
        "segment",
        str(tmp_path / "x.ome.tif"),
        "--backend",
        "watershed",
        "-o",
        str(small_mount / "labels.tif"),
    )
    assert proc.returncode != 0
    assert "Read-only file system" in proc.stderr and "Traceback" not in proc.stderr
