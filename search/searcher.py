"""Seed replicates over Optuna: one Optuna trial per sampled configuration, one Ray trial per seed.

Optuna proposes a configuration once; Ray runs it once per seed of the space; when every replicate
has ended, Optuna is told the mean of the metric(s) over the replicates that finished with a finite
value (FAIL when none did — never a made-up value). The wrapper's state is saved with Ray's
experiment state, and on restore it closes Optuna trials that a killed driver left RUNNING and that
Ray's saved state does not know.
"""

from __future__ import annotations

import math
import pickle
from typing import Any

from ray.tune.search import Searcher


class ReplicateSearcher(Searcher):
    def __init__(self, inner, seeds: list[int], metric: str | list[str], mode: str | list[str]):
        super().__init__(metric=metric, mode=mode)
        self.inner = inner  # an OptunaSearch
        self.seeds = list(seeds)
        self.metrics = list(metric) if isinstance(metric, list) else [metric]
        self.pending: list[tuple[str, int]] = []
        self.groups: dict[str, dict[str, Any]] = {}
        self.trial_group: dict[str, tuple[str, int]] = {}
        self.counter = 0

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # the space and metric were given to the inner searcher already

    def suggest(self, trial_id: str):
        if trial_id in self.trial_group:  # asked again for the same trial: same answer
            group, seed = self.trial_group[trial_id]
            return {**self.groups[group]["params"], "seed": seed}
        if not self.pending:
            group = f"cfg{self.counter:05d}"
            params = self.inner.suggest(group)
            if params is None or params == Searcher.FINISHED:
                return params
            self.counter += 1
            self.groups[group] = {"params": params, "values": {}, "trials": {}}
            self.pending = [(group, seed) for seed in self.seeds]
        group, seed = self.pending.pop(0)
        self.trial_group[trial_id] = (group, seed)
        self.groups[group]["trials"][seed] = trial_id
        return {**self.groups[group]["params"], "seed": seed}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        pass  # Optuna gets one value per configuration, when its replicates are done

    def _value(self, result: dict | None, error: bool) -> list[float] | None:
        if error or not result:
            return None
        values = [result.get(m) for m in self.metrics]
        if any(not isinstance(v, (int, float)) or not math.isfinite(v) for v in values):
            return None
        return [float(v) for v in values]

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self.trial_group:
            return
        group, seed = self.trial_group[trial_id]
        entry = self.groups[group]
        entry["values"][seed] = self._value(result, error)
        if len(entry["values"]) < len(self.seeds) or entry.get("told"):
            return
        finished = [v for v in entry["values"].values() if v is not None]
        ot_trial = self.inner._ot_trials.get(group)
        if ot_trial is not None and self._already_finished(ot_trial):
            # a driver killed after telling Optuna but before Ray saved its state: the resumed replicate
            # ends again from its last checkpoint; the value Optuna holds came from the same replicates
            entry["told"] = True
            return
        if ot_trial is not None:
            ot_trial.set_user_attr("seeds", self.seeds)
            ot_trial.set_user_attr("ray_trials", {str(k): v for k, v in entry["trials"].items()})
            ot_trial.set_user_attr("failed_replicates", len(self.seeds) - len(finished))
            for metric_index, metric in enumerate(self.metrics):
                ot_trial.set_user_attr(f"{metric}/replicates", [v[metric_index] if v else None
                                                               for v in entry["values"].values()])
        if finished:
            mean = [sum(v[i] for v in finished) / len(finished) for i in range(len(self.metrics))]
            self.inner.on_trial_complete(group, dict(zip(self.metrics, mean)))
        else:
            self.inner.on_trial_complete(group, None, error=True)
        entry["told"] = True

    def _already_finished(self, ot_trial) -> bool:
        storage = self.inner._ot_study._storage
        return storage.get_trial(ot_trial._trial_id).state.is_finished()

    # -- persistence (with Ray's experiment state) ----------------------------------------------
    def save(self, checkpoint_path: str) -> None:
        state = {k: v for k, v in self.__dict__.items() if k != "inner"}
        state["inner"] = self.inner.__dict__.copy()
        with open(checkpoint_path, "wb") as f:
            pickle.dump(state, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        self.inner.__dict__.update(state.pop("inner"))
        self.__dict__.update(state)
        close_unknown_running(self.inner)


def close_unknown_running(optuna_search) -> int:
    """Mark FAIL the Optuna trials left RUNNING that the restored searcher does not track."""
    from optuna.trial import TrialState

    study = optuna_search._ot_study
    known = {t._trial_id for t in optuna_search._ot_trials.values()
             if hasattr(t, "_trial_id")} - set()
    done_ids = {optuna_search._ot_trials[g]._trial_id for g in optuna_search._completed_trials
                if g in optuna_search._ot_trials}
    closed = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial._trial_id not in known or trial._trial_id in done_ids:
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            closed += 1
    return closed
