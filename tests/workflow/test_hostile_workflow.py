"""Hostile input to the workflow: no config or sample-sheet value is ever run by the shell,
names survive exactly, and bad input stops the run before any job (issue 17)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from conftest import planned_jobs, snakemake, write_config

pytestmark = pytest.mark.workflow

# a channel name, a nuclear channel name and a folder that try every trick on a shell
EVIL_CHANNEL = 'Ki67$(touch PWNED_channel) "q" ;x #y ü'
EVIL_NUCLEAR = "DNA`touch PWNED_nuclear`; it's"
EVIL_FOLDER = "my data $(touch PWNED_path); 'ü' #1"
EVIL_IMAGE = "well#A1 $(touch PWNED_image).ome.tif"


def _hostile_sheet(workdir, *, extra_columns=None):
    """One synthetic sample whose image path and channel names are hostile; returns names."""
    from cytotrail.synth import make_timelapse, write_dataset

    data = make_timelapse(n_frames=3, shape=(64, 64), n_cells=6, seed=9)
    folder = workdir / EVIL_FOLDER
    write_dataset(folder, data, sample="plain")
    (folder / "plain.ome.tif").rename(folder / EVIL_IMAGE)
    names = [EVIL_NUCLEAR if n == "DNA" else EVIL_CHANNEL if n == "Ki67" else n for n in data.channel_names]
    columns = {
        "sample": "evil",
        "image": f"{EVIL_FOLDER}/{EVIL_IMAGE}",
        "channel_names": ",".join(names),
        "nuclear_channel": EVIL_NUCLEAR,
        **(extra_columns or {}),
    }
    (workdir / "config" / "samples.tsv").write_text(
        "\t".join(columns) + "\n" + "\t".join(columns.values()) + "\n"
    )
    return names, data


def _no_pwned(*folders):
    found = [p for folder in folders for p in Path(folder).rglob("PWNED*")]
    assert not found, f"the shell ran a user value: {found}"


def test_shell_commands_keep_every_value_one_literal_word(tmp_path):
    """The dry run's commands, split as a POSIX shell splits them, hold each value verbatim."""
    model = tmp_path / "models $(touch PWNED_model)"
    import shutil

    from cytotrail.segment.model import model_dir

    shutil.copytree(model_dir(None), model)
    write_config(
        tmp_path,
        results="out $(touch PWNED_results)",
        **{
            "segment.backend": "unet",
            "segment.model": str(model),
            "cluster.markers": ["CD3", EVIL_CHANNEL],
            "cluster.cell_types": {},
        },
    )
    names, _ = _hostile_sheet(tmp_path)
    proc = snakemake(tmp_path, "--dry-run", "--printshellcmds", "--forceall")
    commands = [
        line.split("Shell command:", 1)[1].strip()
        for line in (proc.stdout + proc.stderr).splitlines()
        if "Shell command: cytotrail" in line
    ]
    segment = shlex.split(next(c for c in commands if c.startswith("cytotrail segment")))
    quantify = shlex.split(next(c for c in commands if c.startswith("cytotrail quantify")))
    image = f"{EVIL_FOLDER}/{EVIL_IMAGE}"
    assert image in segment and image in quantify
    assert segment[segment.index("--channel") + 1] == EVIL_NUCLEAR
    assert segment[segment.index("--model") + 1] == str(model)
    given = quantify[quantify.index("--channel-names") + 1 :][: len(names)]
    assert given == names
    assert any(token.startswith("out $(touch PWNED_results)/") for token in segment)
    cluster = shlex.split(next(c for c in commands if c.startswith("cytotrail cluster")))
    assert cluster[cluster.index("--markers") + 1 :][:2] == ["CD3", EVIL_CHANNEL]
    _no_pwned(tmp_path)


@pytest.mark.slow
def test_hostile_names_run_end_to_end_and_survive(tmp_path):
    """A real run: nothing executes, and the channel named with shell syntax is measured under its name."""
    from cytotrail import io

    write_config(tmp_path, **{"cluster.markers": ["CD3", "CD20", "CD68", "PanCK"]})
    _hostile_sheet(tmp_path)
    snakemake(tmp_path, "results/evil/cells.parquet", "results/evil/report/segmentation.png")
    _no_pwned(tmp_path)
    cells = io.read_table(tmp_path / "results" / "evil" / "cells.parquet")
    assert len(cells) > 0
    assert f"{EVIL_CHANNEL}_cell_mean" in cells and f"{EVIL_NUCLEAR}_nucleus_mean" in cells


def test_labels_file_with_a_space_and_hash_in_its_path(tmp_path):
    """`labels` backend: the user's masks under a path with a space, `#` and `$(...)`."""
    from cytotrail import io

    write_config(tmp_path, **{"segment.backend": "labels"})
    _, data = _hostile_sheet(tmp_path, extra_columns={"labels": f"{EVIL_FOLDER}/truth/plain_labels.tif"})
    snakemake(tmp_path, "results/evil/labels.tif")
    _no_pwned(tmp_path)
    assert (io.read_labels(tmp_path / "results" / "evil" / "labels.tif") > 0).sum() == (data.labels > 0).sum()


