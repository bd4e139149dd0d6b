"""Loading a study's trials from MLflow, and reading one value per seed from them.

A replicate that failed (its run ended FAILED: the trial raised) or diverged (it finished with a
non-finite value of the metric) is never dropped silently: it enters at the space's ``failure_value`` for the metric, a
penalty fixed before the study (``space.failure_value``); a space without one has its failures excluded,
and every table says how many were. A replicate that was *interrupted* (its run RUNNING or KILLED: the
driver stopped or was killed while it ran, and a resume reruns it) is not a failure of the configuration:
it is left out of every value and rate, and the tables say how many were.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

from search import tracking


# MLflow run states of a trial the study stopped (KILLED) or a killed driver left behind (RUNNING, SCHEDULED)
UNFINISHED = ("RUNNING", "SCHEDULED", "KILLED")


@dataclass
class TrialRun:
    """One finished or failed trial as MLflow has it."""

    run_id: str
    status: str
    params: dict[str, str]
    sampled: dict[str, Any]
    metrics: dict[str, float]  # last value of each metric
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    start_ms: int = 0
    end_ms: int | None = None
    evaluated_ms: list[int] = field(default_factory=list)  # when MLflow logged each evaluation (its fid)

    @property
    def seed(self) -> int:
        return int(self.tags.get("seed", "0"))

    @property
    def finished(self) -> bool:
        return self.status == "FINISHED"

    @property
    def interrupted(self) -> bool:
        """Stopped by the study's end, not by its own error (RUNNING or KILLED): neither a value nor a failure."""
        return self.status in UNFINISHED

    def failed_on(self, metric: str) -> bool:
        """Failed (the trial raised), or finished with a non-finite value of ``metric`` (diverged)."""
        if self.interrupted:
            return False
        if not self.finished:
            return True
        value = self.metrics.get(metric)
        return value is not None and not math.isfinite(value)


def study_of(client, space) -> tuple[Any, Any]:
    """(the MLflow experiment of ``space``, its study's parent run); None for what does not exist."""
    exp = client.get_experiment_by_name(space.name)
    return exp, tracking.find_parent_run(client, exp.experiment_id, space.name) if exp else None


def load_runs(space, tracking_uri: str) -> list[TrialRun]:
    client = tracking.client_for(tracking_uri)
    return trial_runs(client, *study_of(client, space))


def trial_runs(client, exp, parent) -> list[TrialRun]:
    """The study's trials (the parent run's children), with the fid and sigma_max histories and the times
    the evaluations were logged."""
    if exp is None or parent is None:
        return []
    runs = client.search_runs([exp.experiment_id], filter_string=(
        f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"), max_results=10000)
    out = []
    for run in runs:
        sampled = json.loads(run.data.tags.get(tracking.TAG_SAMPLED, "{}"))
        trial = TrialRun(run.info.run_id, run.info.status, dict(run.data.params), sampled, dict(run.data.metrics),
                         tags=dict(run.data.tags), start_ms=run.info.start_time, end_ms=run.info.end_time)
        for key in run.data.metrics:
            if key == "fid" or key.startswith("gsr/sigma_max/"):
                logged = client.get_metric_history(run.info.run_id, key)
                trial.history[key] = [(m.step, m.value) for m in logged]
                if key == "fid":
                    trial.evaluated_ms = [m.timestamp for m in logged]
        out.append(trial)
    return out


def penalty_of(space, metric: str) -> float | None:
    """The value a failed replicate enters ``metric`` at (the space's ``failure_value``), None if unset."""
    value = (getattr(space, "failure_value", None) or {}).get(metric)
    return None if value is None else float(value)


def by_seed(members: list[TrialRun], metric: str, penalty: float | None = None) -> dict[int, float]:
    """A configuration's value of ``metric`` per seed: a failed or diverged replicate at ``penalty`` (absent
    when there is none); a finished run that never logged the metric is absent (not measured), and so is an
    interrupted one (a resumed study's rerun of that seed gives its value, whatever the order of the runs)."""
    out = {}
    for r in members:
        if r.interrupted:
            continue
        if r.failed_on(metric):
            if penalty is not None:
                out[r.seed] = penalty
        elif metric in r.metrics:
            out[r.seed] = r.metrics[metric]
    return out


def failures_by_seed(members: list[TrialRun], metric: str) -> dict[int, float]:
    """1 for a seed whose replicate failed or diverged on ``metric``, else 0; interrupted replicates absent."""
    return {r.seed: float(r.failed_on(metric)) for r in members if not r.interrupted}


def group_keys(space) -> list[str]:
    """The factors an ablation table groups by: every choice/int parameter of the space."""
    return [p.name for p in space.params if p.kind in ("choice", "int")]


def label_of(config: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items()) or "all"


def configurations(runs: list[TrialRun]) -> dict[tuple, list[TrialRun]]:
    """The trials of each sampled configuration (its seed replicates), in a stable order."""
    groups: dict[tuple, list[TrialRun]] = {}
    for run in runs:
        groups.setdefault(tuple(sorted(run.sampled.items(), key=lambda kv: kv[0])), []).append(run)
    return dict(sorted(groups.items(), key=lambda g: [str(v) for _, v in g[0]]))


def search_efficiency(space, runs: list[TrialRun], parent) -> dict[str, float] | None:
    """``efficiency`` over the study's own span: from MLflow's run times (a resumed study's wall time
    includes the interruption)."""
    if parent is None:
        return None
    # written at the end of a study, before its parent run is closed: the study's end is now
    return efficiency_between(runs, parent.info.start_time, parent.info.end_time or int(time.time() * 1000),
                              space.max_concurrent)


def efficiency_between(runs: list[TrialRun], start_ms: int, end_ms: int, max_concurrent: int) -> dict[str, float] | None:
    """Summed in-trial time / (the wall time from ``start_ms`` to ``end_ms`` x concurrent trials), with the
    fixed start-up (the start to the first trial) and shutdown (the last trial to the end) seconds."""
    ended = [r for r in runs if r.end_ms]
    if not ended:
        return None
    wall = (end_ms - start_ms) / 1000
    in_trial = sum((r.end_ms - r.start_ms) / 1000 for r in ended)
    concurrent = max(1, min(max_concurrent, len(runs)))
    return {"search_efficiency": in_trial / (wall * concurrent) if wall > 0 else math.nan, "wall_s": wall,
            "in_trial_s": in_trial, "concurrent": concurrent,
            "startup_s": (min(r.start_ms for r in runs) - start_ms) / 1000,
            "shutdown_s": (end_ms - max(r.end_ms for r in ended)) / 1000}
