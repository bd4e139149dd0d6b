"""Search spaces: a YAML file -> a validated, frozen ``Space`` -> Optuna suggestions -> trial configs.

A space file (see README "Spaces") names the study, its metric(s) and mode(s), the sampler and
scheduler, how many configurations to sample and how many seed replicates each gets, the trainer
settings that stay fixed, and the parameters with their distributions and conditions::

    params:
      method: {choice: [dcgan, contrad, damage]}
      prune_ratio: {choice: [0.5, 0.9], when: {method: damage}}
      contrastive_weight: {loguniform: [0.1, 10], when: {method: [contrad, damage]}}

A parameter's ``when`` may only name parameters defined above it. A method's knob (fixed, searched or
set by a preset) reaches only the methods that read it; one that none of the space's methods reads is
refused. Method and dataset names are checked against the trainer's registries, nowhere listed here.

Presets are named overlays kept in one shared file, ``spaces/presets.yaml``: an entry is either an
overlay of space keys (``fixed``, ``resources``, ``max_concurrent``, ...) or a list of other entries,
applied in order. A space's ``presets:`` section maps its own names to shared ones
(``cifar10_gpu: contrad_cifar10_gpu``); ``preset=NAME`` takes one of those or any shared name.
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import optuna
import yaml

from trainers.config import ConfigError, all_keys, make_config, methods_reading, shared_keys, unflatten
from trainers.methods import get_method
from trainers.settings import TrainConfig

SPACES_DIR = Path(__file__).resolve().parent.parent / "spaces"
PRESETS_FILE = SPACES_DIR / "presets.yaml"
# the sampler of each ``sampler:`` name, from the space's ``sampler_seed``; a grid's cells are
# enqueued in the study, so its sampler draws nothing
SAMPLERS: dict[str, Callable[[int], optuna.samplers.BaseSampler]] = {
    "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True),
    "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
    "grid": lambda seed: optuna.samplers.RandomSampler(seed=seed),
    "nsga2": lambda seed: optuna.samplers.NSGAIISampler(seed=seed),
    "qmc": lambda seed: optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False),
}
SCHEDULERS = ("fifo", "asha")
DISTRIBUTIONS = ("choice", "uniform", "loguniform", "int")
TOP_KEYS = ("name", "description", "metric", "mode", "sampler", "scheduler", "num_samples",
            "max_concurrent", "resources", "seeds", "fixed", "params", "presets", "sampler_seed")
PRESET_KEYS = tuple(k for k in TOP_KEYS if k not in ("name", "params", "presets"))
DEFAULT_NUM_SAMPLES = 10  # configurations sampled when a non-grid space does not say
MAX_CHECKED_CONFIGS = 512  # corners of a space whose trainer configs are validated up front
DEFAULT_METHOD = TrainConfig.method  # the trainer's, when a space neither fixes nor searches one


class SpaceError(ConfigError):
    """A space file is wrong; the message names the file, the key and the fix."""


@functools.cache
def knob_readers() -> dict[str, frozenset[str]]:
    """Each method knob -> the methods that read it (a shared key is read by every method: not here)."""
    shared = set(shared_keys())
    return {key: frozenset(methods_reading(key)) for key in all_keys() if key not in shared}


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # choice | uniform | loguniform | int
    values: tuple = ()  # choice
    low: float = 0.0
    high: float = 0.0
    step: int = 1  # int
    when: tuple = ()  # ((param, (allowed values...)), ...)

    def active(self, assigned: Mapping[str, Any]) -> bool:
        return all(name in assigned and assigned[name] in allowed for name, allowed in self.when)

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.values))
        if self.kind == "uniform":
            return trial.suggest_float(self.name, self.low, self.high)
        if self.kind == "loguniform":
            return trial.suggest_float(self.name, self.low, self.high, log=True)
        return trial.suggest_int(self.name, int(self.low), int(self.high), step=self.step)

    def grid_values(self) -> list:
        if self.kind == "choice":
            return list(self.values)
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1, self.step))
        raise SpaceError(f"parameter '{self.name}' is {self.kind}: the grid sampler needs choice or int")

    def extremes(self) -> list:
        """Every choice, or the two ends of a range: the values a space's validity is checked at."""
        if self.kind == "choice":
            return list(self.values)
        return [int(self.low), int(self.high)] if self.kind == "int" else [self.low, self.high]

    @property
    def varies(self) -> bool:
        return not (self.kind == "choice" and len(self.values) == 1)


