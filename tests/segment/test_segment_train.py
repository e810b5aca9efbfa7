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
        io.write_image(root / "images" / f"f{t}.tif", data.image[t : t + 1, :1], channel_names=["DNA"])
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
        assert (
            len(folder_samples(pairs / "images", pairs / "masks", split="val", val_fraction=0.5)) == expected
        )
    with pytest.raises(InputError, match="not found"):
        folder_samples(pairs / "nope", pairs / "masks")


@pytest.mark.slow
def test_train_cli_writes_a_model_that_segment_accepts(pairs, tmp_path):
    from cytotrail.cli import main
    from cytotrail.segment import segment

    out = tmp_path / "model"
    args = [
        "train",
        "-o",
        str(out),
        "--images",
        str(pairs / "images"),
        "--labels",
        str(pairs / "masks"),
        "--val-fraction",
        "0.5",
        "--synthetic",
        "1",
        "--synthetic-val",
        "0",
        "--steps",
        "3",
        "--crop",
        "64",
        "--batch-size",
        "2",
        "--base",
        "8",
        "--depth",
        "3",
        "--seed",
        "1",
    ]
    assert main(args) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == {"in_channels": 1, "out_channels": 2, "base": 8, "depth": 3}
    assert len(config["weights_sha256"]) == 64
    assert set(json.loads((out / "thresholds.json").read_text())) >= {"foreground", "seed", "min_area"}
    frames = np.zeros((2, 48, 48), np.uint16)
    frames[:, 10:20, 10:20] = 1000
    labels = segment(frames, model=out, device="cpu", diameter_px=10)
    assert labels.shape == frames.shape and labels.dtype == np.uint32
    # fine-tuning keeps the architecture of the model it starts from
    tuned = tmp_path / "tuned"
    assert (
        main(
            [
                "train",
                "-o",
                str(tuned),
                "--init",
                str(out),
                "--synthetic",
                "1",
                "--synthetic-val",
                "1",
                "--steps",
                "2",
                "--crop",
                "64",
                "--batch-size",
                "2",
                "--base",
                "32",
            ]
        )
        == 0
    )
    config = json.loads((tuned / "config.json").read_text())
    assert config["architecture"]["base"] == 8
    assert config["training"]["init"] == str(out)


def test_train_cli_needs_data(tmp_path):
    from cytotrail.cli import main

    assert main(["train", "-o", str(tmp_path / "m"), "--synthetic", "0"]) == 2


# --------------------------------------------------------------------------------------
# acquisition families and the leave-family-out rule


def test_acquisition_family_from_dtype_size_and_level():
    from cytotrail.segment.data import acquisition_family

    rng = np.random.default_rng(0)
    dim = rng.integers(0, 30, size=(40, 50)).astype(np.uint8)
    bright = dim.copy()
    bright[:5, :5] = 120
    saturated = dim.copy()
    saturated[:5, :5] = 255
    assert acquisition_family(dim) == "uint8-40x50-dim"
    assert acquisition_family(bright) == "uint8-40x50-bright"
    assert acquisition_family(saturated) == "uint8-40x50-saturated"
    # the same counts in a 16-bit image are a dim exposure of a 16-bit camera
    assert acquisition_family(saturated.astype(np.uint16)) == "uint16-40x50-dim"
    assert acquisition_family(dim.astype(np.float32)) == "float32-40x50-float"


def test_held_out_families_are_whole_families_within_the_fraction():
    from cytotrail.segment.data import held_out_families

    families = ["a"] * 50 + ["b"] * 20 + ["c"] * 10 + ["d"] * 5 + ["e"] * 3 + ["f"] * 12
    held = held_out_families(families, 0.15)
    assert 0 < sum(f in held for f in families) <= 15
    assert held == held_out_families(list(reversed(families)), 0.15)  # order-free
    assert held_out_families(families, 0.0) == set()
    most = held_out_families(families, 0.6)
    assert len(most) > len(held) and sum(f in most for f in families) <= 60 and held <= most | held
    with pytest.raises(InputError, match="fraction"):
        held_out_families(families, 1.5)


