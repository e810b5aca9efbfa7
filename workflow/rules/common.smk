# Configuration and sample-sheet validation, wildcard constraints and input functions.
# Everything here runs when the DAG is built, so bad input fails before any job starts.
import json
import math
import os
import re
import shlex
from io import StringIO
from pathlib import Path

import pandas as pd
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

import cytotrail
from cytotrail.deprecations import upgrade_config
from cytotrail.io import InputError, frame_files, image_channels
from cytotrail.locks import register_run, release_stale_locks, unlock_command

# Renamed keys (segment.diameter -> segment.diameter_px, track.search_range ->
# track.search_range_px) and execution settings that moved to the profiles (segment.device,
# batch_size, workers: resources of rule segment_nuclei) still work for one release
# (cytotrail.deprecations): moved here, before validation, with one message per old key,
# shown once, by the main process of the run.
# (The nested `snakemake --report` of rule report_html merges the upgraded provenance
# configuration over the user's file: there, the new names win.)
_NESTED = bool(os.environ.get("CYTOTRAIL_NESTED"))
try:
    _deprecated, EXECUTION_FROM_CONFIG = upgrade_config(
        config, both="new" if _NESTED else "error"
    )
except InputError as err:
    raise WorkflowError(str(err))
if workflow.is_main_process and not _NESTED:
    for _message in _deprecated:
        logger.warning(f"cytotrail: {_message}")

validate(config, schema="../schemas/config.schema.yaml", set_default=True)


# A run killed with SIGKILL leaves its locks; the same command must be able to resume. Locks
# go only when their owner is provably dead on this host (cytotrail.locks); the nested
# `snakemake --nolock --report` of rule report_html leaves them alone.
if workflow.is_main_process and not os.environ.get("CYTOTRAIL_NESTED"):
    _locks = release_stale_locks(os.getcwd())
    register_run(os.getcwd())
    if _locks.released:
        logger.warning(
            "cytotrail: removed the stale locks of a killed run in .snakemake/locks"
        )
    for _owner in _locks.foreign if _locks.locked else []:
        logger.warning(
            f"cytotrail: .snakemake/locks may belong to a run on host {_owner.get('host')} "
            f"(pid {_owner.get('pid')}); cytotrail cannot see whether it is alive and leaves the "
            f"locks. Once it is over: {unlock_command(workflow.main_snakefile)}"
        )

RESULTS = config["results"]
DEMO_DIR = "resources/demo"


def _check_results_writable():
    """Every existing folder of `results` must take new files before any job starts.

    Snakemake removes and rewrites outputs there; in a read-only or immutable folder it
    would stop with a traceback from its own file removal, after other jobs ran.
    """
    root = Path(RESULTS)
    if root.is_dir():
        folders = [
            root,
            *(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()),
        ]
    else:  # not made yet: its nearest existing parent must take it
        folders = [next(p for p in root.absolute().parents if p.exists())]
    for folder in folders:
        if not os.access(folder, os.W_OK | os.X_OK):
            raise WorkflowError(
                f"cannot write in {folder} (read-only, immutable or another user's): make it "
                "writable, or point the config key `results` at another folder"
            )


if (
    workflow.is_main_process
    and not workflow.dryrun
    and not os.environ.get("CYTOTRAIL_NESTED")
):
    _check_results_writable()


def _read_sample_sheet(path):
    if not Path(path).is_file():
        raise WorkflowError(f"sample sheet not found: {path} (config key `samples`)")
    # no `comment=`: '#' is an ordinary character of a file name (well#A1.ome.tif); only
    # lines that start with '#' are comments
    lines = Path(path).read_text(encoding="utf-8").splitlines(keepends=True)
    text = "".join(line for line in lines if not line.startswith("#"))
    if not text.strip():
        raise WorkflowError(
            f"sample sheet {path} is empty: it needs a header `sample<TAB>image`"
        )
    sheet = pd.read_csv(StringIO(text), sep="\t", dtype=str, keep_default_na=False)
    sheet.columns = sheet.columns.str.strip()
    if sheet.empty:
        raise WorkflowError(
            f"sample sheet {path} has no samples: add one row per sample under the header "
            "(columns sample and image; `cytotrail init IMAGES... -o DIR` writes one)"
        )
    try:
        validate(sheet, schema="../schemas/samples.schema.yaml")
    except WorkflowError as err:
        bad = sheet[~sheet["sample"].str.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*")][
            "sample"
        ]
        raise WorkflowError(
            f"sample sheet {path}: bad row(s) {bad.tolist() or ''}: sample names may hold letters, "
            f"digits, '_', '.' and '-' only, and every row needs an image ({err})"
        )
    duplicated = sheet["sample"][sheet["sample"].duplicated()].tolist()
    if duplicated:
        raise WorkflowError(
            f"sample sheet {path}: duplicated sample names {duplicated}"
        )
    return sheet.set_index("sample", drop=False)


