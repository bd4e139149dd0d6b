"""The trainer's settings: every field with its default, one doc line and its validation, side by side.

``setting(default, doc, ...)`` declares a field; its checks (a numeric range, a positive integer, a
fixed set of choices) live in the field's metadata and ``build`` applies them, so a rule is written
once, next to the field it guards. Names that come from a registry (methods, datasets, imbalance
profiles) are checked against that registry by ``trainers.config``, never listed here.

The shared settings are here; each method declares its own knobs beside its code
(``trainers/methods/<name>.py``, a frozen dataclass of ``setting`` fields), and ``trainers.config``
puts the two together into one trial's config.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping

INF = math.inf


def one_line(text: object) -> str:
    """``text`` (an exception's message, which may span lines) on one line."""
    return " ".join(str(text).split())


class ConfigError(ValueError):
    """A configuration a person wrote is wrong; the message names the key and the fix."""


def setting(default: Any = dataclasses.MISSING, doc: str = "", *, between: tuple | None = None,
            positive: bool = False, choices: tuple[str, ...] | None = None, factory: Any = None):
    """A config field. ``between=(low, high, "[)")`` is a range with its closed/open ends;
    ``positive`` an integer > 0 (None allowed where the default is None); ``choices`` a fixed set."""
    metadata = {"doc": doc, "between": between, "positive": positive, "choices": choices}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation (``eval.*`` keys)."""

    features: str = setting("judge", "judge (offline, CPU) or inception (torch-fidelity inception-v3-compat)",
                            choices=("judge", "inception"))
    inception_weights: str | None = setting(None, "local path to the inception-v3-compat weights file")
    num_samples: int = setting(1000, "the overall set: fid, kid and the class histogram on exactly this many samples",
                               positive=True)
    batch_size: int = setting(250, "sampling and feature-extraction batch: bounds evaluation memory", positive=True)
    per_class_n: int | None = setting(None, "every class is scored on this many samples; None = min(100, the "
                                            "smallest class's reference pool: its test images, half of them "
                                            "under split=val_test)", positive=True)
    split: str = setting("test", "test: every figure against the test images; val_test: each class's test images "
                                 "halved, val/<metric> against one half (what a searching study selects on), the "
                                 "normal names against the other", choices=("test", "val_test"))
    last_k: int = setting(1, "every float figure an evaluation reports is the mean of it and the previous last_k - 1 "
                             "evaluations' (1 = this evaluation alone; benchmarks/variance_reduction.py)",
                          positive=True)
    reference_draws: int = setting(5, "reference draws each figure is scored against (subsamples of a class's "
                                      "pool, bootstrap resamples where N is the whole pool); evalsd/<metric> is "
                                      "their sd", positive=True)
    max_draws: int | None = setting(None, "cap on the images drawn to fill per_class_n; None = 2 * per_class_n / "
                                          "(the tail's training prior)", positive=True)
    kid_subset_size: int = setting(100, "capped to the number of samples when fewer", positive=True)
    judge_epochs: int = setting(15, "training epochs of the judge classifier (trained once, cached)", positive=True)
    judge_width: int = setting(32, "channel width of the judge classifier", positive=True)
    images: bool = setting(True, "write a sample grid and a class histogram per evaluation")
    save_samples: bool = setting(True, "write samples.npz (what was scored) per evaluation, for rescoring")


@dataclass(frozen=True)
class FaultConfig:
    """Fault injection for the fault suite (``fault.*`` keys); never set in a real study."""

    nan_at_step: int | None = setting(None, "the D loss becomes NaN at this step (-> DivergedError)")
    raise_at_step: int | None = setting(None, "a RuntimeError is raised at this step")
    kill_at_step: int | None = setting(None, "the process SIGKILLs itself at this step, once per work dir")
    seeds: tuple[int, ...] | None = setting(None, "the trial seeds the faults above apply to (e.g. [1]: only seed "
                                                  "1's replicate fails); None = every seed")


@dataclass(frozen=True)
class NoKnobs:
    """A method without knobs of its own (the DCGAN baseline)."""


@dataclass(frozen=True)
class TrainConfig:
    """One trial: the settings every method shares, plus ``knobs``, the method's own (see its file).

    Defaults are a CPU-sized preset; a search space overrides any of them."""

    # --- method and data ---
    method: str = setting("dcgan", "a name of trainers.methods.METHODS")
    dataset: str = setting("mnist", "a name of trainers.data.DATASETS (mnist: the embedded default)")
    data_root: str = setting("data", "where torchvision datasets live (the embedded ones need none)")
    download: bool = setting(False, "let torchvision download a missing dataset")
    resolution: int | None = setting(None, "image side; None = the dataset's default", positive=True)
    imbalance: float = setting(1.0, "rho = n_max / n_min of the training split; 1 = balanced", between=(1.0, INF, "[]"))
    imbalance_profile: str = setting("exp", "a name of trainers.data.PROFILES")
    n_max: int | None = setting(None, "images of the head class; None = the smallest class's count", positive=True)
    data_seed: int | None = setting(None, "which images of a class are kept; None = the trial's seed, so "
                                          "replicates see different subsets and one seed's trials share one")
    class_order: str = setting("per_seed", "per_seed: the classes ranked by a permutation seeded by class_order_seed "
                                           "(None = the trial's seed), so the minority classes vary between seeds; "
                                           "natural: class 0 is the head, the last classes the tail",
                               choices=("per_seed", "natural"))
    class_order_seed: int | None = setting(None, "seeds the per_seed class order; None = the trial's seed")
    num_minority: int | None = setting(None, "minority classes; None = floor(K / 2) smallest")
    class_balanced_sampling: bool = setting(False, "draw real batches class-uniformly (any method)")

    # --- optimisation (the loop owns the optimisers and their steps) ---
    steps: int = setting(2000, "generator steps", positive=True)
    batch_size: int = setting(64, "real and fake images per D step, fakes per G step", positive=True)
    n_dis: int | None = setting(None, "D steps per G step; None = the method's default", positive=True)
    # the CPU recipe of docs/pilot.md (every method's balanced run covers the ten digits); the papers'
    # Adam 2e-4 (0.5, 0.999) left the balanced DCGAN collapsed at CPU scale and is in the GPU presets
    lr_g: float = setting(2e-4, "Adam learning rate of G", between=(0.0, INF, "()"))
    lr_d: float = setting(4e-4, "Adam learning rate of D", between=(0.0, INF, "()"))
    beta1: float = setting(0.0, "Adam beta1 of both nets", between=(0.0, 1.0, "[)"))
    beta2: float = setting(0.9, "Adam beta2 of both nets", between=(0.0, 1.0, "[)"))
    warmup_steps: int = setting(0, "linear learning-rate warm-up of both nets over this many steps (0 = none)",
                                between=(0, INF, "[]"))
    z_dim: int = setting(128, "latent size", positive=True)
    ch: int = setting(16, "width multiplier (64 on GPU, 8-32 on CPU)", positive=True)
    seed: int = setting(0, "seeds Python, NumPy and torch; replicates differ by it")
    device: str = setting("auto", "auto | cpu | cuda | cuda:N")
    amp: str = setting("off", "bf16: forward passes under bfloat16 autocast (backward and optimiser in fp32)",
                       choices=("off", "bf16"))
    compile: bool = setting(False, "torch.compile G and D's parts (in place: checkpoints keep their keys)")
    channels_last: bool = setting(False, "nets and image batches in channels-last memory format")
    g_ema: float = setting(0.0, "decay of an EMA copy of G's weights, updated after every G step and scored instead "
                                "of G (0 = off; trainers/ema.py; training is the same either way)",
                           between=(0.0, 1.0, "[)"))
    g_ema_start: int = setting(0, "G steps the EMA copy follows G exactly before it starts averaging (BigGAN's and "
                                  "StudioGAN's ema_start)", between=(0, INF, "[]"))

    # --- evaluation, checkpoints and the paths this trial writes ---
    eval_every: int = setting(500, "evaluate, checkpoint and report every this many steps (and at the end)",
                              positive=True)
    keep_checkpoints: int = setting(2, "checkpoints kept in the work dir (the previous one survives a bad write)",
                                    positive=True)
    cache_dir: str = setting("runs/cache", "judge classifier and reference statistics, shared by trials")
    eval: EvalConfig = setting(factory=EvalConfig)
    fault: FaultConfig = setting(factory=FaultConfig)

    # --- the method's own knobs (a dataclass declared beside the method) ---
    knobs: Any = setting(factory=NoKnobs)


# ----------------------------------------------------------------------------------------------
# Building a dataclass of settings from a plain dict, with each field's checks


def fields_of(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


@functools.cache
def type_hints(cls) -> dict[str, Any]:
    """``typing.get_type_hints(cls)``, evaluated once per class (it compiles every string annotation:
    ~30 ms of each ``make_config`` before)."""
    return typing.get_type_hints(cls)


def nested_dataclass(cls, name: str):
    """The dataclass type of field ``name`` of ``cls`` (eval, fault), or None."""
    hint = type_hints(cls)[name]
    return hint if dataclasses.is_dataclass(hint) else None


def suggest(key: str, valid: list[str]) -> str:
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
    if origin is tuple:  # tuple[int, ...]: a YAML or command-line list
        if isinstance(value, (list, tuple)):
            return tuple(_coerce(key, v, typing.get_args(hint)[0]) for v in value)
    elif hint is bool:
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
    else:
        return value
    name = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"config key '{key}' must be {name}, got {value!r} ({type(value).__name__}); "
                      f"set it as {key}=<{name}>")


def check(key: str, value: Any, metadata: Mapping[str, Any]) -> None:
    """The field's own rules (range, positive integer, choices)."""
    if value is None:
        return
    between = metadata.get("between")
    if between is not None:
        low, high, kind = between
        ok_low = value >= low if kind[0] == "[" else value > low
        ok_high = value <= high if kind[1] == "]" else value < high
        if not (ok_low and ok_high):
            hi = "inf" if math.isinf(high) else high
            raise ConfigError(f"config key '{key}' = {value} is out of range {kind[0]}{low}, {hi}{kind[1]}; "
                              f"choose a value inside it")
    if metadata.get("positive") and value <= 0:
        raise ConfigError(f"config key '{key}' = {value} must be a positive integer")
    choices = metadata.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"config key '{key}' = {value!r} is not one of {', '.join(choices)}")


