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
from collections import Counter
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import optuna
import yaml

from trainers.config import all_keys, dotted, make_config, methods_reading, shared_keys, unflatten
from trainers.fields import ConfigError, one_line
from trainers.methods import METHODS, get_method
from trainers.metrics.names import VALIDATION, reported_metrics
from trainers.metrics.untrained import UNTRAINED
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
            "max_concurrent", "resources", "seeds", "fixed", "params", "presets", "sampler_seed",
            "primary", "effects", "blocks", "failure_value")
PRESET_KEYS = tuple(k for k in TOP_KEYS if k not in ("name", "params", "presets"))
DEFAULT_NUM_SAMPLES = 10  # configurations sampled when a non-grid space does not say
MAX_CHECKED_CONFIGS = 512  # corners of a space whose trainer configs are validated up front
MAX_GRID_CELLS = 100_000  # a bigger grid is a typo (int: [0, 1e9]) more often than a study
MAX_SEEDS = 1000  # replicates per configuration
SEED_RANGE = 2 ** 32  # seeds and sampler_seed seed NumPy, which takes [0, 2**32)
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,100}")  # names folders, locks, the MLflow experiment
CHOICE_TYPES = (str, int, float, bool, type(None))  # what Optuna stores as a categorical value
DEFAULT_METHOD = TrainConfig.method  # the trainer's, when a space neither fixes nor searches one


class SpaceError(ConfigError):
    """A space file is wrong; the message names the file, the key and the fix."""

    def __init__(self, message: str):
        # one line on the terminal even when a key or value itself holds a line break (a YAML key "\n")
        super().__init__(str(message).replace("\r", "\\r").replace("\n", "\\n"))


@functools.cache
def knob_readers() -> dict[str, frozenset[str]]:
    """Each method knob -> the methods that read it (a shared key is read by every method: not here)."""
    shared = set(shared_keys())
    return {key: frozenset(methods_reading(key)) for key in all_keys() if key not in shared}


