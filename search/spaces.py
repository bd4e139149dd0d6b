"""Search spaces: a YAML file -> a validated, frozen ``Space`` -> an Optuna define-by-run function.

A space file (see README "Spaces") names the study, its metric(s) and mode(s), the sampler and
scheduler, how many configurations to sample and how many seed replicates each gets, the trainer
settings that stay fixed, and the parameters with their distributions and conditions::

    params:
      method: {choice: [dcgan, contrad, damage]}
      prune_ratio: {choice: [0.5, 0.9], when: {method: damage}}
      contrastive_weight: {loguniform: [0.1, 10], when: {method: [contrad, damage]}}

A parameter's ``when`` may only name parameters defined above it. Presets (``preset=NAME``) are
named overlays in the file's ``presets:`` section.
"""

from __future__ import annotations

import copy
import difflib
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from trainers.config import ConfigError, all_keys, make_config

SPACES_DIR = Path(__file__).resolve().parent.parent / "spaces"
SAMPLERS = ("tpe", "random", "grid", "nsga2", "qmc")
SCHEDULERS = ("fifo", "asha")
DISTRIBUTIONS = ("choice", "uniform", "loguniform", "int")
TOP_KEYS = ("name", "description", "metric", "mode", "sampler", "scheduler", "num_samples",
            "max_concurrent", "resources", "seeds", "fixed", "params", "presets", "sampler_seed")
# keys of a trial config that are not trainer keys
META_KEYS = ("seed",)
DEFAULT_NUM_SAMPLES = 10  # configurations sampled when a non-grid space does not say
DEFAULT_METHOD = "dcgan"


def knob_keys_of_any() -> set[str]:
    """Keys that belong to some method's own knobs (not shared by all)."""
    from trainers.config import all_keys, shared_keys
    return set(all_keys()) - set(shared_keys())


class SpaceError(ConfigError):
    """A space file is wrong; the message names the file, the key and the fix."""


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

    def suggest(self, trial) -> Any:
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
    fixed: dict
    params: tuple[Param, ...]
    source: str = ""
    sampler_seed: int = 0
    presets: dict = field(default_factory=dict)

    @property
    def multi_objective(self) -> bool:
        return len(self.metric) > 1

    @property
    def metric_arg(self) -> str | list[str]:
        return list(self.metric) if self.multi_objective else self.metric[0]

    @property
    def mode_arg(self) -> str | list[str]:
        return list(self.mode) if self.multi_objective else self.mode[0]

    def trial_config(self, sampled: Mapping[str, Any], seed: int) -> dict[str, Any]:
        """The trainer's plain dict for one trial: fixed settings, then sampled ones, then the seed. A fixed
        knob applies to the methods that read it: the others neither get it nor log it."""
        from trainers.config import knob_keys, unflatten
        merged = unflatten(self.fixed)
        for key, value in unflatten(dict(sampled)).items():
            if isinstance(value, dict):
                merged.setdefault(key, {}).update(value)
            else:
                merged[key] = value
        own = set(knob_keys(merged.get("method", DEFAULT_METHOD)))
        merged = {k: v for k, v in merged.items() if k not in knob_keys_of_any() or k in own}
        merged["seed"] = seed
        return merged

    def methods(self) -> list[str]:
        """The methods this space can run (a searched method's choices, or the fixed one)."""
        for param in self.params:
            if param.name == "method":
                return list(param.values) if param.kind == "choice" else []
        return [self.fixed.get("method", DEFAULT_METHOD)]

    def grid(self) -> list[dict[str, Any]]:
        """Every valid combination of the parameters (conditions applied, no duplicates)."""
        cells: list[dict[str, Any]] = [{}]
        for param in self.params:
            grown = []
            for cell in cells:
                if param.active(cell):
                    grown += [{**cell, param.name: v} for v in param.grid_values()]
                else:
                    grown.append(cell)
            cells = grown
        return cells

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "description": self.description, "metric": self.metric_arg,
            "mode": self.mode_arg, "sampler": self.sampler, "scheduler": self.scheduler,
            "num_samples": self.num_samples, "max_concurrent": self.max_concurrent,
            "resources": self.resources, "seeds": list(self.seeds), "fixed": self.fixed,
            "params": {p.name: _param_to_dict(p) for p in self.params}, "source": self.source,
        }


