"""TIFF and OME-TIFF headers: axes, OME channel names, pixel size, and truncated files named
with the pages that can be read."""

from __future__ import annotations

import contextlib

from cytotrail.io.files import InputError


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