@dataclass(frozen=True)
class SequentialSeeds:
    """``seeds: {sequential: {start: 3, step: 3, max: 12, margin: {fid: 5%}}}``: seeds 0..max-1 run in
    blocks. A grid tests its report's family after each block and runs only what an open comparison
    needs; a space that selects races each configuration against the incumbent (search.sequential_plan).
    ``margin`` (metric -> ("relative" | "absolute", size)) bounds futility; None: the space's ``effects:``."""

    start: int
    step: int
    max: int
    margin: dict | None = None

    @property
    def looks(self) -> tuple[int, ...]:
        """The planned cumulative numbers of seeds: start, start + step, ..., max (max always a look)."""
        sizes = list(range(self.start, self.max + 1, self.step))
        return tuple(sizes if sizes[-1] == self.max else [*sizes, self.max])

    def to_dict(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"start": self.start, "step": self.step, "max": self.max}
        if self.margin is not None:
            spec["margin"] = {m: f"{100 * v:g}%" if k == "relative" else v for m, (k, v) in self.margin.items()}
        return spec


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
        """Every choice, or the two ends of a range: the values a space's validity is checked at (and,
        for a float range, a value inside it that is no integer: a float range on an integer setting
        must fail the check, not the trials)."""
        if self.kind == "choice":
            return list(self.values)
        if self.kind == "int":
            return [int(self.low), int(self.high)]
        inside = self.low + (self.high - self.low) / math.pi
        return [self.low, self.high] + ([inside] if not float(inside).is_integer() else [])

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
    primary: tuple[dict, ...] = ()  # the report's primary comparisons: {a, b, metric, where}, tested first
    effects: dict = field(default_factory=dict)  # metric -> ("relative" | "absolute", size), declared in advance
    blocks: tuple[str, ...] | None = None  # params ranked within each level of (None: imbalance, its profile)
    # metric -> the value a failed or diverged replicate enters its configuration's mean at (fixed before the
    # study: the space's failure_value over the untrained generator's score, trainers.metrics.untrained)
    failure_value: dict = field(default_factory=dict)
    # ``seeds: {sequential: ...}``: seeds run in blocks (search.sequential_plan); None: every seed at once
    sequential: SequentialSeeds | None = None

    @property
    def multi_objective(self) -> bool:
        return len(self.metric) > 1

    @property
    def selects(self) -> bool:
        """Whether a sampler picks configurations from results (tpe, random, qmc, nsga2), not a grid."""
        return self.sampler != "grid"

    @property
    def objective(self) -> tuple[str, ...]:
        """What Optuna (and ASHA) are told: ``val/<metric>`` under ``eval.split=val_test`` (the default of a
        space that selects), so the configuration is chosen on a reference disjoint from the test reference
        of the reported ``<metric>``; a metric that uses no reference (``class_kl_prior``) as it is."""
        if self.fixed.get("eval.split") != "val_test":
            return self.metric
        return tuple(f"val/{m}" if f"val/{m}" in VALIDATION else m for m in self.metric)

    @property
    def objective_arg(self) -> str | list[str]:
        return list(self.objective) if self.multi_objective else self.objective[0]

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
            "resources": self.resources,
            "seeds": {"sequential": self.sequential.to_dict()} if self.sequential else list(self.seeds),
            "fixed": self.fixed,
            "params": {p.name: _param_to_dict(p) for p in self.params}, "source": self.source,
            **({"presets": list(self.presets)} if self.presets else {}),
            **({"primary": list(self.primary)} if self.primary else {}),
            **({"effects": {m: f"{100 * v:g}%" if k == "relative" else v for m, (k, v) in self.effects.items()}}
               if self.effects else {}),
            **({"blocks": list(self.blocks)} if self.blocks is not None else {}),
            **({"failure_value": dict(self.failure_value)} if self.failure_value else {}),
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
    if path.is_file():
        return path
    if path.is_dir() and name_or_path not in available_spaces():
        raise SpaceError(f"space={path} is a directory; give a .yaml file or a space name "
                         f"({', '.join(available_spaces())})")
    if path.exists() and name_or_path not in available_spaces():
        raise SpaceError(f"space={path} is not a regular file; give a .yaml file or a space name")
    if path.suffix in (".yaml", ".yml"):
        raise SpaceError(f"space file {path} does not exist; available spaces: {', '.join(available_spaces())}")
    if name_or_path not in available_spaces():
        close = _closest(name_or_path, available_spaces())
        hint = f"did you mean '{close}'? " if close else ""
        raise SpaceError(f"unknown space '{name_or_path}'; {hint}available: {', '.join(available_spaces())} "
                         f"(or pass a path to a YAML file)")
    return SPACES_DIR / f"{name_or_path}.yaml"


MAX_YAML_BYTES = 1024 ** 2  # a space is a page of YAML
MAX_YAML_NODES = 100_000  # scalars, lists and mappings once aliases are expanded (an alias bomb: billions)


class _SpaceLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise SpaceError(f"line {key_node.start_mark.line + 1}: key '{key}' is given twice in one "
                                 f"mapping; keep one")
            seen.add(key)
        return super().construct_mapping(node, deep)


