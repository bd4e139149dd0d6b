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

Exit codes: 0 the study ended; 2 a bad input, refused before any store is written; 1 the study stopped
on an error after its stores existed (runs marked FAILED/KILLED, a traceback under <root>/logs/, the
line says how to resume), or a damaged store refused untouched; 130 interrupted (Ctrl-C), 143 SIGTERM
(preemption, docker stop), 129 SIGHUP: each stops as Ctrl-C does, resumable the same way.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import time

if __name__ == "__main__":  # Ctrl-C or a stop signal during the imports below (torch: seconds): one line
    from search.preemption import quit_while_importing
    quit_while_importing()
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from search.preemption import handle_stop_signals, interrupted_status
from search.store_checks import StoreError
from search.stores import DEFAULT_ROOT, Stores
from trainers.cli import directory_arg, run_command
from trainers.config import make_config, parse_overrides
from trainers.fields import ConfigError, one_line

# Ray's workers import the trainer while the driver sets up the stores (not at the first trial: ~8 s each)
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
    from search.tracking import check_tracking_uri
    check_tracking_uri(run.get("tracking_uri"), StudyError)
    return run, overrides


def resume_command(argv: list[str], root: Path) -> str:
    """The command that resumes this study: the same arguments with root= absolute and resume=true."""
    kept = [a for a in argv if a.split("=", 1)[0] not in ("root", "resume")]
    return shlex.join(["python", "-m", "search.run", *kept, f"root={root}", "resume=true"])


