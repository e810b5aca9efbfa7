"""Reading and writing images, label stacks and tables: the inputs and outputs of the stages.

Every stage reads and writes its data through this package, and every writer is atomic: it
writes to a temporary file beside the target and renames it into place (:func:`atomic_path`),
so that an interrupted job never leaves a half-written file that a rerun would trust.
Its modules: :mod:`.files` (the input error, atomic writes, never writing over an input),
:mod:`.images` (TIFF/OME-TIFF, PNG/JPEG planes, folders of frames), :mod:`.tiff` (TIFF
headers, truncated files), :mod:`.labels` (label stacks) and :mod:`.tables` (tables, JSON,
YAML, figures); every public name is importable from here.
The other files cytotrail touches have their own homes: model folders
(:mod:`cytotrail.segment.model`, :mod:`cytotrail.segment.train`), the workflow's lock
records (:mod:`cytotrail.locks`), the exchange formats (:mod:`cytotrail.export`,
:mod:`cytotrail.track.ctc`) and the report's figures (:mod:`cytotrail.report`).
"""

from __future__ import annotations

from cytotrail.io.files import InputError, atomic_path, check_output_is_not_input
from cytotrail.io.images import (
    PLANE_SUFFIXES,
    frame_files,
    image_channels,
    image_metadata,
    read_image,
    write_image,
)
from cytotrail.io.labels import read_labels, write_labels
from cytotrail.io.tables import read_anndata, read_table, save_figure, write_json, write_table, write_yaml

__all__ = [
    "InputError",
    "PLANE_SUFFIXES",
    "atomic_path",
    "check_output_is_not_input",
    "frame_files",
    "image_channels",
    "image_metadata",
    "read_anndata",
    "read_image",
    "read_labels",
    "read_table",
    "save_figure",
    "write_image",
    "write_json",
    "write_labels",
    "write_table",
    "write_yaml",
]
