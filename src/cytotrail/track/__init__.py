"""Tracking: link detections across frames into tracks with divisions and lineages.

The stage takes one row per cell per frame (``frame, y, x`` plus optional ``area``,
``mean_intensity``), fits the movie's motion and division model to the movie itself
(:mod:`cytotrail.track.calibrate`), links the rows of successive frames with trackpy on
drift-corrected positions, then finds divisions (a mother ending where two daughters start)
and closes gaps with the costs of :mod:`cytotrail.track.costs`.

>>> from cytotrail.synth import make_timelapse
>>> from cytotrail.track import track
>>> truth = make_timelapse(n_frames=6, shape=(96, 96), n_cells=8, seed=3).tracks
>>> tracks = track(truth[["frame", "y", "x", "area"]])
>>> [c for c in ("track_id", "parent_track_id", "lineage_id", "generation") if c in tracks]
['track_id', 'parent_track_id', 'lineage_id', 'generation']
"""

from cytotrail.track.detections import detections_from_labels
from cytotrail.track.features import track_features
from cytotrail.track.tracking import track

__all__ = ["detections_from_labels", "track", "track_features"]