def make_scheduler(space):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if space.scheduler["type"] == "fifo":
        return FIFOScheduler()
    cfg = make_config(space.trial_config({}, space.seeds[0]))
    evaluations = -(-cfg.steps // cfg.eval_every)
    return ASHAScheduler(metric=space.objective_arg, mode=space.mode_arg, time_attr="training_iteration",
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

    from search.preemption import (ray_processes_die_with_the_driver, ray_processes_in_their_own_session,
                                   stop_signals_held, tolerate_deleted_checkpoints)
    from search.trainable import worker_env

    tolerate_deleted_checkpoints()

    env = worker_env()
    os.environ.update(env)
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


def gsr_off_note(space) -> str | None:
    """One line when a space runs method=cgan with gsr_lambda neither fixed nor searched: its default 0.0
    trains the conditional GAN without gSR (the presets cannot carry it; the gSR spaces search it)."""
    if "cgan" not in space.methods() or "gsr_lambda" in space.fixed:
        return None
    if any(p.name == "gsr_lambda" for p in space.params):
        return None
    return (f"# note: method=cgan runs without gSR in '{space.name}' (gsr_lambda is neither fixed nor searched, "
            f"default 0.0); add gsr_lambda: 0.5 (gSRGAN's sn_reg_weight) under fixed: to turn it on")


def print_study(space, stores: Stores, resume: bool) -> None:
    print(f"# study '{space.name}' ({'resume' if resume else 'new'}), stores under {stores.root}")
    print(yaml.safe_dump(space.to_dict(), sort_keys=False, allow_unicode=True).rstrip())
    note = gsr_off_note(space)
    if note:
        print(note)
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")  # experiment state saved often: little lost on kill -9
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Ray's newer output ignores a reporter's columns
    signal.signal(signal.SIGINT, signal.default_int_handler)  # KeyboardInterrupt again after the imports
    handle_stop_signals()
    try:
        return run_command(__doc__, run_study, argv)
    except StoreError as e:  # a damaged store, refused before anything opened it
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:  # before the stores were written (imports, the space, ray.init)
        how, code = interrupted_status()
        print(f"error: interrupted by {how} before the study started running; nothing is lost: run the same "
              f"command again", file=sys.stderr, flush=True)
        return code


def prepare(argv: list[str]):
    """The command line checked, the space it names loaded and validated, its stores located: every
    refusal that needs no store and no cluster, with nothing written. Returns (run keys, space, stores)."""
    from search.spaces import load_space

    run, overrides = parse_args(argv)
    space = load_space(run["space"], overrides, preset=run.get("preset"))
    stores = Stores.at(directory_arg("root", run.get("root", DEFAULT_ROOT)), run.get("tracking_uri"))
    try:
        paths = stores.trainer_paths(space.fixed)
    except ValueError as e:  # a NUL byte in a path
        raise StudyError(f"{space.source}: fixed.cache_dir or fixed.data_root is not a path ({e})") from None
    directory_arg("fixed.cache_dir", paths["cache_dir"])  # every trial writes there
    return run, space.with_fixed(paths), stores


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
        return _run_locked(space, stores, bool(run.get("resume", False)), run, resume_command(argv, stores.root))
    finally:
        lock.release()


@dataclass
class Study:
    """A study being run: its space and stores, how to resume it, and its MLflow experiment and parent
    run once they exist."""

    space: Any
    stores: Stores
    resume_cmd: str
    experiment_id: str | None = None
    parent_run_id: str | None = None


def _run_locked(space, stores: Stores, resume: bool, run: dict[str, Any], resume_cmd: str) -> int:
    from ray import tune

    from search import definition, doctor, store_checks, tracking
    from search.searcher import open_study

    store_checks.check_files(stores, space.name, resume, ray=False)  # before anything opens them
    experiment_dir = stores.ray_experiment_dir(space.name)
    has_study = stores.has_study(space.name)
    has_ray = experiment_dir.exists() and tune.Tuner.can_restore(str(experiment_dir))
    if resume and not (has_study or has_ray):
        raise StudyError(f"resume=true but no study '{space.name}' is stored under root={stores.root}; "
                         f"drop resume=true to start it")
    if not resume and (has_study or has_ray):
        raise StudyError(f"study '{space.name}' already exists under root={stores.root}; add resume=true to continue "
                         f"it, or pass another root= to start afresh")
    spec = definition.definition_of(space, stores)
    known = resume and definition.check_resume(stores, space.name, spec)  # another study: refused, exit 2
    extension = definition.seeds_extension(stores, space.name, spec) if resume else None
    tracking.check_reachable(stores.tracking_uri)
    if resume:  # the stores agree or it is refused; Ray's state set aside if unreadable
        has_ray = doctor.ready_to_resume(stores, space.name, has_ray, list(space.metric))
        if extension:  # refused unless the study finished; its new seeds run as a new Ray experiment
            definition.prepare_seeds_extension(stores, space.name, extension)
            has_ray = False
    print_study(space, stores, resume)
    # every refusal (cluster, resources) comes before the first write to a store
    init_ray(run.get("ray_address"))
    resources = trial_resources(space)
    study = Study(space, stores, resume_cmd)
    # from the first write on, whatever ends the driver leaves the stores resumable and says so
    try:
        # studies of other spaces may share this root: creating the SQLite schemas is not safe to race
        with stores.schema_lock():
            open_study(space, stores)
            if not known or extension:  # a new study, one started before definitions were recorded, or extended
                if resume:
                    print(f"# no definition recorded for study '{space.name}' (started by an older version): "
                          f"recording this one; later resumes are compared with it")
                definition.record(stores, space.name, spec)
            if not stores.remote_tracking_uri:
                tracking.create_local_store(stores.mlflow_db)
            client = tracking.client_for(stores.tracking_uri)
            study.experiment_id = tracking.ensure_experiment(client, space.name,
                                                             stores.experiment_artifact_location(space.name))
            parent = tracking.find_parent_run(client, study.experiment_id, space.name) if resume else None
            if parent is None:
                source = Path(space.source)
                space_yaml = source.read_text(encoding="utf-8-sig") if source.is_file() else ""
                study.parent_run_id = tracking.start_parent_run(client, study.experiment_id, space, space_yaml)
            else:
                study.parent_run_id = parent.info.run_id
                client.update_run(study.parent_run_id, status="RUNNING")
        started = time.time()
        results = make_tuner(study, resume and has_ray, resources).fit()
        return finish(study, results, started, run.get("report", True))
    except BaseException as e:  # noqa: BLE001 - Ray's, ours, a full disk, Ctrl-C: the study stops cleanly
        return stopped(study, e)


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


def finish(study: Study, results, started: float, report: bool) -> int:
    from optuna.trial import TrialState

    from search import tracking

    quiet_ray()
    space, stores = study.space, study.stores
    errors = len(results.errors)
    optuna_study = stores.load_study(space.name)
    unfinished = len(results) - results.num_terminated - errors
    untold = optuna_study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
    if unfinished or untold:  # Ray returns normally after Ctrl-C, with the study short of its end
        short = f"{len(untold)} configuration(s) unfinished" if untold else f"{unfinished} trial(s) unfinished"
        return stopped(study, KeyboardInterrupt(short))
    complete = optuna_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    minutes = (time.time() - started) / 60
    print(f"\n# study '{space.name}' done in {minutes:.1f} min: {len(results)} trials "
          f"({errors} failed), {len(complete)} Optuna configurations complete")
    if complete and not space.multi_objective:
        best = optuna_study.best_trial
        print(f"# best {space.objective[0]} = {best.value:.4g} (mean over seeds, failed replicates at their "
              f"penalty) with {best.params}")
    if report:
        from search.report import write_report

        print(f"# report: {write_report(space, stores)}")
    # after the report: a report that fails stops the study like any other error, and resume writes it
    tracking.client_for(stores.tracking_uri).set_terminated(study.parent_run_id, status="FINISHED")
    print(f"# MLflow UI: {tracking.where_to_look(stores, study.experiment_id)}")
    print(f"# resume or extend: {study.resume_cmd}")  # the same arguments: a preset or override kept
    return 0


def cause(error: BaseException) -> str:
    """``Type: message`` of what ended the study; Ray's TuneError carries its cause as traceback text."""
    kind, message = type(error).__name__, one_line(error)
    lines = str(error).strip().splitlines()
    if lines and lines[0].startswith("Traceback (most recent call last)"):
        kind, _, message = lines[-1].partition(":")
        kind, message = kind.rsplit(".", 1)[-1], one_line(message)
    return f"{kind}: {message}" if message else kind


def stopped(study: Study, error: BaseException) -> int:
    """The study ended early after its stores existed: mark its MLflow runs (the parent FAILED, or KILLED
    when interrupted; the runs of unfinished trials KILLED), keep the traceback in a file, and say in
    one line what happened and how to resume. Optuna's unfinished trials stay RUNNING: the resumed
    searcher still tracks them (telling them FAIL now would leave a configuration whose replicates all
    finished marked FAIL); those it does not track it tells FAIL, and it runs their configurations again."""
    from search import tracking

    space, stores = study.space, study.stores
    interrupted = isinstance(error, KeyboardInterrupt)
    how, code = interrupted_status()
    if interrupted:
        what = f"was interrupted by {how}" + (f" ({error})" if str(error) else "")
    else:
        what = f"stopped on {cause(error)[:400]}"
    if error.__traceback__ is not None:  # raised, not Ray's run ending short after Ctrl-C
        log = stores.crash_log(space.name)
        try:
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text("".join(traceback.format_exception(error)))
            what += f" (traceback in {log})"
        except OSError as e:  # a full disk
            what += f" (no traceback written: {e.strerror or e})"
    marked = tracking.mark_stopped(stores.tracking_uri, study.experiment_id, study.parent_run_id,
                                   "KILLED" if interrupted else "FAILED")
    try:
        quiet_ray()
    except Exception:  # noqa: BLE001 - a Ray that cannot shut down cleanly must not hide the line below
        pass
    print(f"error: study '{space.name}' {what}; {marked}; resume it with: {study.resume_cmd}",
          file=sys.stderr, flush=True)
    return code if interrupted else 1


if __name__ == "__main__":
    sys.exit(main())