def _param_to_dict(p: Param) -> dict:
    d: dict[str, Any] = {p.kind: list(p.values) if p.kind == "choice" else [p.low, p.high]}
    if p.kind == "int" and p.step != 1:
        d["step"] = p.step
    if p.when:
        d["when"] = {k: list(v) for k, v in p.when}
    return d


class DefineByRun:
    """Optuna define-by-run function of a space (a module-level class, so Ray can pickle it)."""

    def __init__(self, params: tuple[Param, ...]):
        self.params = params

    def __call__(self, trial) -> None:
        assigned: dict[str, Any] = {}
        for param in self.params:
            if param.active(assigned):
                assigned[param.name] = param.suggest(trial)
        return None


# ----------------------------------------------------------------------------------------------
# Loading and validation


def available_spaces() -> list[str]:
    return sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))


def resolve_space_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise SpaceError(f"space file {path} does not exist; available spaces: {', '.join(available_spaces())}")
        return path
    candidate = SPACES_DIR / f"{name_or_path}.yaml"
    if not candidate.is_file():
        close = difflib.get_close_matches(name_or_path, available_spaces(), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise SpaceError(f"unknown space '{name_or_path}'; {hint}available: {', '.join(available_spaces())} "
                         f"(or pass a path to a YAML file)")
    return candidate


def load_space(name_or_path: str, overrides: Mapping[str, Any] | None = None,
               preset: str | None = None) -> Space:
    """Load, overlay ``preset`` and ``overrides`` (space-level keys, ``fixed.*`` included), validate."""
    path = resolve_space_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise SpaceError(f"{path}{where}: malformed YAML ({getattr(e, 'problem', e)}); fix the file's syntax") from None
    if not isinstance(raw, dict):
        raise SpaceError(f"{path}: a space file must be a mapping of keys (name, metric, params, ...)")
    raw = copy.deepcopy(raw)
    if preset:
        presets = raw.get("presets") or {}
        if preset not in presets:
            raise SpaceError(f"{path}: no preset '{preset}'; this space has: {', '.join(presets) or 'none'}")
        _merge(raw, presets[preset])
    if overrides:
        _merge(raw, dict(overrides))
    return validate_space(raw, str(path))


def _merge(base: dict, overlay: Mapping[str, Any]) -> None:
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict) and key != "params":
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


def _err(source: str, key: str, message: str) -> SpaceError:
    return SpaceError(f"{source}: '{key}' {message}")


def _number(source, key, value, kind=float):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _err(source, key, f"must be a number, got {value!r}")
    if kind is int and not float(value).is_integer():
        raise _err(source, key, f"must be an integer, got {value!r}")
    return kind(value)