def build(cls, data: Mapping[str, Any], prefix: str = "", valid_keys: list[str] | None = None):
    """``cls(**data)`` with every value coerced to its field's type and checked by its field's rules;
    nested dataclass fields (eval, fault) are built from nested mappings."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"config key '{prefix.rstrip('.')}' must be a mapping of keys, got {data!r}")
    fields = fields_of(cls)
    hints = type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"unknown config key '{prefix}{key}'; "
                              f"{suggest(prefix + key, valid_keys or [prefix + k for k in fields])}")
        sub = nested_dataclass(cls, key)
        if sub is not None:
            kwargs[key] = value if isinstance(value, sub) else build(sub, value, f"{prefix}{key}.", valid_keys)
        else:
            kwargs[key] = _coerce(prefix + key, value, hints[key])
            check(prefix + key, kwargs[key], fields[key].metadata)
    return cls(**kwargs)


def dotted_keys(cls, prefix: str = "", skip: tuple[str, ...] = ()) -> list[str]:
    """Every dotted key of a settings dataclass (``eval.num_samples`` ...)."""
    keys = []
    for name in fields_of(cls):
        if name in skip:
            continue
        sub = nested_dataclass(cls, name)
        keys += dotted_keys(sub, f"{prefix}{name}.") if sub is not None else [prefix + name]
    return keys
