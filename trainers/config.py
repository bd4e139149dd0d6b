"""One trial's config: the shared settings (``trainers.settings``) plus its method's own knobs.

``make_config`` builds a frozen :class:`TrainConfig` from a plain (nested or dotted) dict: the method
named by ``method`` says which knobs it reads (its ``Knobs`` dataclass), every value is checked by its
field's own rule, and names are checked against the registries (methods, datasets, imbalance
profiles). A key that only another method reads is refused with the method that reads it, so a
DCGAN run never carries a ``prune_ratio``. The four search dimensions keep exactly these names
everywhere (config, CLI, spaces, MLflow params): ``prune_ratio``, ``contrastive_weight``,
``gsr_lambda`` and ``imbalance``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping

from trainers.data import DATASETS
from trainers.fields import ConfigError, build, fields_of, one_line, suggest
from trainers.imbalance import PROFILES
from trainers.methods import METHODS, get_method
from trainers.settings import TrainConfig

__all__ = ["make_config", "to_dict", "flat_dict", "dotted", "parse_overrides", "unflatten", "all_keys",
           "knob_keys", "shared_keys", "methods_reading"]


@functools.cache
def _shared_keys() -> tuple[str, ...]:
    return tuple(key for key in dotted(dataclasses.asdict(TrainConfig())) if key != "knobs")


def shared_keys() -> list[str]:
    """Dotted keys every method reads (data, optimisation, evaluation, paths): the defaults' keys."""
    return list(_shared_keys())


def knob_keys(method: str) -> list[str]:
    """The keys of ``method``'s own knobs."""
    return list(fields_of(get_method(method).Knobs))


def all_keys() -> list[str]:
    """Every key some method reads: the shared ones and every method's knobs."""
    keys = shared_keys()
    for name in METHODS:
        keys += [k for k in knob_keys(name) if k not in keys]
    return keys


def methods_reading(key: str) -> list[str]:
    """The methods that read ``key`` (every method for a shared key)."""
    if key in shared_keys():
        return sorted(METHODS)
    return sorted(name for name in METHODS if key in knob_keys(name))


def make_config(data: Mapping[str, Any] | TrainConfig | None = None) -> TrainConfig:
    """Build a validated :class:`TrainConfig` from a (possibly nested or dotted) plain dict."""
    if isinstance(data, TrainConfig):
        return data
    data = unflatten(dict(data or {}))
    method = data.get("method", TrainConfig.method)
    if not isinstance(method, str):
        raise ConfigError(f"config key 'method' must be str, got {method!r}")
    method_cls = get_method(method)  # the one look-up: its knobs decide which keys this config reads
    own, common = fields_of(method_cls.Knobs), fields_of(TrainConfig)
    shared, knobs = {}, {}
    for key, value in data.items():
        if key in own:
            knobs[key] = value
        elif key in common and key != "knobs":
            shared[key] = value
        elif readers := methods_reading(key):
            raise ConfigError(f"config key '{key}' is not read by method '{method}' (only by "
                              f"{', '.join(readers)}); drop it, or set method= to one of those")
        else:
            raise ConfigError(f"unknown config key '{key}'; {suggest(key, all_keys())}")
    # every method's keys are walked only to suggest a name for an unknown key
    cfg = build(TrainConfig, shared, valid_keys=all_keys)
    cfg = dataclasses.replace(cfg, knobs=build(method_cls.Knobs, knobs, valid_keys=all_keys))
    for key, name, registry in (("dataset", cfg.dataset, DATASETS),
                                ("imbalance_profile", cfg.imbalance_profile, PROFILES)):
        if name not in registry:
            raise ConfigError(f"unknown {key} '{name}'; valid: {', '.join(sorted(registry))}")
    return cfg


def unflatten(data: Mapping[str, Any]) -> dict[str, Any]:
    """``{"eval.num_samples": 5}`` -> ``{"eval": {"num_samples": 5}}``; nested dicts merge."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        parts = str(key).split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"config key '{key}' conflicts with a plain value at '{part}'")
        if isinstance(value, Mapping):
            node.setdefault(parts[-1], {}).update(unflatten(value))
        else:
            node[parts[-1]] = value
    return out


def to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The config as a nested plain dict, the method's knobs at the top level beside the shared keys
    (what travels to workers and into checkpoints; ``make_config`` of it gives ``cfg`` back)."""
    out = dataclasses.asdict(cfg)
    out.update(out.pop("knobs"))
    return out


def dotted(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"eval": {"num_samples": 5}}`` -> ``{"eval.num_samples": 5}``."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            out.update(dotted(value, f"{prefix}{key}."))
        else:
            out[prefix + str(key)] = value
    return out


def flat_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The config as ``{"eval.num_samples": ..., "prune_ratio": ...}`` (MLflow params): the shared keys
    and this method's knobs, never another method's."""
    return dotted(to_dict(cfg))


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """``["a.b=1", "method=damage"]`` -> nested dict with YAML-typed values (OmegaConf dotlist)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    for arg in args:
        if "=" not in arg or arg.startswith("="):
            raise ConfigError(f"argument '{arg}' is not key=value; write it as e.g. steps=200")
    import yaml

    try:
        return OmegaConf.to_container(OmegaConf.from_dotlist(list(args)), resolve=True)
    except (OmegaConfBaseException, yaml.YAMLError) as e:  # a value's YAML is read by OmegaConf
        error = one_line(e)[:300]
    for arg in args:  # which one: the message names it, not every argument (thousands can be given)
        try:
            OmegaConf.from_dotlist([arg])
        except (OmegaConfBaseException, yaml.YAMLError) as e:
            shown = arg if len(arg) <= 200 else arg[:200] + "..."
            raise ConfigError(f"cannot parse the argument '{shown}': {one_line(e)[:300]}") from None
    shown = " ".join(args)
    raise ConfigError(f"cannot parse the overrides ({len(args)} arguments: "
                      f"{shown if len(shown) <= 300 else shown[:300] + '...'}): {error}")
