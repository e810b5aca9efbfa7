"""Images in: TIFF/OME-TIFF files, PNG/JPEG planes and folders of frames, read as (T, C, Y, X)
with their channel names, and checked from their headers before any job starts; images out as
OME-TIFF."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from cytotrail.io.files import InputError, atomic_path
from cytotrail.io.tiff import (
    _check_complete,
    _pixel_size_um,
    _read_tiff,
    _tiff_axes_and_channels,
    _tiff_warnings,
)

# single-plane formats read with imageio (a scikit-image dependency), e.g. the Kaggle Data
# Science Bowl's PNGs; everything else is read as a TIFF
PLANE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")

# the first bytes of each format of PLANE_SUFFIXES
_SIGNATURES = {"PNG": b"\x89PNG\r\n\x1a\n", "JPG": b"\xff\xd8\xff", "JPEG": b"\xff\xd8\xff", "BMP": b"BM"}


def _read_plane(path):
    """Pixels and stored axes (``YX`` or ``YXS``) of a PNG, JPEG or BMP image.

    An alpha sample is dropped (no microscope records one), and a grey image stored as RGB
    (every colour sample equal, as in the Kaggle Data Science Bowl's PNGs) is one plane.
    """
    import imageio.v3 as iio

    kind = path.suffix[1:].upper()
    with open(path, "rb") as file:
        head = file.read(8)
    if not head.startswith(_SIGNATURES.get(kind, b"")):
        # imageio would try every plugin, then send the user to install more
        raise InputError(f"cannot read image {path}: its content is not a {kind} image")
    try:
        data = np.asarray(iio.imread(path))
    except Exception as err:
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

    In natural order of their names (t2 before t10), hidden files (the ``._t000.tif`` that
    macOS leaves beside copied files) left out; InputError when there is none.
    """
    folder = Path(folder)
    files = [
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in (".tif", ".tiff") and not p.name.startswith(".")  # ._t000.tif
    ]
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
    if path.is_dir():  # a folder of frames: every header checked, then one array filled
        names, shape = image_channels(path, axes=axes, channel_names=channel_names)
        out = None
        for t, file in enumerate(frame_files(path)):
            data, _ = read_image(file, axes=axes, channel_names=channel_names)
            if out is None:
                out = np.empty(shape, data.dtype)
            elif data.dtype != out.dtype:
                raise InputError(
                    f"image folder {path}: {file.name} holds {data.dtype}, the frames before {out.dtype}"
                )
            out[t] = data[0]
        return out, names
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
