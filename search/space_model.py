"""The space model: ``Param``, ``Space`` (its ``Scheduler`` and ``Resources``), ``SequentialSeeds``,
``expand`` and the vocabulary of a space file (samplers, schedulers, distributions, keys, limits).
``search.space_load`` reads a file into a dict and ``search.space_validate`` turns the dict into a
``Space``; ``search.spaces`` re-exports all three.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable

import optuna

from trainers.config import all_keys, make_config, methods_reading, shared_keys
from trainers.fields import ConfigError
from trainers.metrics.names import VALIDATION
from trainers.settings import TrainConfig

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


def effects_to_dict(effects: Mapping[str, tuple[str, float]]) -> dict[str, Any]:
    """Effect sizes as a space file spells them: ("relative", 0.05) -> "5%", ("absolute", x) -> x."""
    return {m: f"{100 * v:g}%" if k == "relative" else v for m, (k, v) in effects.items()}


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
            spec["margin"] = effects_to_dict(self.margin)
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


@dataclass(frozen=True, eq=False)  # eq: Mapping's, so a record equals the dict of the same items
class _Record(Mapping):
    """A frozen record that reads as a read-only mapping of its set fields (None: unset): it compares equal
    to, and ``dict()`` turns it into, the plain dict the space file spells."""

    def _set(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def __getitem__(self, key: str) -> Any:
        if key not in self._set():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._set())

    def __len__(self) -> int:
        return len(self._set())


@dataclass(frozen=True, eq=False)
class Scheduler(_Record):
    """``scheduler:``, the Ray Tune trial scheduler: ``fifo`` runs every trial to its end; ``asha`` stops the
    worse ones at rungs of ``grace_period`` evaluations growing by ``reduction_factor`` (its settings only)."""

    type: str = "fifo"
    grace_period: int | None = None  # asha: evaluations before the first stop
    reduction_factor: float | None = None  # asha: the rung growth and the share kept (1 / factor)


@dataclass(frozen=True, eq=False)
class Resources(_Record):
    """``resources:``, what each trial asks Ray for (fractions share a device)."""

    cpu: float = 1.0
    gpu: float = 0.0


@dataclass(frozen=True)
class Space:
    name: str
    description: str
    metric: tuple[str, ...]
    mode: tuple[str, ...]
    sampler: str
    scheduler: Scheduler
    num_samples: int
    max_concurrent: int
    resources: Resources
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

    def cost(self, cell: Mapping[str, Any]) -> float:
        """A cell's relative training cost, for scheduling only: its steps times its method's
        ``step_cost`` (scaled by D steps per G step when the cell sets ``n_dis``)."""
        from trainers.methods import get_method

        cfg = make_config(self.trial_config(cell, seed=0))  # the trainer's defaults fill what the space leaves
        method = get_method(cfg.method)
        n_dis = cfg.n_dis or method.default_n_dis  # as GANMethod.n_dis reads it
        return method.step_cost * (1 + n_dis) / (1 + method.default_n_dis) * cfg.steps

    def run_order(self) -> list[dict[str, Any]]:
        """The grid's first ``num_samples`` cells, dearest first (longest-processing-time first: on a few
        workers the last trials are the cheap ones, so the workers finish together; equal costs keep the
        grid's order). Measured on the main job (18 trials, 2 workers): the time one worker sat idle at the end
        fell from 48 s, in the grid's order with the dearest method last, to 27 s."""
        cells = self.grid()[: self.num_samples]
        return sorted(cells, key=self.cost, reverse=True)

    def with_fixed(self, extra: Mapping[str, Any]) -> Space:
        return replace(self, fixed={**self.fixed, **extra})

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "description": self.description, "metric": self.metric_arg,
            "mode": self.mode_arg, "sampler": self.sampler, "scheduler": dict(self.scheduler),
            "num_samples": self.num_samples, "max_concurrent": self.max_concurrent,
            "resources": dict(self.resources),
            "seeds": {"sequential": self.sequential.to_dict()} if self.sequential else list(self.seeds),
            "fixed": self.fixed,
            "params": {p.name: _param_to_dict(p) for p in self.params}, "source": self.source,
            **({"presets": list(self.presets)} if self.presets else {}),
            **({"primary": list(self.primary)} if self.primary else {}),
            **({"effects": effects_to_dict(self.effects)} if self.effects else {}),
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
