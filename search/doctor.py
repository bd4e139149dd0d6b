"""Do a study's stores agree?   python -m search.doctor space=NAME [root=DIR] [tracking_uri=URI]

Reads (never writes) the study's Optuna study, MLflow runs and Ray's saved experiment and checks:
  - every store file can be read (search.store_checks);
  - each Optuna configuration is COMPLETE at most once, with the mean of its replicates (failed ones at the
    study's fixed penalty, as the searcher tells it);
  - MLflow holds one parent run, one run per Ray trial, at most one FINISHED run per configuration and
    seed, no step of a metric logged twice, and a FINISHED run for every replicate of a COMPLETE one;
  - every configuration Ray's searcher is running is RUNNING in Optuna (an unfinished trial whose folder
    is gone is a note: a resume restarts it from scratch);
  - the parent run's status matches the study (FINISHED only when nothing is left to run).

Prints one line per disagreement and exits 1, or says the stores agree and exits 0. Notes (things a
``resume=true`` settles by itself, such as runs left RUNNING by kill -9) are printed but do not fail.
search.run runs the same checks (less the per-run metric histories) before every resume and refuses
one whose stores disagree.
"""

from __future__ import annotations

import json
import math
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from trainers.cli import directory_arg, run_command
from trainers.config import parse_overrides
from trainers.fields import ConfigError, one_line


@dataclass
class Diagnosis:
    problems: list[str] = field(default_factory=list)  # the stores disagree: a trial lost, duplicated, wrong
    notes: list[str] = field(default_factory=list)  # a resume settles these by itself


def diagnose(stores, space: str, metrics: list[str], deep: bool = True, ray: bool = True) -> Diagnosis:
    """The disagreements between the stores of study ``space`` (``deep``: also every run's metric history;
    ``ray=False``: Ray's saved experiment left out)."""
    from search import store_checks

    out = Diagnosis()
    try:
        store_checks.check_files(stores, space, ray=ray)
    except store_checks.StoreError as e:
        out.problems.append(str(e))
        return out
    names = store_checks.optuna_study_names(stores.optuna_db) if stores.optuna_db.exists() else []
    experiment_dir = stores.ray_experiment_dir(space)
    if space not in names:
        if ray and experiment_dir.is_dir():
            out.problems.append(f"{stores.optuna_db} holds no study '{space}' but Ray's experiment {experiment_dir} "
                                f"exists")
        else:  # never started, or stopped before it created its study (search.run then starts it afresh)
            out.notes.append(f"no study '{space}' is stored under {stores.root} yet: nothing to disagree")
        return out
    try:
        trials = stores.load_study(space).get_trials(deepcopy=False)
    except Exception as e:  # noqa: BLE001 - any store that cannot be opened is one line, not a traceback
        out.problems.append(f"{stores.optuna_db} (the Optuna store) cannot be opened ({one_line(e)[:300]})")
        return out
    by_number = {t.number: t for t in trials}
    _optuna(out, trials, metrics)
    running = _ray(out, stores, space, by_number) if ray else set()
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    unfinished = bool(running) or any(t.state.name in ("RUNNING", "WAITING") for t in trials)
    try:
        _mlflow(out, stores, space, metrics, complete, unfinished, deep)
    except Exception as e:  # noqa: BLE001 - e.g. a schema half created by a start stopped in its migrations
        reason = one_line(e).split(" [SQL:")[0][:300]
        out.problems.append(f"the MLflow store {stores.tracking_uri} cannot be opened ({reason}); if "
                            f"no study run was ever started in it, move it aside and resume")
    return out


def ready_to_resume(stores, space: str, has_ray: bool, metrics: list[str]) -> bool:
    """Every check before a resume (``check_agreement``), then Ray's saved experiment set aside if it
    cannot be read (``set_aside_damaged_ray_state``). Returns whether Ray's experiment is to be restored."""
    from search.store_checks import ray_state_problem, set_aside_damaged_ray_state

    damaged = ray_state_problem(stores.ray_experiment_dir(space)) is not None
    check_agreement(stores, space, has_ray and not damaged, metrics, ray=not damaged)
    return has_ray and not (damaged and set_aside_damaged_ray_state(stores, space))


