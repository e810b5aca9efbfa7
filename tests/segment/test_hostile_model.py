"""Model folders from strangers: weights inside the folder, hashes, architecture bounds, and
one clear message instead of torch's traceback (issue 17)."""

from __future__ import annotations

import json
import shutil

import pytest

from cytotrail.io import InputError
from cytotrail.segment.model import SHIPPED_SHA256, check_model, load_model, model_dir, sha256_file


@pytest.fixture
def folder(tmp_path):
    copy = tmp_path / "mine"
    shutil.copytree(model_dir(None), copy)
    return copy


def _edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    for key, value in changes.items():
        if key.startswith("architecture."):
            config["architecture"][key.split(".", 1)[1]] = value
        else:
            config[key] = value
    (folder / "config.json").write_text(json.dumps(config))


def _rehash(folder):
    _edit_config(folder, weights_sha256=sha256_file(folder / "weights.pt"))


def test_shipped_weights_match_the_packages_own_record():
    assert sha256_file(model_dir(None) / "weights.pt") == SHIPPED_SHA256["nuclei_unet"]


def test_weights_outside_the_folder_are_refused(folder, tmp_path):
    shutil.copy(folder / "weights.pt", tmp_path / "elsewhere.pt")
    for name in ("../elsewhere.pt", str(tmp_path / "elsewhere.pt")):
        _edit_config(folder, weights=name)
        with pytest.raises(InputError, match="outside the model folder"):
            load_model(folder)


def test_replaced_shipped_folder_is_caught_by_the_package_record(folder, monkeypatch):
    """Weights and config.json replaced together pass config.json's own hash check."""
    import torch

    import cytotrail.segment.model as model

    state = torch.load(folder / "weights.pt", weights_only=True)
    state = {k: v + 0.01 if v.is_floating_point() else v for k, v in state.items()}
    torch.save(state, folder / "weights.pt")
    _rehash(folder)
    load_model(folder)  # a user's own folder: its config.json is the record
    monkeypatch.setattr(model, "_SHIPPED", folder.parent)
    monkeypatch.setitem(model.SHIPPED_SHA256, "mine", SHIPPED_SHA256["nuclei_unet"])
    with pytest.raises(InputError, match="shipped model.*replaced"):
        check_model("mine")


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"architecture.base": 4096, "architecture.depth": 8}, "architecture.base"),
        ({"architecture.base": 256, "architecture.depth": 8}, "parameters"),
        ({"architecture.depth": "4; rm"}, "architecture.depth"),
    ],
)
def test_huge_or_bad_architecture_is_refused_before_allocation(folder, changes, needle):
    _edit_config(folder, **changes)
    with pytest.raises(InputError, match=needle):
        check_model(folder)


@pytest.mark.parametrize("payload", ["pickle", "list", "mismatch"])
def test_crafted_weights_give_one_clear_message(folder, tmp_path, payload, capsys):
    import pickle

    import torch

    if payload == "pickle":

        class Evil:
            def __reduce__(self):
                return (print, ("PWNED",))

        (folder / "weights.pt").write_bytes(pickle.dumps(Evil()))
    elif payload == "list":
        torch.save([torch.zeros(3)], folder / "weights.pt")
    else:
        torch.save({"head.weight": torch.zeros(2, 16, 1, 1)}, folder / "weights.pt")
    _rehash(folder)
    from cytotrail.cli import main

    image = tmp_path / "x.tif"
    import numpy as np
    import tifffile

    tifffile.imwrite(image, np.zeros((32, 32), np.uint16))
    assert main(["segment", str(image), "-o", str(tmp_path / "l.tif"), "--model", str(folder)]) == 2
    captured = capsys.readouterr()
    assert "PWNED" not in captured.out + captured.err
    err = captured.err.strip().splitlines()[-1]
    assert "weights.pt" in err and "Traceback" not in captured.err
    assert "weights_only=False" not in captured.err
    if payload != "mismatch":
        assert "not" in err and "state dict" in err
    else:
        assert "does not fit the architecture" in err


@pytest.mark.workflow
def test_workflow_checks_the_model_folder_before_any_job(folder, tmp_path):
    from conftest import prepare_demo, snakemake

    _edit_config(folder, weights="../../etc/passwd")
    prepare_demo(tmp_path, **{"segment.backend": "unet", "segment.model": str(folder)})
    proc = snakemake(tmp_path, "--dry-run", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "segment.model" in out and "outside the model folder" in out
