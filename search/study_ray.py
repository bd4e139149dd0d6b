"""The driver's Ray: ``ray.init`` (local or a cluster), the resources a trial asks for, the scheduler and
progress table a space names, and the Tuner that runs the study (new or restored)."""

from __future__ import annotations

import os
from typing import Any

from search.study import Study, StudyError
from trainers.config import make_config

# Ray's workers import the trainer while the driver sets up the stores (not at the first trial: ~8 s each)
WARM_WORKER = "search.trainable.warm_worker"
PROGRESS_METRICS = ("fid_minority", "classes_dropped", "step")  # after the study's own metric(s)
OBJECT_STORE_BYTES = 150 * 1024 ** 2  # trials pass checkpoints through files, not the object store


def make_scheduler(space):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if space.scheduler.type == "fifo":
        return FIFOScheduler()
    cfg = make_config(space.trial_config({}, space.seeds[0]))
    evaluations = -(-cfg.steps // cfg.eval_every)
    return ASHAScheduler(metric=space.objective_arg, mode=space.mode_arg, time_attr="training_iteration",
                         max_t=evaluations, grace_period=min(space.scheduler.grace_period, evaluations),
                         reduction_factor=space.scheduler.reduction_factor)


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

    from search.preemption import (drop_ray_stop_hints, ray_processes_die_with_the_driver,
                                   ray_processes_in_their_own_session, save_state_after_its_last_upload,
                                   stop_signals_held, tolerate_deleted_checkpoints)
    from search.trainable import worker_env

    tolerate_deleted_checkpoints()
    save_state_after_its_last_upload()

    env = worker_env()
    os.environ.update(env)
    # Ray warns, up to once a second, that snapshots forced by CheckpointConfig(num_to_keep) "may become a
    # bottleneck": with a local storage_path a snapshot is a local copy, and num_to_keep is not the user's
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    kwargs: dict[str, Any] = dict(include_dashboard=False, logging_level="WARNING", log_to_driver=True,
                                  runtime_env={"env_vars": env, "worker_process_setup_hook": WARM_WORKER},
                                  configure_logging=True)
    with stop_signals_held():  # Ray installs its own SIGTERM handler in the driver: ours again after it
        if address:
            try:
                ray.init(address=address, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise StudyError(f"cannot connect to the Ray cluster at ray_address={address} ({e}); start it "
                                 f"with 'ray start --head' or drop ray_address= to run locally") from None
        else:
            ray_processes_in_their_own_session()
            ray.init(object_store_memory=OBJECT_STORE_BYTES, **kwargs)
    if not address:  # after the signals are let through again: the watcher does not inherit them held
        ray_processes_die_with_the_driver()
    drop_ray_stop_hints()  # after ray.init, which configures Ray's loggers


def trial_resources(space) -> dict[str, float]:
    import ray
    import torch

    cluster = ray.cluster_resources()
    gpu = space.resources.gpu if cluster.get("GPU", 0) > 0 or torch.cuda.is_available() else 0.0
    wanted = {"cpu": space.resources.cpu, "gpu": gpu}
    if wanted["cpu"] > cluster.get("CPU", 0):
        raise StudyError(f"{space.source}: resources.cpu = {wanted['cpu']} per trial but the Ray cluster has "
                         f"{cluster.get('CPU', 0):g} CPUs; lower resources.cpu")
    if wanted["gpu"] > cluster.get("GPU", 0):
        raise StudyError(f"{space.source}: resources.gpu = {wanted['gpu']} per trial but the cluster has "
                         f"{cluster.get('GPU', 0):g} GPUs; lower resources.gpu")
    return wanted


def make_tuner(study: Study, restore: bool, resources: dict[str, float]):
    from ray import tune

    from search.callback import MLflowTrialCallback, RestartLostTrials
    from search.searcher import ReplicateSearcher, StudyLimiter
    from search.trainable import run_trial
    from trainers import faults

    space, stores = study.space, study.stores
    trainable = tune.with_resources(run_trial, {"cpu": resources["cpu"], "gpu": resources["gpu"]})
    StudyLimiter.resumed_max_concurrent = space.max_concurrent
    if restore:
        # the saved state brings back the searcher (reconciled with the study before it proposes or
        # tells anything), the reporter and the MLflow callback (same experiment and parent run)
        return tune.Tuner.restore(str(stores.ray_experiment_dir(space.name)), trainable, resume_unfinished=True,
                                  resume_errored=False, restart_errored=False)
    searcher = ReplicateSearcher(space, stores)
    # a resume with only Optuna stored (the driver died before Ray's first experiment checkpoint)
    # runs what the study still lacks; a new study runs every configuration. Ray asks for trials until the
    # searcher says FINISHED (num_samples=-1): sequential seeds and extended seeds have no count known now
    searcher.start_budget()
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=StudyLimiter(searcher, max_concurrent=space.max_concurrent),
                                    scheduler=make_scheduler(space), reuse_actors=True,
                                    num_samples=-1,
                                    trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(
            name=space.name, storage_path=str(stores.ray_dir),
            failure_config=tune.FailureConfig(max_failures=2),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            callbacks=[MLflowTrialCallback(stores.tracking_uri, study.experiment_id, study.parent_run_id, space),
                       RestartLostTrials(), *faults.driver_callbacks()],
            progress_reporter=progress_reporter(space), verbose=1),
    )


def quiet_ray() -> None:
    """Shut Ray down before the driver's last lines: its log monitor otherwise goes on streaming the
    workers' output (their exit messages) after them, and the line that says what happened is no
    longer the last one the user sees."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
