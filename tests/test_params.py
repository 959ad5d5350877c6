"""params.yaml is the one source of defaults: the code's defaults are the shipped file's values."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from convbench.config import ConfigError, flatten, to_dict
from convbench.params import Params, load_params, parse_params

ROOT = Path(__file__).resolve().parents[1]


def test_code_defaults_are_the_shipped_params_yaml() -> None:
    shipped = load_params(ROOT / "params.yaml")
    assert Params() == shipped
    assert parse_params({}) == shipped  # an empty params.yaml means the shipped defaults


def test_params_yaml_sets_every_key_the_code_knows() -> None:
    """No hidden default: every typed key appears in the shipped file, so the file tells the whole recipe."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    written = set(flatten(raw))
    params = Params()
    known = set(flatten({"data": to_dict(params.data), "train": to_dict(params.train),
                         "evaluate": to_dict(params.evaluate)} | {f: to_dict(c) for f, c in params.models.items()}))
    assert known - written == set()


def test_unknown_keys_are_errors() -> None:
    with pytest.raises(ConfigError, match="warmup_epochs"):
        parse_params({"train": {"warmup_epochs": 1.0}})