@pytest.mark.parametrize(
    "key, value, needle",
    [
        ("segment.model", "nuclei_unet$(touch PWNED_model)", "segment.model"),
        ("cluster.feature", "cell_mean$(touch PWNED_feature)", "cluster.feature"),
    ],
)
def test_hostile_config_value_stops_the_run_before_any_job(tmp_path, key, value, needle):
    """With the watershed backend segment.model used to reach the shell unchecked; a feature
    quantify never measures failed only after every sample was processed."""
    write_config(tmp_path, **{key: value, "segment.backend": "watershed"})
    _hostile_sheet(tmp_path)
    proc = snakemake(tmp_path, "--dry-run", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and needle in out, out[-2000:]
    assert not (tmp_path / "results").exists()
    _no_pwned(tmp_path)


def test_sample_sheet_hash_is_part_of_a_file_name(tmp_path):
    """`well#A1.ome.tif` was read as `well` (the sheet was parsed with '#' as a comment)."""
    write_config(tmp_path)
    _hostile_sheet(tmp_path)
    sheet = tmp_path / "config" / "samples.tsv"
    sheet.write_text("# my plate, row A\n" + sheet.read_text())  # a whole-line comment still works
    assert planned_jobs(tmp_path)["segment_nuclei"] == 1


def test_header_only_sample_sheet_is_named(tmp_path):
    write_config(tmp_path)
    (tmp_path / "config" / "samples.tsv").write_text("sample\timage\n")
    proc = snakemake(tmp_path, "--dry-run", check=False)
    assert proc.returncode != 0 and "has no samples" in proc.stdout + proc.stderr


def test_truncated_image_stops_the_run_before_any_job(tmp_path):
    write_config(tmp_path)
    _hostile_sheet(tmp_path)
    image = tmp_path / EVIL_FOLDER / EVIL_IMAGE
    image.write_bytes(image.read_bytes()[: image.stat().st_size * 6 // 10])
    proc = snakemake(tmp_path, "--dry-run", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "is truncated" in out and "page(s) readable" in out, out[-2000:]


def test_signature_markers_are_checked_against_every_sample_before_any_job(tmp_path):
    """A user's config merged with the demo's kept its CD20 signatures; the run failed after
    segmentation ("signature markers ... are not among the clustered markers")."""
    from cytotrail.synth import make_timelapse, write_dataset

    data = make_timelapse(n_frames=2, shape=(48, 48), n_cells=3, seed=4)
    write_dataset(tmp_path / "data", data, sample="mine")
    names = ["DNA", "CD3", "a", "b", "c", "d"]
    write_config(tmp_path, **{"cluster.markers": ["CD3"]})  # the demo's cell_types stay
    (tmp_path / "config" / "samples.tsv").write_text(
        f"sample\timage\tchannel_names\nmine\tdata/mine.ome.tif\t{','.join(names)}\n"
    )
    proc = snakemake(tmp_path, "--dry-run", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "cluster.cell_types." in out and "CD20" in out, out[-2000:]
    assert not (tmp_path / "results").exists()


def test_rgb_movie_runs_with_explicit_axes_in_the_sheet(tmp_path):
    """An RGB timelapse needs `axes`; TYXC (samples as channels) passes the sheet's schema."""
    import numpy as np
    import tifffile

    (tmp_path / "data").mkdir()
    tifffile.imwrite(tmp_path / "data" / "rgb.tif", np.zeros((2, 32, 32, 3), np.uint8), photometric="rgb")
    write_config(tmp_path, nuclear_channel="B", **{"cluster.markers": ["R"], "cluster.cell_types": {}})
    sheet = tmp_path / "config" / "samples.tsv"
    sheet.write_text("sample\timage\tchannel_names\nrgb\tdata/rgb.tif\tR,G,B\n")
    proc = snakemake(tmp_path, "--dry-run", check=False)
    assert proc.returncode != 0 and "RGB samples" in proc.stdout + proc.stderr
    sheet.write_text("sample\timage\taxes\tchannel_names\nrgb\tdata/rgb.tif\tTYXC\tR,G,B\n")
    assert planned_jobs(tmp_path)["segment_nuclei"] == 1


@pytest.mark.parametrize(
    "key, value", [("cluster.gates", {"CD3": 1.0, "CD4": 2.0}), ("cluster.background", ["Empty"])]
)
def test_markers_in_gates_and_background_are_checked_before_any_job(tmp_path, key, value):
    from conftest import prepare_demo

    prepare_demo(tmp_path, **{key: value})
    proc = snakemake(tmp_path, "--dry-run", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and f"`{key}`" in out and str(list(value)[-1]) in out, out[-2000:]


def _lock_folder(folder):
    """Make ``folder`` refuse new files, for root too when chattr is there; returns the undo."""
    import os
    import shutil
    import subprocess

    if os.geteuid() == 0:
        if not shutil.which("chattr"):
            pytest.skip("root ignores permissions and chattr is not installed")
        if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
            pytest.skip("this filesystem has no immutable attribute")
        return lambda: subprocess.run(["chattr", "-i", str(folder)], check=True)
    folder.chmod(0o555)
    return lambda: folder.chmod(0o755)


def test_unwritable_results_folder_stops_before_any_job(tmp_path):
    from conftest import prepare_demo

    prepare_demo(tmp_path)
    results = tmp_path / "results"
    (results / "demo_a").mkdir(parents=True)
    unlock = _lock_folder(results / "demo_a")
    try:
        proc = snakemake(tmp_path, check=False)
    finally:
        unlock()
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "cannot write in results/demo_a" in out and "config key `results`" in out
    assert "PermissionError" not in out and "Traceback" not in out
    assert not (tmp_path / "resources" / "demo").exists()  # no job ran, not even the demo's
