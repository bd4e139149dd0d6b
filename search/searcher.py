"""Seed replicates over an Optuna study: one Optuna trial per configuration, one Ray trial per seed.

``ReplicateSearcher`` implements Ray Tune's public ``Searcher`` interface on Optuna's ask-and-tell API.
For a new configuration it asks the study for a trial and makes the space's suggest calls on it
(define-by-run; a grid's cells were enqueued in the study when it was created, so ``ask`` pops them);
it then proposes the configuration once per seed of the space, each time as the fully resolved trial
dict (``Space.trial_config``). When every replicate has ended, Optuna is told the mean of the
objective(s) (``Space.objective``: ``val/<metric>`` in a space that selects) over *every* replicate, a
failed or diverged one (an error, or a non-finite value) entering at the space's penalty
(``Space.failure_value``, fixed before the study: the untrained generator's score by default), so a
configuration that fails on most seeds is never told its lucky survivors' mean, and the told value
does not depend on which replicates finished first or on resumes. The configuration is FAIL when none
of its replicates finished (nothing was measured), or when one failed and a metric has no penalty.
The per-replicate values and the failures are the trial's user attributes.

Its own small state (which Optuna trial each Ray trial replicates, what each replicate returned) is
saved with Ray's experiment state; the sampler is pickled beside it, as Optuna recommends for resuming
a sampler. Before it proposes or tells anything in a driver, it reconciles with the study: a trial left
RUNNING that it does not track (asked by a driver killed after Ray's last save) is told FAIL, and its
grid cell is enqueued again; a configuration Optuna already holds a result for is never told again.

A tell that fails (a full disk under the study's SQLite file) cannot be raised where Ray calls it (Ray
would fail a finished trial); the configuration stays untold, so a resumed searcher tells it, and the
failure is raised at the searcher's next call that can end the run (a result, a suggestion).
"""

from __future__ import annotations

import math
import pickle
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import ConcurrencyLimiter, Searcher

from search.spaces import Space
from search.stores import Stores


def open_study(space: Space, stores: Stores) -> optuna.Study:
    """The study of ``space`` (created if new, its grid enqueued: the queue is the cells left to run)."""
    new = not stores.has_study(space.name)
    study = optuna.create_study(study_name=space.name, storage=stores.optuna_storage(),
                                directions=space.directions, load_if_exists=True)
    if new and space.sampler == "grid":
        for cell in space.grid()[: space.num_samples]:
            study.enqueue_trial(cell)
    return study


# what one driver process holds and no pickle carries: the study's storage (``_db``) and the study opened
# on it, whether this process has reconciled with the study yet (once per driver), and a tell that failed
# (``_failure``, raised at the next call Ray lets end the run)
_DRIVER_STATE: dict[str, Any] = {"_db": None, "_study": None, "_reconciled": False, "_failure": None}


