"""Typed parsing of YAML mappings into frozen dataclasses.

Every params section (and every model family's keys) goes through
:func:`parse_section`, so an unknown key, a wrong type or an out-of-range value
is one error line that names the key, before any work starts.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from convbench.errors import ConvbenchError

T = TypeVar("T")


class ConfigError(ConvbenchError, ValueError):
    """A bad value in params.yaml (or in keyword arguments mirroring it)."""


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` checked against ``tp`` (ints are accepted for floats)."""
    origin = get_origin(tp)
    if origin is Literal:
        if isinstance(value, bool) and {"on", "off"} <= set(get_args(tp)):
            value = "on" if value else "off"  # YAML 1.1 reads a bare on/off (as DVC's YAML 1.2 writes it) as a bool
        if value not in get_args(tp):
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(repr, get_args(tp)))}")
        return value
    if origin in (Union, types.UnionType):
        errors = []
        for option in get_args(tp):
            if option is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key}: {value!r} is not a {' or '.join(_type_name(a) for a in get_args(tp))}")
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item,) = {a for a in get_args(tp) if a is not Ellipsis}
        return tuple(_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        return parse_section(tp, value, key)
    raise TypeError(f"unsupported field type {tp!r} for {key}")


def parse_section(cls: type[T], mapping: Mapping[str, Any] | None, section: str) -> T:
    """Build dataclass ``cls`` from ``mapping``; every problem names ``section.key``.

    Range checks live in the dataclass's ``__post_init__`` and raise
    :class:`ConfigError` through :func:`require`.
    """
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"{section}: expected a mapping of keys, got {mapping!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(mapping) - fields)
    if unknown:
        raise ConfigError(
            f"{section}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(fields))}"
        )
    values = {k: _coerce(v, hints[k], f"{section}.{k}") for k, v in mapping.items()}
    try:
        return cls(**values)
    except ConfigError as exc:
        raise ConfigError(f"{section}.{exc}") from None


def require(condition: bool, key: str, message: str) -> None:
    """Raise ``ConfigError("key: message")`` unless ``condition`` holds (for ``__post_init__``)."""
    if not condition:
        raise ConfigError(f"{key}: {message}")


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``: dotted keys, as ``dvc exp run -S`` and MLflow params name them."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass as a plain dict (tuples become lists), e.g. for MLflow or JSON."""
    def plain(v: Any) -> Any:
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return plain(dataclasses.asdict(obj))