def check_agreement(stores, space: str, has_ray: bool, metrics: list[str], ray: bool = True) -> None:
    """Before a resume: refuse disagreements that would lose a configuration, run one twice or loop:
    the two that need their own advice first, then the doctor's checks (less per-run histories;
    ``ray=False``: Ray's saved state left out, being unreadable)."""
    from search.store_checks import StoreError, check_ray_against_optuna, doctor_command, optuna_study_names

    check_ray_against_optuna(stores, space, has_ray)
    if not stores.optuna_db.exists() or space not in optuna_study_names(stores.optuna_db):
        return  # Optuna's study not yet created (the driver died before): nothing to disagree with
    problems = diagnose(stores, space, metrics, deep=False, ray=ray).problems
    if problems:
        more = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
        raise StoreError(f"the stores of study '{space}' under {stores.root} disagree ({problems[0]}{more}), so a "
                         f"resume would lose or duplicate a trial; {doctor_command(stores, space)} lists every "
                         f"disagreement; restore the stores from one backup, or start afresh under another root=")


def _optuna(out: Diagnosis, trials, metrics: list[str]) -> None:
    from search.searcher_state import told_value

    seen: dict[str, int] = {}
    extended = {t.user_attrs.get("extends") for t in trials}  # a configuration whose seeds were extended
    for trial in trials:
        if trial.state.name != "COMPLETE" or trial.number in extended:
            continue
        key = json.dumps(trial.params, sort_keys=True)
        if key in seen:
            out.problems.append(f"Optuna: configuration {trial.params} is COMPLETE twice (trials {seen[key]} and "
                                f"{trial.number}): it ran twice")
        seen[key] = trial.number
        penalties = trial.user_attrs.get("failure_value") or {}
        for i, metric in enumerate(metrics):
            # the searcher's objective is val/<metric> in a space that selects (search.spaces.Space.objective)
            replicates = trial.user_attrs.get(f"{metric}/replicates", trial.user_attrs.get(f"val/{metric}/replicates"))
            if replicates is None:
                continue
            values = [[float(v)] if isinstance(v, (int, float)) and math.isfinite(v) else None for v in replicates]
            expected = told_value(values, (metric,), penalties)  # failed replicates at the study's fixed penalty
            value = trial.values[i] if trial.values and i < len(trial.values) else None
            if expected is not None and value is not None and not math.isclose(expected[0], value,
                                                                               rel_tol=1e-9, abs_tol=1e-12):
                out.problems.append(f"Optuna: trial {trial.number}'s {metric} = {value:.6g} is not the mean of its "
                                    f"replicates {replicates} (failed ones at the penalty {penalties.get(metric)})")


def _ray(out: Diagnosis, stores, space: str, by_number) -> set[int]:
    """Checks Ray's saved searcher against Optuna; returns the configurations it is running."""
    from search import store_checks

    folder = stores.ray_experiment_dir(space)
    path = store_checks.newest(folder, "searcher-state-*.pkl") if folder.is_dir() else None
    tracked: set[int] = set()
    if path is not None:
        state = store_checks.searcher_state(path)
        for number, config in state.get("configs", {}).items():
            if config.get("told"):
                continue
            tracked.add(int(number))
            trial = by_number.get(int(number))
            if trial is None or trial.state.name == "WAITING":
                out.problems.append(f"Ray's searcher runs configuration {number} but Optuna holds it as "
                                    f"{'WAITING' if trial else 'missing'}: Optuna's store is older than Ray's")
            for seed, trial_id in config.get("ray_trials", {}).items():
                if seed not in config.get("values", {}) and not (folder / f"trial_{trial_id}").is_dir():
                    out.notes.append(f"Ray trial {trial_id} (configuration {number}, seed {seed}) is unfinished but "
                                     f"its folder {folder / f'trial_{trial_id}'} is gone: resume=true restarts it "
                                     f"from scratch")
    for number, trial in by_number.items():
        if trial.state.name == "RUNNING" and number not in tracked:
            out.notes.append(f"Optuna trial {number} is RUNNING but no saved Ray state runs it (asked after Ray's "
                             f"last save): resume=true tells it FAIL and runs its configuration again")
    return tracked


