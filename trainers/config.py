"""The trainer's configuration: a frozen dataclass tree built from a plain dict.

Every knob has a documented default here. The four search dimensions keep exactly these names
everywhere (config, CLI, spaces, MLflow params): ``prune_ratio``, ``contrastive_weight``,
``gsr_lambda`` and ``imbalance``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping


class ConfigError(ValueError):
    """A configuration a person wrote is wrong; the message names the key and the fix."""


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation (``eval.*`` keys)."""

    features: str = "judge"  # "judge" (offline, CPU) or "inception" (torch-fidelity inception-v3-compat)
    inception_weights: str | None = None  # local path to the inception-v3-compat weights file
    num_samples: int = 1000  # the overall set: fid/kid/class histogram on exactly this many samples
    batch_size: int = 250  # sampling and feature-extraction batch: bounds evaluation memory
    per_class_n: int | None = None  # every class scored on this many samples; None: min(100, smallest test class)
    max_draws: int | None = None  # cap on images drawn to fill per_class_n; None: 2 * per_class_n / (tail prior)
    kid_subset_size: int = 100  # capped to the number of samples when fewer
    judge_epochs: int = 15  # training epochs of the judge classifier (trained once, cached)
    judge_width: int = 32  # channel width of the judge classifier
    images: bool = True  # write a sample grid and a class histogram per evaluation
    save_samples: bool = True  # write samples.npz (what was scored) per evaluation, for rescoring


@dataclass(frozen=True)
class FaultConfig:
    """Fault injection for the fault suite (``fault.*`` keys); never set in a real study."""

    nan_at_step: int | None = None  # the D loss becomes NaN at this step (-> DivergedError)
    raise_at_step: int | None = None  # a RuntimeError is raised at this step
    kill_at_step: int | None = None  # the process SIGKILLs itself at this step, once per work dir


@dataclass(frozen=True)
class TrainConfig:
    """One trial. Defaults are the CPU/digits preset; a search space overrides any of them."""

    # --- method and data ---
    method: str = "dcgan"  # dcgan | contrad | damage | cgan
    dataset: str = "digits"  # digits | cifar10 | cifar100 | gtsrb
    data_root: str = "data"  # where torchvision datasets live (digits needs none)
    download: bool = False  # let torchvision download a missing dataset
    resolution: int | None = None  # image side; None = the dataset's default (digits 16, others 32)
    imbalance: float = 1.0  # rho = n_max / n_min of the training split; 1 = balanced
    imbalance_profile: str = "exp"  # exp | step | balanced_partial
    n_max: int | None = None  # images of the head class; None = the smallest class's count
    data_seed: int = 0  # which images of a class are kept
    class_order_seed: int | None = None  # permutes which class is the head; None = natural order
    num_minority: int | None = None  # minority classes; None = floor(K / 2) smallest
    class_balanced_sampling: bool = False  # sample real batches class-uniformly (cgan option)

    # --- optimisation ---
    steps: int = 2000  # generator steps
    batch_size: int = 64
    n_dis: int | None = None  # D steps per G step; None = the method's default (cgan 2, others 1)
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    z_dim: int = 128
    ch: int = 16  # width multiplier (64 on GPU, 16-32 on CPU)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N

    # --- evaluation and checkpoints ---
    eval_every: int = 500  # evaluate, checkpoint and report every this many steps (and at the end)
    keep_checkpoints: int = 2  # checkpoints kept in the work dir (the previous one survives a bad write)
    root: str = "runs"  # store root: caches (judge, reference statistics) live in <root>/cache
    eval: EvalConfig = field(default_factory=EvalConfig)
    fault: FaultConfig = field(default_factory=FaultConfig)

    # --- ContraD / Damage GAN ---
    contrastive_weight: float = 1.0  # lambda_con, weight of the fake-side SupCon term
    temperature: float = 0.1
    prune_ratio: float = 0.9  # fraction of encoder conv weights the SDCLR mask removes
    prune_every: int | None = None  # steps between mask updates; None = once per pass over the data
    proj_dim: int = 128

    # --- conditional GAN + gSR ---
    gsr_lambda: float = 0.0  # 0 turns the group spectral regulariser off
    gsr_beta: float = 0.999  # effective-number class weights
    gsr_power_iters: int = 1  # power-iteration steps per G step (vectors persist across steps)
    lecam_lambda: float = 0.0
    lecam_decay: float = 0.99
    diffaugment: str = ""  # e.g. "color,translation,cutout"


