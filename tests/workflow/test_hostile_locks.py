"""Locks: a stale lock goes only when its owner is provably dead on this host (issue 17)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from cytotrail.locks import OWNERS, register_run, release_stale_locks

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")

_OWNER = """
import sys, time
from cytotrail.locks import register_run
register_run(sys.argv[1])
print("registered", flush=True)
time.sleep(120)
"""


def _locks(workdir):
    """Snakemake's lock files as a run of the demo leaves them."""
    folder = workdir / ".snakemake" / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "0.input.lock").write_text("config/samples.tsv\n")
    (folder / "0.output.lock").write_text("resources/demo/s1.ome.tif\nresources/demo/s2.ome.tif\n")
    return folder


def _owner(workdir):
    """A live process (not named snakemake: the Python API case) that registered as owner."""
    proc = subprocess.Popen([sys.executable, "-c", _OWNER, str(workdir)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "registered"
    proc.stdout.close()
    return proc


def test_live_owner_keeps_its_locks_whatever_its_command_line(tmp_path):
    """The old cleaner deleted the locks of any live run whose command line lacked 'snakemake'."""
    locks = _locks(tmp_path)
    proc = _owner(tmp_path)
    try:
        state = release_stale_locks(tmp_path)
        assert not state.released and len(state.alive) == 1 and state.alive[0]["pid"] == proc.pid
        assert len(list(locks.glob("*.lock"))) == 2
    finally:
        proc.kill()
        proc.wait()


def test_killed_owner_on_this_host_releases_its_locks(tmp_path):
    locks = _locks(tmp_path)
    proc = _owner(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(list((tmp_path / OWNERS).glob("*.json"))) == 1  # SIGKILL: no cleanup ran
    state = release_stale_locks(tmp_path)
    assert state.released and not list(locks.glob("*.lock"))
    assert not list((tmp_path / OWNERS).glob("*.json"))


def test_owner_on_another_host_is_never_presumed_dead(tmp_path):
    locks = _locks(tmp_path)
    (tmp_path / OWNERS).mkdir(parents=True)
    (tmp_path / OWNERS / "login2.4242.ab.json").write_text(json.dumps({"host": "login2", "pid": 4242}))
    state = release_stale_locks(tmp_path, host="login1")
    assert not state.released and state.locked
    assert state.foreign == [{"host": "login2", "pid": 4242}]
    assert len(list(locks.glob("*.lock"))) == 2


def test_locks_without_any_owner_record_are_kept(tmp_path):
    locks = _locks(tmp_path)
    assert not release_stale_locks(tmp_path).released
    assert len(list(locks.glob("*.lock"))) == 2


def test_own_record_is_not_taken_for_a_dead_owner(tmp_path):
    _locks(tmp_path)
    record = register_run(tmp_path)
    assert record.is_file() and json.loads(record.read_text())["pid"] == os.getpid()
    assert register_run(tmp_path) == record  # parsed twice in one process: one record
    state = release_stale_locks(tmp_path)
    assert not state.released and not state.alive and record.is_file()


@pytest.mark.workflow
def test_workflow_names_the_other_host_and_the_unlock_command(tmp_path):
    from conftest import prepare_demo, snakemake

    prepare_demo(tmp_path)
    _locks(tmp_path)
    (tmp_path / OWNERS).mkdir(parents=True)
    (tmp_path / OWNERS / "login2.4242.ab.json").write_text(json.dumps({"host": "login2", "pid": 4242}))
    proc = snakemake(tmp_path, "--until", "make_demo", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "login2" in out and "--unlock" in out, out[-2000:]
    assert len(list((tmp_path / ".snakemake" / "locks").glob("*.lock"))) == 2
    assert not (tmp_path / "resources").exists()


def test_unwritable_working_directory_is_left_to_snakemake(tmp_path):
    """A workdir where nothing can be written gave a traceback from the lock bookkeeping."""
    (tmp_path / ".snakemake").write_text("not a folder")
    assert register_run(tmp_path) is None
    assert not release_stale_locks(tmp_path).released
