"""A cytotrail model folder as a bioimage.io model package (format 0.5).

The package holds the network with the pre- and post-processing that the format can
express: the input is normalised by its 1st and 99.8th percentiles over Y and X
(``scale_range``, as cytotrail does per frame) and the two output logits go through a
sigmoid, so consumers (bioimageio.core, ilastik, deepImageJ, the BioImage Model Zoo) get
cytotrail's foreground and centre-ness maps. What the format cannot express is documented
in the package's README.md and shipped as attachments (``thresholds.json``,
``config.json``): rescaling nuclei to the training diameter, tiling with a 64 px margin, and
the seeded watershed that turns the maps into labels (``cytotrail segment`` does all three).

Weights come twice: TorchScript (traced, any input size that is a multiple of 8) and the
PyTorch state dict with the architecture's source file (``unet.py``, cytotrail's
``segment/net.py``). The test input is a seeded synthetic frame; the expected output is
computed by cytotrail's own normalisation and network, so ``bioimageio.core``'s test checks
that the package reproduces cytotrail. Everything is written with torch, numpy and yaml
alone; ``bioimageio.spec`` / ``bioimageio.core`` (``export`` extra) validate and run it.
"""

from __future__ import annotations

import datetime
import json
import shutil
import warnings
from pathlib import Path

import numpy as np

from cytotrail.io import InputError
from cytotrail.segment.model import sha256_file

__all__ = ["FORMAT_VERSION", "DEFAULT_AUTHORS", "model_rdf", "reference_tensors", "export_model"]

FORMAT_VERSION = "0.5.4"
DEFAULT_AUTHORS = ({"name": "cytotrail contributors"},)
# margin that tiling consumers crop from each output block (declared as the outputs' halo); the
# U-Net's receptive field reaches about 45 px, cytotrail's own tiles keep a 64 px margin
_HALO = 32
# input height and width: at least this, in steps of the U-Net's multiple
_MIN_SIZE = 2 * _HALO + 64
_TEST_SHAPE = (256, 256)
_TEST_SEED = 0
_CITE = (
    {
        "text": "Caicedo et al. 2019. Nucleus segmentation across imaging experiments: the 2018 Data "
        "Science Bowl. Nature Methods 16, 1247-1253 (training images, BBBC038).",
        "doi": "10.1038/s41592-019-0612-7",
    },
    {
        "text": "Ronneberger, Fischer, Brox 2015. U-Net: Convolutional Networks for Biomedical Image "
        "Segmentation. MICCAI 2015 (the architecture).",
        "doi": "10.1007/978-3-319-24574-4_28",
    },
)
_TAGS = (
    "nuclei",
    "instance-segmentation",
    "fluorescence-light-microscopy",
    "2d",
    "unet",
    "pytorch",
    "cytotrail",
)


def reference_tensors(net, config, *, shape=_TEST_SHAPE, seed=_TEST_SEED):
    """A test input frame and the output cytotrail computes for it.

    Parameters
    ----------
    net : torch.nn.Module
        The model's network, in eval mode.
    config : dict
        The model's config.json (its ``normalization.percentiles``).
    shape : (int, int)
        Frame size; multiples of the network's ``multiple``.
    seed : int
        Seed of the synthetic timelapse the frame is taken from.

    Returns
    -------
    test_input : (1, 1, Y, X) float32 ndarray
        Raw nuclear-stain intensities (not normalised).
    test_output : (1, 2, Y, X) float32 ndarray
        Sigmoid of the network's output on the frame normalised by its percentiles.
    """
    import torch

    from cytotrail.segment.preprocess import normalize, percentiles
    from cytotrail.synth import make_timelapse

    data = make_timelapse(n_frames=1, shape=tuple(shape), n_cells=12, seed=seed)
    frame = data.image[0, data.channel_names.index("DNA")].astype(np.float32)
    lo, hi = config.get("normalization", {}).get("percentiles", (1.0, 99.8))
    p_lo, p_hi = percentiles(frame, lo, hi)
    x = torch.from_numpy(normalize(frame, p_lo, p_hi)[None, None])
    device = next(net.parameters()).device
    with torch.no_grad():
        y = torch.sigmoid(net(x.to(device))).cpu().numpy().astype(np.float32)
    return frame[None, None], y