def test_folder_samples_hold_out_families(pairs, tmp_path):
    from cytotrail import io
    from cytotrail.segment.data import folder_samples

    # a second, larger acquisition (another image size) beside the four 96 x 96 frames
    big = tmp_path / "pairs"
    for sub in ("images", "masks"):
        (big / sub).mkdir(parents=True)
        for p in (pairs / sub).iterdir():
            (big / sub / p.name).write_bytes(p.read_bytes())
    from cytotrail.synth import make_timelapse

    data = make_timelapse(n_frames=1, shape=(64, 80), n_cells=4, seed=3)
    io.write_image(big / "images" / "g0.tif", data.image[:1, :1], channel_names=["DNA"])
    io.write_labels(big / "masks" / "g0.tif", data.labels[0])
    all_ = folder_samples(big / "images", big / "masks", split="all", hold_out=0.3)
    held = [s for s in all_ if s.split == "held_out"]
    assert [s.name for s in held] == ["g0"] and "-64x80-" in held[0].family
    assert all("-96x96-" in s.family for s in all_ if s.split != "held_out")
    kept = folder_samples(big / "images", big / "masks", split="train", val_fraction=0.0, hold_out=0.3)
    assert "g0" not in {s.name for s in kept} and len(kept) == 4


# --------------------------------------------------------------------------------------
# bad training data: one clear message naming the file, before any step


def test_images_without_labels_name_the_file(pairs, tmp_path):
    from cytotrail.segment.data import folder_samples

    masks = tmp_path / "masks"
    masks.mkdir()
    for p in sorted((pairs / "masks").iterdir())[:3]:
        (masks / p.name).write_bytes(p.read_bytes())
    with pytest.raises(InputError, match=r"f3\.tif: no label image .* \(1 of 4"):
        folder_samples(pairs / "images", masks, split="all")


def test_binary_masks_are_refused_naming_the_file(pairs, tmp_path):
    from cytotrail import io
    from cytotrail.segment.data import check_instance_labels, folder_samples

    masks = tmp_path / "masks"
    for p in (pairs / "masks").iterdir():
        io.write_labels(masks / p.name, (io.read_labels(p)[0] > 0).astype(np.uint16))
    with pytest.raises(InputError, match=r"f0\.tif: a binary mask"):
        folder_samples(pairs / "images", masks, split="all")
    one = np.zeros((8, 8), np.uint8)
    one[2:5, 2:5] = 1
    check_instance_labels(one, "one nucleus")  # a single object is fine