RANGES: dict[str, tuple[float, float, str]] = {
    # key: (low, high, "[]" closed / "[)" half-open)
    "imbalance": (1.0, math.inf, "[]"),
    "prune_ratio": (0.0, 1.0, "[)"),
    "contrastive_weight": (0.0, math.inf, "[]"),
    "gsr_lambda": (0.0, math.inf, "[]"),
    "lecam_lambda": (0.0, math.inf, "[]"),
    "gsr_beta": (0.0, 1.0, "[)"),
    "temperature": (0.0, math.inf, "(]"),
    "beta1": (0.0, 1.0, "[)"),
    "beta2": (0.0, 1.0, "[)"),
    "lr_g": (0.0, math.inf, "()"),  # Adam rejects lr <= 0 with a traceback; catch it here
    "lr_d": (0.0, math.inf, "()"),
    "lecam_decay": (0.0, 1.0, "[]"),
}
POSITIVE_INTS = ("steps", "batch_size", "eval_every", "z_dim", "ch", "keep_checkpoints", "proj_dim",
                 "gsr_power_iters", "num_samples", "judge_epochs", "judge_width", "per_class_n",
                 "max_draws", "kid_subset_size", "n_max", "n_dis", "prune_every", "resolution")
CHOICES: dict[str, tuple[str, ...]] = {
    "imbalance_profile": ("exp", "step", "balanced_partial"),
    "features": ("judge", "inception"),
}


def _fields(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def all_keys(cls=TrainConfig, prefix: str = "") -> list[str]:
    """Every dotted key the config accepts (``eval.num_samples`` ...)."""
    keys = []
    hints = typing.get_type_hints(cls)
    for name in _fields(cls):
        if dataclasses.is_dataclass(hints[name]):
            keys += all_keys(hints[name], f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def _suggest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(sorted(valid))}"


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against the type ``hint``; allow the harmless int->float widening."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(key, value, arg)
            except ConfigError as e:
                errors.append(e)
        raise errors[0]
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - every field uses one of the types above
        return value
    name = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"config key '{key}' must be {name}, got {value!r} ({type(value).__name__}); "
                      f"set it as {key}=<{name}>")


def _check_value(key: str, leaf: str, value: Any) -> None:
    if value is None:
        return
    if leaf in RANGES:
        low, high, kind = RANGES[leaf]
        ok_low = value >= low if kind[0] == "[" else value > low
        ok_high = value <= high if kind[1] == "]" else value < high
        if not (ok_low and ok_high):
            hi = "inf" if math.isinf(high) else high
            raise ConfigError(f"config key '{key}' = {value} is out of range {kind[0]}{low}, {hi}{kind[1]}; "
                              f"choose a value inside it")
    if leaf in POSITIVE_INTS and value <= 0:
        raise ConfigError(f"config key '{key}' = {value} must be a positive integer")
    if leaf in CHOICES and value not in CHOICES[leaf]:
        raise ConfigError(f"config key '{key}' = {value!r} is not one of {', '.join(CHOICES[leaf])}")


def _build(cls, data: Mapping[str, Any], prefix: str):
    if not isinstance(data, Mapping):
        raise ConfigError(f"config key '{prefix.rstrip('.')}' must be a mapping of keys, got {data!r}")
    fields = _fields(cls)
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"unknown config key '{prefix}{key}'; "
                              f"{_suggest(prefix + key, all_keys())}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = value if isinstance(value, hint) else _build(hint, value, f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(prefix + key, value, hint)
            _check_value(prefix + key, key, kwargs[key])
    return cls(**kwargs)


def make_config(data: Mapping[str, Any] | TrainConfig | None = None) -> TrainConfig:
    """Build a validated :class:`TrainConfig` from a (possibly nested or dotted) plain dict."""
    if isinstance(data, TrainConfig):
        return data
    return _build(TrainConfig, unflatten(dict(data or {})), "")


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
    """The config as a nested plain dict (what travels to workers and into checkpoints)."""
    return dataclasses.asdict(cfg)


def flat_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The config as ``{"eval.num_samples": ..., ...}`` (MLflow params)."""
    out = {}

    def walk(d, prefix):
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                out[prefix + k] = v
    walk(to_dict(cfg), "")
    return out


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """``["a.b=1", "method=damage"]`` -> nested dict with YAML-typed values (OmegaConf dotlist)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    for arg in args:
        if "=" not in arg or arg.startswith("="):
            raise ConfigError(f"argument '{arg}' is not key=value; write it as e.g. steps=200")
    try:
        conf = OmegaConf.from_dotlist(list(args))
    except OmegaConfBaseException as e:
        raise ConfigError(f"cannot parse overrides {args}: {e}") from None
    return OmegaConf.to_container(conf, resolve=True)
