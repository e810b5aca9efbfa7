"""Atomic folders and small zarr helpers shared by the exports."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["atomic_dir", "zarr_group", "zarr_array"]


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temporary folder beside ``path``; move it onto ``path`` on success.

    An existing ``path`` is replaced only once the new folder is complete; on any
    exception the temporary folder is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / "x")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            if path.exists() or path.is_symlink():
                path.unlink()
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