def _readme(name, card, config, thresholds):
    lo, hi = config.get("normalization", {}).get("percentiles", (1.0, 99.8))
    d_min, d_max = config.get("diameter_range", ("?", "?"))
    diameter = config.get("train_diameter", "?")
    tile, margin = config.get("tile_size", "?"), config.get("tile_margin", "?")
    tuned = json.dumps(thresholds, sort_keys=True)
    return f"""# {name}: cytotrail's nuclei U-Net as a bioimage.io model

Written by `cytotrail export-model` from the model folder `{config.get("name", name)}`
(weights sha256 `{config.get("weights_sha256", "?")}`).

## What the package computes
Input `raw`: one nuclear-stain channel, (batch, channel, y, x), any size that is at least
{_MIN_SIZE} px and a multiple of 8. Pre-processing: scale by the {lo}th and {hi}th
percentiles over y and x (`scale_range`). Output `maps`: two sigmoid maps, `foreground`
(probability that a pixel is nucleus) and `centreness` (distance to the nucleus boundary
divided by the nucleus's largest distance).

## What the format cannot express (done by `cytotrail segment`)
- Scale: the network was trained on nuclei {d_min}-{d_max} px across (training diameter
  {diameter} px). cytotrail estimates the diameter and rescales frames whose nuclei are more
  than 1.2x off; resize your images so nuclei are about {diameter} px across before running
  this package.
- Tiling: cytotrail runs tiles of {tile} px with a {margin} px margin; the outputs declare a
  halo of {_HALO} px that blockwise consumers crop.
- Labels: seeds are the centre-ness peaks of prominence >= `h` above `seed`, grown over
  `foreground` by a watershed; objects smaller than `min_area` x the area of a disc of the
  nucleus diameter are removed. Thresholds (`thresholds.json`): {tuned}.
  From this package's maps, in Python: `labels, _ = cytotrail.segment.postprocess.maps_to_labels(
  maps[0, 0], maps[0, 1], diameter={diameter}, thresholds=thresholds)`; from the image itself:
  `cytotrail segment IMAGE -o labels.tif`.

## Validation
The test tensors are a seeded synthetic frame (`cytotrail.synth.make_timelapse`, seed
{_TEST_SEED}, {_TEST_SHAPE[0]} x {_TEST_SHAPE[1]} px) and the maps that cytotrail's own normalisation and
network give for it; `bioimageio test rdf.yaml` reproduces them. How the model was
validated on held-out real and synthetic images, with its scores, is in the model card
below.

# Model card

{card}
"""


