"""One source per default: every workflow key that feeds a package function has that function's default.

The package's signatures own the defaults; the workflow schema repeats them so that a config file documents
itself. When the two disagree, a user who moves from the command line to the workflow (or back) silently gets
another result. This test makes a disagreement a failure that names the key.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())


def _schema_defaults(section):
    return {key: spec.get("default") for key, spec in SCHEMA["properties"][section]["properties"].items()}


def _signature_defaults(function):
    return {
        name: p.default
        for name, p in inspect.signature(function).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def _functions():
    from cytotrail.cluster import cluster
    from cytotrail.quantify import quantify
    from cytotrail.segment import segment
    from cytotrail.track import track

    return {"segment": segment, "track": track, "quantify": quantify, "cluster": cluster}


# schema keys that are not a parameter of the section's function, and why
WORKFLOW_ONLY = {
    "segment": {
        "model": "a folder or shipped name; the workflow resolves it to an input file",
        "cells": "feeds cytotrail.segment.cells.grow_cells in rule segment_cells; its "
        "max_um default is checked in tests/segment/test_segment_cells.py",
    },
    "cluster": {
        "cell_types": "passed as `signatures`, a mapping the workflow writes to a file",
        "markers": "required by the function; the schema's default is the demo panel",
        "feature": "the workflow clusters its own quantify tables, so it names their column "
        "(checked against quantify's keys before any job); the function's None "
        "guesses it for a table from another tool",
    },
}
# schema keys that feed a parameter of another name
RENAMED = {"cluster": {"gates": "gates"}}


def _normalise(value):
    if isinstance(value, tuple):
        return list(value)
    return value


@pytest.mark.parametrize("section", ["segment", "track", "quantify", "cluster"])
def test_schema_defaults_are_the_function_defaults(section):
    function = _functions()[section]
    signature = _signature_defaults(function)
    params = inspect.signature(function).parameters
    skip = WORKFLOW_ONLY.get(section, {})
    disagreements = []
    for key, default in _schema_defaults(section).items():
        if key in skip:
            continue
        name = RENAMED.get(section, {}).get(key, key)
        if name not in params:
            disagreements.append(f"{section}.{key}: no parameter {name!r} in {function.__name__}()")
        elif name in signature and _normalise(signature[name]) != _normalise(default):
            # the schema may say [] where the function says None for "none of these"
            if not (default in ([], {}) and signature[name] is None):
                disagreements.append(
                    f"{section}.{key}: schema default {default!r}, "
                    f"{function.__name__}() default {signature[name]!r}"
                )
    assert not disagreements, "\n".join(disagreements)


def test_train_defaults_are_the_package_recipe():
    from cytotrail.segment.train import DEFAULTS

    schema = _schema_defaults("train")
    disagreements = [
        f"train.{key}: schema {schema[key]!r}, package {value!r}"
        for key, value in DEFAULTS.items()
        if key in schema and schema[key] != value
    ]
    assert not disagreements, "\n".join(disagreements)


def test_every_schema_key_has_a_description_and_a_default():
    missing = []
    for section, spec in SCHEMA["properties"].items():
        for key, sub in spec.get("properties", {}).items():
            if "description" not in sub or "default" not in sub:
                missing.append(f"{section}.{key}")
    assert not missing, missing


# --------------------------------------------------------------------------------------
# execution settings: one table (workflow/rules/resources.smk), used by every rule

RULES = ROOT / "workflow" / "rules"


def _rules():
    """{rule name: its text} of every rule in workflow/rules/*.smk."""
    import re

    rules = {}
    for path in sorted(RULES.glob("*.smk")):
        parts = re.split(r"^rule (\w+):", path.read_text(), flags=re.M)
        rules.update({name: body for name, body in zip(parts[1::2], parts[2::2])})
    return rules


def test_every_rule_takes_threads_memory_and_run_time_from_the_resources_table():
    resources = (RULES / "resources.smk").read_text()
    rules = _rules()
    missing = []
    for name, body in rules.items():
        if f'"{name}":' not in resources:
            missing.append(f"{name}: no row in resources.smk")
        for line in (
            f'threads: threads_of("{name}")',
            f'mem_mb=mem_mb_of("{name}")',
            f'runtime=runtime_of("{name}")',
        ):
            if line not in body:
                missing.append(f"{name}: no `{line}`")
    assert rules and not missing, "\n".join(missing)


def test_segmentation_execution_defaults_are_the_function_defaults():
    """device, batch_size and workers of rule segment_nuclei default to segment()'s own."""
    import ast
    import re

    from cytotrail.segment import segment

    text = (RULES / "resources.smk").read_text()
    literal = re.search(r"^SEGMENT_EXECUTION = (\{.*\})$", text, flags=re.M).group(1)
    defaults = ast.literal_eval(literal)
    signature = _signature_defaults(segment)
    assert set(defaults) <= set(signature)
    for name, value in defaults.items():
        assert (None if value == "auto" and name == "workers" else value) == signature[name], name


def _cli_subcommands():
    import argparse

    from cytotrail.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices


def _cli_functions():
    from cytotrail.cluster import cluster
    from cytotrail.quantify import quantify
    from cytotrail.segment import segment
    from cytotrail.segment.cells import grow_cells
    from cytotrail.track import track

    return {
        "segment": segment,
        "track": track,
        "quantify": quantify,
        "segment-cells": grow_cells,
        "cluster": cluster,
    }


# CLI options that feed a function parameter yet keep a default of their own, and why
CLI_OWN_DEFAULT = {("segment", "backend"): "the command branches on it before calling segment()"}


@pytest.mark.parametrize("command", ["segment", "track", "quantify", "segment-cells", "cluster"])
def test_cli_options_leave_the_default_to_the_function(command):
    """An option that feeds a parameter defaults to None ("the function's default")."""
    import argparse

    parser = _cli_subcommands()[command]
    params = inspect.signature(_cli_functions()[command]).parameters
    own = []
    for action in parser._actions:
        if action.dest not in params or isinstance(action, (argparse._StoreTrueAction, argparse._HelpAction)):
            continue
        if action.default is None or action.default is argparse.SUPPRESS:
            continue
        if (command, action.dest) in CLI_OWN_DEFAULT:
            assert _normalise(action.default) == _normalise(params[action.dest].default), action.dest
            continue
        own.append(f"{command} {action.option_strings[0]}: default {action.default!r}")
    assert not own, "\n".join(own)


def test_cli_help_shows_the_function_defaults():
    from cytotrail.quantify import quantify

    help_text = " ".join(_cli_subcommands()["quantify"].format_help().split())
    assert f"(default {inspect.signature(quantify).parameters['cytoplasm_um'].default:g})" in help_text


@pytest.mark.parametrize(
    "statistic", ["mean", "median", "p0", "p5", "p90", "p99.5", "p100", "p101", "p9.", "max2"]
)
def test_schema_accepts_the_statistics_quantify_accepts(statistic):
    import re

    from cytotrail.io import InputError
    from cytotrail.quantify.options import parse_statistics

    pattern = SCHEMA["properties"]["quantify"]["properties"]["statistics"]["items"]["pattern"]
    try:
        parse_statistics([statistic], [])
        accepted = True
    except InputError:
        accepted = False
    assert bool(re.match(pattern, statistic)) == accepted
