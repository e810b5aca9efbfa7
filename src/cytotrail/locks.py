"""Snakemake housekeeping that the workflow calls before it builds its job graph.

A run killed with SIGKILL (or a power loss) leaves Snakemake's locks in
``.snakemake/locks``, and the next run would refuse to start until ``snakemake --unlock``.
Deleting them is only safe when their owner is provably dead, so every run records its
owner: a file in ``.snakemake/cytotrail-owners/`` naming the host and PID, on which the run
holds an exclusive ``flock`` for as long as it lives. The kernel releases that lock when the
process dies, however it dies, whatever PID namespace it lives in and however it was started
(command line or Python API). A lock is removed only when every recorded owner ran on this
host and its ``flock`` can be taken; an owner on another host (a second login node sharing
the filesystem) is never presumed dead: the caller is told the command that unlocks.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import uuid
from pathlib import Path

__all__ = ["LockState", "register_run", "release_stale_locks", "unlock_command"]

OWNERS = Path(".snakemake", "cytotrail-owners")
LOCKS = Path(".snakemake", "locks")

_held = {}  # record path -> open file whose flock marks this process as a live owner


class LockState:
    """What :func:`release_stale_locks` found.

    Attributes
    ----------
    released : bool
        Stale locks (every owner dead, on this host) were removed.
    foreign : list of dict
        Owners recorded on another host (``host``, ``pid``), kept with their locks.
    alive : list of dict
        Owners on this host that still hold their lock (a run in progress).
    locked : bool
        Snakemake's locks were there when looked at.
    """

    def __init__(self, released=False, foreign=(), alive=(), locked=False):
        self.released = released
        self.locked = locked
        self.foreign = list(foreign)
        self.alive = list(alive)


def _flock(fh, *, block=False):
    """Take an exclusive flock on an open file; False when another process holds it."""
    import fcntl

    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


def _records(workdir):
    folder = Path(workdir, OWNERS)
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def _read_record(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def register_run(workdir, *, host=None):
    """Record this process as a live owner of ``workdir``'s locks (until it exits).

    Parameters
    ----------
    workdir : str or Path
        The Snakemake working directory.
    host : str, optional
        Host name to record (default: this machine's).

    Returns
    -------
    Path or None
        The owner record, or None where ``fcntl`` is not available (not POSIX).
    """
    try:
        import fcntl  # noqa: F401
    except ImportError:
        return None
    host = host or socket.gethostname()
    folder = Path(workdir, OWNERS)
    mine = [p for p in _held if p.parent == folder]
    if mine:  # the workflow is parsed more than once in one process
        return mine[0]
    # the random part keeps apart two processes of one PID in different PID namespaces
    path = folder / f"{host}.{os.getpid()}.{uuid.uuid4().hex[:8]}.json"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # locked under a name no cleaner looks at, then renamed into place: a record is
        # never seen unlocked while its owner lives
        tmp = folder / f".{path.name}.tmp"
        fh = open(tmp, "w")  # not inherited by jobs: Python opens files non-inheritable
        _flock(fh)
        fh.write(json.dumps({"host": host, "pid": os.getpid()}) + "\n")
        fh.flush()
        os.replace(tmp, path)
    except OSError:  # a read-only working directory: Snakemake itself says what is wrong
        return None
    _held[path] = fh

    import atexit

    atexit.register(_unregister, path)
    return path


def _unregister(path):
    fh = _held.pop(path, None)
    with contextlib.suppress(OSError):
        path.unlink()
    if fh is not None:
        fh.close()


def release_stale_locks(workdir, *, host=None):
    """Remove Snakemake's locks in ``workdir`` when every owner is provably dead.

    Provably dead: the owner's record names this host and its ``flock`` can be taken
    (the kernel released it when the owner died). Locks without any owner record, and
    locks whose owner ran on another host, are kept.

    Parameters
    ----------
    workdir : str or Path
        The Snakemake working directory.
    host : str, optional
        This machine's host name (default: ``socket.gethostname()``).

    Returns
    -------
    LockState
    """
    try:
        import fcntl  # noqa: F401
    except ImportError:
        return LockState()
    host = host or socket.gethostname()
    locks = list(Path(workdir, LOCKS).glob("*.lock"))
    dead, alive, foreign = [], [], []
    for path in _records(workdir):
        if path in _held:
            continue  # this process
        record = _read_record(path)
        if record.get("host") != host:
            foreign.append(record or {"host": "?", "pid": "?", "record": str(path)})
            continue
        try:
            with open(path) as fh:
                if _flock(fh):
                    dead.append(path)
                else:
                    alive.append(record)
        except OSError:  # unreadable: not provably dead
            alive.append(record)
    for path in dead:  # whether or not locks are left: the record is stale
        with contextlib.suppress(OSError):
            path.unlink()
    if not locks or alive or foreign or not dead:
        return LockState(False, foreign, alive, locked=bool(locks))
    try:
        for lock in locks:
            lock.unlink(missing_ok=True)
    except OSError:  # a read-only working directory: Snakemake itself says what is wrong
        return LockState(False, foreign, alive, locked=True)
    return LockState(True, foreign, alive, locked=True)


def unlock_command(snakefile=None):
    """The command a user runs to unlock by hand, once sure no run is alive.

    Parameters
    ----------
    snakefile : str or Path, optional
        The workflow's Snakefile, named in the command when given.

    Returns
    -------
    str
    """
    target = f" --snakefile {snakefile}" if snakefile else ""
    return f"snakemake{target} --unlock"
