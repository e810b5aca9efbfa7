"""Divisions, gap closing and merges between the segments of frame-to-frame linking."""

from __future__ import annotations

import numpy as np

__all__ = ["resolve_events"]


def resolve_events(frame, pos, segment, *, area=None, intensity=None, search_range, memory,
                   sigma=None, divisions=True):
    """Placeholder: no events yet."""
    parent = np.full(segment.max() + 1, -1, np.int64)
    return segment, parent, {"n_divisions": 0, "n_mothers_split": 0, "n_gaps_closed": 0}
