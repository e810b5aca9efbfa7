"""Input checks of segment() that must hold at every image size."""

import numpy as np
import pytest

from cytotrail.io import InputError
from cytotrail.segment import segment


def test_nan_border_of_a_mosaic_above_50_megapixels_is_refused():
    # A stitched float mosaic: NaN only in its last rows, where a row-subsampled or
    # size-capped check would never look.
    mosaic = np.zeros((1, 7200, 7200), np.float32)  # 51.8 MP
    mosaic[0, -3:, :] = np.nan
    with pytest.raises(InputError, match="NaN or infinite"):
        segment(mosaic, backend="watershed", diameter=12)


def test_infinite_value_in_a_later_frame_is_refused():
    frames = np.zeros((3, 64, 64), np.float64)
    frames[2, 10, 10] = np.inf
    with pytest.raises(InputError, match="NaN or infinite"):
        segment(frames, backend="watershed", diameter=12)
