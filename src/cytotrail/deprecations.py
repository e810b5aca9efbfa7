"""Renamed options and moved settings: one table, one wording, for one release.

Lengths carry their unit in their name (``diameter_px``, ``search_range_px``, like
``cytoplasm_um``), and the execution settings of segmentation (device, frames per batch,
post-processing workers) belong to the profile that runs the workflow, not to the
configuration of the science. The old names keep working until cytotrail
:data:`REMOVED_IN`: the configuration (``workflow/rules/common.smk``), the command line
(:mod:`cytotrail.cli`) and the Python API (:func:`renamed_keywords`) all take them, with a
message from :func:`renamed_message` or :func:`moved_message` that names the old and the new.
"""

from __future__ import annotations

import functools
import warnings

from cytotrail.io import InputError

__all__ = [
    "EXECUTION_KEYS",
    "REMOVED_IN",
    "RENAMED_KEYS",
    "moved_message",
    "renamed_keywords",
    "renamed_message",
    "renamed_option",
    "upgrade_config",
]

REMOVED_IN = "0.2"

# workflow config key -> its new name (the function keyword and the command-line flag follow
# the key: segment(diameter_px=), --diameter-px)
RENAMED_KEYS = {
    "segment.diameter": "segment.diameter_px",
    "track.search_range": "track.search_range_px",
}

# workflow config keys that are execution settings -> (rule, resource) that holds them now;
# a profile sets them with `set-resources`
EXECUTION_KEYS = {
    "segment.device": ("segment_nuclei", "device"),
    "segment.batch_size": ("segment_nuclei", "batch_size"),
    "segment.workers": ("segment_nuclei", "workers"),
}


def renamed_message(kind, old, new):
    """The one wording of a rename: ``kind`` is 'config key', 'option' or 'keyword'."""
    return (
        f"{kind} `{old}` is deprecated and renamed `{new}` (lengths name their unit); "
        f"`{old}` still works until cytotrail {REMOVED_IN}: write `{new}`"
    )


def moved_message(key, value):
    """The one wording of a config key that moved to the profiles as a rule resource."""
    rule, resource = EXECUTION_KEYS[key]
    return (
        f"config key `{key}` is deprecated: it is an execution setting, the resource `{resource}` of "
        f"rule {rule}, set in a profile (`set-resources: {{{rule}: {{{resource}: {value}}}}}`); "
        f"this run still uses it, until cytotrail {REMOVED_IN}: move it to your profile"
    )


def _both_message(kind, old, new):
    return (
        f"{kind}s `{old}` and `{new}` are both given: `{old}` is the old name of `{new}`; give `{new}` only"
    )


def upgrade_config(config, *, both="error"):
    """Move the renamed and moved keys of a workflow configuration, in place.

    A renamed key's value moves to its new name; an execution setting leaves the
    configuration and is returned, for the rule that uses it as its default.

    Parameters
    ----------
    config : dict
        The workflow configuration, sections as nested dicts (``config["segment"]``).
    both : {"error", "new"}
        When a section gives both the old and the new name of a key, both not null: an
        error, or keep the new one ("new": the nested report run of the workflow, whose
        upgraded provenance configuration is merged over the user's configuration file).

    Returns
    -------
    messages : list of str
        One deprecation message per old key found (to show once per run).
    execution : dict
        ``{resource: value}`` of the execution settings found under their old keys
        (None values left out: they meant "the default").

    Raises
    ------
    cytotrail.io.InputError
        A section gives both the old and the new name of a key (both not null: a null
        one is the default that a merged demo configuration brings along).
    """
    messages = []
    for old, new in RENAMED_KEYS.items():
        section, old_name = old.split(".")
        new_name = new.split(".")[1]
        values = config.get(section)
        if not isinstance(values, dict) or old_name not in values:
            continue
        if values[old_name] is not None and values.get(new_name) is not None and both == "error":
            raise InputError(_both_message("config key", old, new))
        value = values.pop(old_name)
        if values.get(new_name) is None:
            values[new_name] = value
        messages.append(renamed_message("config key", old, new))
    execution = {}
    for key, (_, resource) in EXECUTION_KEYS.items():
        section, name = key.split(".")
        values = config.get(section)
        if not isinstance(values, dict) or name not in values:
            continue
        value = values.pop(name)
        _check_execution(key, value)
        if value is not None:
            execution[resource] = value
        messages.append(moved_message(key, "auto" if value is None else value))
    return messages, execution


def _check_execution(key, value):
    """The checks the schema made of the execution keys before they moved."""
    if key == "segment.device":
        ok = value in ("auto", "cuda", "mps", "cpu")
        expected = "one of auto, cuda, mps, cpu"
    else:
        ok = value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1)
        expected = "a whole number >= 1" + (" or null" if key == "segment.workers" else "")
        ok = ok and not (value is None and key == "segment.batch_size")
    if not ok:
        raise InputError(f"config key `{key}` is {value!r}: expected {expected}")


def renamed_option(old_value, new_value, *, old, new):
    """The value of a command-line option given under its new or its deprecated flag.

    Returns ``(value, message)``: the message (to log) when the old flag was used, else None.

    Raises
    ------
    cytotrail.io.InputError
        Both flags given.
    """
    if old_value is None:
        return new_value, None
    if new_value is not None:
        raise InputError(_both_message("option", old, new))
    return old_value, renamed_message("option", old, new)


def renamed_keywords(**renames):
    """Decorator: keyword arguments renamed ``old=new`` still work, with a FutureWarning.

    The decorated function keeps its signature (``inspect.signature`` follows
    ``__wrapped__``), so the documented and checked parameters are the new ones. Giving
    both names is a TypeError, as for any keyword given twice.
    """

    def decorate(function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            for old, new in renames.items():
                if old not in kwargs:
                    continue
                if new in kwargs:
                    raise TypeError(f"{function.__name__}(): " + _both_message("keyword", old, new))
                warnings.warn(
                    f"{function.__name__}(): " + renamed_message("keyword", old, new),
                    FutureWarning,
                    stacklevel=2,
                )
                kwargs[new] = kwargs.pop(old)
            return function(*args, **kwargs)

        return wrapper

    return decorate
