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
        segment(mosaic, backend="watershed", diameter_px=12)


def test_infinite_value_in_a_later_frame_is_refused():
    frames = np.zeros((3, 64, 64), np.float64)
    frames[2, 10, 10] = np.inf
    with pytest.raises(InputError, match="NaN or infinite"):
        segment(frames, backend="watershed", diameter_px=12)


@pytest.mark.parametrize("backend", ["watershed", "unet"])
def test_info_records_the_diameter_used_and_its_source(backend):
    from cytotrail.synth import make_timelapse

    frames = make_timelapse(n_frames=2, shape=(96, 96), n_cells=10, seed=5).image[:, 0]
    given, estimated = {}, {}
    segment(frames, backend=backend, diameter_px=11.0, info=given)
    segment(frames, backend=backend, info=estimated)
    assert given["backend"] == backend
    assert (given["diameter_px"], given["diameter_source"]) == (11.0, "given")
    assert estimated["diameter_source"] == "estimated"
    assert 4 < estimated["diameter_px"] < 40


def test_old_diameter_keyword_still_works_with_a_future_warning():
    """segment(diameter=) and segment_unet(diameter=), renamed diameter_px, until cytotrail 0.2."""
    import inspect

    from cytotrail.segment.infer import segment_unet
    from cytotrail.synth import make_timelapse

    frames = make_timelapse(n_frames=1, shape=(96, 96), n_cells=10, seed=5).image[:, 0]
    new = segment(frames, backend="watershed", diameter_px=11.0)
    with pytest.warns(FutureWarning, match="keyword `diameter` is deprecated and renamed `diameter_px`"):
        old = segment(frames, backend="watershed", diameter=11.0)
    assert np.array_equal(new, old) and new.max() > 0
    with pytest.raises(TypeError, match="`diameter` and `diameter_px` are both given"):
        segment(frames, backend="watershed", diameter=11.0, diameter_px=11.0)
    # the documented signatures are the new ones
    for function in (segment, segment_unet):
        params = inspect.signature(function).parameters
        assert "diameter_px" in params and "diameter" not in params
    with pytest.raises(TypeError, match="unexpected keyword"):
        segment(frames, backend="watershed", diametre=11.0)
