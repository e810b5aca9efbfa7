"""Flip test-time augmentation (segment(..., tta=True))."""

from __future__ import annotations

import numpy as np
import pytest


def test_flip_tta_is_flip_equivariant():
    import torch

    from cytotrail.segment.net import FlipTTA, UNet

    torch.manual_seed(0)
    net = UNet(base=4, depth=3).eval()
    tta = FlipTTA(net).eval()
    assert tta.multiple == net.multiple
    x = torch.randn(2, 1, 32, 40)
    with torch.no_grad():
        y = tta(x)
        assert y.shape == (2, 2, 32, 40)
        for dims in ((-1,), (-2,), (-2, -1)):
            torch.testing.assert_close(tta(torch.flip(x, dims)), torch.flip(y, dims), rtol=1e-4, atol=1e-5)
        # the plain network is not: TTA changes its output
        assert not torch.allclose(net(torch.flip(x, (-1,))), torch.flip(net(x), (-1,)), atol=1e-5)


@pytest.mark.slow
def test_segment_with_tta_finds_the_same_nuclei():
    from cytotrail.segment import segment
    from cytotrail.segment.metrics import f1_score
    from cytotrail.synth import make_timelapse

    data = make_timelapse(n_frames=1, shape=(128, 128), n_cells=20, seed=5)
    plain = segment(data.image[:, 0], device="cpu", diameter_px=14.0)
    tta = segment(data.image[:, 0], device="cpu", diameter_px=14.0, tta=True)
    assert tta.shape == plain.shape and tta.dtype == np.uint32
    assert f1_score(data.labels, tta) >= 0.9 and f1_score(data.labels, plain) >= 0.9