def _check_expanded_size(value: Any, source: Path) -> None:
    """Count the nodes as OmegaConf would see them, each alias expanded, and stop past MAX_YAML_NODES
    (PyYAML shares an alias's object; OmegaConf copies it, so 9 levels of 9 aliases are 9**9 nodes)."""
    count, stack = 0, [value]
    while stack:
        item = stack.pop()
        count += 1
        if count > MAX_YAML_NODES:
            raise SpaceError(f"{source}: expands to more than {MAX_YAML_NODES:,} values (YAML aliases repeated "
                             f"inside each other?); a space is a page of keys")
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def read_yaml(path: Path) -> dict:
    try:
        if path.stat().st_size > MAX_YAML_BYTES:
            raise SpaceError(f"{path}: is {path.stat().st_size:,} bytes; a space is a page of YAML "
                             f"(at most {MAX_YAML_BYTES:,} bytes)")
        raw = yaml.load(path.read_bytes().decode("utf-8-sig"), Loader=_SpaceLoader)  # noqa: S506 - safe loader
    except UnicodeDecodeError as e:
        raise SpaceError(f"{path}: is not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}); "
                         f"save it as UTF-8") from None
    except OSError as e:
        raise SpaceError(f"{path}: cannot be read ({e.strerror or e}); check the path and its permissions") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = " ".join(str(getattr(e, "problem", None) or e).split())
        raise SpaceError(f"{path}{where}: malformed YAML ({problem}); fix the file's syntax") from None
    except RecursionError:
        raise SpaceError(f"{path}: nested too deeply; a space is a few levels of keys") from None
    except SpaceError as e:
        raise SpaceError(str(e) if str(e).startswith(str(path)) else f"{path} {e}") from None
    _check_expanded_size(raw, path)
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
    except (OmegaConfBaseException, ConfigError, TypeError) as e:  # TypeError: a mapping over a list, ...
        raise SpaceError(f"{source}: cannot merge its presets and overrides ({one_line(e)})") from None
    except RecursionError:  # a YAML alias that contains itself
        raise SpaceError(f"{source}: a value contains itself (a YAML alias to its own anchor); spell it out") from None


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
        if not isinstance(name, str):
            raise SpaceError(f"preset={name!r} must be a preset's name or a list of names, e.g. preset=cifar10_gpu")
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
        close = _closest(name, shared_presets())
        hint = f"did you mean '{close}'? " if close else ""
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


def _err(source: str, key: Any, message: str) -> SpaceError:
    return SpaceError(f"{source}: '{key}' {message}")


def _closest(key: Any, valid) -> str | None:
    close = difflib.get_close_matches(str(key), list(valid), n=1)
    return close[0] if close else None


def _number(source, key, value, kind=float):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _err(source, key, f"must be a number, got {value!r}")
    if not math.isfinite(value):
        raise _err(source, key, f"must be a finite number, got {value!r}")
    if kind is int and not float(value).is_integer():
        raise _err(source, key, f"must be an integer, got {value!r}")
    return kind(value)


def _word(source: str, key: str, value: Any, valid) -> str:
    """``value`` must be one of the names ``valid``."""
    if not isinstance(value, str) or value not in valid:
        raise _err(source, key, f"= {value!r} is not one of {', '.join(valid)}")
    return value


def _mapping(source: str, key: str, value: Any, example: str) -> dict:
    if not isinstance(value, Mapping):
        raise _err(source, key, f"must be a mapping such as {example}, got {value!r}")
    return dict(value)


