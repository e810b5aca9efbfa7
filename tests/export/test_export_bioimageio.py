"""bioimage.io export: the shipped (or a trained) model as a format-0.5 package that
bioimageio.spec validates and bioimageio.core's test reproduces."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from cytotrail.cli import main
from cytotrail.export.bioimageio import export_model
from cytotrail.io import InputError
from cytotrail.segment.model import build_net, load_model, save_model, sha256_file

# loading TorchScript weights (here and in bioimageio.core), which torch >= 2.9 flags as deprecated
# though it is the weight format bioimage.io consumers run
TORCHSCRIPT_DEPRECATED = "ignore:`torch.jit.*deprecated:DeprecationWarning"
# bioimageio.spec leaves the files it checksums open (collected later as unraisable warnings)
UNCLOSED_BY_BIOIMAGEIO = "ignore::pytest.PytestUnraisableExceptionWarning"


@pytest.fixture(scope="module")
def shipped_package(tmp_path_factory):
    return export_model(tmp_path_factory.mktemp("bioimageio") / "nuclei_unet")


def test_package_holds_every_file_with_its_checksum(shipped_package):
    folder = shipped_package.parent
    rdf = yaml.safe_load(shipped_package.read_text())
    assert rdf["type"] == "model" and rdf["format_version"].startswith("0.5.")
    assert rdf["license"] == "BSD-3-Clause" and rdf["authors"] and rdf["cite"]
    assert rdf["training_data"]["license"] == "CC0-1.0"
    files = [
        rdf["weights"]["pytorch_state_dict"],
        rdf["weights"]["pytorch_state_dict"]["architecture"],
        rdf["weights"]["torchscript"],
        *rdf["attachments"],
        *(t[k] for t in rdf["inputs"] + rdf["outputs"] for k in ("test_tensor", "sample_tensor")),
    ]
    for entry in files:
        assert sha256_file(folder / entry["source"]) == entry["sha256"], entry["source"]
    # the preprocessing is cytotrail's percentile normalisation, the postprocessing its sigmoid
    _, config, thresholds = load_model()
    (step,) = rdf["inputs"][0]["preprocessing"]
    assert step["id"] == "scale_range"
    assert [step["kwargs"]["min_percentile"], step["kwargs"]["max_percentile"]] == config["normalization"][
        "percentiles"
    ]
    assert rdf["outputs"][0]["postprocessing"] == [{"id": "sigmoid"}]
    # blockwise consumers crop a halo; the smallest input keeps a core beside it
    halos = [axis["halo"] for axis in rdf["outputs"][0]["axes"][2:]]
    assert halos == [32, 32] and rdf["inputs"][0]["axes"][2]["size"]["min"] > 2 * halos[0]
    # what the format cannot express is documented and shipped
    readme = (folder / rdf["documentation"]).read_text()
    assert "## Validation" in readme and "watershed" in readme
    assert json.loads((folder / "thresholds.json").read_text()) == thresholds


@pytest.mark.filterwarnings(TORCHSCRIPT_DEPRECATED)
def test_torchscript_weights_match_the_network_at_another_size(shipped_package):
    import torch

    net, _, _ = load_model()
    traced = torch.jit.load(str(shipped_package.parent / "weights_torchscript.pt"))
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(2, 1, 136, 96)).astype(np.float32))
    with torch.no_grad():
        np.testing.assert_allclose(traced(x).numpy(), net(x).numpy(), atol=1e-5)


def test_test_output_is_what_cytotrail_computes(shipped_package):
    import torch

    from cytotrail.segment.preprocess import normalize, percentiles

    folder = shipped_package.parent
    frame = np.load(folder / "test_input.npy")[0, 0]
    expected = np.load(folder / "test_output.npy")
    net, config, _ = load_model()
    x = normalize(frame, *percentiles(frame, *config["normalization"]["percentiles"]))
    with torch.no_grad():
        maps = torch.sigmoid(net(torch.from_numpy(x[None, None]))).numpy()
    np.testing.assert_allclose(maps, expected, atol=1e-6)
    assert 0.02 < (expected[0, 0] > 0.5).mean() < 0.9  # the frame holds nuclei and background


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory):
    """A small freshly 'trained' model folder (random weights, another architecture)."""
    import torch

    torch.manual_seed(0)
    config = {
        "name": "tiny",
        "architecture": {"base": 4, "depth": 3, "in_channels": 1, "out_channels": 2},
        "normalization": {"percentiles": [2.0, 99.0]},
        "train_diameter": 12.0,
    }
    net = build_net(config).eval()
    return save_model(tmp_path_factory.mktemp("models") / "tiny", net, config)


def test_a_trained_model_exports_with_its_own_architecture(trained_model, tmp_path):
    rdf = yaml.safe_load(export_model(tmp_path / "pkg", trained_model).read_text())
    assert rdf["weights"]["pytorch_state_dict"]["architecture"]["kwargs"] == {
        "in_channels": 1,
        "out_channels": 2,
        "base": 4,
        "depth": 3,
    }
    assert rdf["inputs"][0]["axes"][2]["size"]["step"] == 4
    assert rdf["inputs"][0]["preprocessing"][0]["kwargs"]["min_percentile"] == 2.0


def test_bad_models_name_the_folder(tmp_path, trained_model):
    with pytest.raises(InputError, match="not found"):
        export_model(tmp_path / "pkg", tmp_path / "nowhere")
    config = json.loads((trained_model / "config.json").read_text())
    config["architecture"]["in_channels"] = 3
    other = tmp_path / "rgb"
    other.mkdir()
    (other / "config.json").write_text(json.dumps(config))
    (other / "weights.pt").write_bytes((trained_model / "weights.pt").read_bytes())
    with pytest.raises(InputError, match=str(other)):
        export_model(tmp_path / "pkg", other)
    assert not (tmp_path / "pkg").exists()


@pytest.mark.parametrize(
    "command", [["export-model"], ["export"], ["export", "spatialdata"], ["export", "geff"]]
)
def test_export_commands_document_themselves(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    assert "usage: cytotrail" in capsys.readouterr().out


def test_cli_export_model(trained_model, tmp_path, capsys):
    out = tmp_path / "pkg"
    assert (
        main(
            [
                "-q",
                "export-model",
                str(trained_model),
                "-o",
                str(out),
                "--author",
                "Ada Lovelace",
                "--author",
                "Alan Turing",
            ]
        )
        == 0
    )
    rdf = yaml.safe_load((out / "rdf.yaml").read_text())
    assert [a["name"] for a in rdf["authors"]] == ["Ada Lovelace", "Alan Turing"]
    assert main(["-q", "export-model", str(tmp_path / "missing"), "-o", str(out)]) == 2
    assert "missing" in capsys.readouterr().err
    # an existing package is replaced; a folder of other files is not
    assert main(["-q", "export-model", str(trained_model), "-o", str(out)]) == 0
    assert main(["-q", "export-model", str(trained_model), "-o", str(trained_model.parent)]) == 2
    assert "refusing to replace" in capsys.readouterr().err
    assert (trained_model / "weights.pt").is_file()


@pytest.mark.filterwarnings(UNCLOSED_BY_BIOIMAGEIO)
def test_bioimageio_spec_validates_a_trained_models_package(trained_model, tmp_path):
    spec = pytest.importorskip("bioimageio.spec", reason="bioimageio.spec is in the `export` extra")
    descr = spec.load_description(export_model(tmp_path / "pkg", trained_model))
    assert descr.validation_summary.status == "valid-format", descr.validation_summary.format()


@pytest.mark.slow
@pytest.mark.filterwarnings(TORCHSCRIPT_DEPRECATED)
@pytest.mark.filterwarnings(UNCLOSED_BY_BIOIMAGEIO)
def test_bioimageio_core_test_model_passes(shipped_package):
    core = pytest.importorskip("bioimageio.core", reason="bioimageio.core is in the `export` extra")
    summary = core.test_model(shipped_package)
    assert summary.status == "passed", summary.format()
    tested = {d.name for d in summary.details if d.status == "passed"}
    assert any("pytorch_state_dict" in name for name in tested)
    assert any("torchscript" in name for name in tested)