def expand(params: tuple[Param, ...], options: Callable[[Param], list], limit: int | None = None) -> list[dict]:
    """Every combination of the parameters' ``options`` with the conditions applied (a parameter whose
    condition fails is absent from the cell), in the parameters' order; at most ``limit`` cells."""
    cells: list[dict[str, Any]] = [{}]
    for param in params:
        grown = []
        for cell in cells:
            grown += [{**cell, param.name: v} for v in options(param)] if param.active(cell) else [cell]
        cells = grown[:limit]
    return cells


@dataclass(frozen=True)
class Space:
    name: str
    description: str
    metric: tuple[str, ...]
    mode: tuple[str, ...]
    sampler: str
    scheduler: dict
    num_samples: int
    max_concurrent: int
    resources: dict
    seeds: tuple[int, ...]
    fixed: dict  # trainer keys, dotted (``eval.num_samples``)
    params: tuple[Param, ...]
    source: str = ""
    sampler_seed: int = 0
    presets: tuple[str, ...] = ()  # the shared presets applied, in order

    @property
    def multi_objective(self) -> bool:
        return len(self.metric) > 1

    @property
    def metric_arg(self) -> str | list[str]:
        return list(self.metric) if self.multi_objective else self.metric[0]

    @property
    def mode_arg(self) -> str | list[str]:
        return list(self.mode) if self.multi_objective else self.mode[0]

    @property
    def directions(self) -> list[str]:
        return ["minimize" if m == "min" else "maximize" for m in self.mode]

    def make_sampler(self) -> optuna.samplers.BaseSampler:
        return SAMPLERS[self.sampler](self.sampler_seed)

    def methods(self) -> list[str]:
        """The methods this space can run (a searched method's choices, or the fixed one)."""
        for param in self.params:
            if param.name == "method":
                return list(param.values) if param.kind == "choice" else []
        return [self.fixed.get("method", DEFAULT_METHOD)]

    def sample(self, trial: optuna.Trial) -> dict[str, Any]:
        """Define-by-run: the suggest calls of the parameters whose conditions hold, in order."""
        assigned: dict[str, Any] = {}
        for param in self.params:
            if param.active(assigned):
                assigned[param.name] = param.suggest(trial)
        return assigned

    def trial_config(self, sampled: Mapping[str, Any], seed: int) -> dict[str, Any]:
        """The one trial dict a trial runs with (what Ray passes to the trainable and MLflow logs): the
        fixed settings, then the sampled ones, then the seed, as dotted keys; a knob of another method
        than the trial's is neither passed nor logged."""
        config = {**self.fixed, **sampled, "seed": seed}
        method = config.get("method", DEFAULT_METHOD)
        readers = knob_readers()
        return {k: v for k, v in config.items() if k not in readers or method in readers[k]}

    def sampled(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The sampled parameters of a trial config (those whose conditions hold and the trial reads)."""
        assigned: dict[str, Any] = {}
        for param in self.params:
            if param.active(assigned) and param.name in config:
                assigned[param.name] = config[param.name]
        return assigned

    def grid(self) -> list[dict[str, Any]]:
        """Every valid combination of the parameters (conditions applied, no duplicates)."""
        return expand(self.params, Param.grid_values)

    def with_fixed(self, extra: Mapping[str, Any]) -> Space:
        return replace(self, fixed={**self.fixed, **extra})

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "description": self.description, "metric": self.metric_arg,
            "mode": self.mode_arg, "sampler": self.sampler, "scheduler": self.scheduler,
            "num_samples": self.num_samples, "max_concurrent": self.max_concurrent,
            "resources": self.resources, "seeds": list(self.seeds), "fixed": self.fixed,
            "params": {p.name: _param_to_dict(p) for p in self.params}, "source": self.source,
            **({"presets": list(self.presets)} if self.presets else {}),
        }


def _param_to_dict(p: Param) -> dict:
    d: dict[str, Any] = {p.kind: list(p.values) if p.kind == "choice" else [p.low, p.high]}
    if p.kind == "int" and p.step != 1:
        d["step"] = p.step
    if p.when:
        d["when"] = {k: list(v) for k, v in p.when}
    return d


# ----------------------------------------------------------------------------------------------
# Loading: the file, its presets and the command line's overrides, merged by OmegaConf


def available_spaces() -> list[str]:
    return sorted(p.stem for p in SPACES_DIR.glob("*.yaml") if p != PRESETS_FILE)


def resolve_space_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise SpaceError(f"space file {path} does not exist; available spaces: {', '.join(available_spaces())}")
        return path
    if name_or_path not in available_spaces():
        close = difflib.get_close_matches(name_or_path, available_spaces(), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise SpaceError(f"unknown space '{name_or_path}'; {hint}available: {', '.join(available_spaces())} "
                         f"(or pass a path to a YAML file)")
    return SPACES_DIR / f"{name_or_path}.yaml"


def read_yaml(path: Path) -> dict:
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise SpaceError(f"{path}{where}: malformed YAML ({getattr(e, 'problem', e)}); fix the file's syntax") from None
    if not isinstance(raw, dict):
        raise SpaceError(f"{path}: must be a mapping of keys (a space: name, metric, params, ...)")
    return raw


def load_space(name_or_path: str, overrides: Mapping[str, Any] | None = None,
               preset: str | list[str] | None = None) -> Space:
    """Load, overlay ``preset`` and ``overrides`` (space-level keys, ``fixed.*`` included), validate."""
    path = resolve_space_path(name_or_path)
    raw = read_yaml(path)
    presets = preset_layers(path, raw.get("presets"), preset)
    layers = [raw, *(overlay for _, overlay in presets), dict(overrides or {})]
    merged = merge(layers, str(path))
    origins = {key: name for name, overlay in presets for key in dotted(unflatten(overlay.get("fixed") or {}))}
    return validate_space(merged, str(path), presets=tuple(name for name, _ in presets), origins=origins)


def merge(layers: list[Mapping[str, Any]], source: str) -> dict:
    """OmegaConf's merge of the layers, later ones winning; ``fixed`` is nested first so that a dotted
    key (``eval.num_samples``) and its nested spelling (``eval: {num_samples}``) are one key."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    def nested(layer: Mapping[str, Any]) -> dict:
        layer = dict(layer)
        if isinstance(layer.get("fixed"), Mapping):
            layer["fixed"] = unflatten(layer["fixed"])
        return layer

    try:
        return OmegaConf.to_container(OmegaConf.merge(*(OmegaConf.create(nested(layer)) for layer in layers)))
    except (OmegaConfBaseException, ConfigError) as e:
        raise SpaceError(f"{source}: cannot merge its presets and overrides ({e})") from None


def dotted(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"eval": {"num_samples": 5}}`` -> ``{"eval.num_samples": 5}``."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            out.update(dotted(value, f"{prefix}{key}."))
        else:
            out[prefix + str(key)] = value
    return out


@functools.cache
def shared_presets() -> dict[str, Any]:
    return read_yaml(PRESETS_FILE) if PRESETS_FILE.is_file() else {}


def preset_layers(path: Path, own: Any, chosen: str | list[str] | None) -> list[tuple[str, dict]]:
    """The overlays of ``preset=`` (a name of the space's ``presets:`` section, a shared preset, or a
    list of them), expanded through the shared file: [(shared name, overlay), ...] in order. The
    space's section is checked even when no preset is chosen, so a bad name fails at once."""
    own = own or {}
    if not isinstance(own, dict):
        raise SpaceError(f"{path}: 'presets' must map a name to a shared preset or a list of them "
                         f"(the presets live in {PRESETS_FILE})")
    own = {name: [names] if isinstance(names, str) else names for name, names in own.items()}
    for name, names in own.items():
        if not isinstance(names, list) or not names:
            raise SpaceError(f"{path}: presets.{name} must name a shared preset or a list of them, got {names!r}")
        for shared in names:
            _shared_preset(shared, f"{path}: presets.{name}")
    if chosen is None:
        return []
    layers: list[tuple[str, dict]] = []
    for name in chosen if isinstance(chosen, list) else [chosen]:
        if name in own:
            names = own[name]
        elif name in shared_presets():
            names = [name]
        else:
            raise SpaceError(f"{path}: no preset '{name}'; this space has: {', '.join(own) or 'none'} "
                             f"(shared presets: {', '.join(shared_presets())})")
        for shared in names:
            layers += _expand_preset(shared, f"{path}: preset '{name}'", ())
    return layers


def _shared_preset(name: Any, where: str) -> Any:
    if not isinstance(name, str) or name not in shared_presets():
        close = difflib.get_close_matches(str(name), list(shared_presets()), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise SpaceError(f"{where}: {name!r} is not a preset of {PRESETS_FILE}; {hint}"
                         f"shared presets: {', '.join(shared_presets())}")
    return shared_presets()[name]


def _expand_preset(name: str, where: str, seen: tuple[str, ...]) -> list[tuple[str, dict]]:
    if name in seen:
        raise SpaceError(f"{PRESETS_FILE}: preset '{name}' includes itself ({' -> '.join([*seen, name])})")
    entry = _shared_preset(name, where)
    if isinstance(entry, list):
        return [layer for part in entry for layer in _expand_preset(part, f"{PRESETS_FILE}: {name}", (*seen, name))]
    if not isinstance(entry, dict):
        raise SpaceError(f"{PRESETS_FILE}: preset '{name}' must be an overlay (fixed, resources, ...) "
                         f"or a list of presets")
    for key in entry:
        if key not in PRESET_KEYS:
            raise SpaceError(f"{PRESETS_FILE}: preset '{name}' sets '{key}'; a preset may set {', '.join(PRESET_KEYS)}")
    return [(name, entry)]


# ----------------------------------------------------------------------------------------------
# Validation


def _err(source: str, key: str, message: str) -> SpaceError:
    return SpaceError(f"{source}: '{key}' {message}")


def _number(source, key, value, kind=float):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _err(source, key, f"must be a number, got {value!r}")
    if kind is int and not float(value).is_integer():
        raise _err(source, key, f"must be an integer, got {value!r}")
    return kind(value)


def validate_space(raw: dict, source: str = "<space>", presets: tuple[str, ...] = (),
                   origins: Mapping[str, str] | None = None) -> Space:
    """A validated Space from a merged space dict; ``origins`` names the preset that set a fixed key."""
    for key in raw:
        if key not in TOP_KEYS:
            close = difflib.get_close_matches(key, TOP_KEYS, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(TOP_KEYS)}"
            raise _err(source, key, f"is not a space key; {hint}")
    for key in ("name", "metric", "params"):
        if key not in raw:
            raise _err(source, key, "is missing; every space needs name, metric and params")
    name = raw["name"]
    if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
        raise _err(source, "name", f"must be a plain word (letters, digits, _ or -), got {name!r}")

    metric = raw["metric"]
    metric = (metric,) if isinstance(metric, str) else tuple(metric) if isinstance(metric, list) else None
    if not metric or not all(isinstance(m, str) and m for m in metric):
        raise _err(source, "metric", "must be a metric name or a list of them, e.g. fid or [fid, fid_minority]")
    mode = raw.get("mode", "min")
    mode = (mode,) * len(metric) if isinstance(mode, str) else tuple(mode) if isinstance(mode, list) else ()
    if len(mode) != len(metric) or any(m not in ("min", "max") for m in mode):
        raise _err(source, "mode", f"must be min or max (one per metric: {len(metric)}), got {raw.get('mode')!r}")

    sampler = raw.get("sampler", "tpe")
    if sampler not in SAMPLERS:
        raise _err(source, "sampler", f"= {sampler!r} is not one of {', '.join(SAMPLERS)}")
    scheduler = _scheduler(raw.get("scheduler", "fifo"), metric, source)
    seeds = _seeds(raw.get("seeds", 1), source)
    resources = dict(raw.get("resources") or {"cpu": 1})
    for k in resources:
        if k not in ("cpu", "gpu"):
            raise _err(source, f"resources.{k}", "is not a resource; valid: cpu, gpu")
    resources["cpu"] = _number(source, "resources.cpu", resources.get("cpu", 1))
    resources["gpu"] = _number(source, "resources.gpu", resources.get("gpu", 0))
    if resources["cpu"] <= 0 or resources["gpu"] < 0:
        raise _err(source, "resources", f"needs cpu > 0 and gpu >= 0, got {resources}")

    fixed = raw.get("fixed") or {}
    if not isinstance(fixed, dict):
        raise _err(source, "fixed", "must be a mapping of trainer settings")
    fixed = dotted(fixed)
    params = _parse_params(raw["params"], source)
    for p in params:
        if p.name not in all_keys():
            close = difflib.get_close_matches(p.name, all_keys(), n=1)
            hint = f"did you mean '{close[0]}'?" if close else "see trainers/settings.py and trainers/methods/ for the keys"
            raise _err(source, f"params.{p.name}", f"is not a trainer setting; {hint}")
        if p.name in fixed:
            raise _err(source, f"fixed.{p.name}", "is also a parameter of this space (params would override it); "
                                                  "keep one of the two")
    if "seed" in {p.name for p in params} or "seed" in fixed:
        raise _err(source, "seed", "is set by the space's 'seeds' (replicates), not by params or fixed")

    space = Space(name=name, description=str(raw.get("description", "")), metric=metric, mode=mode,
                  sampler=sampler, scheduler=scheduler, num_samples=1, max_concurrent=1, resources=resources,
                  seeds=seeds, fixed=fixed, params=params, source=source,
                  sampler_seed=int(raw.get("sampler_seed", 0)), presets=presets)
    cells = None
    if sampler == "grid":
        try:
            cells = space.grid()
        except SpaceError as e:
            raise SpaceError(f"{source}: {e}") from None
    _check_methods_and_knobs(space, origins or {})
    num_samples = _number(source, "num_samples", raw.get("num_samples", len(cells) if cells else DEFAULT_NUM_SAMPLES),
                          int)
    if num_samples < 1:
        raise _err(source, "num_samples", f"= {num_samples} must be >= 1")
    if cells is not None and num_samples > len(cells):
        raise _err(source, "num_samples", f"= {num_samples} exceeds the {len(cells)} cells of the grid; "
                                          f"use at most {len(cells)} or another sampler")
    max_concurrent = _number(source, "max_concurrent", raw.get("max_concurrent", 1), int)
    if max_concurrent < 1:
        raise _err(source, "max_concurrent", f"= {max_concurrent} must be >= 1")
    space = replace(space, num_samples=num_samples, max_concurrent=max_concurrent)
    _check_trainer_configs(space)
    return space


def _scheduler(raw: Any, metric: tuple[str, ...], source: str) -> dict:
    scheduler = {"type": raw} if isinstance(raw, str) else dict(raw or {})
    stype = scheduler.get("type", "fifo")
    if stype not in SCHEDULERS:
        raise _err(source, "scheduler", f"type {stype!r} is not one of {', '.join(SCHEDULERS)}")
    allowed = {"fifo": {"type"}, "asha": {"type", "grace_period", "reduction_factor"}}[stype]
    for k in scheduler:
        if k not in allowed:
            raise _err(source, f"scheduler.{k}", f"is not a {stype} setting; valid: {', '.join(sorted(allowed))}")
    if stype == "asha":
        if len(metric) > 1:
            raise _err(source, "scheduler", "asha cannot stop trials on several metrics at once (it ranks trials "
                                            "by one number); use scheduler: fifo with a multi-objective metric, "
                                            "or a single metric with asha")
        scheduler["grace_period"] = _number(source, "scheduler.grace_period", scheduler.get("grace_period", 1), int)
        scheduler["reduction_factor"] = _number(source, "scheduler.reduction_factor",
                                                scheduler.get("reduction_factor", 2), float)
        if scheduler["grace_period"] < 1 or scheduler["reduction_factor"] <= 1:
            raise _err(source, "scheduler", "asha needs grace_period >= 1 (evaluations) and reduction_factor > 1")
    scheduler["type"] = stype
    return scheduler


def _seeds(seeds: Any, source: str) -> tuple[int, ...]:
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise _err(source, "seeds", f"= {seeds} must be >= 1 (replicates per sampled configuration)")
        return tuple(range(seeds))
    if isinstance(seeds, list) and seeds and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        if len(set(seeds)) != len(seeds):
            raise _err(source, "seeds", f"has duplicates: {seeds}")
        return tuple(seeds)
    raise _err(source, "seeds", f"must be a count >= 1 or a list of integer seeds, got {seeds!r}")


def _parse_params(raw_params: Any, source: str) -> tuple[Param, ...]:
    if not isinstance(raw_params, dict) or not raw_params:
        raise _err(source, "params", "must be a non-empty mapping of parameter -> distribution")
    params: list[Param] = []
    seen: dict[str, Param] = {}
    for name, spec in raw_params.items():
        key = f"params.{name}"
        if not isinstance(spec, dict):
            raise _err(source, key, f"must be a mapping such as {{choice: [a, b]}}, got {spec!r}")
        kinds = [k for k in spec if k in DISTRIBUTIONS]
        extra = [k for k in spec if k not in DISTRIBUTIONS and k not in ("when", "step")]
        if len(kinds) != 1 or extra:
            raise _err(source, key, f"needs exactly one distribution of {', '.join(DISTRIBUTIONS)} "
                                    f"(plus optional when/step), got keys {list(spec)}")
        kind = kinds[0]
        value = spec[kind]
        kwargs: dict[str, Any] = {}
        if kind == "choice":
            if not isinstance(value, list) or not value:
                raise _err(source, key, "choice needs a non-empty list of values")
            if len({repr(v) for v in value}) != len(value):
                raise _err(source, key, f"choice has duplicate values: {value}")
            kwargs["values"] = tuple(value)
        else:
            if not isinstance(value, list) or len(value) != 2:
                raise _err(source, key, f"{kind} needs [low, high], got {value!r}")
            low = _number(source, key, value[0], int if kind == "int" else float)
            high = _number(source, key, value[1], int if kind == "int" else float)
            if not low < high:
                raise _err(source, key, f"{kind} needs low < high, got [{low}, {high}]")
            if kind == "loguniform" and low <= 0:
                raise _err(source, key, f"loguniform needs low > 0, got {low}")
            kwargs.update(low=low, high=high)
            if "step" in spec:
                if kind != "int":
                    raise _err(source, key, "step only applies to int")
                kwargs["step"] = _number(source, key + ".step", spec["step"], int)
        when = spec.get("when") or {}
        if not isinstance(when, dict):
            raise _err(source, key + ".when", "must be a mapping such as {method: damage}")
        conds = []
        for other, allowed in when.items():
            if other not in seen:
                later = other in raw_params
                raise _err(source, key + ".when", f"refers to '{other}', which is "
                           + ("defined below it; move it above" if later else "not a parameter of this space"))
            allowed = tuple(allowed) if isinstance(allowed, list) else (allowed,)
            if seen[other].kind == "choice":
                bad = [a for a in allowed if a not in seen[other].values]
                if bad:
                    raise _err(source, key + ".when", f"{other} can never be {bad}; its choices are "
                                                      f"{list(seen[other].values)}")
            conds.append((other, allowed))
        kwargs["when"] = tuple(conds)
        param = Param(name=name, kind=kind, **kwargs)
        seen[name] = param
        params.append(param)
    return tuple(params)


def _check_methods_and_knobs(space: Space, origins: Mapping[str, str]) -> None:
    """The space's methods are registered ones, and each of its knobs (fixed, searched or from a
    preset) is read by at least one of them."""
    methods = space.methods()
    for method in methods:
        try:
            get_method(method)
        except ConfigError as e:
            raise SpaceError(f"{space.source}: {e}") from None
    readers = knob_readers()
    for key in [*space.fixed, *(p.name for p in space.params)]:
        if key in readers and not readers[key] & set(methods):
            origin = f" (set by preset '{origins[key]}')" if key in origins else ""
            raise SpaceError(f"{space.source}: {key}{origin} is read by none of this space's methods "
                             f"({', '.join(methods)}); drop it")


def _check_trainer_configs(space: Space) -> None:
    """Every corner of the space must make a valid trainer config (bad keys/values fail here, early)."""
    for cell in expand(space.params, Param.extremes, limit=MAX_CHECKED_CONFIGS):
        try:
            make_config(space.trial_config(cell, space.seeds[0]))
        except ConfigError as e:
            raise SpaceError(f"{space.source}: {e} (in fixed/params)") from None