def validate_space(raw: dict, source: str = "<space>", presets: tuple[str, ...] = (),
                   origins: Mapping[str, str] | None = None) -> Space:
    """A validated Space from a merged space dict; ``origins`` names the preset that set a fixed key."""
    for key in raw:
        if key not in TOP_KEYS:
            close = _closest(key, TOP_KEYS)
            hint = f"did you mean '{close}'?" if close else f"valid keys: {', '.join(TOP_KEYS)}"
            raise _err(source, key, f"is not a space key; {hint}")
    for key in ("name", "metric", "params"):
        if key not in raw:
            raise _err(source, key, "is missing; every space needs name, metric and params")
    name = raw["name"]
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise _err(source, "name", f"must be a plain word (letters, digits, _ or -; at most 100), got {name!r}")

    metric = raw["metric"]
    metric = (metric,) if isinstance(metric, str) else tuple(metric) if isinstance(metric, list) else None
    if not metric or not all(isinstance(m, str) and m for m in metric):
        raise _err(source, "metric", "must be a metric name or a list of them, e.g. fid or [fid, fid_minority]")
    if len(set(metric)) != len(metric):
        raise _err(source, "metric", f"names a metric twice: {list(metric)}")
    mode = raw.get("mode", "min")
    mode = (mode,) * len(metric) if isinstance(mode, str) else tuple(mode) if isinstance(mode, list) else ()
    if len(mode) != len(metric) or any(m not in ("min", "max") for m in mode):
        raise _err(source, "mode", f"must be min or max (one per metric: {len(metric)}), got {raw.get('mode')!r}")

    sampler = _word(source, "sampler", raw.get("sampler", "tpe"), list(SAMPLERS))
    scheduler = _scheduler(raw.get("scheduler", "fifo"), metric, source)
    seeds, sequential = _seeds(raw.get("seeds", 1), source, metric, sampler)
    sampler_seed = _number(source, "sampler_seed", raw.get("sampler_seed", 0), int)
    if not 0 <= sampler_seed < SEED_RANGE:
        raise _err(source, "sampler_seed", f"= {sampler_seed} must be in [0, 2**32)")
    resources = _mapping(source, "resources", raw.get("resources") or {"cpu": 1}, "{cpu: 1, gpu: 0.25}")
    for k in resources:
        if k not in ("cpu", "gpu"):
            raise _err(source, f"resources.{k}", "is not a resource; valid: cpu, gpu")
    resources["cpu"] = _number(source, "resources.cpu", resources.get("cpu", 1))
    resources["gpu"] = _number(source, "resources.gpu", resources.get("gpu", 0))
    if resources["cpu"] <= 0 or resources["gpu"] < 0:
        raise _err(source, "resources", f"needs cpu > 0 and gpu >= 0, got {resources}")

    fixed = dotted(_mapping(source, "fixed", raw.get("fixed") or {}, "{dataset: digits, steps: 200}"))
    if sampler != "grid":  # a space that selects: chosen on the validation half, reported on the test half
        fixed.setdefault("eval.split", "val_test")
    params = _parse_params(raw["params"], source)
    for p in params:
        if p.name not in all_keys():
            close = _closest(p.name, all_keys())
            hint = (f"did you mean '{close}'?" if close
                    else "see trainers/settings.py and trainers/methods/ for the keys")
            raise _err(source, f"params.{p.name}", f"is not a trainer setting; {hint}")
        if p.name in fixed:
            raise _err(source, f"fixed.{p.name}", "is also a parameter of this space (params would override it); "
                                                  "keep one of the two")
    if "seed" in {p.name for p in params} or "seed" in fixed:
        raise _err(source, "seed", "is set by the space's 'seeds' (replicates), not by params or fixed")

    searched = {p.name for p in params}  # a searched dataset has no one untrained score
    failure_value = _failure_value(raw.get("failure_value"), metric,
                                   None if "dataset" in searched else fixed.get("dataset", TrainConfig.dataset), source)
    space = Space(name=name, description=str(raw.get("description", "")), metric=metric, mode=mode,
                  sampler=sampler, scheduler=scheduler, num_samples=1, max_concurrent=1, resources=resources,
                  seeds=seeds, fixed=fixed, params=params, source=source, sampler_seed=sampler_seed, presets=presets,
                  failure_value=failure_value, sequential=sequential)
    cells = None
    if sampler == "grid":
        cells = _grid(space)
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
    space = replace(space, num_samples=num_samples, max_concurrent=max_concurrent,
                    **_report_keys(raw, space, source))
    _check_trainer_configs(space)
    return space


PRIMARY_KEYS = ("a", "b", "metric", "where")
PRIMARY_EXAMPLE = "{a: {method: contrad}, b: {method: damage}, metric: fid, where: {imbalance: 100}}"