class ReplicateSearcher(Searcher):
    """Proposes each configuration of ``space`` once per seed and tells its study the mean."""

    def __init__(self, space: Space, stores: Stores):
        super().__init__(metric=space.objective_arg, mode=space.mode_arg)
        self.space = space
        self.stores = stores
        self.sampler = space.make_sampler()
        self.state = _empty_state()
        self.__dict__.update(_DRIVER_STATE)

    # -- pickling (Ray keeps the searcher in its tuner state): a database handle does not travel ----
    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, **_DRIVER_STATE}

    @property
    def study(self) -> optuna.Study:
        if self._study is None:
            self._db = self.stores.optuna_storage()
            self._study = optuna.load_study(study_name=self.space.name, storage=self._db, sampler=self.sampler)
        return self._study

    # -- Ray's Searcher interface ------------------------------------------------------------------
    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # the space, metric and mode came with the constructor

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        self._raise_failure()
        self.reconcile()
        state = self.state
        if trial_id not in state["trials"]:
            if not state["pending"]:
                if self.space.sampler == "grid" and not self.study.get_trials(deepcopy=False,
                                                                              states=(TrialState.WAITING,)):
                    return Searcher.FINISHED  # every cell is asked
                trial = self.study.ask()
                number = trial.number
                state["configs"][number] = {"sampled": self.space.sample(trial), "ray_trials": {}, "values": {},
                                            "told": False}
                state["pending"] = [(number, seed) for seed in self.space.seeds]
            number, seed = state["pending"].pop(0)
            state["trials"][trial_id] = (number, seed)
            state["configs"][number]["ray_trials"][seed] = trial_id
        number, seed = state["trials"][trial_id]
        return self.space.trial_config(state["configs"][number]["sampled"], seed)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.reconcile()
        if trial_id not in self.state["trials"]:
            return
        number, seed = self.state["trials"][trial_id]
        config = self.state["configs"][number]
        config["values"][seed] = None if error else self._values(result)
        try:
            self._settle(number)
        except Exception as e:  # noqa: BLE001 - Ray swallows what this hook raises
            self._failure = e

    def _settle(self, number: int) -> None:
        """Tell the study about configuration ``number`` once every replicate has ended."""
        config = self.state["configs"][number]
        if len(config["values"]) < len(self.space.seeds) or config["told"]:
            return
        if not self._finished(number):
            # (finished already: a driver killed after telling Optuna but before Ray saved its state; the
            # resumed replicate ended again from its last checkpoint, and Optuna's value came from the same)
            self._tell(number, config)
        config["told"] = True

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._raise_failure()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise RuntimeError(f"the Optuna study could not be told a configuration's value "
                               f"({type(self._failure).__name__}: {self._failure})") from self._failure

    def _values(self, result: dict | None) -> list[float] | None:
        values = [(result or {}).get(m) for m in self.space.objective]
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in values):
            return None
        return [float(v) for v in values]

    def _tell(self, number: int, config: dict[str, Any]) -> None:
        seeds = self.space.seeds
        values = [config["values"][seed] for seed in seeds]
        told = told_value(values, self.space.metric, self.space.failure_value)
        failed = sum(v is None for v in values)
        attrs: dict[str, Any] = {"seeds": list(seeds), "failed_replicates": failed,
                                 "ray_trials": {str(seed): config["ray_trials"].get(seed) for seed in seeds}}
        for i, metric in enumerate(self.space.objective):
            attrs[f"{metric}/replicates"] = [v[i] if v else None for v in values]
        if failed and told is not None:
            attrs["failure_value"] = {m: self.space.failure_value[m] for m in self.space.metric}
        study, db = self.study, self._db
        # attributes of a trial known by its number: through the storage's public API
        storage_id = db.get_trial_id_from_study_id_trial_number(db.get_study_id_from_name(self.space.name), number)
        for key, value in attrs.items():
            db.set_trial_user_attr(storage_id, key, value)
        if told is not None:
            study.tell(number, told if self.space.multi_objective else told[0])
        else:
            study.tell(number, state=TrialState.FAIL)

    def _finished(self, number: int) -> bool:
        trials = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL,
                                                               TrialState.PRUNED))
        return any(t.number == number for t in trials)

    # -- resume --------------------------------------------------------------------------------------
    def reconcile(self) -> None:
        """Once per driver: tell FAIL every RUNNING trial of the study this searcher does not track (a
        dead driver asked it after Ray's last save; Ray will not run it) and enqueue its grid cell again,
        so that the cell still runs once."""
        if self._reconciled:
            return
        self._reconciled = True
        for number in list(self.state["configs"]):  # replicates all ended, the tell failed (a full disk)
            self._settle(number)
        tracked = {number for number, config in self.state["configs"].items() if not config["told"]}
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if trial.number in tracked:
                continue
            self.study.tell(trial.number, state=TrialState.FAIL)
            if self.space.sampler == "grid":
                self.study.enqueue_trial(trial.params)

    def remaining(self) -> int:
        """Configurations still to run when a new Ray experiment continues this study: the enqueued grid
        cells, or the configurations short of ``num_samples`` (after ``reconcile``)."""
        self.reconcile()
        if self.space.sampler == "grid":
            return len(self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
        complete = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        return max(0, self.space.num_samples - len(complete))

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump({"state": self.state, "sampler": self.sampler}, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            saved = pickle.load(f)
        self.state, self.sampler = saved["state"], saved["sampler"]
        self.__dict__.update(_DRIVER_STATE)


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


class StudyLimiter(ConcurrencyLimiter):
    """Ray's ConcurrencyLimiter, except that a restored one takes the driver's ``max_concurrent`` instead of
    the saved one: a resume may change it (search.definition declares it safe)."""

    resumed_max_concurrent: int | None = None  # set by the driver before Ray restores the limiter

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        if StudyLimiter.resumed_max_concurrent is not None:
            self.max_concurrent = StudyLimiter.resumed_max_concurrent


def _empty_state() -> dict[str, Any]:
    """configs: Optuna trial number -> {sampled params, Ray trial per seed, value per seed, told};
    trials: Ray trial id -> (Optuna trial number, seed); pending: (number, seed) not yet proposed."""
    return {"configs": {}, "trials": {}, "pending": []}
