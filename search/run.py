"""Run (or resume) a study:  python -m search.run space=NAME [key=value ...]

Keys of this command:
  space=NAME|PATH       a space in spaces/ (or a YAML file)            (required)
  root=DIR              store root (MLflow, Optuna, Ray, caches)        (default ./runs)
  resume=true           continue the study stored under root
  preset=NAME           a preset of the space (e.g. cifar10_gpu)
  ray_address=ADDR      run on an existing Ray cluster (auto, ray://host:10001)
  tracking_uri=URI      MLflow server instead of <root>/mlflow.db
  report=false          skip the report at the end
Any other key overrides the space: num_samples=, max_concurrent=, seeds=, sampler=, fixed.steps=, ...
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from trainers.cli import run_command
from trainers.config import ConfigError, parse_overrides

# Ray starts its worker processes while the driver sets up the stores; they import the trainer
# then, instead of when the first trial starts (about 8 s of imports and data loading per worker)
WARM_WORKER = "search.trainable.warm_worker"
RUN_KEYS = ("space", "root", "resume", "preset", "ray_address", "tracking_uri", "report")


class StudyError(ConfigError):
    pass


def parse_args(argv: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    overrides = parse_overrides(argv)
    run = {k: overrides.pop(k) for k in RUN_KEYS if k in overrides}
    if "space" not in run:
        from search.spaces import available_spaces
        raise StudyError(f"say which study to run: space=NAME (available: {', '.join(available_spaces())})")
    for flag in ("resume", "report"):
        if flag in run and not isinstance(run[flag], bool):
            raise StudyError(f"{flag}={run[flag]!r} must be true or false")
    return run, overrides


def optuna_storage(root: Path):
    import optuna
    return optuna.storages.RDBStorage(f"sqlite:///{(root / 'optuna.db').resolve()}",
                                      engine_kwargs={"connect_args": {"timeout": 60}})


def study_exists(storage, name: str) -> bool:
    import optuna
    return any(s.study_name == name for s in optuna.study.get_all_study_summaries(storage, include_best_trial=False))


def make_sampler(space):
    import optuna
    seed = space.sampler_seed
    return {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "grid": lambda: optuna.samplers.RandomSampler(seed=seed),  # the cells are enqueued
        "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=seed),
        "qmc": lambda: optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False),
    }[space.sampler]()


def make_scheduler(space):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if space.scheduler["type"] == "fifo":
        return FIFOScheduler()
    from trainers.config import make_config
    cfg = make_config(space.trial_config({}, space.seeds[0]))
    evaluations = -(-cfg.steps // cfg.eval_every)
    return ASHAScheduler(metric=space.metric_arg, mode=space.mode_arg, time_attr="training_iteration",
                         max_t=evaluations, grace_period=min(space.scheduler["grace_period"], evaluations),
                         reduction_factor=space.scheduler["reduction_factor"])


def init_ray(address: str | None, root: Path) -> None:
    import ray

    from search.trainable import trial_workdir_env

    env = trial_workdir_env()
    os.environ.update(env)
    kwargs: dict[str, Any] = dict(include_dashboard=False, logging_level="WARNING", log_to_driver=True,
                                  runtime_env={"env_vars": env, "worker_process_setup_hook": WARM_WORKER},
                                  configure_logging=True)
    if address:
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise StudyError(f"cannot connect to the Ray cluster at ray_address={address} ({e}); start it with "
                             f"'ray start --head' or drop ray_address= to run locally") from None
    else:
        ray.init(object_store_memory=150 * 1024 ** 2, _temp_dir=None, **kwargs)


def trial_resources(space) -> dict[str, float]:
    import ray
    import torch

    cluster = ray.cluster_resources()
    gpu = space.resources["gpu"] if cluster.get("GPU", 0) > 0 or torch.cuda.is_available() else 0.0
    wanted = {"cpu": space.resources["cpu"], "gpu": gpu}
    if wanted["cpu"] > cluster.get("CPU", 0):
        raise StudyError(f"{space.source}: resources.cpu = {wanted['cpu']} per trial but the Ray cluster has "
                         f"{cluster.get('CPU', 0):g} CPUs; lower resources.cpu")
    if wanted["gpu"] > cluster.get("GPU", 0):
        raise StudyError(f"{space.source}: resources.gpu = {wanted['gpu']} per trial but the cluster has "
                         f"{cluster.get('GPU', 0):g} GPUs; lower resources.gpu")
    return wanted


def print_study(space, root: Path, resume: bool) -> None:
    print(f"# study '{space.name}' ({'resume' if resume else 'new'}), stores under {root}")
    print(yaml.safe_dump(space.to_dict(), sort_keys=False).rstrip())
    sys.stdout.flush()


def build_searcher(space, storage, resume_counts: dict[str, int] | None = None):
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from search.searcher import ReplicateSearcher
    from search.spaces import DefineByRun

    points = None
    if space.sampler == "grid":
        points = space.grid()[: space.num_samples]
        if resume_counts is not None:  # only the cells no finished trial covers
            points = [p for p in points if repr(sorted(p.items())) not in resume_counts.get("cells", set())]
    inner = OptunaSearch(space=DefineByRun(space.params), metric=space.metric_arg, mode=space.mode_arg,
                         sampler=make_sampler(space), study_name=space.name, storage=storage,
                         points_to_evaluate=points or None)
    outer = ReplicateSearcher(inner, list(space.seeds), space.metric_arg, space.mode_arg)
    return ConcurrencyLimiter(outer, max_concurrent=space.max_concurrent)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")  # experiment state saved often: little lost on kill -9
    return run_command(__doc__, run_study, argv)


def run_study(argv: list[str]) -> int:
    from filelock import FileLock, Timeout

    from search.spaces import load_space

    run, overrides = parse_args(argv)
    space = load_space(str(run["space"]), overrides, preset=run.get("preset"))
    root = Path(str(run.get("root", "runs"))).expanduser().resolve()
    resume = bool(run.get("resume", False))
    root.mkdir(parents=True, exist_ok=True)
    # trials run in other processes (other nodes): give them absolute store and data paths
    fixed = dict(space.fixed)
    fixed.setdefault("cache_dir", str(root / "cache"))
    fixed["data_root"] = str(Path(str(fixed.get("data_root", "data"))).expanduser().resolve())
    space = dataclasses.replace(space, fixed=fixed)
    lock = FileLock(str(root / f".{space.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise StudyError(f"study '{space.name}' is already running on root={root} (lock {lock.lock_file}); "
                         f"wait for it, or use another root=") from None
    try:
        return _run_locked(space, root, resume, run)
    finally:
        lock.release()


def _run_locked(space, root: Path, resume: bool, run: dict[str, Any]) -> int:
    import optuna
    from ray import tune

    from search import tracking
    from search.trainable import run_trial

    experiment_dir = root / "ray" / space.name
    has_study = (root / "optuna.db").exists() and study_exists(optuna_storage(root), space.name)
    has_ray = experiment_dir.exists() and tune.Tuner.can_restore(str(experiment_dir))
    if resume and not (has_study or has_ray):
        raise StudyError(f"resume=true but no study '{space.name}' is stored under root={root}; "
                         f"drop resume=true to start it")
    if not resume and (has_study or has_ray):
        raise StudyError(f"study '{space.name}' already exists under root={root}; add resume=true to continue it, "
                         f"or pass another root= to start afresh")

    tracking_uri, artifact_location = tracking.store_uris(root, run.get("tracking_uri"))
    tracking.check_reachable(tracking_uri)
    print_study(space, root, resume)
    # every refusal (cluster, resources) comes before the first write to a store
    init_ray(run.get("ray_address"), root)
    resources = trial_resources(space)
    # studies of other spaces may share this root: creating the SQLite schemas is not safe to race
    from filelock import FileLock

    with FileLock(str(root / ".stores.lock")):
        storage = optuna_storage(root)
        client = tracking.client_for(tracking_uri)
        experiment_id = tracking.ensure_experiment(client, space.name, artifact_location)
        parent = tracking.find_parent_run(client, experiment_id, space.name) if resume else None
        if parent is None:
            space_yaml = Path(space.source).read_text() if Path(space.source).is_file() else ""
            parent_run_id = tracking.start_parent_run(client, experiment_id, space, space_yaml)
        else:
            parent_run_id = parent.info.run_id
            client.update_run(parent_run_id, status="RUNNING")

    trainable = tune.with_resources(tune.with_parameters(run_trial, space=space),
                                    {"cpu": resources["cpu"], "gpu": resources["gpu"]})
    callback = tracking.MLflowTrialCallback(tracking_uri, experiment_id, parent_run_id, space)
    run_config = tune.RunConfig(
        name=space.name, storage_path=str(root / "ray"),
        failure_config=tune.FailureConfig(max_failures=2),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        callbacks=[callback], verbose=1,
    )
    started = time.time()
    if resume and has_ray:
        # the saved RunConfig brings back the MLflow callback (same experiment and parent run)
        tuner = tune.Tuner.restore(str(experiment_dir), trainable, resume_unfinished=True,
                                   resume_errored=False, restart_errored=False)
    else:
        remaining = space.num_samples
        resume_counts = None
        if resume:  # only Optuna was stored (the driver died before Ray's first experiment checkpoint)
            study = optuna.load_study(study_name=space.name, storage=storage)
            for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
                storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
            done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            remaining = max(0, space.num_samples - len(done))
            resume_counts = {"cells": {repr(sorted(t.params.items())) for t in done}}
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=build_searcher(space, storage, resume_counts),
                                        scheduler=make_scheduler(space),
                                        num_samples=remaining * len(space.seeds), reuse_actors=True),
            run_config=run_config,
        )
    results = tuner.fit()
    return finish(space, root, results, client, parent_run_id, started, run)


def finish(space, root: Path, results, client, parent_run_id: str, started: float, run: dict[str, Any]) -> int:
    import optuna

    errors = len(results.errors)
    statuses: dict[str, int] = {}
    for result in results:
        status = "ERROR" if result.error else "TERMINATED"
        statuses[status] = statuses.get(status, 0) + 1
    study = optuna.load_study(study_name=space.name, storage=optuna_storage(root))
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    client.set_terminated(parent_run_id, status="FINISHED")
    minutes = (time.time() - started) / 60
    print(f"\n# study '{space.name}' done in {minutes:.1f} min: {len(results)} trials "
          f"({errors} failed), {len(complete)} Optuna configurations complete")
    if complete and not space.multi_objective:
        best = study.best_trial
        print(f"# best {space.metric[0]} = {best.value:.4g} (mean over seeds) with {best.params}")
    if run.get("report", True):
        from search.report import write_report

        path = write_report(space, root, tracking_uri=run.get("tracking_uri"))
        print(f"# report: {path}")
    print(f"# MLflow UI: python -m mlflow_server root={root}   (then open http://127.0.0.1:5000)")
    print(f"# resume or extend: python -m search.run space={space.name} root={root} resume=true")
    return 0


if __name__ == "__main__":
    sys.exit(main())