def _report_keys(raw: dict, space: Space, source: str) -> dict:
    """The report's keys: ``primary:`` comparisons, ``effects:`` declared in advance, ``blocks:``."""
    settings = {p.name: p for p in space.params}

    def setting(key: str, name: Any, value: Any) -> None:
        if name not in settings and name not in space.fixed:
            raise _err(source, key, f"names '{name}', neither a parameter nor a fixed key of this space")
        p = settings.get(name)
        if p is not None and p.kind == "choice" and value not in p.values:
            raise _err(source, key, f"= {value!r} is not one of the choices of '{name}': {list(p.values)}")

    primary = raw.get("primary") or ()
    primary = [primary] if isinstance(primary, Mapping) else list(primary) if isinstance(primary, (list, tuple)) else primary
    if not isinstance(primary, list):
        raise _err(source, "primary", f"must be a comparison or a list of them, such as {PRIMARY_EXAMPLE}")
    checked = []
    for i, spec in enumerate(primary):
        where = f"primary[{i}]"
        spec = _mapping(source, where, spec, PRIMARY_EXAMPLE)
        for key in spec:
            if key not in PRIMARY_KEYS:
                raise _err(source, f"{where}.{key}", f"is not a key of a comparison; valid: {', '.join(PRIMARY_KEYS)}")
        for key in ("a", "b", "metric"):
            if key not in spec:
                raise _err(source, f"{where}.{key}", f"is missing; a primary comparison is {PRIMARY_EXAMPLE}")
        if not isinstance(spec["metric"], str) or not spec["metric"]:
            raise _err(source, f"{where}.metric", f"must be a metric name, got {spec['metric']!r}")
        for key in ("a", "b", "where"):
            arm = _mapping(source, f"{where}.{key}", spec.get(key) or {}, "{method: damage}")
            for name, value in arm.items():
                setting(f"{where}.{key}.{name}", name, value)
            spec[key] = arm
        if spec["a"] == spec["b"]:
            raise _err(source, where, "compares a configuration with itself: a and b must differ")
        checked.append(spec)
    effects = {metric: _effect_size(source, f"effects.{metric}", size) for metric, size in
               _mapping(source, "effects", raw.get("effects") or {}, "{fid: 5%, kid_minority: 0.5}").items()}
    blocks = raw.get("blocks")
    if blocks is not None:
        if not isinstance(blocks, list) or not all(isinstance(b, str) for b in blocks):
            raise _err(source, "blocks", f"must be a list of parameter names such as [imbalance], got {blocks!r}")
        for b in blocks:
            if b not in settings:
                raise _err(source, f"blocks.{b}", f"is not a parameter of this space; valid: {', '.join(settings)}")
        blocks = tuple(blocks)
    return {"primary": tuple(checked), "effects": effects, "blocks": blocks}
def _effect_size(source: str, key: str, size: Any) -> tuple[str, float]:
    """``5%`` -> ("relative", 0.05); a number -> ("absolute", number); either > 0."""
    if isinstance(size, str) and size.strip().endswith("%"):
        try:
            effect = ("relative", float(size.strip()[:-1]) / 100)
        except ValueError:
            raise _err(source, key, f"= {size!r} must be a percentage such as 5% or a number") from None
    else:
        effect = ("absolute", _number(source, key, size))
    if not effect[1] > 0:
        raise _err(source, key, f"= {size!r} must be > 0 (the size of the effect, either sign)")
    return effect


