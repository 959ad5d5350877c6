"""Model families, named shortcuts, and the one function that builds any of them.

A family's keyword arguments are exactly its params.yaml section, so
``create_model("resnext", 10, **params.models["resnext"])`` needs no glue, and
:func:`model_config` validates that section before any training starts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from convbench.config import ConfigError, parse_section, require
from convbench.models.resnet import RESNET_DEPTHS, ResNetConfig, build_resnet
from convbench.models.resnext import ResNeXtConfig, build_resnext
from convbench.models.vgg import DEFAULT_CONFIG, VGGConfig, build_vgg, paper_depth


@dataclass(frozen=True)
class Family:
    """A family's config dataclass and the function that builds a model from it."""

    config: type
    build: Callable[[Any, int], nn.Module]


@dataclass(frozen=True)
class Shortcut:
    """A named model: ``fixed`` keys define it (overriding them is an error), ``defaults`` may be overridden."""

    family: str
    fixed: Mapping[str, Any]
    defaults: Mapping[str, Any] = field(default_factory=dict)


FAMILIES: dict[str, Family] = {
    "vgg": Family(VGGConfig, build_vgg),
    "resnet": Family(ResNetConfig, build_resnet),
    "resnext": Family(ResNeXtConfig, build_resnext),
}


def _shortcuts() -> dict[str, Shortcut]:
    """torchvision's names (ImageNet stem, classic VGG head) plus the CIFAR ResNeXt-29s."""
    table = {f"resnet{d}": Shortcut("resnet", {"depth": d}, {"stem": "imagenet"}) for d in RESNET_DEPTHS}
    for depth, cardinality, base_width, stem in (
        (50, 32, 4, "imagenet"),
        (101, 32, 8, "imagenet"),
        (29, 8, 64, "cifar"),
        (29, 16, 64, "cifar"),
    ):
        table[f"resnext{depth}_{cardinality}x{base_width}d"] = Shortcut(
            "resnext", {"depth": depth, "cardinality": cardinality, "base_width": base_width}, {"stem": stem}
        )
    vgg_names = {f"vgg{d}": c for d, c in DEFAULT_CONFIG.items()} | {"vgg16c": "C"}
    for name, config in vgg_names.items():
        for suffix, batch_norm in (("", False), ("_bn", True)):
            table[name + suffix] = Shortcut(
                "vgg",
                {"depth": paper_depth(config), "config": config, "batch_norm": batch_norm},
                {"head": "classic", "dropout": 0.5},
            )
    return table


SHORTCUTS: dict[str, Shortcut] = _shortcuts()


def list_models() -> list[str]:
    """Every name :func:`create_model` accepts: the families, then the shortcuts, sorted."""
    return sorted(FAMILIES) + sorted(SHORTCUTS)


def model_config(family: str, **section: Any) -> Any:
    """The frozen config dataclass of ``family`` built from its params.yaml ``section``.

    Raises ConfigError naming the key (``resnext.cardinality: ...``) for an
    unknown family or key, a wrong type, or an impossible combination.
    """
    if family not in FAMILIES:
        raise ConfigError(f"unknown model family {family!r}; valid families: {', '.join(FAMILIES)}")
    return parse_section(FAMILIES[family].config, section, family)


def _resolve(name: str, overrides: Mapping[str, Any]) -> tuple[str, Any]:
    """(family, config) for a family name or a shortcut with keyword overrides."""
    if name in FAMILIES:
        return name, model_config(name, **overrides)
    if name not in SHORTCUTS:
        raise ConfigError(f"unknown model {name!r}; valid names: {', '.join(list_models())}")
    shortcut = SHORTCUTS[name]
    for key, value in overrides.items():
        require(
            shortcut.fixed.get(key, value) == value,
            f"{name}.{key}",
            f"{name} fixes {key}={shortcut.fixed.get(key)!r}; build create_model({shortcut.family!r}, "
            f"{key}={value!r}, ...) instead",
        )
    return shortcut.family, model_config(shortcut.family, **{**shortcut.defaults, **shortcut.fixed, **overrides})


def create_model(name: str, num_classes: int, **section: Any) -> nn.Module:
    """Build a model from a family name and its params section, or from a shortcut name plus overrides.

    ``create_model("resnext", 10, cardinality=16)`` is the family with one key
    changed; ``create_model("resnet18", 10, stem="cifar")`` is a named model
    with a non-defining key changed. The returned module has a ``family``
    attribute naming its family.
    """
    family, config = _resolve(name, section)
    require(
        isinstance(num_classes, int) and not isinstance(num_classes, bool) and num_classes >= 1,
        "num_classes",
        f"must be a positive integer, got {num_classes!r}",
    )
    model = FAMILIES[family].build(config, num_classes)
    model.family = family
    return model
