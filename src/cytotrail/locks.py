"""Snakemake housekeeping that the workflow calls before it builds its job graph."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["release_stale_locks"]


def release_stale_locks(workdir):
    """Remove Snakemake's locks when no other Snakemake process runs in ``workdir``.

    A run killed with SIGKILL (or a power loss) leaves its locks behind, and the next
    run would refuse to start until `snakemake --unlock`. On Linux we can see whether
    the lock holder is still alive; elsewhere, or when in doubt, the locks stay.

    Returns True when stale locks were removed.
    """
    locks = Path(workdir, ".snakemake", "locks")
    proc = Path("/proc")  # Linux: who is alive, and where
    if not any(locks.glob("*.lock")) or not proc.is_dir():
        return False
    mine, pid = set(), os.getpid()
    while pid > 1 and pid not in mine:  # this process and its ancestors (e.g. `timeout snakemake`)
        mine.add(pid)
        try:
            pid = int((proc / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            cwd = (entry / "cwd").resolve()
        except OSError:
            continue
        if b"snakemake" in cmdline and cwd == Path(workdir).resolve():
            return False  # another run is alive here: its locks are real
    for lock in locks.glob("*.lock"):
        lock.unlink(missing_ok=True)
    return True