def _failure_value(raw: Any, metric: tuple[str, ...], dataset: Any, source: str) -> dict[str, float]:
    """The penalty of each metric: the space's ``failure_value`` (a mapping metric -> number), else the
    untrained generator's score on the space's fixed dataset (``trainers.metrics.untrained.UNTRAINED``); a
    metric with neither has none (a configuration with a failed replicate is then told FAIL)."""
    own = _mapping(source, "failure_value", raw, "{kid_minority: 0.2}") if raw is not None else {}
    for key, value in own.items():
        if key not in metric:
            raise _err(source, f"failure_value.{key}", f"is not a metric of this space; valid: {', '.join(metric)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _err(source, f"failure_value.{key}", f"must be a finite number (the value a failed replicate "
                                                       f"enters its configuration's mean at), got {value!r}")
    table = UNTRAINED.get(dataset, {}) if isinstance(dataset, str) else {}
    merged = {m: float(table[m]) for m in metric if m in table}
    merged.update({m: float(v) for m, v in own.items()})
    return merged


def _grid(space: Space) -> list[dict[str, Any]]:
    """The grid's cells, refused when the grid cannot be enumerated (a range, or too many cells)."""
    size = 1
    for p in space.params:
        if p.kind not in ("choice", "int"):
            raise SpaceError(f"{space.source}: parameter '{p.name}' is {p.kind}: the grid sampler needs choice or int")
        size *= len(p.values) if p.kind == "choice" else (int(p.high) - int(p.low)) // p.step + 1
        if size > MAX_GRID_CELLS:
            raise SpaceError(f"{space.source}: the grid has more than {MAX_GRID_CELLS:,} cells; use fewer values "
                             f"or another sampler (tpe, random, qmc)")
    return space.grid()


def _scheduler(raw: Any, metric: tuple[str, ...], source: str) -> dict:
    if not isinstance(raw, (str, Mapping)):
        raise _err(source, "scheduler", f"must be fifo, asha or a mapping such as {{type: asha, grace_period: 1}}, "
                                        f"got {raw!r}")
    scheduler = {"type": raw} if isinstance(raw, str) else dict(raw)
    stype = _word(source, "scheduler.type", scheduler.get("type", "fifo"), SCHEDULERS)
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


SEQUENTIAL_EXAMPLE = "seeds: {sequential: {start: 3, step: 3, max: 12}}"


def _seeds(seeds: Any, source: str, metric: tuple[str, ...] = (), sampler: str = "grid"
           ) -> tuple[tuple[int, ...], SequentialSeeds | None]:
    """The seeds (a count, a list, or ``{sequential: {start, step, max, margin}}``: seeds 0..max-1 in blocks)
    and the sequential spec (None for a fixed set of seeds)."""
    if isinstance(seeds, Mapping):
        extra = [k for k in seeds if k != "sequential"]
        if extra or "sequential" not in seeds:
            raise _err(source, f"seeds.{extra[0]}" if extra else "seeds", f"is not a seeds setting; write a count, "
                       f"a list of seeds, or {SEQUENTIAL_EXAMPLE}")
        spec = _mapping(source, "seeds.sequential", seeds["sequential"], "{start: 3, step: 3, max: 12}")
        for key in spec:
            if key not in ("start", "step", "max", "margin"):
                raise _err(source, f"seeds.sequential.{key}", f"is not a sequential setting; valid: start, step, "
                                                              f"max, margin (e.g. {SEQUENTIAL_EXAMPLE})")
        sizes = {}
        for key, least in (("start", 2), ("step", 1), ("max", 2)):
            if key not in spec:
                raise _err(source, f"seeds.sequential.{key}", f"is missing; write {SEQUENTIAL_EXAMPLE}")
            value = spec[key]
            if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= MAX_SEEDS:
                raise _err(source, f"seeds.sequential.{key}", f"= {value!r} must be a whole number in {least}.."
                                                              f"{MAX_SEEDS} (e.g. {SEQUENTIAL_EXAMPLE})")
            sizes[key] = value
        if sizes["max"] <= sizes["start"]:
            raise _err(source, "seeds.sequential.max", f"= {sizes['max']} must exceed start = {sizes['start']} (one "
                                                       f"block is a fixed study: write seeds: {sizes['start']})")
        margin = None
        if spec.get("margin") is not None:
            margin = {}
            from search.report.comparisons import COMPARED  # the metrics a report's family compares

            compared = list(dict.fromkeys([*metric, *COMPARED]))
            for name, size in _mapping(source, "seeds.sequential.margin", spec["margin"], "{fid: 5%}").items():
                if name not in compared:
                    raise _err(source, f"seeds.sequential.margin.{name}", f"is not a metric the report compares; "
                                                                          f"valid: {', '.join(compared)}")
                margin[name] = _effect_size(source, f"seeds.sequential.margin.{name}", size)
        if sampler != "grid" and len(metric) > 1:
            raise _err(source, "seeds.sequential", f"races configurations on one metric, but this space has "
                                                   f"{len(metric)}; use one metric, or a fixed count of seeds")
        return tuple(range(sizes["max"])), SequentialSeeds(margin=margin, **sizes)
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if not 1 <= seeds <= MAX_SEEDS:
            raise _err(source, "seeds", f"= {seeds} must be a count in 1..{MAX_SEEDS} (replicates per sampled "
                                        f"configuration)")
        return tuple(range(seeds)), None
    if isinstance(seeds, list) and seeds and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        if len(set(seeds)) != len(seeds):
            raise _err(source, "seeds", f"has duplicates: {seeds}")
        if len(seeds) > MAX_SEEDS or not all(0 <= s < SEED_RANGE for s in seeds):
            raise _err(source, "seeds", f"must list at most {MAX_SEEDS} seeds, each in [0, 2**32)")
        return tuple(seeds), None
    raise _err(source, "seeds", f"must be a count >= 1, a list of integer seeds, or {SEQUENTIAL_EXAMPLE}; "
                                f"got {seeds!r}")


def _parse_params(raw_params: Any, source: str) -> tuple[Param, ...]:
    if not isinstance(raw_params, dict) or not raw_params:
        raise _err(source, "params", "must be a non-empty mapping of parameter -> distribution")
    params: list[Param] = []
    seen: dict[str, Param] = {}
    for name, spec in raw_params.items():
        key = f"params.{name}"
        if not isinstance(name, str):
            raise _err(source, key, "must be named by a trainer setting (a word such as prune_ratio)")
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
            if not all(isinstance(v, CHOICE_TYPES) and v == v for v in value):  # v != v: NaN
                raise _err(source, key, f"choice values must be plain numbers, words, true/false or null, got {value}")
            # by value, as the trainer reads them: [1, 1.0] (or [1, true]) is one configuration twice
            if len({float(v) if isinstance(v, (int, float)) else v for v in value}) != len(value):
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
            if kwargs["step"] < 1:
                raise _err(source, key + ".step", f"= {kwargs['step']} must be >= 1")
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
        if not isinstance(method, str):
            raise SpaceError(f"{space.source}: method {method!r} is not a method's name; valid: "
                             f"{', '.join(sorted(METHODS))}")
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
    """Every corner of the space must make a valid trainer config (bad keys/values fail here, early),
    and every trial must report the space's metric(s): a name no trial reports would end the study at
    the first evaluation, after the stores were written."""
    lacking: dict[str, tuple[dict, str]] = {}  # metric -> a corner whose trials do not report it, its dataset
    reported: dict[str, None] = {}  # every name some corner reports, in order
    for cell in expand(space.params, Param.extremes, limit=MAX_CHECKED_CONFIGS):
        try:
            cfg = make_config(space.trial_config(cell, space.seeds[0]))
        except ConfigError as e:
            raise SpaceError(f"{space.source}: {one_line(e)} (in fixed/params)") from None
        names = reported_metrics(cfg)
        reported.update(dict.fromkeys(names))
        for metric in dict.fromkeys([*space.metric, *space.objective]):
            if metric not in names:
                lacking.setdefault(metric, (cell, cfg.dataset))
    for metric, (cell, dataset) in lacking.items():
        raise SpaceError(f"{space.source}: metric '{metric}' {_unreported(metric, cell, dataset, list(reported))}")


def _per_class(name: str) -> str | None:
    """The family of a per-class name (``fid_class`` of ``fid_class/3``), else None."""
    family, _, index = name.rpartition("/")
    return family if family and index.isdigit() else None


def _unreported(metric: str, cell: Mapping[str, Any], dataset: str, reported: list[str]) -> str:
    """Why no trial (or not every trial) of a space reports ``metric``, and what it could be instead."""
    if metric in reported:
        where = ", ".join(f"{k}={v}" for k, v in cell.items()) or "its fixed settings"
        return (f"is not reported by every trial of this space (not with {where}); choose one every trial "
                f"reports, such as fid")
    classes = Counter(family for family in map(_per_class, reported) if family)
    family = _per_class(metric)
    if family in classes:
        return f"does not exist: {dataset} has {classes[family]} classes, {family}/0 .. {family}/{classes[family] - 1}"
    close = _closest(metric, reported)
    hint = f"did you mean '{close}'? " if close else ""
    summary = dict.fromkeys(f"{_per_class(n)}/0..{classes[_per_class(n)] - 1}" if _per_class(n) else n
                            for n in reported)
    return f"is not reported by this space's trials; {hint}they report {', '.join(summary)}"
