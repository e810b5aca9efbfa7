"""Training: target maps, folder pairs, `cytotrail train` and fine-tuning with --init."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cytotrail.io import InputError
from cytotrail.segment.preprocess import centre_map, equivalent_diameters, normalize, percentiles


def test_centre_map_is_scale_free():
    yy, xx = np.mgrid[:64, :64]
    small = ((yy - 16) ** 2 + (xx - 16) ** 2 < 6**2).astype(np.int32)
    big = np.where((yy - 40) ** 2 + (xx - 40) ** 2 < 18**2, 2, 0)
    labels = np.maximum(small, big)
    c = centre_map(labels)
    assert c.dtype == np.float32
    assert c[labels == 0].max() == 0
    assert c[16, 16] == pytest.approx(1.0) and c[40, 40] == pytest.approx(1.0)
    # half-way out, both discs have centre-ness about 0.5 whatever their size
    assert c[16, 19] == pytest.approx(0.5, abs=0.15)
    assert c[40, 49] == pytest.approx(0.5, abs=0.1)


def test_centre_map_separates_touching_objects():
    labels = np.zeros((10, 20), np.int32)
    labels[2:8, 2:10] = 1
    labels[2:8, 10:18] = 2
    c = centre_map(labels)
    assert c[5, 9] < 0.4 and c[5, 10] < 0.4  # low on the shared border
    assert c[5, 5] > 0.6 and c[5, 14] > 0.6


def test_normalize_and_percentiles():
    frame = np.arange(10_000, dtype=np.uint16).reshape(100, 100)
    lo, hi = percentiles(frame, 1, 99)
    out = normalize(frame, lo, hi)
    assert out.dtype == np.float32
    assert np.mean((out >= 0) & (out <= 1)) == pytest.approx(0.98, abs=0.01)
    assert not normalize(np.full((4, 4), 7), 7.0, 7.0).any()
    d = equivalent_diameters(np.array([[1, 1], [1, 1]]))
    assert d == pytest.approx([np.sqrt(16 / np.pi)])


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """Two image/mask folder pairs written from synthetic frames."""
    from cytotrail import io
    from cytotrail.synth import make_timelapse

    root = tmp_path_factory.mktemp("pairs")
    data = make_timelapse(n_frames=4, shape=(96, 96), n_cells=10, seed=42)
    for t in range(4):
        io.write_image(root / "images" / f"f{t}.tif", data.image[t:t + 1, :1], channel_names=["DNA"])
        io.write_labels(root / "masks" / f"f{t}.tif", data.labels[t])
    return root


def test_folder_samples_split(pairs):
    from cytotrail.segment.data import folder_samples, split_of

    train = folder_samples(pairs / "images", pairs / "masks", split="all")
    assert len(train) == 4
    assert all(s.image.shape == s.fg.shape == s.centre.shape for s in train)
    assert all(8 < s.diameter < 25 for s in train)
    expected = sum(split_of(f"f{t}", 0.5) == "val" for t in range(4))
    assert len(folder_samples(pairs / "images", pairs / "masks", split="all")) == 4
    if expected:
        assert len(folder_samples(pairs / "images", pairs / "masks", split="val", val_fraction=0.5)) == expected
    with pytest.raises(InputError, match="not found"):
        folder_samples(pairs / "nope", pairs / "masks")


@pytest.mark.slow
def test_train_cli_writes_a_model_that_segment_accepts(pairs, tmp_path):
    from cytotrail.cli import main
    from cytotrail.segment import segment

    out = tmp_path / "model"
    args = ["train", "-o", str(out), "--images", str(pairs / "images"), "--labels", str(pairs / "masks"),
            "--val-fraction", "0.5", "--synthetic", "1", "--synthetic-val", "0", "--steps", "3",
            "--crop", "64", "--batch-size", "2", "--base", "8", "--depth", "3", "--seed", "1"]
    assert main(args) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == {"in_channels": 1, "out_channels": 2, "base": 8, "depth": 3}
    assert len(config["weights_sha256"]) == 64
    assert set(json.loads((out / "thresholds.json").read_text())) >= {"foreground", "seed", "min_area"}
    frames = np.zeros((2, 48, 48), np.uint16)
    frames[:, 10:20, 10:20] = 1000
    labels = segment(frames, model=out, device="cpu", diameter=10)
    assert labels.shape == frames.shape and labels.dtype == np.uint32
    # fine-tuning keeps the architecture of the model it starts from
    tuned = tmp_path / "tuned"
    assert main(["train", "-o", str(tuned), "--init", str(out), "--synthetic", "1", "--synthetic-val", "1",
                 "--steps", "2", "--crop", "64", "--batch-size", "2", "--base", "32"]) == 0
    config = json.loads((tuned / "config.json").read_text())
    assert config["architecture"]["base"] == 8
    assert config["training"]["init"] == str(out)


def test_train_cli_needs_data(tmp_path):
    from cytotrail.cli import main

    assert main(["train", "-o", str(tmp_path / "m"), "--synthetic", "0"]) == 2
