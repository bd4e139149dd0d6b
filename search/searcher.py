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

**Sequential seeds** (``seeds: {sequential: {start, step, max}}``, ``search.sequential_plan``). In a grid
every configuration runs the first block of seeds; after each block the report's family is tested and
only the configurations of open comparisons run the next block. Optuna is told a configuration's value
once, when it stops (no open comparison needs it, or the study ends): the tell is held until its last
block, so each configuration stays one Optuna trial, told the mean over the seeds it ran, their number in
the user attribute ``n_seeds``. The looks are replayed from the replicates (a pure function), recorded in
``state["looks"]`` and saved with Ray's searcher checkpoint; a resumed searcher replays the same data to
the same decisions and proposes only replicates that have no Ray trial yet, so no block runs twice.
In a space that selects (tpe, random, qmc) the same spec **races** configurations: each starts on
``start`` seeds and gets the next block only while it is not resolved worse than the incumbent (the best
configuration that ran every seed) on their common seeds (``search.sequential.decide`` at alpha 0.05, no
family: a race is a budget rule, not a reported finding). A raced-out configuration is told its mean so
far (failed replicates at the penalty), marked ``raced_out`` in Optuna and as a tag on its MLflow runs.

**Extending** a finished fixed-seed study's ``seeds`` on resume (``search.definition.seeds_extension``)
runs only the new seeds of each configuration. Optuna cannot tell a finished trial again, so each
configuration gets a new trial with the same parameters (user attribute ``extends``: the old trial's
number), told the mean over all its seeds; the old trial stays as it was, and the report counts the new one.
"""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import ConcurrencyLimiter, Searcher

from search.searcher_state import Configuration, SearcherState, config_key, result_numbers, told_value
from search.spaces import Space
from search.stores import Stores


def open_study(space: Space, stores: Stores) -> optuna.Study:
    """The study of ``space`` (created if new, its grid enqueued: the queue is the cells left to run)."""
    new = not stores.has_study(space.name)
    study = optuna.create_study(study_name=space.name, storage=stores.optuna_storage(),
                                directions=space.directions, load_if_exists=True)
    if new and space.sampler == "grid":
        for cell in space.run_order():
            study.enqueue_trial(cell)
    return study


@dataclass
class SearcherDriver:
    """What one driver process holds and no pickle carries (a resumed driver starts afresh)."""

    db: Any = None  # the study's storage
    study: optuna.Study | None = None  # the study opened on it
    reconciled: bool = False  # reconciled with the study yet (once per driver)
    failure: Exception | None = None  # a tell that failed, raised at the next call Ray lets end the run
    plan: tuple[int, Any] | None = None  # (replicates ended, the sequential plan replayed from them)


# the names an older pickled searcher kept its driver state under (None there: it was never pickled)
_OLD_DRIVER_KEYS = ("_db", "_study", "_reconciled", "_failure", "_plan_cache")


class ReplicateSearcher(Searcher):
    """Proposes each configuration of ``space`` once per seed (or seeds in blocks) and tells its study the mean."""

    def __init__(self, space: Space, stores: Stores):
        super().__init__(metric=space.objective_arg, mode=space.mode_arg)
        self.space = space
        self.stores = stores
        self.sampler = space.make_sampler()
        self.saved = SearcherState()
        self._driver: SearcherDriver | None = None

    # -- pickling (Ray keeps the searcher in its tuner state): a database handle does not travel ----
    # its state pickles as the plain dict earlier versions pickled (``state``)
    def __getstate__(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("_driver", "saved")}
        return {**out, "state": self.saved.to_dict()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        kept = {k: v for k, v in state.items() if k not in (*_OLD_DRIVER_KEYS, "state")}
        self.__dict__.update(kept, saved=SearcherState.from_dict(state.get("state", {})), _driver=None)

    @property
    def state(self) -> dict[str, Any]:
        """The state as it is saved (a snapshot, for reading)."""
        return self.saved.to_dict()

    @property
    def driver(self) -> SearcherDriver:
        if self._driver is None:
            self._driver = SearcherDriver()
        return self._driver

    @property
    def study(self) -> optuna.Study:
        driver = self.driver
        if driver.study is None:
            driver.db = self.stores.optuna_storage()
            driver.study = optuna.load_study(study_name=self.space.name, storage=driver.db, sampler=self.sampler)
        return driver.study

    # -- Ray's Searcher interface ------------------------------------------------------------------
    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # the space, metric and mode came with the constructor

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        self._raise_failure()
        self.reconcile()
        state = self.saved
        if trial_id not in state.trials:
            if not state.pending:
                ended = self._next_block()
                if ended is not None or not state.pending:
                    return ended  # FINISHED, or None: the running replicates decide what comes next
            number, seed = state.pending.pop(0)
            state.trials[trial_id] = (number, seed)
            state.configs[number].ray_trials[seed] = trial_id
        number, seed = state.trials[trial_id]
        return self.space.trial_config(state.configs[number].sampled, seed)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.reconcile()
        if trial_id not in self.saved.trials:
            return
        number, seed = self.saved.trials[trial_id]
        config = self.saved.configs[number]
        config.values[seed] = None if error else self._values(result)
        config.metrics[seed] = None if error else result_numbers(result)
        try:
            if self.space.sequential is None:
                self._settle(number)
            elif self.space.selects:
                self._race(number)
            else:
                self._advance()
        except Exception as e:  # noqa: BLE001 - Ray swallows what this hook raises
            self.driver.failure = e

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._raise_failure()

    def _raise_failure(self) -> None:
        failure = self.driver.failure
        if failure is not None:
            raise RuntimeError(f"the Optuna study could not be told a configuration's value "
                               f"({type(failure).__name__}: {failure})") from failure

    def _values(self, result: dict | None) -> list[float] | None:
        values = [(result or {}).get(m) for m in self.space.objective]
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in values):
            return None
        return [float(v) for v in values]

    # -- what runs next ------------------------------------------------------------------------------
    def _next_block(self) -> str | None:
        """Queue the next replicates in ``pending``; FINISHED when nothing is left, else None."""
        state, space = self.saved, self.space
        if space.sequential is not None and not space.selects:
            if self._waiting_cells():  # the first block: every cell of the grid, its first seeds
                while self._waiting_cells():
                    self._ask(space.seeds[: space.sequential.looks[0]])
                return None
            self._advance()
            return Searcher.FINISHED if state.done and self._all_told() else None
        if space.sampler == "grid" and not self._waiting_cells():
            return Searcher.FINISHED if self._all_told() or space.sequential is None else None
        if state.budget is not None and state.asked >= state.budget:
            return Searcher.FINISHED if self._all_told() or space.sequential is None else None
        self._ask(space.seeds if space.sequential is None else space.seeds[: space.sequential.start])
        return None

    def _waiting_cells(self) -> bool:
        return self.space.sampler == "grid" and bool(self.study.get_trials(deepcopy=False,
                                                                           states=(TrialState.WAITING,)))

    def _all_told(self) -> bool:
        return all(config.told for config in self.saved.configs.values())

    def _ask(self, seeds) -> int:
        trial = self.study.ask()
        self.saved.configs[trial.number] = Configuration(self.space.sample(trial))
        self.saved.pending += [(trial.number, seed) for seed in seeds]
        self.saved.asked += 1
        return trial.number

    def _settle(self, number: int) -> None:
        """Tell the study about configuration ``number`` once every replicate has ended."""
        config = self.saved.configs[number]
        if len(config.values) < len(self.space.seeds) or config.told:
            return
        self._tell_once(number, self.space.seeds)

    def _tell_once(self, number: int, seeds, **attrs: Any) -> None:
        config = self.saved.configs[number]
        if not self._finished(number):
            # (finished already: a driver killed after telling Optuna but before Ray saved its state; the
            # resumed replicate ended again from its last checkpoint, and Optuna's value came from the same)
            self._tell(number, config, list(seeds), attrs)
        config.told = True

    # -- sequential seeds in a grid: the family decides after each block ------------------------------
    def _plan(self):
        from search.sequential_plan import replay, runs_of

        ended = sum(len(config.metrics) for config in self.saved.configs.values())
        driver = self.driver
        if driver.plan is None or driver.plan[0] != ended:
            configs = self.saved.configs
            plan = replay(self.space, runs_of(configs), [config_key(c.sampled) for c in configs.values()])
            self.saved.looks, self.saved.done = plan.looks, plan.done
            driver.plan = (ended, plan)
        return driver.plan[1]

    def _advance(self) -> None:
        """After a replicate ended: queue the replicates the current block lacks, and tell each configuration
        that no open comparison needs any more."""
        if self._waiting_cells():
            return
        plan = self._plan()
        numbers = {config_key(config.sampled): number for number, config in self.saved.configs.items()}
        queued = set(self.saved.pending)
        for key, seed in plan.wanted:
            number = numbers[key]
            if seed not in self.saved.configs[number].ray_trials and (number, seed) not in queued:
                self.saved.pending.append((number, seed))
        if not plan.looks:
            return
        running = set(plan.running)
        for number, config in self.saved.configs.items():
            key = config_key(config.sampled)
            if config.told or key in running or set(config.ray_trials) - set(config.values):
                continue
            self._tell_once(number, sorted(config.values), sequential_stopped_at_look=plan.stopped_at.get(key))

    # -- racing in a space that selects --------------------------------------------------------------
    def _race(self, number: int) -> None:
        """A configuration's block ended: race it against the incumbent; more seeds, or tell."""
        from search.sequential_plan import incumbent_of, race

        config = self.saved.configs[number]
        queued = any(n == number for n, _ in self.saved.pending)  # its block is not all proposed yet
        if config.told or queued or set(config.ray_trials) - set(config.values):
            return
        looks, ran = self.space.sequential.looks, sorted(config.values)
        incumbent = incumbent_of(self.space, self.saved.configs, number) if len(ran) < looks[-1] else None
        config.race.append(race(self.space, config, self.saved.configs.get(incumbent), incumbent))
        if config.race[-1]["verdict"] == "worse":
            config.raced_out = True
            self._tell_once(number, ran, raced_out=True, race=config.race)
        elif len(ran) >= looks[-1]:
            self._tell_once(number, ran, raced_out=False, race=config.race)
        else:  # the next block, before any new configuration
            following = next(size for size in looks if size > len(ran))
            self.saved.pending[:0] = [(number, s) for s in self.space.seeds[len(ran):following]]

    # -- telling Optuna --------------------------------------------------------------------------------
    def _tell(self, number: int, config: Configuration, seeds: list[int], extra: dict[str, Any]) -> None:
        values = [config.values[seed] for seed in seeds]
        told = told_value(values, self.space.metric, self.space.failure_value)
        failed = sum(v is None for v in values)
        attrs: dict[str, Any] = {"seeds": list(seeds), "n_seeds": len(seeds), "failed_replicates": failed,
                                 "ray_trials": {str(seed): config.ray_trials.get(seed) for seed in seeds},
                                 **{k: v for k, v in extra.items() if v is not None}}
        for i, metric in enumerate(self.space.objective):
            attrs[f"{metric}/replicates"] = [v[i] if v else None for v in values]
        if failed and told is not None:
            attrs["failure_value"] = {m: self.space.failure_value[m] for m in self.space.metric}
        study, db = self.study, self.driver.db
        # attributes of a trial known by its number: through the storage's public API
        storage_id = db.get_trial_id_from_study_id_trial_number(db.get_study_id_from_name(self.space.name), number)
        for key, value in attrs.items():
            db.set_trial_user_attr(storage_id, key, value)
        if extra.get("raced_out"):
            from search.sequential_plan import tag_raced_out

            tag_raced_out(self.stores.tracking_uri, self.space.name, config.ray_trials.values(), len(seeds))
        if told is not None:
            study.tell(number, told if self.space.multi_objective else told[0])
        else:
            study.tell(number, state=TrialState.FAIL)
        config.told_value = told[0] if told is not None else None

    def _finished(self, number: int) -> bool:
        trials = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL,
                                                               TrialState.PRUNED))
        return any(t.number == number for t in trials)

    # -- resume --------------------------------------------------------------------------------------
    def reconcile(self) -> None:
        """Once per driver: tell FAIL every RUNNING trial of the study this searcher does not track (a
        dead driver asked it after Ray's last save; Ray will not run it) and enqueue its grid cell again,
        so that the cell still runs once; then queue the new seeds of a study whose seeds were extended."""
        if self.driver.reconciled:
            return
        self.driver.reconciled = True
        if self.space.sequential is None:
            for number in list(self.saved.configs):  # replicates all ended, the tell failed (a full disk)
                self._settle(number)
        tracked = {number for number, config in self.saved.configs.items() if not config.told}
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if trial.number in tracked:
                continue
            self.study.tell(trial.number, state=TrialState.FAIL)
            if self.space.sampler == "grid":
                self.study.enqueue_trial(trial.params)
        self._extend_seeds()

    def _extend_seeds(self) -> None:
        """Every configuration told on fewer of the space's seeds than it now lists (``seeds`` extended on
        resume) gets a new trial with its parameters (Optuna cannot tell a finished trial again), its old
        replicates' values, and the new seeds queued."""
        if self.space.sequential is not None or self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            return
        trials = self.study.get_trials(deepcopy=False)
        extended = {t.user_attrs.get("extends") for t in trials}
        for old in trials:
            ran = old.user_attrs.get("seeds")
            if (old.state not in (TrialState.COMPLETE, TrialState.FAIL) or old.number in extended
                    or not isinstance(ran, list) or not set(ran) < set(self.space.seeds)):
                continue
            self.study.enqueue_trial(old.params, user_attrs={"extends": old.number})
            trial = self.study.ask()
            config = Configuration(self.space.sample(trial))
            replicates = [old.user_attrs.get(f"{m}/replicates") or [None] * len(ran) for m in self.space.objective]
            for j, seed in enumerate(ran):
                values = [r[j] for r in replicates]
                config.values[seed] = None if any(v is None for v in values) else [float(v) for v in values]
                config.ray_trials[seed] = (old.user_attrs.get("ray_trials") or {}).get(str(seed))
            self.saved.configs[trial.number] = config
            self.saved.pending += [(trial.number, seed) for seed in self.space.seeds if seed not in ran]

    def remaining(self) -> int:
        """Configurations still to run when a new Ray experiment continues this study: the enqueued grid
        cells, or the configurations short of ``num_samples`` (after ``reconcile``)."""
        self.reconcile()
        if self.space.sampler == "grid":
            return len(self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
        complete = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        return max(0, self.space.num_samples - len(complete))

    def start_budget(self) -> int:
        """For a new Ray experiment (which runs until this searcher says FINISHED): the configurations it
        may ask (``remaining``), kept in the state."""
        self.saved.budget = self.remaining()
        return self.saved.budget

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump({"state": self.saved.to_dict(), "sampler": self.sampler}, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            saved = pickle.load(f)
        self.saved, self.sampler = SearcherState.from_dict(saved["state"]), saved["sampler"]
        self._driver = None


class StudyLimiter(ConcurrencyLimiter):
    """Ray's ConcurrencyLimiter, except that a restored one takes the driver's ``max_concurrent`` instead of
    the saved one: a resume may change it (search.definition declares it safe)."""

    resumed_max_concurrent: int | None = None  # set by the driver before Ray restores the limiter

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        if StudyLimiter.resumed_max_concurrent is not None:
            self.max_concurrent = StudyLimiter.resumed_max_concurrent