def _mlflow(out: Diagnosis, stores, space: str, metrics: list[str], complete, unfinished: bool, deep: bool) -> None:
    from search import tracking

    uri = stores.tracking_uri
    local = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
    if local is not None and not local.exists():  # opening it would create it
        out.notes.append(f"no MLflow store at {local} yet")
        return
    client = tracking.client_for(stores.tracking_uri)
    experiment = client.get_experiment_by_name(space)
    if experiment is None:
        out.notes.append(f"MLflow has no experiment '{space}' yet")
        return
    runs = client.search_runs([experiment.experiment_id], max_results=50000)
    parents = [r for r in runs if r.data.tags.get(tracking.TAG_ROLE) == "parent"]
    children = [r for r in runs if r.data.tags.get(tracking.TAG_ROLE) == "trial"]
    if len(parents) != 1:
        out.problems.append(f"MLflow: {len(parents)} parent runs for study '{space}' (one expected)")
    ids = Counter(r.data.tags.get(tracking.TAG_TRIAL) for r in children)
    for trial_id, count in ids.items():
        if count > 1:
            out.problems.append(f"MLflow: Ray trial {trial_id} has {count} runs (one expected)")
    finished = [r for r in children if r.info.status == "FINISHED"]
    replicate = Counter((r.data.tags.get(tracking.TAG_SAMPLED, ""), r.data.params.get("seed")) for r in finished)
    for (sampled, seed), count in replicate.items():
        if sampled and count > 1:
            out.problems.append(f"MLflow: {count} FINISHED runs of configuration {sampled}, seed {seed}: it ran twice")
    finished_ids = {r.data.tags.get(tracking.TAG_TRIAL) for r in finished}
    open_ids = {r.data.tags.get(tracking.TAG_TRIAL): r.info.status for r in children if r.info.status != "FINISHED"}
    for trial in complete:
        for seed, trial_id in (trial.user_attrs.get("ray_trials") or {}).items():
            if not trial_id or trial_id in finished_ids:
                continue
            if trial_id in open_ids:  # left open by a driver that stopped (a tracking outage): a resume settles it
                out.notes.append(f"Optuna trial {trial.number} is COMPLETE but its seed-{seed} Ray trial {trial_id}'s "
                                 f"MLflow run is {open_ids[trial_id]}: resume=true settles it")
            else:
                out.problems.append(f"Optuna trial {trial.number} is COMPLETE but its seed-{seed} Ray trial "
                                    f"{trial_id} has no MLflow run")
    stale = [r for r in children if r.info.status == "RUNNING"]
    if stale:
        out.notes.append(f"MLflow: {len(stale)} trial run(s) RUNNING (a driver running, or one killed: "
                         f"resume=true settles them)")
    if parents:
        status = parents[0].info.status
        if status == "FINISHED" and unfinished:
            out.problems.append("MLflow: the parent run is FINISHED but the study has unfinished configurations")
        elif status != "FINISHED" and not unfinished:
            out.notes.append(f"MLflow: the parent run is {status} though every configuration ended "
                             f"(resume=true writes the report and finishes it)")
    if deep:
        for run in children:
            for metric in metrics:
                steps = Counter(m.step for m in client.get_metric_history(run.info.run_id, metric))
                twice = sorted(s for s, c in steps.items() if c > 1)
                if twice:
                    trial_id = run.data.tags.get(tracking.TAG_TRIAL)
                    out.problems.append(f"MLflow: run {run.info.run_id} (Ray trial {trial_id}) "
                                        f"logged {metric} twice at step(s) {twice}")


def main(argv: list[str] | None = None) -> int:
    return run_command(__doc__, _doctor, argv)


def _doctor(argv: list[str]) -> int:
    from search import definition
    from search.spaces import load_space
    from search.stores import DEFAULT_ROOT, Stores

    args = parse_overrides(argv)
    unknown = sorted(set(args) - {"space", "root", "tracking_uri"})
    if unknown or "space" not in args:
        raise ConfigError("usage: python -m search.doctor space=NAME [root=DIR] [tracking_uri=URI]"
                          + (f" ({', '.join(unknown)} unknown)" if unknown else ""))
    root = directory_arg("root", args.get("root", DEFAULT_ROOT), write=False)  # read only: a read-only copy is fine
    stores = Stores.at(root, args.get("tracking_uri"))
    space = load_space(str(args["space"]))
    recorded = definition.recorded(stores, space.name) or {}
    metric = recorded.get("metric", space.metric_arg)
    metrics = metric if isinstance(metric, list) else [metric]
    result = diagnose(stores, space.name, metrics)
    for note in result.notes:
        print(f"note: {note}")
    for problem in result.problems:
        print(f"disagree: {problem}")
    if result.problems:
        print(f"# study '{space.name}' under {stores.root}: {len(result.problems)} disagreement(s)")
        return 1
    if not stores.has_study(space.name):  # a wrong root= or space=, or a study stopped before it began
        print(f"# study '{space.name}' under {stores.root}: not stored, nothing to check")
        return 0
    print(f"# study '{space.name}' under {stores.root}: the stores agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
