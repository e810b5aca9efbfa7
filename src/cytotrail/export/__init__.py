"""Exports to the formats of the ecosystem: GEFF lineages, bioimage.io models, SpatialData.

Each module turns cytotrail's arrays and tables into one standard format:

- :mod:`cytotrail.export.geff`: tracks as a GEFF graph (nodes = detections, edges = links
  and divisions), read by TrackMate, Ultrack, Trackastra and the ``geff`` package.
- :mod:`cytotrail.export.bioimageio`: a segmentation model folder as a bioimage.io model
  package (format 0.5) for the BioImage Model Zoo, ilastik, deepImageJ and bioimageio.core.
- :mod:`cytotrail.export.spatialdata`: a results folder as a SpatialData zarr store
  (OME-Zarr images and labels plus the AnnData table), for napari-spatialdata and scverse.

GEFF and bioimage.io packages are written with numpy, zarr and torch alone; the
SpatialData export and the readers that check every format are in the ``export`` extra
(``pip install "cytotrail[export]"``). Unlike the rest of cytotrail, these modules write
files: a format's layout is its contract. Their pure halves (tables and metadata built
from arrays) are separate functions.
"""
