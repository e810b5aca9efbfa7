"""Reading and writing images, label stacks and tables: the inputs and outputs of the stages.

Every stage reads and writes its data through this module, and every writer is atomic: it
writes to a temporary file beside the target and renames it into place (:func:`atomic_path`),
so that an interrupted job never leaves a half-written file that a rerun would trust.
The other files cytotrail touches have their own homes: model folders
(:mod:`cytotrail.segment.model`, :mod:`cytotrail.segment.train`), the workflow's lock records (:mod:`cytotrail.locks`), the exchange formats
(:mod:`cytotrail.export`, :mod:`cytotrail.track.ctc`) and the report's figures
(:mod:`cytotrail.report`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "InputError",
    "atomic_path",
    "read_image",
    "read_labels",
    "read_table",
    "write_image",
    "write_json",
    "write_labels",
    "write_table",
]

_AXES_BY_NDIM = {2: "YX", 3: None, 4: "TCYX"}


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


# --------------------------------------------------------------------------------------
# images


def _tiff_axes_and_channels(tif):
    """Axes string and OME channel names (or None) of an open TiffFile."""
    series = tif.series[0]
    axes = series.axes.upper().replace("Q", "")  # tifffile writes Q for unknown axes
    names = None
    if tif.is_ome:
        import xml.etree.ElementTree as ET

        root = ET.fromstring(tif.ome_metadata)
        channels = [el for el in root.iter() if el.tag.endswith("}Channel")]
        found = [c.get("Name") for c in channels]
        if found and all(found):
            names = found
    return axes, names


# single-plane formats read with imageio (a scikit-image dependency), e.g. the Kaggle Data
# Science Bowl's PNGs; everything else is read as a TIFF
PLANE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def _read_plane(path):
    """Pixels and stored axes (``YX`` or ``YXS``) of a PNG, JPEG or BMP image.

    An alpha sample is dropped (no microscope records one), and a grey image stored as RGB
    (every colour sample equal, as in the Kaggle Data Science Bowl's PNGs) is one plane.
    """
    import imageio.v3 as iio

    try:
        data = np.asarray(iio.imread(path))
    except Exception as err:
        kind = path.suffix[1:].upper()
        raise InputError(f"cannot read image {path}: not a readable {kind} ({err})") from err
    if data.ndim == 3 and data.shape[-1] in (2, 4):  # grey + alpha, RGBA
        data = data[..., :-1]
    if data.ndim == 3 and (data == data[..., :1]).all():
        data = data[..., 0]
    if data.ndim not in (2, 3):
        raise InputError(f"image {path} has shape {data.shape}; expected one 2-D plane (grey or RGB)")
    return data, ("YX" if data.ndim == 2 else "YXS")


def frame_files(folder):
    """The TIFF frames of a folder (a Cell Tracking Challenge sequence: t000.tif, t001.tif, ...).

    In natural order of their names (t2 before t10); InputError when there is none.
    """
    folder = Path(folder)
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in (".tif", ".tiff")]
    if not files:
        raise InputError(f"image folder {folder} holds no .tif/.tiff frames")
    return sorted(files, key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)])


def _check_frames(folder, frames):
    """InputError unless every (file name, (T, C, Y, X) shape, names) of a folder is one matching time point."""
    first_name, first_shape, first_names = frames[0]
    for name, shape, names in frames:
        if shape[0] != 1:
            raise InputError(
                f"image folder {folder}: {name} holds {shape[0]} time points; a folder of frames "
                "holds one per file"
            )
        if shape[1:] != first_shape[1:] or names != first_names:
            raise InputError(
                f"image folder {folder}: {name} has channels {names} of {shape[2:]} but "
                f"{first_name} has {first_names} of {first_shape[2:]}"
            )


def read_image(path, *, axes=None, channel_names=None):
    """Read a TIFF/OME-TIFF (or a PNG/JPEG plane) as a (T, C, Y, X) array with its channel names.

    Parameters
    ----------
    path : str or Path
        TIFF or OME-TIFF file with axes TCYX, CYX, TYX or YX; or a PNG, JPEG or BMP
        image (one plane; grey, or RGB read as channels with ``axes="YXC"``; a grey
        image stored as RGB(A) reads as one channel); or a folder of TIFF frames, one
        time point per file in natural name order (a Cell Tracking Challenge sequence:
        ``01/t000.tif``, ...), each read as above.
    axes : str, optional
        Axes of the stored array, e.g. ``"TYX"``, when the file does not record them
        (a plain 3-D TIFF is ambiguous between CYX and TYX), or when they are ambiguous
        (a Z axis without channels, RGB samples): any order of T, C, Y and X, e.g.
        ``"TCYX"`` reads a TZYX stack's planes as channels, ``"TYXC"`` an RGB movie's
        samples as channels.
    channel_names : sequence of str, optional
        Names for the channels, overriding the OME metadata.

    Returns
    -------
    image : (T, C, Y, X) ndarray
        Pixel data in its stored dtype.
    names : list of str
        One name per channel: from ``channel_names``, the OME metadata, or ``ch0, ch1, ...``.

    Raises
    ------
    InputError
        When the file is missing, not a TIFF, truncated (naming how many pages were
        readable), or its axes are unsupported or ambiguous.
    """
    path = Path(path)
    if path.is_dir():  # a folder of frames, one time point per file
        files = frame_files(path)
        frames = [read_image(f, axes=axes, channel_names=channel_names) for f in files]
        _check_frames(path, [(f.name, d.shape, n) for f, (d, n) in zip(files, frames)])
        return np.concatenate([data for data, _ in frames]), frames[0][1]
    if not path.is_file():
        raise InputError(f"image file not found: {path}")
    if path.suffix.lower() in PLANE_SUFFIXES:
        data, stored_axes = _read_plane(path)
        ome_names = None
    else:
        data, stored_axes, ome_names = _read_tiff(path)

    axes = (axes or "").upper() or _guess_axes(stored_axes, data.ndim, path)
    _check_axes(axes, data.shape, path)
    for ax in "TC":
        if ax not in axes:
            data = data[np.newaxis]
            axes = ax + axes
    order = [axes.index(ax) for ax in "TCYX"]
    data = np.transpose(data, order)

    return data, _channel_names(path, data.shape[1], channel_names, ome_names)


def _read_tiff(path):
    """Pixels, stored axes and OME channel names (or None) of a TIFF, or InputError."""
    import tifffile

    try:
        with _tiff_warnings() as warnings, tifffile.TiffFile(path) as tif:
            stored_axes, ome_names = _tiff_axes_and_channels(tif)
            _check_complete(tif, path, warnings)
            try:
                data = tif.series[0].asarray()
            except Exception as err:
                raise InputError(_truncated_message(tif, path, err)) from err
    except InputError:
        raise
    except Exception as err:  # tifffile raises many types for corrupt files
        raise InputError(f"cannot read image {path}: not a readable TIFF ({err})") from err
    return data, stored_axes, ome_names


# tifffile logs (instead of raising) when a file ends before its chain of pages does; a
# single unreadable tag (vendors write odd private tags) is no sign of truncation
_TRUNCATION_SIGNS = ("invalid page offset", "corrupted file", "missing", "truncated")


@contextlib.contextmanager
def _tiff_warnings():
    """Collect the warnings tifffile logs while a file is read."""
    import logging

    class _Collect(logging.Handler):
        def __init__(self):
            super().__init__(logging.WARNING)
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    logger = logging.getLogger("tifffile")
    handler = _Collect()
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _readable_pages(tif):
    """(pages whose pixel data lie inside the file, pages listed) of an open TiffFile."""
    size = tif.filehandle.size
    pages = list(tif.pages)
    readable = 0
    for page in pages:
        if not all(o + n <= size for o, n in zip(page.dataoffsets, page.databytecounts)):
            break
        readable += 1
    return readable, len(pages)


def _expected_pages(tif):
    """Pages the file's own metadata promises (ImageJ, OME), or None when it says nothing."""
    with contextlib.suppress(Exception):
        if tif.is_imagej and tif.imagej_metadata and "images" in tif.imagej_metadata:
            return int(tif.imagej_metadata["images"])
    with contextlib.suppress(Exception):
        if tif.is_ome:
            import xml.etree.ElementTree as ET

            root = ET.fromstring(tif.ome_metadata)
            pixels = next(el for el in root.iter() if el.tag.endswith("}Pixels"))
            size = [int(pixels.get(f"Size{ax}", 1)) for ax in "ZCT"]
            samples = max(
                1, int(next((c.get("SamplesPerPixel") for c in pixels if c.tag.endswith("}Channel")), 1) or 1)
            )
            return size[0] * size[1] * size[2] // samples
    return None


def _truncated_message(tif, path, reason):
    readable, listed = _readable_pages(tif)
    expected = _expected_pages(tif)
    of = f" of {expected}" if expected and expected > readable else ""
    return (
        f"image {path} is truncated or corrupt (an interrupted copy?): only {readable}{of} "
        f"page(s) readable ({listed} listed; {reason})"
    )


def _check_complete(tif, path, warnings):
    """Raise InputError when an open TIFF ends before its pages do."""
    readable, listed = _readable_pages(tif)
    expected = _expected_pages(tif)
    signs = [m for m in warnings if any(s in m for s in _TRUNCATION_SIGNS)]
    if signs or readable < listed or (expected is not None and listed < expected):
        raise InputError(_truncated_message(tif, path, (signs or ["pages end early"])[0]))


def _channel_names(path, n_channels, given, ome_names):
    """Channel names: given ones, else the OME metadata's, else ch0, ch1, ..."""
    if given is not None:
        names = [str(n) for n in given]
        if len(names) != n_channels:
            raise InputError(
                f"image {path} has {n_channels} channel(s) but {len(names)} channel name(s) "
                f"were given: {names}"
            )
    elif ome_names is not None and len(ome_names) == n_channels:
        names = list(ome_names)
    else:
        names = [f"ch{i}" for i in range(n_channels)]
    if len(set(names)) != len(names):
        raise InputError(f"image {path}: duplicated channel names {names}")
    return names


def _guess_axes(stored_axes, ndim, path):
    """The TCYX-style axes of a stored array from its metadata, or InputError when unsure."""
    if stored_axes and ("Z" in stored_axes or "S" in stored_axes):
        what = "a Z axis" if "Z" in stored_axes else "RGB samples"
        raise InputError(
            f"image {path} has {what} (stored axes {stored_axes}) and cytotrail's stages work "
            "on 2-D planes: give `axes` explicitly (the sample sheet's `axes` column or --axes), "
            "naming each stored axis T, C, Y or X, e.g. TCYX to read a TZYX stack's planes as "
            "channels, TYX for a ZYX stack whose planes are time points, or TYXC to read an RGB "
            "movie's samples as channels (or project Z yourself first)"
        )
    if stored_axes and len(stored_axes) == ndim and set(stored_axes) <= set("TCYX"):
        return stored_axes
    if ndim == 2:
        return "YX"
    if ndim == 4:
        return "TCYX"
    if ndim == 3:
        raise InputError(
            f"image {path} is 3-D without axes metadata: set `axes` (CYX or TYX) for this sample"
        )
    raise InputError(f"image {path} has {ndim} dimensions; expected TCYX, CYX, TYX or YX (2 to 4 dimensions)")


def write_image(path, image, *, channel_names, pixel_size_um=None):
    """Write a (T, C, Y, X) array as an OME-TIFF with channel names, atomically."""
    import tifffile

    image = np.asarray(image)
    if image.ndim != 4:
        raise ValueError(f"image must be (T, C, Y, X), got shape {image.shape}")
    metadata = {"axes": "TCYX", "Channel": {"Name": list(channel_names)}}
    if pixel_size_um is not None:
        metadata.update(PhysicalSizeX=pixel_size_um, PhysicalSizeY=pixel_size_um)
    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp, image, ome=True, metadata=metadata, compression="zlib", photometric="minisblack"
        )


