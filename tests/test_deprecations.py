"""Renamed config keys and execution settings that moved to the profiles (cytotrail.deprecations)."""

from __future__ import annotations

import pytest

from cytotrail.deprecations import EXECUTION_KEYS, RENAMED_KEYS, upgrade_config
from cytotrail.io import InputError


def test_old_keys_move_to_their_new_names_with_one_message_each():
    config = {"segment": {"diameter": 12.0, "backend": "unet"}, "track": {"search_range": 9.0, "memory": 2}}
    messages, execution = upgrade_config(config)
    assert config == {
        "segment": {"diameter_px": 12.0, "backend": "unet"},
        "track": {"search_range_px": 9.0, "memory": 2},
    }
    assert execution == {}
    assert len(messages) == 2
    for (old, new), message in zip(RENAMED_KEYS.items(), messages):
        assert f"config key `{old}` is deprecated and renamed `{new}`" in message
    # a second pass (the nested report run reads the upgraded configuration) finds nothing
    assert upgrade_config(config) == ([], {})


def test_old_key_beside_the_default_of_the_new_one_is_taken():
    """A user's old key merged over a configuration that carries the new key's null default."""
    config = {"segment": {"diameter": 12.0, "diameter_px": None}}
    messages, _ = upgrade_config(config)
    assert config == {"segment": {"diameter_px": 12.0}} and len(messages) == 1


def test_both_names_given_is_an_error_naming_both():
    with pytest.raises(InputError, match="`track.search_range` and `track.search_range_px` are both given"):
        upgrade_config({"track": {"search_range": 9.0, "search_range_px": 9.0}})


def test_nested_report_run_keeps_the_new_name():
    """The workflow's nested report run merges the upgraded configuration over the user's file."""
    config = {"segment": {"diameter": 9.0, "diameter_px": 9.0}}
    upgrade_config(config, both="new")
    assert config == {"segment": {"diameter_px": 9.0}}


def test_execution_settings_leave_the_config_for_the_rule_resources():
    config = {"segment": {"device": "cpu", "batch_size": 8, "workers": None, "backend": "unet"}}
    messages, execution = upgrade_config(config)
    assert config == {"segment": {"backend": "unet"}}
    assert execution == {"device": "cpu", "batch_size": 8}  # null workers: the default
    assert len(messages) == len(EXECUTION_KEYS) == 3
    assert "config key `segment.device` is deprecated" in messages[0]
    assert "set-resources: {segment_nuclei: {device: cpu}}" in messages[0]


@pytest.mark.parametrize(
    ("key", "value"),
    [("device", "gpu"), ("batch_size", 0), ("batch_size", None), ("workers", 1.5), ("workers", True)],
)
def test_bad_execution_setting_is_refused_naming_the_key(key, value):
    with pytest.raises(InputError, match=f"config key `segment.{key}`"):
        upgrade_config({"segment": {key: value}})
