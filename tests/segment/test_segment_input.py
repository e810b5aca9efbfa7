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


@pytest.mark.parametrize("backend", ["watershed", "unet"])
def test_info_records_the_diameter_used_and_its_source(backend):
    from cytotrail.synth import make_timelapse

    frames = make_timelapse(n_frames=2, shape=(96, 96), n_cells=10, seed=5).image[:, 0]
    given, estimated = {}, {}
    segment(frames, backend=backend, diameter=11.0, info=given)
    segment(frames, backend=backend, info=estimated)
    assert given["backend"] == backend
    assert (given["diameter_px"], given["diameter_source"]) == (11.0, "given")
    assert estimated["diameter_source"] == "estimated"
    assert 4 < estimated["diameter_px"] < 40