samples = _read_sample_sheet(config["samples"])
SAMPLES = samples["sample"].tolist()


wildcard_constraints:
    sample="|".join(re.escape(s) for s in SAMPLES) or "(?!)",


def is_demo(sample):
    return Path(samples.loc[sample, "image"]).parent == Path(DEMO_DIR)


def sample_value(sample, column, default=""):
    if column in samples.columns and samples.loc[sample, column]:
        return samples.loc[sample, column]
    return default


def channel_names_of(sample):
    names = sample_value(sample, "channel_names")
    return [n.strip() for n in names.split(",")] if names else None


def nuclear_channel(sample):
    return sample_value(sample, "nuclear_channel", config["nuclear_channel"])


def cell_channels():
    """Membrane/cytoplasm channels of segment.cells ([] when whole cells are not grown)."""
    cells = config["segment"].get("cells")
    return list(cells["channels"]) if cells else []


def cells_file(sample):
    """results/<sample>/cells.tif when segment.cells is set, else None."""
    return f"{RESULTS}/{sample}/cells.tif" if cell_channels() else None


def _check_sample(sample):
    """Check a sample's channels against the config before anything runs; return its MB."""
    if is_demo(sample):
        from cytotrail.synth import NUCLEAR_CHANNEL, default_panel

        names = [NUCLEAR_CHANNEL] + [m.name for m in default_panel()]
        demo = config["demo"]
        shape = (demo["frames"], len(names), demo["size"], demo["size"])
    else:
        image = samples.loc[sample, "image"]
        try:
            names, shape = image_channels(
                image,
                axes=sample_value(sample, "axes") or None,
                channel_names=channel_names_of(sample),
            )
        except InputError as err:
            raise WorkflowError(f"sample {sample!r}: {err}")
    gates = config["cluster"].get("gates")  # {marker: threshold} names markers too
    wanted = {
        "nuclear_channel": [nuclear_channel(sample)],
        "quantify.markers": config["quantify"]["markers"] or [],
        "cluster.markers": config["cluster"]["markers"] or [],
        "cluster.background": config["cluster"].get("background") or [],
        "cluster.gates": list(gates) if isinstance(gates, dict) else [],
        "segment.cells.channels": cell_channels(),
        **{
            f"cluster.cell_types.{name}": markers
            for name, markers in signature_markers().items()
        },
    }
    measured = config["quantify"]["markers"] or names
    for key, markers in wanted.items():
        missing = [m for m in markers if m not in names]
        if missing:
            raise WorkflowError(
                f"sample {sample!r} ({samples.loc[sample, 'image']}): channel(s) {missing} "
                f"named in config key `{key}` are not in the image; its channels are {names}"
            )
        unmeasured = [m for m in markers if m not in measured]
        if key.startswith("cluster.") and unmeasured:
            raise WorkflowError(
                f"config key `{key}` names {unmeasured}, which `quantify.markers` "
                f"does not measure"
            )
    if config["segment"]["backend"] == "labels" and not sample_value(sample, "labels"):
        raise WorkflowError(
            f"sample {sample!r}: segment.backend is `labels` but the sample sheet has no "
            f"`labels` file for it"
        )
    return 4 * math.prod(shape) / 1e6


def signature_markers():
    """{cell type: markers its signature names} of config key `cluster.cell_types`."""
    markers = {}
    for name, signature in (config["cluster"].get("cell_types") or {}).items():
        if isinstance(signature, dict):
            lists = [v for k, v in signature.items() if k not in ("parent", "label")]
        else:
            lists = [signature]
        markers[name] = [
            str(m) for v in lists for m in ([v] if isinstance(v, str) else v or [])
        ]
    return markers


