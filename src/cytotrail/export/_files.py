"""Atomic folders and small zarr helpers shared by the exports."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["atomic_dir", "check_output_dir", "zarr_group", "zarr_array"]


# files that mark a folder as one of the exports' outputs (a zarr group, a bioimage.io package)
_EXPORT_MARKERS = (".zgroup", "zarr.json", "rdf.yaml")


def check_output_dir(path):
    """InputError unless ``path`` is absent, an empty folder or an earlier export's folder."""
    from cytotrail.io import InputError

    if not path.exists() and not path.is_symlink():
        return
    if path.is_dir() and not path.is_symlink():
        if not any(path.iterdir()) or any((path / m).exists() for m in _EXPORT_MARKERS):
            return
        raise InputError(
            f"output {path} is a folder that holds other files (no zarr store or "
            "bioimage.io package): refusing to replace it; choose a new path"
        )
    raise InputError(f"output {path} exists and is not a folder: refusing to replace it")


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temporary folder beside ``path``; move it onto ``path`` on success.

    An existing ``path`` is replaced only once the new folder is complete, and only when it
    is empty or an earlier export (a zarr store or a bioimage.io package); any other file or
    folder there raises InputError before anything is written. On any exception the
    temporary folder is removed and ``path`` is left untouched.
    """
    path = Path(path)
    check_output_dir(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
    try:
        # the umask's mode, like every other output (mkdtemp makes the folder private)
        from cytotrail.io.files import _umask

        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        if path.is_dir() and not path.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / "x")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def zarr_group(path, *, zarr_format=2):
    """A new zarr group at ``path`` (zarr-python 2 or 3), in the given zarr format."""
    import zarr

    if int(zarr.__version__.split(".")[0]) >= 3:
        return zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    if zarr_format != 2:
        raise RuntimeError(f"zarr format {zarr_format} needs zarr-python >= 3")
    return zarr.open_group(str(path), mode="w")


def zarr_array(group, name, data):
    """Write ``data`` (a 1-D or 2-D ndarray) as array ``name`` of ``group``, one chunk."""
    data = np.ascontiguousarray(data)
    chunks = data.shape if data.size else tuple(1 for _ in data.shape)
    if hasattr(group, "create_array"):  # zarr-python 3
        group.create_array(name, data=data, chunks=chunks)
    else:
        group.create_dataset(name, data=data, chunks=chunks)
