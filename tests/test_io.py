"""Reading and writing images, labels and tables; atomic writes; clear errors."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import tifffile

from cytotrail import io
from cytotrail.io import InputError


@pytest.fixture
def image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 4000, size=(3, 2, 20, 24), dtype=np.uint16)


def test_ome_roundtrip_keeps_axes_and_channel_names(tmp_path, image):
    io.write_image(tmp_path / "a.ome.tif", image, channel_names=["DNA", "CD3"])
    data, names = io.read_image(tmp_path / "a.ome.tif")
    np.testing.assert_array_equal(data, image)
    assert names == ["DNA", "CD3"]
    assert io.image_channels(tmp_path / "a.ome.tif") == (["DNA", "CD3"], image.shape)


@pytest.mark.parametrize("axes, index", [("YX", (0, 0)), ("CYX", (0,)), ("TYX", (slice(None), 0))])
def test_lower_dimensional_images_become_tcyx(tmp_path, image, axes, index):
    stored = image[index]
    tifffile.imwrite(tmp_path / "x.tif", stored, photometric="minisblack")
    data, names = io.read_image(tmp_path / "x.tif", axes=axes)
    assert data.ndim == 4
    np.testing.assert_array_equal(data.squeeze(), stored.squeeze())
    expected_t = stored.shape[0] if axes == "TYX" else 1
    assert data.shape[0] == expected_t
    assert len(names) == data.shape[1]


def test_plain_3d_tiff_needs_axes(tmp_path, image):
    tifffile.imwrite(tmp_path / "x.tif", image[0], photometric="minisblack")
    with pytest.raises(InputError, match="x.tif.*axes"):
        io.read_image(tmp_path / "x.tif")


def test_five_dimensional_image_is_refused(tmp_path):
    tifffile.imwrite(tmp_path / "x5.tif", np.zeros((2, 2, 2, 8, 8), np.uint8))
    with pytest.raises(InputError, match="x5.tif"):
        io.read_image(tmp_path / "x5.tif")


def test_wrong_number_of_channel_names(tmp_path, image):
    io.write_image(tmp_path / "a.ome.tif", image, channel_names=["DNA", "CD3"])
    with pytest.raises(InputError, match="2 channel.*3 channel name"):
        io.read_image(tmp_path / "a.ome.tif", channel_names=["a", "b", "c"])


def test_missing_and_corrupt_files_are_named(tmp_path):
    with pytest.raises(InputError, match="nope.tif"):
        io.read_image(tmp_path / "nope.tif")
    (tmp_path / "bad.tif").write_bytes(b"not a tiff at all")
    with pytest.raises(InputError, match="bad.tif.*not a readable TIFF"):
        io.read_image(tmp_path / "bad.tif")
    with pytest.raises(InputError, match="bad.tif"):
        io.read_labels(tmp_path / "bad.tif")


def test_labels_roundtrip_is_compressed_uint32(tmp_path):
    labels = np.zeros((4, 64, 64), np.uint32)
    labels[:, 10:20, 10:20] = 7
    labels[2, 40:50, 40:50] = 70000
    io.write_labels(tmp_path / "l.tif", labels)
    back = io.read_labels(tmp_path / "l.tif")
    assert back.dtype == np.uint32
    np.testing.assert_array_equal(back, labels)
    with tifffile.TiffFile(tmp_path / "l.tif") as tif:
        assert tif.pages[0].compression != 1  # not uncompressed


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".tsv"])
def test_table_roundtrip(tmp_path, suffix):
    table = pd.DataFrame({"frame": [0, 1], "x": [1.5, 2.5], "parent_track_id": pd.array([pd.NA, 3], "Int64")})
    io.write_table(tmp_path / f"t{suffix}", table)
    back = io.read_table(tmp_path / f"t{suffix}")
    assert list(back["frame"]) == [0, 1]
    assert back["parent_track_id"].isna().tolist() == [True, False]


def test_equal_tables_give_equal_parquet_bytes(tmp_path):
    table = pd.DataFrame({"a": np.arange(100), "b": np.linspace(0, 1, 100)})
    io.write_table(tmp_path / "1.parquet", table)
    io.write_table(tmp_path / "2.parquet", table)
    assert (tmp_path / "1.parquet").read_bytes() == (tmp_path / "2.parquet").read_bytes()


def test_failed_write_leaves_no_file(tmp_path):
    class Boom(pd.DataFrame):
        def to_parquet(self, *args, **kwargs):
            with open(args[0], "wb") as fh:
                fh.write(b"half")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        io.write_table(tmp_path / "out.parquet", Boom({"a": [1]}))
    assert list(tmp_path.iterdir()) == []


def test_read_only_directory_gives_clear_error(tmp_path):
    import os

    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions")
    target = tmp_path / "ro"
    target.mkdir()
    target.chmod(0o500)
    try:
        with pytest.raises(PermissionError):
            io.write_labels(target / "l.tif", np.zeros((1, 4, 4), np.uint32))
    finally:
        target.chmod(0o700)


# --------------------------------------------------------------------------------------
# issue 17: file modes, truncated files, ambiguous axes, outputs that are inputs


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_outputs_get_the_mode_the_umask_gives(tmp_path, umask):
    import os

    old = os.umask(umask)
    try:
        io.write_table(tmp_path / "t.csv", pd.DataFrame({"a": [1]}))
        io.write_labels(tmp_path / "l.tif", np.zeros((1, 4, 4), np.uint32))
    finally:
        os.umask(old)
    for name in ("t.csv", "l.tif"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def _truncate(path, fraction):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


@pytest.mark.parametrize("kind", ["ome-zlib", "ome-raw", "imagej"])
def test_truncated_tiff_names_the_file_and_readable_pages(tmp_path, image, kind):
    path = tmp_path / f"{kind}.tif"
    if kind == "imagej":
        tifffile.imwrite(path, image, imagej=True, metadata={"axes": "TCYX"})
    else:
        io.write_image(path, image, channel_names=["DNA", "CD3"])
        if kind == "ome-raw":
            tifffile.imwrite(
                path,
                image,
                ome=True,
                photometric="minisblack",
                metadata={"axes": "TCYX", "Channel": {"Name": ["DNA", "CD3"]}},
            )
    _truncate(path, 0.6)
    for read in (io.read_image, io.image_channels):
        with pytest.raises(InputError, match=rf"{kind}.tif is truncated.*only \d+ (of \d+ )?page"):
            read(path)


def test_truncated_imagej_tiff_says_how_many_pages_it_promised(tmp_path, image):
    path = tmp_path / "ij.tif"
    tifffile.imwrite(path, image, imagej=True, metadata={"axes": "TCYX"})
    _truncate(path, 0.6)
    with pytest.raises(InputError, match=r"only \d+ of 6 page"):
        io.read_image(path)


def test_z_stack_without_channels_needs_explicit_axes(tmp_path, image):
    path = tmp_path / "tz.ome.tif"
    tifffile.imwrite(path, image, ome=True, photometric="minisblack", metadata={"axes": "TZYX"})
    for read in (io.read_image, io.image_channels):
        with pytest.raises(InputError, match="tz.ome.tif has a Z axis.*axes"):
            read(path)
    data, names = io.read_image(path, axes="TCYX")  # the planes as channels, said explicitly
    assert data.shape == image.shape and names == ["ch0", "ch1"]
    assert io.image_channels(path, axes="TCYX")[1] == image.shape


def test_imagej_z_stack_is_not_read_as_time(tmp_path, image):
    path = tmp_path / "z.tif"
    tifffile.imwrite(path, image[0, 0][np.newaxis].repeat(3, 0), imagej=True, metadata={"axes": "ZYX"})
    with pytest.raises(InputError, match="Z axis"):
        io.read_image(path)
    assert io.read_image(path, axes="TYX")[0].shape == (3, 1, 20, 24)


@pytest.mark.parametrize("ome", [False, True])
def test_rgb_samples_need_explicit_axes(tmp_path, ome):
    rgb = np.random.default_rng(1).integers(0, 255, (3, 16, 20, 3), dtype=np.uint8)
    path = tmp_path / ("rgb.ome.tif" if ome else "rgb.tif")
    tifffile.imwrite(path, rgb, photometric="rgb", ome=ome, **({"metadata": {"axes": "TYXS"}} if ome else {}))
    for read in (io.read_image, io.image_channels):
        with pytest.raises(InputError, match="RGB samples.*axes"):
            read(path)
    data, _ = io.read_image(path, axes="TYXC")
    assert data.shape == (3, 3, 16, 20)
    np.testing.assert_array_equal(data[:, 1], rgb[..., 1])


def test_output_that_is_an_input_is_refused(tmp_path):
    import os

    source = tmp_path / "movie.tif"
    source.write_bytes(b"x")
    os.symlink(source, tmp_path / "link.tif")
    os.link(source, tmp_path / "hard.tif")
    for output in (source, tmp_path / "link.tif", tmp_path / "hard.tif", tmp_path / "." / "movie.tif"):
        with pytest.raises(InputError, match="refusing to overwrite"):
            io.check_output_is_not_input(output, [None, source])
    io.check_output_is_not_input(tmp_path / "labels.tif", [source])  # a new file is fine


def test_label_ids_beyond_uint32_are_refused_not_wrapped(tmp_path):
    """Ids >= 2**32 became 0 (no cells) without a word."""
    labels = np.zeros((1, 8, 8), np.uint64)
    labels[0, 2:4, 2:4] = 2**32
    tifffile.imwrite(tmp_path / "big.tif", labels)
    with pytest.raises(InputError, match="big.tif.*beyond uint32"):
        io.read_labels(tmp_path / "big.tif")


def test_real_tiffs_are_not_taken_for_truncated_or_ambiguous():
    """The truncation and axes checks on real microscope files: none refused."""
    from conftest import shared_data

    files = sorted(shared_data("nuclei", "dsb2018_fluo").rglob("*.tif*"))[::50]
    files += sorted(shared_data("multiplex", "steinbock-mock").rglob("*.tif*"))
    assert files
    for path in files:
        try:
            names, shape = io.image_channels(path)
        except InputError as err:  # a plain 3-D stack asks for its axes: fine
            assert "without axes metadata" in str(err), err
        else:
            assert len(names) == shape[1]


def test_a_column_named_twice_is_refused_not_renamed(tmp_path):
    (tmp_path / "det.csv").write_text("frame,x,y,x\n0,1.0,2.0,3.0\n")  # pandas made the second x.1
    with pytest.raises(InputError, match=r"det.csv names the column\(s\) \['x'\] more than once"):
        io.read_table(tmp_path / "det.csv")
    (tmp_path / "index.csv").write_text(",x,y,\n0,1.0,2.0,\n")  # unnamed columns are not names
    assert list(io.read_table(tmp_path / "index.csv").columns[1:3]) == ["x", "y"]


def test_a_folder_given_as_a_table_is_named_as_a_folder(tmp_path):
    (tmp_path / "cells").mkdir()
    with pytest.raises(InputError, match="cells is a folder"):
        io.read_table(tmp_path / "cells")


def test_real_masks_are_labels_and_real_images_are_not():
    """An intensity image given as labels was tracked as 627 one-pixel 'cells' (issue 16's
    audit): every dsb2018 and steinbock mask reads, every image is refused, naming it."""
    from conftest import shared_data

    dsb, imc = shared_data("nuclei", "dsb2018_fluo"), shared_data("multiplex", "steinbock-mock")
    masks = sorted((dsb / "masks").glob("*.tif"))[::25] + sorted((imc / "masks_deepcell").glob("*.tif*"))
    images = sorted((dsb / "images").glob("*.tif"))[::25]
    assert masks and images
    for path in masks:
        assert io.read_labels(path).max() > 0
    for path in images:
        with pytest.raises(InputError, match=f"{path.name}: looks like an intensity image"):
            io.read_labels(path)
    for path in sorted((imc / "img").glob("*.tif*"))[:3]:  # float ion counts
        with pytest.raises(InputError, match=f"{path.name} are not integers"):
            io.read_labels(path)


def test_colour_images_and_binary_masks_are_not_labels(tmp_path):
    from cytotrail.synth import make_timelapse

    labels = make_timelapse(n_frames=3, shape=(128, 128), n_cells=20, seed=1).labels
    tifffile.imwrite(
        tmp_path / "rgb.tif", np.stack([labels[0]] * 3, axis=-1).astype(np.uint8), photometric="rgb"
    )
    with pytest.raises(InputError, match="rgb.tif are a colour"):
        io.read_labels(tmp_path / "rgb.tif")
    tifffile.imwrite(tmp_path / "binary.tif", (labels[0] > 0).astype(np.uint8))
    with pytest.raises(InputError, match="binary.tif: a binary mask"):
        io.read_labels(tmp_path / "binary.tif")
    two = np.zeros((1, 32, 32), np.uint16)
    two[0, 2:6, 2:6] = two[0, 2:6, 9:12] = 7  # one cell in two pieces is not a binary mask
    tifffile.imwrite(tmp_path / "two.tif", two)
    assert io.read_labels(tmp_path / "two.tif").max() == 7
    # three frames saved without metadata are stored as planar RGB: still a stack of labels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # tifffile's notice of that default
        tifffile.imwrite(tmp_path / "stack.tif", labels[:3].astype(np.uint16))
    np.testing.assert_array_equal(io.read_labels(tmp_path / "stack.tif"), labels[:3])


def _png(path, array):
    import imageio.v3 as iio

    iio.imwrite(path, array)
    return path


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_planes_read_as_one_channel(tmp_path, dtype):
    """A grey PNG, and one stored as RGBA as the Kaggle Data Science Bowl's images are."""
    grey = np.random.default_rng(2).integers(0, np.iinfo(dtype).max, (20, 24)).astype(dtype)
    for name, stored in (("grey.png", grey), ("rgba.png", np.dstack([grey] * 3 + [np.full_like(grey, 255)]))):
        if stored.ndim == 3 and dtype == np.uint16:
            continue  # 16-bit RGBA PNGs are rare and Pillow does not write them
        path = _png(tmp_path / name, stored)
        data, names = io.read_image(path)
        assert data.shape == (1, 1, 20, 24) and data.dtype == dtype and names == ["ch0"]
        np.testing.assert_array_equal(data[0, 0], grey)
        assert io.image_channels(path) == (["ch0"], (1, 1, 20, 24))
        meta = io.image_metadata(path, channel_names=["DNA"])
        assert meta["channel_names"] == ["DNA"] and meta["named"] and meta["pixel_size_um"] is None


