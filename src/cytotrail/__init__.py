"""cytotrail: segment, track, quantify and cluster cells in timelapse and multiplexed images."""

__version__ = "0.1.0"