def model_rdf(
    config, files, *, description, authors=DEFAULT_AUTHORS, version=None, pytorch_version=None, timestamp=None
):
    """The rdf.yaml content (a dict) of a model package.

    Parameters
    ----------
    config : dict
        The model's config.json.
    files : dict
        {role: (file name, sha256)} for the roles ``state_dict``, ``architecture``,
        ``torchscript``, ``test_input``, ``test_output``, ``sample_input``, ``sample_output``,
        ``documentation``, ``cover``,
        ``config``, ``thresholds``.
    description : str
        One paragraph shown in the Model Zoo.
    authors : sequence of dict
        bioimage.io authors (``name``, optional ``affiliation``, ``github_user``, ``orcid``).
    version : str, optional
        Version of the package (default: cytotrail's version).
    pytorch_version : str, optional
        Default: the running torch's version (without a local suffix such as ``+cpu``).
    timestamp : str, optional
        ISO 8601 creation time (default: now, UTC).
    """
    from cytotrail import __version__

    if pytorch_version is None:
        import torch

        pytorch_version = torch.__version__.split("+")[0]
    arch = config["architecture"]
    lo, hi = config.get("normalization", {}).get("percentiles", (1.0, 99.8))
    multiple = 2 ** (int(arch["depth"]) - 1)
    training = config.get("training", {})

    def file(role):
        name, sha = files[role]
        return {"source": name, "sha256": sha}

    def space_in(axis):
        return {"type": "space", "id": axis, "size": {"min": _MIN_SIZE, "step": multiple}}

    def space_out(axis):
        return {"type": "space", "id": axis, "size": {"tensor_id": "raw", "axis_id": axis}, "halo": _HALO}

    inputs = [
        {
            "id": "raw",
            "description": "one nuclear-stain channel, raw intensities",
            "axes": [
                {"type": "batch"},
                {"type": "channel", "channel_names": ["nuclear_stain"]},
                space_in("y"),
                space_in("x"),
            ],
            "test_tensor": file("test_input"),
            "sample_tensor": file("sample_input"),
            "data": {"type": "float32"},
            "preprocessing": [
                {
                    "id": "scale_range",
                    "kwargs": {"axes": ["y", "x"], "min_percentile": float(lo), "max_percentile": float(hi)},
                }
            ],
        }
    ]
    outputs = [
        {
            "id": "maps",
            "description": "foreground probability and centre-ness (distance to the nucleus "
            "boundary / the nucleus's largest distance)",
            "axes": [
                {"type": "batch"},
                {"type": "channel", "channel_names": ["foreground", "centreness"]},
                space_out("y"),
                space_out("x"),
            ],
            "test_tensor": file("test_output"),
            "sample_tensor": file("sample_output"),
            "data": {"type": "float32", "range": [0.0, 1.0]},
            "postprocessing": [{"id": "sigmoid"}],
        }
    ]
    return {
        "type": "model",
        "format_version": FORMAT_VERSION,
        "name": "cytotrail nuclei U-Net",
        "description": description,
        "authors": [dict(a) for a in authors],
        "cite": [dict(c) for c in _CITE],
        "license": "BSD-3-Clause",
        "tags": list(_TAGS),
        "version": version or __version__,
        "timestamp": timestamp or datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "documentation": files["documentation"][0],
        "covers": [files["cover"][0]],
        "attachments": [file("config"), file("thresholds")],
        "inputs": inputs,
        "outputs": outputs,
        "weights": {
            "pytorch_state_dict": {
                **file("state_dict"),
                "architecture": {
                    **file("architecture"),
                    "callable": "UNet",
                    "kwargs": {
                        k: int(arch[k]) for k in ("in_channels", "out_channels", "base", "depth") if k in arch
                    },
                },
                "pytorch_version": pytorch_version,
            },
            "torchscript": {
                **file("torchscript"),
                "pytorch_version": pytorch_version,
                "parent": "pytorch_state_dict",
            },
        },
        "training_data": {
            "type": "dataset",
            "format_version": "0.3.0",
            "name": "DSB2018 fluorescence nuclei and cytotrail synthetic frames",
            "description": (
                "The fluorescence subset of the Kaggle 2018 Data Science Bowl stage1_train "
                "(BBBC038; a fixed train split of 486 images, community mask fixes) and "
                f"synthetic frames from cytotrail.synth.make_timelapse "
                f"({training.get('synthetic_weight', 0.35):.0%} of the crops); see README.md."
            ),
            "authors": [{"name": "Caicedo et al."}],
            "cite": [dict(_CITE[0])],
            "license": "CC0-1.0",
            "documentation": files["documentation"][0],
            "tags": ["nuclei", "fluorescence-light-microscopy", "2d", "synthetic"],
        },
        "config": {
            "cytotrail": {
                "model": config.get("name"),
                "weights_sha256": config.get("weights_sha256"),
                "train_diameter": config.get("train_diameter"),
                "diameter_range": config.get("diameter_range"),
                "tile_size": config.get("tile_size"),
                "tile_margin": config.get("tile_margin"),
                "validation": config.get("validation"),
            }
        },
    }


def _cover(path, test_input, test_output):
    """A 2:1 cover image: the test frame beside its foreground map."""
    import matplotlib
    import matplotlib.image

    from cytotrail.segment.preprocess import normalize, percentiles

    frame = test_input[0, 0]
    left = np.clip(normalize(frame, *percentiles(frame)), 0, 1)
    right = test_output[0, 0]
    rgb = np.concatenate([np.stack([left] * 3, -1), matplotlib.colormaps["magma"](right)[..., :3]], axis=1)
    matplotlib.image.imsave(path, rgb, format="png", metadata={"Software": None})


def _trace(net, example):
    import torch

    with warnings.catch_warnings():
        # TorchScript is deprecated in torch >= 2.9 but is the format bioimage.io consumers run
        warnings.simplefilter("ignore", DeprecationWarning)
        with torch.no_grad():
            # checked by tests at another size than the one traced (check_trace runs it 3 more times)
            return torch.jit.trace(net, example, check_trace=False)