# --------------------------------------------------------------------------------------
# label stacks


def write_labels(path, labels):
    """Write a (T, Y, X) label stack as a zlib-compressed uint32 TIFF, atomically.

    The file opens in napari and Fiji as a stack of integer label images.
    """
    import tifffile

    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = labels[np.newaxis]
    if labels.ndim != 3:
        raise ValueError(f"labels must be (T, Y, X), got shape {labels.shape}")
    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp,
            labels.astype(np.uint32, copy=False),
            compression="zlib",
            photometric="minisblack",
            metadata={"axes": "TYX"},
        )


def read_labels(path):
    """Read a label stack (T, Y, X) or a single label image (Y, X) as uint32 (T, Y, X)."""
    import tifffile

    path = Path(path)
    if not path.is_file():
        raise InputError(f"label file not found: {path}")
    try:
        labels = tifffile.imread(path)
    except Exception as err:
        raise InputError(f"cannot read labels {path}: not a readable TIFF ({err})") from err
    labels = np.squeeze(labels) if labels.ndim > 3 else labels
    if labels.ndim == 2:
        labels = labels[np.newaxis]
    if labels.ndim != 3:
        raise InputError(f"labels {path} have shape {labels.shape}; expected (T, Y, X) or (Y, X)")
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.mod(labels, 1) == 0):
            raise InputError(f"labels {path} are not integers (dtype {labels.dtype})")
    if labels.min(initial=0) < 0:
        raise InputError(f"labels {path} contain negative values")
    top = labels.max(initial=0)
    if top > np.iinfo(np.uint32).max:  # would wrap around (to 0: no cells) as uint32
        raise InputError(
            f"labels {path} hold ids up to {int(top)}, beyond uint32 (4294967295); "
            "number each frame's labels from 1 (e.g. skimage.segmentation."
            "relabel_sequential) and save them as uint32"
        )
    return labels.astype(np.uint32, copy=False)


