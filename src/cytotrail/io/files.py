"""File safety shared by every writer and reader: the input error, atomic writes, the
umask's permissions, and the refusal to write over an input."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


class InputError(ValueError):
    """Bad user input: the message names the file, sample or config key at fault."""


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes the file 0600; the output gets the mode a new file would get
        # (0666 less the umask), so that the lab's group can read the results
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask():
    """The process's umask (read without changing it where /proc tells it)."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        status = Path("/proc/self/status").read_text().splitlines()
        return int(next(line for line in status if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_output_is_not_input(output, inputs, *, frame_folders=()):
    """Raise InputError when ``output`` is one of ``inputs`` (same file, also through links)
    or lies inside one of ``frame_folders``.

    Parameters
    ----------
    output : str or Path
        A path the caller is about to write.
    inputs : iterable of str or Path
        Paths the caller reads (None entries are skipped).
    frame_folders : iterable of str or Path
        Inputs that may be folders of frames (:func:`frame_files`): every TIFF in them is
        read, so an output written there would be read as a frame next time.
    """
    out = Path(output)
    for source in inputs:
        if source is None:
            continue
        source = Path(source)
        same = out.resolve() == source.resolve()
        if not same and out.exists() and source.exists():
            with contextlib.suppress(OSError):
                same = os.path.samefile(out, source)  # hard links
        if same:
            raise InputError(
                f"output {output} is the input {source}: refusing to overwrite an input; "
                "choose another output path"
            )
    for folder in frame_folders:
        if (
            folder is not None
            and Path(folder).is_dir()
            and out.resolve().is_relative_to(Path(folder).resolve())
        ):
            raise InputError(
                f"output {output} is inside the input folder {folder}, whose files are read as "
                "frames: choose another output path"
            )