def export_model(outdir, model=None, *, authors=DEFAULT_AUTHORS, description=None):
    """Write a bioimage.io model package (format 0.5) of a cytotrail model folder.

    Parameters
    ----------
    outdir : str or Path
        Output folder (replaced whole if it exists): ``rdf.yaml``, ``weights.pt``,
        ``unet.py``, ``weights_torchscript.pt``, ``test_input.npy``, ``test_output.npy``,
        ``sample_input.tif``, ``sample_output.tif`` (the same as TIFF), ``README.md``,
        ``cover.png``, ``config.json``, ``thresholds.json``.
    model : str or Path, optional
        Shipped model name or model folder (default: the shipped ``nuclei_unet``).
    authors : sequence of dict
        bioimage.io authors of the package.
    description : str, optional
        Default: the model card's first paragraph, shortened.

    Returns
    -------
    Path
        The package's ``rdf.yaml``.
    """
    import tifffile
    import torch
    import yaml

    from cytotrail.export._files import atomic_dir, check_output_dir
    from cytotrail.segment import net as net_module
    from cytotrail.segment.model import load_model, model_dir

    check_output_dir(Path(outdir))
    folder = model_dir(model)
    try:
        arch = json.loads((folder / "config.json").read_text()).get("architecture", {})
    except (OSError, ValueError, AttributeError) as err:
        raise InputError(f"model {folder}: cannot read config.json ({err})") from err
    if (
        set(arch) - {"base", "depth", "in_channels", "out_channels"}
        or "depth" not in arch
        or arch.get("in_channels", 1) != 1
    ):
        raise InputError(
            f"model {folder}: architecture {arch} is not cytotrail's one-channel "
            "UNet; only those export to bioimage.io"
        )
    net, config, thresholds = load_model(folder, device="cpu")
    card_path = folder / "MODEL_CARD.md"
    card = card_path.read_text() if card_path.is_file() else "(the model folder has no MODEL_CARD.md)"
    if description is None:
        description = (
            "2-D U-Net for fluorescence nuclei (one nuclear-stain channel) from cytotrail: "
            "foreground and centre-ness maps, which cytotrail's seeded watershed turns into "
            "instance labels. Trained on the DSB2018 fluorescence images and synthetic "
            "timelapses; nuclei about "
            f"{config.get('train_diameter', 18):g} px across. Validation AP@0.5: "
            f"{config.get('validation', {}).get('ap@0.5', 'n/a')}."
        )
    test_input, test_output = reference_tensors(net, config)

    with atomic_dir(outdir) as tmp:
        names = {
            "state_dict": "weights.pt",
            "architecture": "unet.py",
            "torchscript": "weights_torchscript.pt",
            "test_input": "test_input.npy",
            "test_output": "test_output.npy",
            "sample_input": "sample_input.tif",
            "sample_output": "sample_output.tif",
            "documentation": "README.md",
            "cover": "cover.png",
            "config": "config.json",
            "thresholds": "thresholds.json",
        }
        shutil.copyfile(folder / config.get("weights", "weights.pt"), tmp / names["state_dict"])
        shutil.copyfile(net_module.__file__, tmp / names["architecture"])
        # traced on a small frame: the sizes flow through the graph, any multiple of 8 runs
        _trace(net, torch.zeros(1, 1, 64, 64)).save(str(tmp / names["torchscript"]))
        np.save(tmp / names["test_input"], test_input)
        np.save(tmp / names["test_output"], test_output)
        tifffile.imwrite(tmp / names["sample_input"], test_input[0, 0])
        tifffile.imwrite(tmp / names["sample_output"], test_output[0])
        (tmp / names["documentation"]).write_text(_readme(folder.name, card, config, thresholds))
        _cover(tmp / names["cover"], test_input, test_output)
        (tmp / names["config"]).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        (tmp / names["thresholds"]).write_text(json.dumps(thresholds, indent=2, sort_keys=True) + "\n")
        files = {role: (name, sha256_file(tmp / name)) for role, name in names.items()}
        rdf = model_rdf(config, files, description=description, authors=authors)
        (tmp / "rdf.yaml").write_text(yaml.safe_dump(rdf, sort_keys=False, allow_unicode=True))
    return Path(outdir) / "rdf.yaml"
