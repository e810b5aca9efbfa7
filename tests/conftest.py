"""Shared fixtures: paths, the real data folder, and a helper to run the workflow."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared_data(*parts):
    """Path under ../shared/data, or skip the test with the reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found at {path} (../shared/data is not part of a clone)")
    return path


def _bin(name):
    """An executable of the running interpreter's environment (the venv under test)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else shutil.which(name)


def snakemake_command(workdir, *args, env=None):
    """The command line and environment that run the project's Snakefile in ``workdir``."""
    cmd = [
        _bin("snakemake"),
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        "--cores",
        "2",
        *args,
    ]
    full_env = dict(os.environ)
    full_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{full_env.get('PATH', '')}"
    full_env.update(env or {})
    return cmd, full_env


def snakemake(workdir, *args, check=True, timeout=900, env=None):
    """Run the project's Snakefile in ``workdir``; returns the CompletedProcess."""
    cmd, full_env = snakemake_command(workdir, *args, env=env)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


def planned_jobs(workdir, *args):
    """{rule: count} of the jobs a dry run would execute ({} when nothing is to be done)."""
    proc = snakemake(workdir, "--dry-run", *args)
    out = proc.stdout + proc.stderr
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:", 1)[1]
    jobs = {}
    for line in table.splitlines():
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if m and m.group(1) != "total":
            jobs[m.group(1)] = int(m.group(2))
    return jobs


SAMPLES = ["s1", "s2"]


def write_config(workdir, **overrides):
    """The project's config with a tiny demo; overrides as {"section.key": value}."""
    import yaml

    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["demo"] = {"frames": 5, "size": 96, "cells": 10, "seed": 3}
    # The classical backend keeps these workflow-mechanics tests light (no torch import per
    # job); the demo run in .ci/run and tests/segment/test_segment.py exercise the default U-Net.
    config["segment"]["backend"] = "watershed"
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        if name:
            config.setdefault(section, {})[name] = value
        else:
            config[section] = value
    (workdir / "config").mkdir(exist_ok=True)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return config


def write_samples(workdir, rows):
    lines = ["sample\timage"] + [f"{s}\t{image}" for s, image in rows]
    (workdir / "config").mkdir(exist_ok=True)
    (workdir / "config" / "samples.tsv").write_text("\n".join(lines) + "\n")


def prepare_demo(workdir, **overrides):
    write_config(workdir, **overrides)
    write_samples(workdir, [(s, f"resources/demo/{s}.ome.tif") for s in SAMPLES])
    return workdir


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """A finished, untouched run of the whole workflow on two tiny demo samples."""
    workdir = prepare_demo(tmp_path_factory.mktemp("demo_run"))
    snakemake(workdir)
    return workdir


@pytest.fixture
def demo_copy(demo_run, tmp_path):
    """A copy of the finished run (timestamps and Snakemake metadata kept) to modify."""
    copy = tmp_path / "run"
    shutil.copytree(demo_run, copy, symlinks=True)
    return copy


def result_files(workdir):
    """{relative path: bytes} of every output under results/ except logs and benchmarks."""
    return {
        str(p.relative_to(workdir)): p
        for p in sorted((workdir / "results").rglob("*"))
        if p.is_file() and not {"logs", "benchmarks"} & set(p.parts)
    }