def _check_feature():
    """cluster.feature must be a column suffix that quantify writes: <compartment>_<statistic>.

    (null, where the schema allows it, lets cytotrail cluster choose.)
    """
    feature = config["cluster"]["feature"]
    measured = [
        f"{compartment}_{statistic}"
        for compartment in config["quantify"]["compartments"]
        for statistic in config["quantify"]["statistics"]
    ]
    if config["cluster"]["markers"] and feature is not None and feature not in measured:
        raise WorkflowError(
            f"config key `cluster.feature` is {feature!r}, which quantify does not measure "
            f"with `quantify.compartments` and `quantify.statistics`; measured: {measured}"
        )


_check_feature()
IMAGE_MB = {sample: _check_sample(sample) for sample in SAMPLES}


def _model_folder():
    """The unet model folder that segment.model names, or None (shipped model, other backend).

    A folder, or train_model's output; a shipped model's name is no path. Anything else
    stops the run before any job, naming the config key.
    """
    model = config["segment"]["model"]
    if not model:
        return None
    unet = config["segment"]["backend"] == "unet"
    if model == config["train"]["output"] and not Path(model).is_dir():
        return model if unet else None  # train_model writes it first
    from cytotrail.segment.model import check_model

    try:  # checked for every backend: a value in the config is never passed on unchecked
        check_model(model)
    except InputError as err:
        raise WorkflowError(f"config key `segment.model`: {err}")
    return model if unet and Path(model).is_dir() else None


MODEL_FOLDER = _model_folder()


def image_options(wildcards):
    """CLI options that tell cytotrail how to read a sample's image (shell-quoted)."""
    return cli_flags(
        {
            "axes": sample_value(wildcards.sample, "axes") or None,
            "channel_names": channel_names_of(wildcards.sample),
        }
    )


def cli_flags(options):
    """Turn {key: value} into shell-quoted command-line flags for a `shell:` rule.

    None and False are left out, True is a bare flag, lists are spread. Every value is
    quoted (shlex.quote), so that no config or sample-sheet value is ever interpreted by
    the shell: `$(...)`, `;`, spaces, quotes and `#` reach cytotrail as they were written.
    """
    flags = []
    for key, value in options.items():
        flag = f"--{key.replace('_', '-')}"
        if value is None or value is False:
            continue
        if value is True:
            flags.append(flag)
        elif isinstance(value, (list, tuple)):
            flags.append(" ".join([flag, *(shlex.quote(str(v)) for v in value)]))
        else:
            flags.append(f"{flag} {shlex.quote(str(value))}")
    return " ".join(flags)


def image_frames(wildcards):
    """The frame files of a sample whose image is a folder of frames, else none: inputs, so
    that an edited frame reruns the sample's chain as an edited image file does."""
    image = Path(samples.loc[wildcards.sample, "image"])
    return [str(p) for p in frame_files(image)] if image.is_dir() else []


def segment_inputs(wildcards):
    inputs = {
        "image": samples.loc[wildcards.sample, "image"],
        "frames": image_frames(wildcards),
    }
    if config["segment"]["backend"] == "labels":
        inputs["labels"] = sample_value(wildcards.sample, "labels")
    if MODEL_FOLDER:
        # segmentation reruns when the model is retrained, and follows train_model when that
        # rule writes it
        inputs["model"] = MODEL_FOLDER
    return inputs


def input_mb(sample):
    """Size of a sample's image in MB, uncompressed as float32: resources scale with it."""
    return IMAGE_MB[sample]


def total_input_mb():
    return sum(input_mb(s) for s in SAMPLES)


def train_inputs(wildcards):
    """Training data for train_model (image and label folders, manifest, starting model)."""
    train = config["train"]
    inputs = {"images": train["images"], "labels": train["labels"]}
    if train["manifest"]:
        inputs["manifest"] = train["manifest"]
    if train["init"] and Path(train["init"]).exists():
        inputs["init"] = train["init"]
    return inputs


def all_samples(name):
    return expand(f"{RESULTS}/{{sample}}/{name}", sample=SAMPLES)


def final_outputs():
    return [
        f"{RESULTS}/cells.h5ad",
        f"{RESULTS}/report/summary.tsv",
        f"{RESULTS}/provenance/versions.tsv",
        *all_samples("report/segmentation.png"),
        f"{RESULTS}/report.html",
    ]


# Rerun everything a rule produced when the package changes version.
VERSION = cytotrail.__version__
