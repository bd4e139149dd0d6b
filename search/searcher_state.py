"""The state ``search.searcher.ReplicateSearcher`` saves with Ray's experiment, typed.

On disk (Ray's ``searcher-state-*.pkl`` and the searcher pickled in its tuner state) it is the plain dict
of ``SearcherState.to_dict``, the form earlier versions saved: ``search.doctor`` and ``search.store_checks``
read it, and a study saved by an earlier version resumes (``from_dict`` fills the fields it lacks).
Beside it, what a configuration's replicates amount to: its key, a result's numbers and ``told_value``,
the mean Optuna is told (which ``search.doctor`` recomputes).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class Configuration:
    """One configuration (one Optuna trial) and its replicates."""

    sampled: dict[str, Any]  # its sampled parameters
    ray_trials: dict[int, str | None] = field(default_factory=dict)  # seed -> its Ray trial
    values: dict[int, list[float] | None] = field(default_factory=dict)  # seed -> objective(s); None: failed
    metrics: dict[int, dict[str, float] | None] = field(default_factory=dict)  # seed -> numeric metrics
    told: bool = False  # Optuna holds its result
    race: list[dict[str, Any]] = field(default_factory=list)  # its races against the incumbent
    told_value: float | None = None  # the first objective it was told (None: FAIL, or not told here)
    raced_out: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The saved form (a plain dict: what ``search.doctor`` and ``search.store_checks`` read, and what
        earlier versions saved); ``told_value`` and ``raced_out`` only when set, as they were."""
        out = {"sampled": self.sampled, "ray_trials": self.ray_trials, "values": self.values,
               "metrics": self.metrics, "told": self.told, "race": self.race}
        if self.told_value is not None:
            out["told_value"] = self.told_value
        if self.raced_out:
            out["raced_out"] = True
        return out

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> Configuration:
        return cls(**{f.name: saved[f.name] for f in fields(cls) if f.name in saved})


@dataclass
class SearcherState:
    """What the searcher saves with Ray's experiment (as the plain dict of ``to_dict``)."""

    configs: dict[int, Configuration] = field(default_factory=dict)  # Optuna trial number -> configuration
    trials: dict[str, tuple[int, int]] = field(default_factory=dict)  # Ray trial id -> (number, seed)
    pending: list[tuple[int, int]] = field(default_factory=list)  # (number, seed) not yet proposed
    asked: int = 0  # configurations asked of Optuna
    budget: int | None = None  # how many this Ray experiment may ask (None: Ray's num_samples limits it)
    looks: list[dict[str, Any]] = field(default_factory=list)  # a sequential grid's looks so far
    done: bool = False  # a sequential grid's family decided every comparison

    def to_dict(self) -> dict[str, Any]:
        return {"configs": {n: c.to_dict() for n, c in self.configs.items()}, "trials": self.trials,
                "pending": self.pending, "asked": self.asked, "budget": self.budget, "looks": self.looks,
                "done": self.done}

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> SearcherState:
        """A saved state, this version's or an earlier one's (which may lack later fields)."""
        values = {f.name: saved[f.name] for f in fields(cls) if f.name in saved}
        values["configs"] = {n: Configuration.from_dict(c) for n, c in saved.get("configs", {}).items()}
        return cls(**values)


# -- what a configuration's replicates amount to ---------------------------------------------------------
def config_key(sampled: dict[str, Any]) -> tuple:
    """A configuration's key as the report's ``configurations`` makes it."""
    return tuple(sorted(sampled.items(), key=lambda kv: kv[0]))


def result_numbers(result: dict | None) -> dict[str, float]:
    """The numeric metrics of a result (a non-finite one kept: the report reads it as a diverged replicate)."""
    return {k: float(v) for k, v in (result or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def told_value(values: list[list[float] | None], metrics: tuple[str, ...],
               failure_value: dict[str, float]) -> list[float] | None:
    """The mean over every replicate (``None``: failed), a failed one at ``failure_value[metric]`` (the
    penalty of the reported metric, which ``val/<metric>`` shares); None (tell FAIL) when no replicate
    finished, or when one failed and some metric has no penalty."""
    finished = [v for v in values if v is not None]
    if not finished or (len(finished) < len(values) and any(m not in failure_value for m in metrics)):
        return None
    filled = [v if v is not None else [failure_value[m] for m in metrics] for v in values]
    return [sum(v[i] for v in filled) / len(filled) for i in range(len(metrics))]
