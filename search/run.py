"""Run (or resume) a study:  python -m search.run space=NAME [key=value ...]

Keys of this command:
  space=NAME|PATH       a space in spaces/ (or a YAML file)            (required)
  root=DIR              store root (MLflow, Optuna, Ray, caches)        (default ./runs)
  resume=true           continue the study stored under root
  preset=NAME           a preset of the space (e.g. cifar10_gpu) or of spaces/presets.yaml
  ray_address=ADDR      run on an existing Ray cluster (auto, ray://host:10001)
  tracking_uri=URI      MLflow server instead of <root>/mlflow.db
  report=false          skip the report at the end
Any other key overrides the space: num_samples=, max_concurrent=, seeds=, sampler=, fixed.steps=, ...
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from search.stores import Stores
from trainers.cli import directory_arg, run_command
from trainers.config import ConfigError, make_config, parse_overrides

# Ray starts its worker processes while the driver sets up the stores; they import the trainer
# then, instead of when the first trial starts (about 8 s of imports and data loading per worker)
WARM_WORKER = "search.trainable.warm_worker"
RUN_KEYS = ("space", "root", "resume", "preset", "ray_address", "tracking_uri", "report")
PROGRESS_METRICS = ("fid_minority", "classes_dropped", "step")  # after the study's own metric(s)
OBJECT_STORE_BYTES = 150 * 1024 ** 2  # trials pass checkpoints through files, not the object store


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
    for key in ("space", "ray_address", "tracking_uri"):
        if key in run and not (isinstance(run[key], str) and run[key]):
            raise StudyError(f"{key}={run[key]!r} must be a name, path or address")
    uri = run.get("tracking_uri")
    if uri is not None and "://" not in uri:
        raise StudyError(f"tracking_uri={uri} is not a URI; give a server (http://127.0.0.1:5000) or a database "
                         f"(sqlite:////abs/path/mlflow.db), or drop it to use <root>/mlflow.db")
    return run, overrides


def make_scheduler(space):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if space.scheduler["type"] == "fifo":
        return FIFOScheduler()
    cfg = make_config(space.trial_config({}, space.seeds[0]))
    evaluations = -(-cfg.steps // cfg.eval_every)
    return ASHAScheduler(metric=space.metric_arg, mode=space.mode_arg, time_attr="training_iteration",
                         max_t=evaluations, grace_period=min(space.scheduler["grace_period"], evaluations),
                         reduction_factor=space.scheduler["reduction_factor"])


def progress_reporter(space):
    """Ray's progress table: the study's metric(s), minority FID, dropped classes and the step, and
    the sampled parameters only (each trial's config holds every resolved setting)."""
    from ray.tune import CLIReporter

    metrics = [*space.metric, *(m for m in PROGRESS_METRICS if m not in space.metric)]
    # no metric= : its "current best trial" line looks up every column in the best trial's config,
    # and a conditional parameter (prune_ratio of a dcgan trial) is not there
    return CLIReporter(metric_columns=metrics, parameter_columns=[p.name for p in space.params],
                       print_intermediate_tables=True, max_report_frequency=15)


def trial_dirname(trial) -> str:
    """A trial's folder under ray/<space>/ (Ray's default name would spell out the whole config)."""
    return f"trial_{trial.trial_id}"


def init_ray(address: str | None) -> None:
    import ray

    from search.trainable import worker_env

    env = worker_env()
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
        ray.init(object_store_memory=OBJECT_STORE_BYTES, **kwargs)


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


def print_study(space, stores: Stores, resume: bool) -> None:
    print(f"# study '{space.name}' ({'resume' if resume else 'new'}), stores under {stores.root}")
    print(yaml.safe_dump(space.to_dict(), sort_keys=False, allow_unicode=True).rstrip())
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")  # experiment state saved often: little lost on kill -9
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Ray's newer output ignores a reporter's columns
    return run_command(__doc__, run_study, argv)


def prepare(argv: list[str]):
    """The command line checked, the space it names loaded and validated, its stores located: every
    refusal that needs no store and no cluster, with nothing written. Returns (run keys, space, stores)."""
    from search.spaces import load_space

    run, overrides = parse_args(argv)
    space = load_space(run["space"], overrides, preset=run.get("preset"))
    stores = Stores.at(directory_arg("root", run.get("root", "runs")), run.get("tracking_uri"))
    return run, space.with_fixed(stores.trainer_paths(space.fixed)), stores


def run_study(argv: list[str]) -> int:
    from filelock import Timeout

    run, space, stores = prepare(argv)
    try:
        stores.root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StudyError(f"root={stores.root} cannot be made ({e.strerror or e}); give another root=") from None
    lock = stores.study_lock(space.name)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise StudyError(f"study '{space.name}' is already running on root={stores.root} (lock {lock.lock_file}); "
                         f"wait for it, or use another root=") from None
    try:
        return _run_locked(space, stores, bool(run.get("resume", False)), run)
    finally:
        lock.release()


def _run_locked(space, stores: Stores, resume: bool, run: dict[str, Any]) -> int:
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from search import tracking
    from search.callback import MLflowTrialCallback
    from search.searcher import ReplicateSearcher, open_study
    from search.trainable import run_trial

    experiment_dir = stores.ray_experiment_dir(space.name)
    has_study = stores.has_study(space.name)
    has_ray = experiment_dir.exists() and tune.Tuner.can_restore(str(experiment_dir))
    if resume and not (has_study or has_ray):
        raise StudyError(f"resume=true but no study '{space.name}' is stored under root={stores.root}; "
                         f"drop resume=true to start it")
    if not resume and (has_study or has_ray):
        raise StudyError(f"study '{space.name}' already exists under root={stores.root}; add resume=true to continue "
                         f"it, or pass another root= to start afresh")

    tracking.check_reachable(stores.tracking_uri)
    print_study(space, stores, resume)
    # every refusal (cluster, resources) comes before the first write to a store
    init_ray(run.get("ray_address"))
    resources = trial_resources(space)
    # studies of other spaces may share this root: creating the SQLite schemas is not safe to race
    with stores.schema_lock():
        open_study(space, stores)
        client = tracking.client_for(stores.tracking_uri)
        experiment_id = tracking.ensure_experiment(client, space.name, stores.experiment_artifact_location(space.name))
        parent = tracking.find_parent_run(client, experiment_id, space.name) if resume else None
        if parent is None:
            space_yaml = Path(space.source).read_text() if Path(space.source).is_file() else ""
            parent_run_id = tracking.start_parent_run(client, experiment_id, space, space_yaml)
        else:
            parent_run_id = parent.info.run_id
            client.update_run(parent_run_id, status="RUNNING")

    trainable = tune.with_resources(run_trial, {"cpu": resources["cpu"], "gpu": resources["gpu"]})
    started = time.time()
    if resume and has_ray:
        # the saved state brings back the searcher (reconciled with the study before it proposes or
        # tells anything), the reporter and the MLflow callback (same experiment and parent run)
        tuner = tune.Tuner.restore(str(experiment_dir), trainable, resume_unfinished=True,
                                   resume_errored=False, restart_errored=False)
    else:
        searcher = ReplicateSearcher(space, stores)
        # a resume with only Optuna stored (the driver died before Ray's first experiment checkpoint)
        # runs what the study still lacks; a new study runs every configuration
        configurations = searcher.remaining()
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=ConcurrencyLimiter(searcher, max_concurrent=space.max_concurrent),
                                        scheduler=make_scheduler(space), reuse_actors=True,
                                        num_samples=configurations * len(space.seeds),
                                        trial_dirname_creator=trial_dirname),
            run_config=tune.RunConfig(
                name=space.name, storage_path=str(stores.ray_dir),
                failure_config=tune.FailureConfig(max_failures=2),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                callbacks=[MLflowTrialCallback(stores.tracking_uri, experiment_id, parent_run_id, space)],
                progress_reporter=progress_reporter(space), verbose=1),
        )
    results = tuner.fit()
    return finish(space, stores, results, client, parent_run_id, started, run)


def finish(space, stores: Stores, results, client, parent_run_id: str, started: float, run: dict[str, Any]) -> int:
    import optuna

    errors = len(results.errors)
    study = stores.load_study(space.name)
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

        print(f"# report: {write_report(space, stores)}")
    print(f"# MLflow UI: python -m mlflow_server root={stores.root}   (then open http://127.0.0.1:5000)")
    print(f"# resume or extend: python -m search.run space={space.name} root={stores.root} resume=true")
    return 0


if __name__ == "__main__":
    sys.exit(main())
