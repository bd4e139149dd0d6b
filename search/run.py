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
from pathlib import Path
from typing import Any

from search.preemption import handle_stop_signals, interrupted_status
from search.store_checks import StoreError
from search.stores import DEFAULT_ROOT, Stores
from search.study import Study, StudyError
from search.study_output import finish, print_study, stopped
# trial_dirname: a study started before the split pickled its Tuner with search.run.trial_dirname
from search.study_ray import init_ray, make_tuner, trial_dirname, trial_resources  # noqa: F401
from trainers.cli import directory_arg, run_command
from trainers.config import parse_overrides

RUN_KEYS = ("space", "root", "resume", "preset", "ray_address", "tracking_uri", "report")


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


if __name__ == "__main__":
    sys.exit(main())