def validate_space(raw: dict, source: str = "<space>") -> Space:
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
    if sampler == "qmc" and len(metric) > 1:
        pass  # QMC ignores objectives: fine for several metrics too

    scheduler = raw.get("scheduler", "fifo")
    scheduler = {"type": scheduler} if isinstance(scheduler, str) else dict(scheduler or {})
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

    seeds = raw.get("seeds", 1)
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise _err(source, "seeds", f"= {seeds} must be >= 1 (replicates per sampled configuration)")
        seeds = tuple(range(seeds))
    elif isinstance(seeds, list) and seeds and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        if len(set(seeds)) != len(seeds):
            raise _err(source, "seeds", f"has duplicates: {seeds}")
        seeds = tuple(seeds)
    else:
        raise _err(source, "seeds", f"must be a count >= 1 or a list of integer seeds, got {seeds!r}")

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
    params = _parse_params(raw["params"], source)
    trainer_keys = set(all_keys())
    for p in params:
        if p.name not in trainer_keys:
            close = difflib.get_close_matches(p.name, sorted(trainer_keys), n=1)
            hint = f"did you mean '{close[0]}'?" if close else "see trainers/config.py for the keys"
            raise _err(source, f"params.{p.name}", f"is not a trainer setting; {hint}")
    for p in params:
        if p.name in fixed:
            raise _err(source, f"fixed.{p.name}", "is also a parameter of this space (params would override it); "
                                                  "keep one of the two")
    if "seed" in {p.name for p in params} or "seed" in fixed:
        raise _err(source, "seed", "is set by the space's 'seeds' (replicates), not by params or fixed")

    grid_size = None
    space_kwargs = dict(name=name, description=str(raw.get("description", "")), metric=metric, mode=mode,
                        sampler=sampler, scheduler=scheduler, num_samples=1, max_concurrent=1,
                        resources=resources, seeds=seeds, fixed=dict(fixed), params=params, source=source,
                        sampler_seed=int(raw.get("sampler_seed", 0)), presets=dict(raw.get("presets") or {}))
    if sampler == "grid":
        try:
            grid_size = len(Space(**space_kwargs).grid())
        except SpaceError as e:
            raise SpaceError(f"{source}: {e}") from None
    num_samples = raw.get("num_samples", grid_size or DEFAULT_NUM_SAMPLES)
    num_samples = _number(source, "num_samples", num_samples, int)
    if num_samples < 1:
        raise _err(source, "num_samples", f"= {num_samples} must be >= 1")
    if grid_size is not None and num_samples > grid_size:
        raise _err(source, "num_samples", f"= {num_samples} exceeds the {grid_size} cells of the grid; "
                                          f"use at most {grid_size} or another sampler")
    max_concurrent = _number(source, "max_concurrent", raw.get("max_concurrent", 1), int)
    if max_concurrent < 1:
        raise _err(source, "max_concurrent", f"= {max_concurrent} must be >= 1")
    space_kwargs.update(num_samples=num_samples, max_concurrent=max_concurrent)
    space = Space(**space_kwargs)
    _check_knobs_are_read(space)
    _check_trainer_configs(space)
    return space


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


def _check_knobs_are_read(space: Space) -> None:
    """A method knob (fixed or searched) that none of the space's methods reads is refused."""
    from trainers.config import knob_keys
    from trainers.methods import METHODS

    methods = [m for m in space.methods() if m in METHODS]
    read = {k for m in methods for k in knob_keys(m)}
    for key in [*space.fixed, *(p.name for p in space.params)]:
        top = key.split(".")[0]
        if top in knob_keys_of_any() and top not in read:
            raise SpaceError(f"{space.source}: {top} is read by none of this space's methods "
                             f"({', '.join(methods)}); drop it")


def _check_trainer_configs(space: Space) -> None:
    """Every corner of the space must make a valid trainer config (bad keys/values fail here, early)."""
    corners: list[dict[str, Any]] = [{}]
    for param in space.params:
        options = list(param.values) if param.kind == "choice" else [param.low, param.high]
        if param.kind == "int":
            options = [int(o) for o in options]
        grown = []
        for cell in corners:
            if param.active(cell):
                grown += [{**cell, param.name: o} for o in options]
            else:
                grown.append(cell)
        corners = grown[:512] if len(grown) > 512 else grown
    from trainers.data import DATASETS
    from trainers.methods import METHODS

    for cell in itertools.islice(corners, 512):
        try:
            cfg = make_config(space.trial_config(cell, space.seeds[0]))
        except ConfigError as e:
            raise SpaceError(f"{space.source}: {e} (in fixed/params)") from None
        for key, name, registry in (("method", cfg.method, METHODS), ("dataset", cfg.dataset, DATASETS)):
            if name not in registry:
                raise SpaceError(f"{space.source}: unknown {key} '{name}'; valid: {', '.join(sorted(registry))}")
