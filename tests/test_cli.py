"""The command line: every stage alone on a user's files, and one clear line on bad input."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from cytotrail import io
from cytotrail.cli import main
from cytotrail.synth import make_timelapse, write_dataset


@pytest.fixture(scope="module")
def movie(tmp_path_factory):
    folder = tmp_path_factory.mktemp("movie")
    data = make_timelapse(n_frames=4, shape=(80, 80), n_cells=8, seed=21)
    write_dataset(folder, data, sample="m")
    return folder, data


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) >= 1 and "Traceback" not in "\n".join(err)
    return err[-1]


@pytest.mark.parametrize(
    "command", ["init", "segment", "track", "quantify", "cluster", "report", "demo", "train"]
)
def test_every_stage_documents_itself(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert "usage: cytotrail" in capsys.readouterr().out


def test_stages_chain_on_a_users_files(movie, tmp_path):
    folder, data = movie
    image = str(folder / "m.ome.tif")
    labels = str(folder / "truth" / "m_labels.tif")  # the user's own masks
    assert (
        main(
            ["-q", "segment", image, "-o", str(tmp_path / "l.tif"), "--backend", "labels", "--labels", labels]
        )
        == 0
    )
    assert main(["-q", "track", str(tmp_path / "l.tif"), "-o", str(tmp_path / "t.csv"), "--sample", "m"]) == 0
    assert main(["-q", "quantify", image, str(tmp_path / "l.tif"), "-o", str(tmp_path / "c.parquet")]) == 0
    tracks, cells = io.read_table(tmp_path / "t.csv"), io.read_table(tmp_path / "c.parquet")
    assert len(tracks) == len(cells) == len(data.tracks)
    assert set(tracks["sample"]) == set(cells["sample"]) == {"m"}
    assert (
        main(
            [
                "-q",
                "cluster",
                str(tmp_path / "c.parquet"),
                "--tracks",
                str(tmp_path / "t.csv"),
                "-o",
                str(tmp_path / "a.h5ad"),
                "--markers",
                "CD3",
                "CD20",
                "CD68",
                "PanCK",
                "--cell-types",
                "{T_cell: {positive: [CD3]}, B_cell: {positive: [CD20]}}",
                "--no-umap",
            ]
        )
        == 0
    )
    import anndata

    adata = anndata.read_h5ad(tmp_path / "a.h5ad")
    assert adata.n_obs == len(data.tracks)
    assert set(adata.obs["cell_type"]) <= {"T_cell", "B_cell", "unknown"}
    assert {"T_cell", "B_cell"} <= set(adata.obs["cell_type"])


def test_segment_with_flip_tta_finds_the_nuclei(movie, tmp_path):
    from cytotrail.segment.metrics import f1_score

    folder, _ = movie
    out = tmp_path / "tta.tif"
    assert main(["-q", "segment", str(folder / "m.ome.tif"), "-o", str(out), "--tta", "--device", "cpu"]) == 0
    truth = io.read_labels(folder / "truth" / "m_labels.tif")
    predicted = io.read_labels(out)
    assert predicted.shape == truth.shape
    f1 = np.mean([f1_score(t, p) for t, p in zip(truth, predicted)])
    assert f1 >= 0.9
    import json

    used = json.loads((tmp_path / "tta.segment.json").read_text())
    assert used["tta"] is True and used["backend"] == "unet"
    assert used["diameter_source"] == "estimated" and 4 < used["diameter_px"] < 40


def test_detections_table_keeps_its_columns(tmp_path):
    table = make_timelapse(n_frames=5, shape=(96, 96), n_cells=10, seed=22).tracks
    table = table[["frame", "y", "x", "area"]].assign(note="mine")
    io.write_table(tmp_path / "det.csv", table)
    assert main(["-q", "track", str(tmp_path / "det.csv"), "-o", str(tmp_path / "out.parquet")]) == 0
    out = io.read_table(tmp_path / "out.parquet")
    assert len(out) == len(table)
    assert {"frame", "y", "x", "area", "note", "track_id", "parent_track_id"} <= set(out)


def test_track_exports_and_reads_ctc_folders(tmp_path, capsys):
    from cytotrail.track.ctc import read_ctc

    data = make_timelapse(n_frames=12, shape=(128, 128), n_cells=20, division_every=6, seed=23)
    io.write_labels(tmp_path / "l.tif", data.labels)
    assert (
        main(
            [
                "-q",
                "track",
                str(tmp_path / "l.tif"),
                "-o",
                str(tmp_path / "t.csv"),
                "--ctc",
                str(tmp_path / "ctc"),
            ]
        )
        == 0
    )
    tracks = io.read_table(tmp_path / "t.csv")
    ctc_labels, ctc_tracks = read_ctc(tmp_path / "ctc")
    # every detection is in the CTC masks, and every division of cytotrail's table is a CTC parent link
    assert ((ctc_labels > 0) == (data.labels > 0)).all()
    assert len(ctc_tracks) == len(tracks)

    def n_children(table):
        return table.groupby("track_id")["parent_track_id"].first().notna().sum()

    assert n_children(ctc_tracks) >= n_children(tracks) > 0
    # a CTC folder as INPUT: its masks are linked again
    assert main(["-q", "track", str(tmp_path / "ctc"), "-o", str(tmp_path / "again.csv")]) == 0
    again = io.read_table(tmp_path / "again.csv")
    assert len(again) == len(tracks) and again["track_id"].nunique() == tracks["track_id"].nunique()
    # a detections table has no masks to export
    io.write_table(tmp_path / "det.csv", tracks[["frame", "y", "x"]])
    assert (
        main(
            ["track", str(tmp_path / "det.csv"), "-o", str(tmp_path / "x.csv"), "--ctc", str(tmp_path / "c2")]
        )
        == 2
    )
    assert "--ctc needs masks" in _error_line(capsys) and not (tmp_path / "x.csv").exists()


def test_wrong_channel_name(movie, tmp_path, capsys):
    folder, _ = movie
    assert (
        main(["segment", str(folder / "m.ome.tif"), "-o", str(tmp_path / "l.tif"), "--channel", "Hoechst"])
        == 2
    )
    line = _error_line(capsys)
    assert "Hoechst" in line and "m.ome.tif" in line and "DNA" in line
    assert not (tmp_path / "l.tif").exists()


def test_image_with_wrong_number_of_dimensions(tmp_path, capsys):
    tifffile.imwrite(tmp_path / "x.tif", np.zeros((2, 2, 2, 16, 16), np.uint16))
    assert main(["segment", str(tmp_path / "x.tif"), "-o", str(tmp_path / "l.tif")]) == 2
    assert "x.tif" in _error_line(capsys)


def test_corrupt_and_missing_files(tmp_path, capsys):
    (tmp_path / "bad.tif").write_bytes(b"II*\x00" + bytes(50))
    assert main(["segment", str(tmp_path / "bad.tif"), "-o", str(tmp_path / "l.tif")]) == 2
    assert "bad.tif" in _error_line(capsys)
    assert main(["track", str(tmp_path / "none.csv"), "-o", str(tmp_path / "t.csv")]) == 2
    assert "none.csv" in _error_line(capsys)


def test_frame_with_no_cells_flows_through(tmp_path):
    data = make_timelapse(n_frames=3, shape=(80, 80), n_cells=8, seed=23)
    labels = data.labels.copy()
    labels[1] = 0  # the middle frame lost every nucleus
    write_dataset(tmp_path, data, sample="m")
    io.write_labels(tmp_path / "masks.tif", labels)
    image = str(tmp_path / "m.ome.tif")
    assert (
        main(
            [
                "-q",
                "segment",
                image,
                "-o",
                str(tmp_path / "l.tif"),
                "--backend",
                "labels",
                "--labels",
                str(tmp_path / "masks.tif"),
            ]
        )
        == 0
    )
    assert main(["-q", "track", str(tmp_path / "l.tif"), "-o", str(tmp_path / "t.csv")]) == 0
    assert main(["-q", "quantify", image, str(tmp_path / "l.tif"), "-o", str(tmp_path / "c.csv")]) == 0
    tracks = io.read_table(tmp_path / "t.csv")
    cells = io.read_table(tmp_path / "c.csv")
    assert 1 not in set(tracks["frame"]) and 1 not in set(cells["frame"])
    expected = sum(len(np.unique(f)) - 1 for f in labels)
    assert len(tracks) == len(cells) == expected


# --------------------------------------------------------------------------------------
# issue 17: inputs are never overwritten, truncated and ambiguous images are refused


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink"])
def test_output_that_is_the_input_image_is_refused(movie, tmp_path, capsys, how):
    import os
    import shutil

    folder, _ = movie
    image = tmp_path / "m.ome.tif"
    shutil.copy(folder / "m.ome.tif", image)
    before = image.read_bytes()
    output = image
    if how == "symlink":
        output = tmp_path / "out.tif"
        os.symlink(image, output)
    elif how == "hardlink":
        output = tmp_path / "out.tif"
        os.link(image, output)
    assert main(["segment", str(image), "-o", str(output), "--backend", "watershed"]) == 2
    assert "refusing to overwrite" in _error_line(capsys)
    assert image.read_bytes() == before


def test_quantify_and_track_refuse_their_inputs_as_output(movie, tmp_path, capsys):
    folder, _ = movie
    image, labels = str(folder / "m.ome.tif"), str(folder / "truth" / "m_labels.tif")
    before = (folder / "truth" / "m_labels.tif").read_bytes()
    assert main(["quantify", image, labels, "-o", labels]) == 2
    assert "refusing to overwrite" in _error_line(capsys)
    assert main(["track", labels, "-o", labels]) == 2
    assert "refusing to overwrite" in _error_line(capsys)
    assert (folder / "truth" / "m_labels.tif").read_bytes() == before


@pytest.mark.parametrize(
    ("command", "output", "message"),
    [
        ("segment", "labels.png", "writes .tif or .tiff files, not .png"),
        ("track", "tracks.txt", "writes .parquet or .csv or .tsv files, not .txt"),
        ("quantify", "cells.xlsx", "writes .parquet or .csv or .tsv files, not .xlsx"),
        ("cluster", "cells.csv", "writes .h5ad files, not .csv"),
        ("cluster", "folder.h5ad", "is a folder"),
    ],
)
def test_an_output_the_stage_cannot_write_is_refused_before_any_work(
    movie, tmp_path, capsys, command, output, message
):
    """segment wrote a TIFF named labels.png and cluster HDF5 named cells.csv; an output
    that is a folder failed only after the work, naming a temporary file."""
    folder, _ = movie
    image, labels = str(folder / "m.ome.tif"), str(folder / "truth" / "m_labels.tif")
    (tmp_path / "folder.h5ad").mkdir()
    inputs = {
        "segment": [image],
        "track": [labels],
        "quantify": [image, labels],
        "cluster": [str(tmp_path / "cells.parquet"), "--markers", "CD3"],  # never read
    }[command]
    assert main([command, *inputs, "-o", str(tmp_path / output)]) == 2
    assert message in _error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.h5ad"]


def test_track_options_and_tables_that_give_nothing(movie, tmp_path, capsys, caplog):
    import logging

    import pandas as pd

    caplog.set_level(logging.WARNING, logger="cytotrail")
    folder, _ = movie
    labels = str(folder / "truth" / "m_labels.tif")
    assert main(["track", labels, "-o", str(tmp_path / "t.csv"), "--fill-gaps"]) == 2
    assert "--fill-gaps fills the gaps of the CTC masks: it needs --ctc" in _error_line(capsys)
    pd.DataFrame({"frame": [0, 0, 1, 1], "y": [10.0, 60, 11, 61], "x": [10.0, 60, 10, 61]}).to_csv(
        tmp_path / "two.csv", index=False
    )
    assert main(["track", str(tmp_path / "two.csv"), "-o", str(tmp_path / "t.csv"), "--min-length", "5"]) == 0
    assert "no track is at least --min-length 5 frames long" in caplog.text
    (tmp_path / "empty.csv").write_text("frame,y,x\n")  # read as text columns: was "must be numeric"
    assert main(["track", str(tmp_path / "empty.csv"), "-o", str(tmp_path / "e.csv")]) == 0
    assert "holds no detections" in caplog.text
    assert pd.read_csv(tmp_path / "e.csv").empty


def test_segment_refuses_masks_for_another_backend(movie, tmp_path, capsys):
    folder, _ = movie
    image, labels = str(folder / "m.ome.tif"), str(folder / "truth" / "m_labels.tif")
    assert (
        main(["segment", image, "-o", str(tmp_path / "o.tif"), "--backend", "watershed", "--labels", labels])
        == 2
    )
    assert "--labels gives the masks of --backend labels, not of --backend watershed" in _error_line(capsys)


def test_segment_says_when_it_found_nothing(tmp_path, caplog):
    tifffile.imwrite(tmp_path / "flat.tif", np.full((48, 48), 7, np.uint16))
    assert (
        main(["segment", str(tmp_path / "flat.tif"), "-o", str(tmp_path / "l.tif"), "--backend", "watershed"])
        == 0
    )
    assert "no object was found in any frame of" in caplog.text
    assert io.read_labels(tmp_path / "l.tif").max() == 0


def test_segment_names_the_image_whose_frames_hold_nan(tmp_path, capsys):
    frame = np.ones((32, 32), np.float32)
    frame[3, 4] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", frame)
    assert main(["segment", str(tmp_path / "nan.tif"), "-o", str(tmp_path / "out.tif")]) == 2
    assert _error_line(capsys).endswith(
        "image " + str(tmp_path / "nan.tif") + ": frames contain NaN or infinite values"
    )
    assert not (tmp_path / "out.tif").exists()


@pytest.mark.parametrize("command", ["segment", "quantify"])
def test_truncated_image_is_an_error_naming_the_pages_readable(movie, tmp_path, capsys, command):
    """A 4-frame OME-TIFF cut to 60 % (an interrupted copy) was read as fewer frames, exit 0."""
    folder, _ = movie
    data = (folder / "m.ome.tif").read_bytes()
    (tmp_path / "cut.ome.tif").write_bytes(data[: int(len(data) * 0.6)])
    args = {
        "segment": [
            "segment",
            str(tmp_path / "cut.ome.tif"),
            "-o",
            str(tmp_path / "l.tif"),
            "--backend",
            "watershed",
        ],
        "quantify": [
            "quantify",
            str(tmp_path / "cut.ome.tif"),
            str(folder / "truth" / "m_labels.tif"),
            "-o",
            str(tmp_path / "c.csv"),
        ],
    }
    assert main(args[command]) == 2
    line = _error_line(capsys)
    assert "cut.ome.tif is truncated" in line and "page(s) readable" in line
    assert not (tmp_path / "l.tif").exists() and not (tmp_path / "c.csv").exists()


def test_z_stack_is_not_quantified_as_channels(movie, tmp_path, capsys):
    folder, data = movie
    tifffile.imwrite(
        tmp_path / "tz.ome.tif",
        data.image[:, :3],
        ome=True,
        photometric="minisblack",
        metadata={"axes": "TZYX"},
    )
    labels = str(folder / "truth" / "m_labels.tif")
    assert main(["quantify", str(tmp_path / "tz.ome.tif"), labels, "-o", str(tmp_path / "c.csv")]) == 2
    assert "Z axis" in _error_line(capsys)
    assert (
        main(
            [
                "-q",
                "quantify",
                str(tmp_path / "tz.ome.tif"),
                labels,
                "-o",
                str(tmp_path / "c.csv"),
                "--axes",
                "TCYX",
                "--channel-names",
                "DNA",
                "a",
                "b",
            ]
        )
        == 0
    )


# --------------------------------------------------------------------------------------
# renamed options: lengths name their unit; the old flags work, hidden, until cytotrail 0.2


def test_old_diameter_and_search_range_flags_still_work_with_a_message(movie, tmp_path, caplog, capsys):
    folder, _ = movie
    image = str(folder / "m.ome.tif")
    run = ["-q", "segment", image, "--backend", "watershed"]
    assert main([*run, "-o", str(tmp_path / "new.tif"), "--diameter-px", "9"]) == 0
    assert not [r for r in caplog.records if "deprecated" in r.getMessage()]
    assert main([*run, "-o", str(tmp_path / "old.tif"), "--diameter", "9"]) == 0
    (message,) = [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]
    assert "option `--diameter` is deprecated and renamed `--diameter-px`" in message
    new, old = io.read_labels(tmp_path / "new.tif"), io.read_labels(tmp_path / "old.tif")
    assert np.array_equal(new, old) and new.max() > 0
    caplog.clear()
    track = ["-q", "track", str(tmp_path / "new.tif")]
    assert main([*track, "-o", str(tmp_path / "new.csv"), "--search-range-px", "7"]) == 0
    assert main([*track, "-o", str(tmp_path / "old.csv"), "--search-range", "7"]) == 0
    (message,) = [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]
    assert "`--search-range` is deprecated and renamed `--search-range-px`" in message
    new, old = io.read_table(tmp_path / "new.csv"), io.read_table(tmp_path / "old.csv")
    assert new.equals(old)
    # the old flags are hidden from --help; giving both names is one clear error
    with pytest.raises(SystemExit):
        main(["segment", "--help"])
    help_text = capsys.readouterr().out
    assert "--diameter-px" in help_text and "--diameter " not in help_text
    assert (
        main([*track, "-o", str(tmp_path / "both.csv"), "--search-range", "7", "--search-range-px", "7"]) == 2
    )
    line = _error_line(capsys)
    assert "`--search-range` and `--search-range-px` are both given" in line


def test_segment_execution_options(movie, tmp_path, capsys):
    """--workers auto (the workflow's default resource) and --threads {threads} are accepted."""
    folder, _ = movie
    image = str(folder / "m.ome.tif")
    run = ["-q", "segment", image, "--backend", "watershed", "-o", str(tmp_path / "l.tif")]
    assert main([*run, "--workers", "auto", "--threads", "2", "--batch-size", "2"]) == 0
    assert main([*run, "--threads", "0"]) == 2
    assert "--threads must be a whole number >= 1, got 0" in _error_line(capsys)
    with pytest.raises(SystemExit) as exit_:
        main([*run, "--workers", "none"])
    assert exit_.value.code == 2


def test_segment_reads_a_kaggle_style_rgba_png_like_its_tiff(movie, tmp_path):
    import imageio.v3 as iio

    folder, data = movie
    frame = data.image[0, 0]
    grey = np.round(255 * (frame - frame.min()) / np.ptp(frame)).astype(np.uint8)
    iio.imwrite(tmp_path / "nuclei.png", np.dstack([grey] * 3 + [np.full_like(grey, 255)]))
    tifffile.imwrite(tmp_path / "nuclei.tif", grey)
    for name in ("nuclei.png", "nuclei.tif"):
        assert main(["-q", "segment", str(tmp_path / name), "-o", str(tmp_path / f"{name}.labels.tif")]) == 0
    from_png = io.read_labels(tmp_path / "nuclei.png.labels.tif")
    np.testing.assert_array_equal(from_png, io.read_labels(tmp_path / "nuclei.tif.labels.tif"))
    assert from_png.max() >= 6  # the frame's nuclei are found


def test_segment_reads_a_folder_of_frames_like_the_stack(movie, tmp_path, capsys):
    folder, data = movie
    frames = tmp_path / "01"
    frames.mkdir()
    for t, frame in enumerate(data.image[:, 0]):
        tifffile.imwrite(frames / f"t{t:03d}.tif", frame)
    tifffile.imwrite(tmp_path / "stack.tif", data.image[:, 0], imagej=True, metadata={"axes": "TYX"})
    for name in ("01", "stack.tif"):
        assert main(["-q", "segment", str(tmp_path / name), "-o", str(tmp_path / f"{name}.labels.tif")]) == 0
    from_folder = io.read_labels(tmp_path / "01.labels.tif")
    assert from_folder.shape == (4, 80, 80)
    np.testing.assert_array_equal(from_folder, io.read_labels(tmp_path / "stack.tif.labels.tif"))
    # an output inside the folder would be read as a frame by the next run
    assert main(["-q", "segment", str(frames), "-o", str(frames / "labels.tif")]) == 2
    assert "inside the input folder" in capsys.readouterr().err and not (frames / "labels.tif").exists()


def test_track_links_a_folder_of_label_frames_like_the_stack(movie, tmp_path):
    folder, _ = movie
    truth = io.read_labels(folder / "truth" / "m_labels.tif")
    masks = tmp_path / "SEG"
    masks.mkdir()
    for t, frame in enumerate(truth):
        tifffile.imwrite(masks / f"mask{t:03d}.tif", frame.astype(np.uint16))
    runs = {}
    for name, source in (("folder", masks), ("stack", folder / "truth" / "m_labels.tif")):
        out = tmp_path / f"{name}.csv"
        assert main(["-q", "track", str(source), "-o", str(out), "--sample", "m"]) == 0
        runs[name] = io.read_table(out)
    assert len(runs["folder"]) == int(sum(len(np.unique(f)) - 1 for f in truth))
    assert runs["folder"].equals(runs["stack"])