def test_train_cli_empty_training_set_after_the_split(pairs, tmp_path, capsys):
    from cytotrail.cli import main

    args = [
        "train",
        "-o",
        str(tmp_path / "m"),
        "--images",
        str(pairs / "images"),
        "--labels",
        str(pairs / "masks"),
        "--val-fraction",
        "1.0",
        "--synthetic",
        "0",
        "--steps",
        "1",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "no training pairs left in" in err and str(pairs / "images") in err
    assert not (tmp_path / "m").exists()


# --------------------------------------------------------------------------------------
# the training loop: crops in workers, exact resume, checkpoints


@pytest.fixture(scope="module")
def tiny_samples():
    from cytotrail.segment.data import synthetic_samples

    return synthetic_samples(2, seed=1, shape=(64, 64), frames=(0,))


_TINY = dict(steps=4, batch_size=2, crop=32, base=4, depth=2, seed=0, log_every=1, device="cpu")


# Python >= 3.12 warns when a process with threads (torch's) forks; DataLoader workers fork on Linux
_FORK_WITH_THREADS = pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")


@_FORK_WITH_THREADS
def test_crops_do_not_depend_on_the_worker_count(tiny_samples):
    import torch

    from cytotrail.segment.train import CropDataset, sample_weights

    ds = CropDataset(tiny_samples, sample_weights(tiny_samples, 0.35), seed=3, crop=32)
    batches = []
    for workers in (0, 2):
        loader = torch.utils.data.DataLoader(ds, batch_size=3, sampler=range(6), num_workers=workers)
        batches.append(torch.cat(list(loader)))
    assert batches[0].shape == (6, 3, 32, 32)
    assert torch.equal(batches[0], batches[1])
    assert not torch.equal(batches[0][0], batches[0][1])
    other = CropDataset(tiny_samples, sample_weights(tiny_samples, 0.35), seed=4, crop=32)
    assert not np.array_equal(other[0], ds[0])


def _weights(folder):
    import torch

    return torch.load(folder / "weights.pt", weights_only=True)


@_FORK_WITH_THREADS
def test_resume_continues_a_run_exactly(tiny_samples, tmp_path):
    import torch

    from cytotrail.segment.train import train_model

    train_model(tiny_samples, output=tmp_path / "whole", workers=0, **_TINY)
    train_model(tiny_samples, output=tmp_path / "split", workers=0, stop_after=2, **_TINY)
    ckpt = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 2 and ckpt["scheduler"]["last_epoch"] == 2 and ckpt["optimizer"]["state"]
    assert not torch.equal(ckpt["net"]["head.weight"], _weights(tmp_path / "whole")["head.weight"])
    # the second sitting: the recipe comes from the checkpoint, and two worker processes draw the crops
    config = train_model(
        tiny_samples,
        output=tmp_path / "split",
        resume=tmp_path / "split",
        workers=2,
        device="cpu",
        log_every=1,
    )
    assert config["training"]["steps_done"] == 4 and config["architecture"]["base"] == 4
    whole, split = _weights(tmp_path / "whole"), _weights(tmp_path / "split")
    assert whole.keys() == split.keys()
    for key in whole:
        assert torch.equal(whole[key], split[key]), key


def test_resume_refuses_a_checkpoint_of_another_architecture_or_data(tiny_samples, tmp_path):
    from cytotrail.segment.train import train_model

    train_model(tiny_samples, output=tmp_path / "m", workers=0, stop_after=1, **_TINY)
    with pytest.raises(InputError, match=r"checkpoint\.pt holds a network of architecture"):
        train_model(tiny_samples, output=tmp_path / "m", resume=tmp_path / "m", base=8, workers=0)
    with pytest.raises(InputError, match=r"checkpoint\.pt was trained with lr=0\.002, not 0\.1"):
        train_model(tiny_samples, output=tmp_path / "m", resume=tmp_path / "m", lr=0.1, workers=0)
    with pytest.raises(InputError, match="trained on other data"):
        train_model(tiny_samples[:1], output=tmp_path / "m", resume=tmp_path / "m", workers=0)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", "truncated"])
def test_resume_from_a_corrupt_checkpoint_names_the_file(tiny_samples, tmp_path, content, capsys):
    from cytotrail.cli import main
    from cytotrail.segment.train import train_model

    bad = tmp_path / "bad.pt"
    if content == "truncated":
        train_model(tiny_samples, output=tmp_path / "m", workers=0, stop_after=1, **_TINY)
        bad.write_bytes((tmp_path / "m" / "checkpoint.pt").read_bytes()[:3000])
    else:
        bad.write_bytes(content)
    with pytest.raises(InputError, match=r"bad\.pt is not a readable checkpoint"):
        train_model(tiny_samples, output=tmp_path / "out", resume=bad, workers=0)
    assert main(["train", "-o", str(tmp_path / "out"), "--resume", str(bad), "--synthetic", "1"]) == 2
    assert "bad.pt is not a readable checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_resume_refuses_a_file_that_is_not_a_training_checkpoint(tmp_path):
    import torch

    from cytotrail.segment.train import read_checkpoint

    torch.save({"head.weight": torch.zeros(2)}, tmp_path / "weights.pt")
    with pytest.raises(InputError, match=r"weights\.pt is not a cytotrail training checkpoint"):
        read_checkpoint(tmp_path / "weights.pt")
    with pytest.raises(InputError, match="not found"):
        read_checkpoint(tmp_path / "nothing")


def test_training_logs_loss_and_crops_per_second(tiny_samples, tmp_path, caplog):
    from cytotrail.segment.train import train_model

    with caplog.at_level("INFO", logger="cytotrail.train"):
        train_model(tiny_samples, output=tmp_path / "m", workers=0, stop_after=2, **_TINY)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert len(lines) == 2 and all("loss" in line and "crops/s" in line for line in lines)


def test_default_batch_and_workers_on_the_cpu():
    import torch

    from cytotrail.segment.train import default_batch_size, default_workers

    assert default_batch_size(torch.device("cpu"), 128) == 8
    assert default_workers(torch.device("cpu")) >= 1


def test_intensity_augmentation_keeps_shape_and_finite_values():
    from cytotrail.segment.train.crops import _augment_intensity

    img = np.zeros((32, 32), np.float32)
    img[8:20, 8:20] = 1.0
    outs = [_augment_intensity(img, np.random.default_rng(i)) for i in range(40)]
    assert all(o.shape == img.shape and o.dtype == np.float32 and np.isfinite(o).all() for o in outs)
    assert len({round(float(o.std()), 4) for o in outs}) > 30  # varied
    # nuclei stay brighter than the background under every change
    assert all(o[10:18, 10:18].mean() > o[24:, 24:].mean() for o in outs)


@pytest.mark.gpu
@_FORK_WITH_THREADS
def test_training_on_cuda_with_autocast(tiny_samples, tmp_path):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from cytotrail.segment.train import train_model

    config = train_model(
        tiny_samples, output=tmp_path / "m", workers=2, **dict(_TINY, device="cuda", batch_size=None)
    )
    assert config["training"]["device"].startswith("cuda") and config["training"]["batch_size"] >= 8
    assert np.isfinite(config["training"]["seconds"])