# --------------------------------------------------------------------------------------
# tables


def read_table(path):
    """Read a ``.csv``, ``.tsv`` or ``.parquet`` table into a DataFrame."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"table file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix in (".csv", ".tsv", ".txt"):
            return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    except Exception as err:
        raise InputError(f"cannot read table {path}: {err}") from err
    raise InputError(f"table {path}: unsupported format {suffix!r}; use .csv, .tsv or .parquet")


def write_table(path, table):
    """Write a DataFrame as ``.parquet`` or ``.csv``/``.tsv`` (by suffix), atomically.

    Parquet files are written without timestamps, so equal tables give equal bytes.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    with atomic_path(path) as tmp:
        if suffix == ".parquet":
            table.to_parquet(tmp, index=False, engine="pyarrow")
        elif suffix in (".csv", ".tsv"):
            table.to_csv(tmp, index=False, sep="\t" if suffix == ".tsv" else ",")
        else:
            raise InputError(f"output {path}: unsupported table format {suffix!r}")


def write_json(path, obj):
    """Write ``obj`` as pretty JSON with sorted keys, atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj)}")


def image_channels(path, *, axes=None, channel_names=None):
    """Channel names and (T, C, Y, X) shape of an image, from its header only.

    Cheap enough to run on every sample before any job starts: the pixels are not read,
    only the page headers (to find a truncated file) and the OME-XML. The same checks as
    :func:`read_image`: truncated files and ambiguous axes raise InputError.
    """
    import tifffile

    path = Path(path)
    if path.is_dir():  # a folder of frames: every file's header
        files = frame_files(path)
        found = [image_channels(f, axes=axes, channel_names=channel_names) for f in files]
        _check_frames(path, [(f.name, shape, names) for f, (names, shape) in zip(files, found)])
        names, shape = found[0]
        return names, (len(files), *shape[1:])
    if not path.is_file():
        raise InputError(f"image file not found: {path}")
    if path.suffix.lower() in PLANE_SUFFIXES:  # one plane: reading it is the cheap way
        data, stored_axes = _read_plane(path)
        full = _tcyx_shape(data.shape, axes or _guess_axes(stored_axes, data.ndim, path), path)
        return _channel_names(path, full[1], channel_names, None), full
    try:
        with _tiff_warnings() as warnings, tifffile.TiffFile(path) as tif:
            _check_complete(tif, path, warnings)
            if tif.is_ome and not axes:
                full, ome_names = _ome_shape_and_channels(tif.ome_metadata, path)
            else:
                stored_axes, ome_names = _tiff_axes_and_channels(tif)
                full = _tcyx_shape(
                    tif.series[0].shape,
                    axes or _guess_axes(stored_axes, len(tif.series[0].shape), path),
                    path,
                )
    except InputError:
        raise
    except Exception as err:
        raise InputError(f"cannot read image {path}: not a readable TIFF ({err})") from err
    return _channel_names(path, full[1], channel_names, ome_names), full


_UM_PER_UNIT = {
    "µm": 1.0,
    "μm": 1.0,
    "um": 1.0,
    "micron": 1.0,
    "micrometer": 1.0,
    "\\u00B5m": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "mm": 1e3,
    "millimeter": 1e3,
    "cm": 1e4,
    "centimeter": 1e4,
    "m": 1e6,
    "meter": 1e6,
}


def image_metadata(path, *, axes=None, channel_names=None):
    """What a sample sheet and config need to know of an image, from its header only.

    Parameters
    ----------
    path : str or Path
        TIFF or OME-TIFF file.
    axes, channel_names : optional
        As for :func:`read_image`.

    Returns
    -------
    dict
        ``channel_names`` (list of str), ``shape`` (T, C, Y, X), ``named`` (True when the
        names come from ``channel_names`` or the file, not ``ch0, ch1, ...``) and
        ``pixel_size_um`` (float, or None when the file does not record it: OME
        PhysicalSizeX, or an ImageJ/TIFF resolution in a length unit).
    """
    import tifffile

    names, shape = image_channels(path, axes=axes, channel_names=channel_names)
    if Path(path).is_dir():  # a folder of frames: the first one's metadata
        first = image_metadata(frame_files(path)[0], axes=axes, channel_names=channel_names)
        return dict(first, channel_names=names, shape=shape)
    if Path(path).suffix.lower() in PLANE_SUFFIXES:  # no channel names, no pixel size
        return {
            "channel_names": names,
            "shape": shape,
            "named": channel_names is not None,
            "pixel_size_um": None,
        }
    with tifffile.TiffFile(path) as tif:
        named = channel_names is not None or (tif.is_ome and _tiff_axes_and_channels(tif)[1] is not None)
        pixel_size = _pixel_size_um(tif)
    return {"channel_names": names, "shape": shape, "named": bool(named), "pixel_size_um": pixel_size}


def _pixel_size_um(tif):
    """Pixel size in µm recorded by an open TiffFile, or None."""
    with contextlib.suppress(Exception):
        if tif.is_ome:
            import xml.etree.ElementTree as ET

            root = ET.fromstring(tif.ome_metadata)
            pixels = next(el for el in root.iter() if el.tag.endswith("}Pixels"))
            if pixels.get("PhysicalSizeX"):
                unit = pixels.get("PhysicalSizeXUnit", "µm")
                return float(pixels.get("PhysicalSizeX")) * _UM_PER_UNIT[unit]
    with contextlib.suppress(Exception):
        page = tif.pages[0]
        numerator, denominator = page.tags["XResolution"].value
        per_unit = numerator / denominator  # pixels per unit
        if per_unit <= 0:
            return None
        if tif.is_imagej and (tif.imagej_metadata or {}).get("unit"):
            return _UM_PER_UNIT[tif.imagej_metadata["unit"]] / per_unit
        unit = int(page.tags["ResolutionUnit"].value)
        if unit == 3:  # centimetre
            return 1e4 / per_unit
    return None


def write_yaml(path, text):
    """Write YAML text (already formatted, comments kept), atomically."""
    import yaml

    yaml.safe_load(text)  # refuse to write what would not read back
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def _check_axes(axes, shape, path):
    """Raise InputError unless ``axes`` is one of TCYX, CYX, TYX, YX and fits ``shape``."""
    if len(axes) != len(shape):
        raise InputError(
            f"image {path} has {len(shape)} dimensions {tuple(shape)} but axes {axes!r}; "
            "expected TCYX, CYX, TYX or YX"
        )
    if set(axes) - set("TCYX") or len(set(axes)) != len(axes) or not {"Y", "X"} <= set(axes):
        raise InputError(
            f"image {path}: unsupported axes {axes!r}; expected TCYX, CYX, TYX or YX "
            "(in any order, e.g. TYXC)"
        )


def _tcyx_shape(shape, axes, path):
    axes = axes.upper()
    _check_axes(axes, shape, path)
    return tuple(shape[axes.index(ax)] if ax in axes else 1 for ax in "TCYX")


def _ome_shape_and_channels(ome_xml, path):
    """(T, C, Y, X) and channel names of the first image described by OME-XML."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(ome_xml)
    pixels = next(el for el in root.iter() if el.tag.endswith("}Pixels"))
    size = {ax: int(pixels.get(f"Size{ax}", 1)) for ax in "XYZCT"}
    if size["Z"] > 1:
        _guess_axes("TZYX" if size["T"] > 1 else "ZYX", 3 + (size["T"] > 1), path)  # refuses
    if any(int(c.get("SamplesPerPixel", 1) or 1) > 1 for c in pixels if c.tag.endswith("}Channel")):
        _guess_axes("YXS", 3, path)  # refuses: RGB samples
    names = [el.get("Name") for el in pixels if el.tag.endswith("}Channel")]
    shape = (max(size["T"], size["Z"]), size["C"], size["Y"], size["X"])
    return shape, (names if names and all(names) else None)


def save_figure(path, figure, *, dpi=110):
    """Save a matplotlib figure (format from the suffix), atomically, and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(
            tmp,
            dpi=dpi,
            format=path.suffix.lstrip(".") or "png",
            metadata={"Software": None} if path.suffix == ".png" else None,
        )
    plt.close(figure)
