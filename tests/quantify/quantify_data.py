"""Data shared by the quantify tests: a small synthetic timelapse and the steinbock mock (real masks)."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from cytotrail.synth import make_timelapse

STEINBOCK = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "multiplex" / "steinbock-mock"


@functools.cache
def timelapse():
    """Two 128 x 128 frames, 25 cells, six channels (seeded); do not modify, see :func:`synth`."""
    return make_timelapse(n_frames=2, shape=(128, 128), n_cells=25, seed=21)


def synth():
    """Copies of the timelapse's (image (T, C, Y, X), labels (T, Y, X), channel names)."""
    tl = timelapse()
    return tl.image.copy(), tl.labels.copy(), list(tl.channel_names)


def steinbock_files():
    """The 15 steinbock mock images (IMC, with DeepCell masks), or skip when the data is absent."""
    if not STEINBOCK.is_dir():
        pytest.skip(f"real data not found at {STEINBOCK} (../shared/data is not part of a clone)")
    return sorted((STEINBOCK / "img").glob("*.tiff"))
