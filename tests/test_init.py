"""`cytotrail init`: a config and sample sheet for a user's own images (issue 17)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import yaml

from cytotrail import io
from cytotrail.cli import main
from cytotrail.io import InputError
from cytotrail.project import guess_nuclear_channel, sample_names


def _multiplexed(path, names=("DNA1", "CD3", "CD20"), pixel_size_um=0.65, frames=2):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 1000, (frames, len(names), 48, 48), dtype=np.uint16)
    io.write_image(path, image, channel_names=list(names), pixel_size_um=pixel_size_um)
    return path


def _read(outdir):
    config = yaml.safe_load((outdir / "config" / "config.yaml").read_text())
    sheet = io.read_table(outdir / "config" / "samples.tsv")
    return config, sheet


def test_multiplexed_image_gives_its_channels_pixel_size_and_no_signatures(tmp_path):
    image = _multiplexed(tmp_path / "data" / "slide 1#A.ome.tif")
    assert main(["-q", "init", str(image), "-o", str(tmp_path / "proj")]) == 0
    config, sheet = _read(tmp_path / "proj")
    assert config["nuclear_channel"] == "DNA1"
    assert config["pixel_size_um"] == pytest.approx(0.65)
    assert config["cluster"]["markers"] == ["CD3", "CD20"]
    assert config["cluster"]["cell_types"] == {}  # none of the demo's CD3/CD20 signatures
    assert list(sheet["sample"]) == ["slide_1_A"] and sheet["image"][0] == str(image.resolve())
    from conftest import ROOT
    from snakemake.utils import validate

    validate(config, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))


def test_nuclear_only_imagej_movie(tmp_path):
    movie = tmp_path / "proj" / "movie.tif"  # inside the project: a relative path in the sheet
    movie.parent.mkdir()
    tifffile.imwrite(
        movie,
        np.zeros((4, 32, 32), np.uint16),
        imagej=True,
        resolution=(2.0, 2.0),
        metadata={"axes": "TYX", "unit": "um"},
    )
    assert main(["-q", "init", str(movie), "-o", str(tmp_path / "proj")]) == 0
    config, sheet = _read(tmp_path / "proj")
    assert config["nuclear_channel"] == "ch0" and config["cluster"]["markers"] == []
    assert config["pixel_size_um"] == pytest.approx(0.5)
    assert sheet["image"][0] == "movie.tif"


@pytest.mark.parametrize(
    "names, expected",
    [
        (["CD3", "Hoechst 33342", "CD20"], "Hoechst 33342"),
        (["Ki67", "H3K27me3"], "H3K27me3"),
        (["GFP", "SiR-DNA"], "SiR-DNA"),
        (["DAPI"], "DAPI"),
        (["PIK3CA", "PI"], "PI"),
        (["only"], "only"),
        # a MIBI panel in alphabetical order: the DNA dye, not the first histone mark
        (["Au", "Background", "CD3", "dsDNA", "H3K27me3", "HH3"], "dsDNA"),
        (["CD45", "H3K9ac", "HH3", "Ki67"], "HH3"),  # pan-histone before a modification
        (["Ir191", "Ir193", "CD3"], "Ir191"),
    ],
)
def test_nuclear_channel_is_guessed_from_its_name(names, expected):
    assert guess_nuclear_channel(names) == expected


def test_channels_without_an_antibody_are_no_markers(tmp_path):
    """MIBI and IMC panels: a second DNA channel, the slide's elements and Background are not
    clustered; Background becomes the background channel that vetoes positive calls."""
    from cytotrail.project import channel_roles

    names = [
        "Au",
        "Background",
        "CD3",
        "dsDNA",
        "HH3",
        "H3K27me3",
        "Ki67",
        "Si",
        "Ta",
        "Ag107",
        "H3S10p",
        "Histone H3 pS10",
    ]
    markers, background, left_out = channel_roles(names, ["dsDNA"])
    assert markers == ["CD3", "H3K27me3", "Ki67", "Ag107", "H3S10p", "Histone H3 pS10"]  # marks are markers
    assert background == ["Background"]
    assert set(left_out) == {"Au", "HH3", "Si", "Ta"}
    image = _multiplexed(
        tmp_path / "mibi.ome.tif", names=("DNA1", "DNA2", "CD3", "CD20", "Background", "Au"), frames=1
    )
    assert main(["-q", "init", str(image), "-o", str(tmp_path / "p")]) == 0
    text = (tmp_path / "p" / "config" / "config.yaml").read_text()
    assert "left out: DNA2 (a nuclear stain), Au (an element, no antibody)" in text
    config, _ = _read(tmp_path / "p")
    assert config["nuclear_channel"] == "DNA1"
    assert config["cluster"]["markers"] == ["CD3", "CD20"]
    assert config["cluster"]["background"] == ["Background"]


def test_unclear_nuclear_channel_asks_for_it(tmp_path, capsys):
    image = _multiplexed(tmp_path / "x.ome.tif", names=("a", "b"))
    assert main(["init", str(image), "-o", str(tmp_path / "p")]) == 2
    assert "--nuclear-channel" in capsys.readouterr().err
    assert main(["-q", "init", str(image), "-o", str(tmp_path / "p"), "--nuclear-channel", "b"]) == 0
    config, _ = _read(tmp_path / "p")
    assert config["nuclear_channel"] == "b" and config["cluster"]["markers"] == ["a"]
    assert main(["init", str(image), "-o", str(tmp_path / "p"), "--nuclear-channel", "b"]) == 2
    assert "exists" in capsys.readouterr().err  # no silent overwrite of the user's edits


def test_images_with_different_pixel_sizes_are_refused(tmp_path, capsys):
    a = _multiplexed(tmp_path / "a.ome.tif", pixel_size_um=0.5)
    b = _multiplexed(tmp_path / "b.ome.tif", pixel_size_um=1.0)
    assert main(["init", str(a), str(b), "-o", str(tmp_path / "p")]) == 2
    assert "different pixel sizes" in capsys.readouterr().err


def test_sample_names_are_safe_and_unique():
    assert sample_names(["a/x y.ome.tif", "b/x y.tif", "_z.tiff"]) == ["x_y", "x_y_2", "z"]
    with pytest.raises(InputError):
        guess_nuclear_channel(["a", "b"], given="c")


@pytest.mark.workflow
def test_init_project_passes_the_workflows_checks(tmp_path):
    """From `cytotrail init` to the workflow: the pre-flight checks accept what init wrote."""
    from conftest import planned_jobs

    a = _multiplexed(tmp_path / "data" / "a.ome.tif", names=("DNA1", "CD3", "CD20", "Background"))
    b = _multiplexed(tmp_path / "data" / "b.ome.tif", names=("DNA1", "CD20", "CD3", "Ki67", "Background"))
    assert main(["-q", "init", str(a), str(b), "-o", str(tmp_path / "proj")]) == 0
    config, _ = _read(tmp_path / "proj")
    assert config["cluster"]["markers"] == ["CD3", "CD20"]  # only those every image has
    assert config["cluster"]["background"] == ["Background"]
    jobs = planned_jobs(tmp_path / "proj")
    assert jobs["segment_nuclei"] == 2 and jobs["quantify_cells"] == 2


@pytest.mark.workflow
@pytest.mark.slow
def test_nuclear_only_movie_from_init_to_a_finished_run(tmp_path):
    """The README's first path for a user's own data: one-channel movie, init, run, report."""
    from conftest import snakemake

    from cytotrail.synth import make_timelapse

    data = make_timelapse(n_frames=4, shape=(80, 80), n_cells=8, seed=12)
    movie = tmp_path / "movies" / "h2b movie.tif"
    movie.parent.mkdir()
    tifffile.imwrite(
        movie,
        data.image[:, 0],
        imagej=True,
        resolution=(1 / 0.65, 1 / 0.65),
        metadata={"axes": "TYX", "unit": "um"},
    )
    assert main(["-q", "init", str(movie), "-o", str(tmp_path / "proj")]) == 0
    snakemake(tmp_path / "proj")
    results = tmp_path / "proj" / "results"
    assert (results / "report.html").stat().st_size > 0
    summary = io.read_table(results / "report" / "summary.tsv")
    assert list(summary["sample"]) == ["h2b_movie"] and summary["cells"][0] > 0
    assert io.read_labels(results / "h2b_movie" / "labels.tif").shape == (4, 80, 80)


def test_init_subtracts_no_background_from_a_users_tissue(tmp_path):
    # local background (block medians outside the nuclei) took the PanCK of a dense tumour
    # nest for background on a real MIBI image and halved its tumour cells: a user's own
    # images are measured as MCQuant and steinbock measure them, the demo keeps `local`
    import yaml

    from cytotrail.project import config_text

    metadata = [{"pixel_size_um": 0.5, "channel_names": ["DNA", "PanCK"]}]
    config = yaml.safe_load(config_text(metadata, ["DNA"], images=["tissue.tif"]))
    assert config["quantify"]["background"] is None


def test_init_grows_whole_cells_over_the_membrane_channels_it_recognises(tmp_path):
    # membrane markers live outside the nucleus: where the panel names them, init grows
    # whole cells over them (steinbock's IMC images: F1 0.585 against DeepCell's whole
    # cells, the 3 µm ring 0.524, benchmarks/bench_cells.py --steinbock)
    from conftest import ROOT, planned_jobs
    from snakemake.utils import validate

    from cytotrail.project import guess_membrane_channels

    panel = ["DNA1", "CD3", "E-cadherin", "Na/K-ATPase", "HLA-DR", "MHC-II", "CK8/18", "Ki67", "CD45RO"]
    assert guess_membrane_channels(panel) == ["E-cadherin", "Na/K-ATPase", "CK8/18", "CD45RO"]
    assert guess_membrane_channels(["CD3", "CD20", "Ki67"]) == []
    mibi = ["dsDNA", "Pan-Keratin", "HLA_Class_1", "HLA_Class_II", "Beta catenin", "SMA", "CD45", "Vimentin"]
    assert guess_membrane_channels(mibi) == ["Pan-Keratin", "HLA_Class_1", "Beta catenin", "CD45", "Vimentin"]
    image = _multiplexed(tmp_path / "data" / "a.ome.tif", names=("DNA1", "CD3", "PanCK", "CD45"))
    assert main(["-q", "init", str(image), "-o", str(tmp_path / "proj")]) == 0
    config, _ = _read(tmp_path / "proj")
    assert config["segment"]["cells"] == {"channels": ["PanCK", "CD45"]}
    validate(config, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    assert planned_jobs(tmp_path / "proj")["segment_cells"] == 1
    # a panel without one keeps the nucleus and its ring
    plain = _multiplexed(tmp_path / "data" / "b.ome.tif", names=("DNA1", "CD3", "CD20"))
    assert main(["-q", "init", str(plain), "-o", str(tmp_path / "plain")]) == 0
    assert _read(tmp_path / "plain")[0]["segment"]["cells"] is None