def test_colour_png_needs_axes_and_a_broken_one_is_named(tmp_path):
    rgb = np.random.default_rng(3).integers(0, 255, (16, 20, 3), dtype=np.uint8)
    path = _png(tmp_path / "colour.png", rgb)
    with pytest.raises(InputError, match="RGB samples.*axes"):
        io.read_image(path)
    data, _ = io.read_image(path, axes="YXC")
    assert data.shape == (1, 3, 16, 20)
    np.testing.assert_array_equal(data[0, 2], rgb[..., 2])
    broken = tmp_path / "broken.png"
    broken.write_bytes(path.read_bytes()[:40])
    with pytest.raises(InputError, match=r"cannot read image .*broken.png: not a readable PNG"):
        io.read_image(broken)
    (tmp_path / "notes.png").write_text("not an image")  # imageio's reply asked for plugins
    with pytest.raises(InputError, match=r"notes.png: its content is not a PNG image"):
        io.read_image(tmp_path / "notes.png")


def test_folder_of_frames_is_a_movie_in_natural_order(tmp_path):
    """A Cell Tracking Challenge sequence: 01/t0.tif, t1.tif, ..., t10.tif."""
    rng = np.random.default_rng(4)
    frames = rng.integers(0, 4000, (11, 20, 24), dtype=np.uint16)
    folder = tmp_path / "01"
    folder.mkdir()
    for t, frame in enumerate(frames):
        tifffile.imwrite(folder / f"t{t}.tif", frame)
    (folder / "notes.txt").write_text("not a frame")
    (folder / "._t0.tif").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    data, names = io.read_image(folder)
    assert data.shape == (11, 1, 20, 24) and names == ["ch0"]
    np.testing.assert_array_equal(data[:, 0], frames)  # t10 after t9, not after t1
    assert io.image_channels(folder) == (["ch0"], (11, 1, 20, 24))
    assert io.image_metadata(folder)["shape"] == (11, 1, 20, 24)
    tifffile.imwrite(folder / "t11.tif", frames[0][:10])
    for read in (io.read_image, io.image_channels):
        with pytest.raises(
            InputError, match=r"image folder .*01: t11.tif has channels \['ch0'\] of \(10, 24\)"
        ):
            read(folder)
    tifffile.imwrite(folder / "t11.tif", frames[0].astype(np.float32))
    with pytest.raises(InputError, match="t11.tif holds float32, the frames before uint16"):
        io.read_image(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no .tif/.tiff frames"):
        io.read_image(tmp_path / "empty")


def test_folder_of_label_frames_is_a_stack(tmp_path):
    labels = np.zeros((3, 16, 16), np.uint16)
    for t in range(3):
        labels[t, 2 + t : 6 + t, 3:7] = t + 1
    folder = tmp_path / "masks"
    folder.mkdir()
    for t, frame in enumerate(labels):
        tifffile.imwrite(folder / f"mask{t:03d}.tif", frame)
    np.testing.assert_array_equal(io.read_labels(folder), labels.astype(np.uint32))
    tifffile.imwrite(folder / "mask003.tif", labels[:2])
    with pytest.raises(InputError, match=r"label folder .*masks: mask003.tif has shape \(2, 16, 16\)"):
        io.read_labels(folder)


def test_anndata_files_that_are_missing_or_not_h5ad_are_named(tmp_path):
    import anndata

    from cytotrail.cli import main

    with pytest.raises(InputError, match="not found"):
        io.read_anndata(tmp_path / "cells.h5ad")
    (tmp_path / "junk.h5ad").write_text("not hdf5")
    with pytest.raises(InputError, match="junk.h5ad: not a readable .h5ad"):
        io.read_anndata(tmp_path / "junk.h5ad")
    adata = anndata.AnnData(np.ones((3, 2), np.float32))
    adata.write_h5ad(tmp_path / "ok.h5ad")
    assert io.read_anndata(tmp_path / "ok.h5ad").shape == (3, 2)
    # the report named a missing input "cannot write ..." (exit 1): now a bad input (exit 2)
    assert main(["report", "summary", str(tmp_path / "cells.h5ad"), "-o", str(tmp_path / "out")]) == 2
