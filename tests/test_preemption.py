"""Preemption is not a crash: SIGTERM/SIGHUP stop a study as Ctrl-C does (runs KILLED, one line with the
resume command, exit 128 + the signal), and the resume after any stop looks clean (no ERROR, no Traceback)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from processes import descendants, process_table
from test_search_e2e import ENV, PROJECT, mlflow_runs, optuna_states, run_cli, wait_until_complete

ARGS = ["space=smoke", "max_concurrent=1", "fixed.steps=60", "fixed.eval_every=20"]


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "search.run", *args], cwd=PROJECT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def noisy(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "Traceback" in line or "ERROR" in line]


def test_a_stop_signal_while_starting_is_one_line_and_128_plus_the_signal(tmp_path):
    """During the imports (torch: seconds) nothing is written yet: one line, the signal's exit code."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        proc = start(["space=smoke", f"root={tmp_path / 'runs'}"])
        time.sleep(0.8)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 128 + sig, (sig, err[-2000:])
        assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("error: interrupted by "), err
        assert not (tmp_path / "runs" / "optuna.db").exists()


def test_stop_signals_map_to_their_exit_codes():
    from search import preemption

    preemption._RECEIVED.clear()
    assert preemption.interrupted_status() == ("Ctrl-C", 130)
    preemption._RECEIVED.append(signal.SIGHUP)
    assert preemption.interrupted_status() == ("SIGHUP", 129)
    preemption._RECEIVED[:] = [signal.SIGTERM, signal.SIGHUP]  # the first one counts
    assert preemption.interrupted_status() == ("SIGTERM", 143)
    preemption._RECEIVED.clear()


def test_a_rotation_whose_oldest_checkpoint_is_gone_is_no_error(tmp_path):
    """Ray's checkpoint manager after a resume can hold a checkpoint the trial deleted after Ray's last
    snapshot; rotating it out must not raise (it did: FileNotFoundError, an ERROR line and a traceback)."""
    from ray.train import Checkpoint, CheckpointConfig
    from ray.train._internal.checkpoint_manager import _CheckpointManager
    from ray.train._internal.session import _TrainingResult

    from search.preemption import tolerate_deleted_checkpoints

    def result(i: int, exists: bool) -> _TrainingResult:
        path = tmp_path / f"checkpoint_{i:06d}"
        if exists:
            path.mkdir()
        return _TrainingResult(checkpoint=Checkpoint.from_directory(str(path)), metrics={"step": i})

    manager = _CheckpointManager(CheckpointConfig(num_to_keep=1))
    manager.register_checkpoint(result(1, exists=False))  # restored bookkeeping: already deleted on disk
    with pytest.raises(FileNotFoundError):
        manager.register_checkpoint(result(2, exists=True))  # Ray as shipped
    tolerate_deleted_checkpoints()
    manager = _CheckpointManager(CheckpointConfig(num_to_keep=1))
    manager.register_checkpoint(result(3, exists=False))
    manager.register_checkpoint(result(4, exists=True))
    manager.register_checkpoint(result(5, exists=True))  # an existing one is still deleted
    assert not (tmp_path / "checkpoint_000004").exists() and (tmp_path / "checkpoint_000005").exists()


def test_the_experiment_state_is_saved_only_after_its_last_upload_finished(tmp_path, monkeypatch):
    """A stop's forced save wrote the searcher state's temporary file under a running upload of the same
    folder; the upload then failed on the renamed file with an ERROR and a traceback (a CI failure). With
    the adjustment the save waits for that upload, and the state uploaded last is the state saved last."""
    import types

    import pyarrow.fs
    from ray.train._internal import storage
    from ray.tune.execution import experiment_state

    from search.preemption import save_state_after_its_last_upload

    manager_cls = experiment_state._ExperimentCheckpointManager
    monkeypatch.setattr(manager_cls, "sync_up_experiment_state", manager_cls.sync_up_experiment_state)
    events: list[str] = []
    upload = storage._upload_to_fs_path

    def slow_upload(**kwargs):
        events.append("upload starts")
        time.sleep(0.4)
        upload(**kwargs)
        events.append("upload ends")

    monkeypatch.setattr(storage, "_upload_to_fs_path", slow_upload)
    staging, remote = tmp_path / "staging", tmp_path / "remote"
    staging.mkdir()

    def run_two_saves() -> list[str]:
        events.clear()
        stub = types.SimpleNamespace(experiment_driver_staging_path=str(staging), experiment_fs_path=str(remote),
                                     syncer=storage._FilesystemSyncer(pyarrow.fs.LocalFileSystem(),
                                                                      sync_period=0, sync_timeout=60))
        manager = manager_cls(storage=stub, checkpoint_period=0)
        for i in range(2):
            def save(i=i):
                events.append(f"save {i}")
                (staging / "state.json").write_text(str(i))
            manager.sync_up_experiment_state(save, force=i == 1, wait=i == 1)
        return list(events)

    shipped = run_two_saves()
    assert shipped.index("save 1") < shipped.index("upload ends"), shipped  # Ray as shipped: the race
    save_state_after_its_last_upload()
    save_state_after_its_last_upload()  # applied once
    assert run_two_saves() == ["save 0", "upload starts", "upload ends", "save 1", "upload starts", "upload ends"]
    assert (remote / "state.json").read_text() == "1"


def test_rays_misleading_lines_at_a_stop_are_dropped_and_only_they():
    """Ray's "Resume experiment with: Tuner.restore(...)" is not how a study resumes; the driver's last line
    gives the command. Other warnings of the same loggers still pass, and the filters are added once."""
    import logging

    from search.preemption import RAY_STOP_HINTS, drop_ray_stop_hints

    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    loggers = {logging.getLogger(name) for name, _ in RAY_STOP_HINTS}
    for logger in loggers:
        logger.addHandler(handler)
    try:
        drop_ray_stop_hints()
        drop_ray_stop_hints()
        assert sum(len(logger.filters) for logger in loggers) == len(RAY_STOP_HINTS)
        logging.getLogger("ray.tune.tune").warning(
            "Experiment has been interrupted, but the most recent state was saved.\nResume experiment with: "
            "Tuner.restore(path='x', trainable=...)")
        logging.getLogger("ray.tune.analysis.experiment_analysis").warning(
            "Failed to fetch metrics for %d trial(s):\n- run_trial_1: FileNotFoundError()", 1)
        logging.getLogger("ray.tune.tune").warning("Some other warning")
        assert seen == ["Some other warning"]
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
            logger.filters = [f for f in logger.filters if not hasattr(f, "ray_stop_hint")]


@pytest.mark.slow
@pytest.mark.parametrize("target", ["driver", "group"])
def test_sigterm_stops_like_ctrl_c_and_the_resume_is_clean(tmp_path, target):
    """SIGTERM to the driver, or to its whole process group as a scheduler sends it: exit 143, the parent
    run KILLED (never FAILED or left RUNNING), one line with the resume command; the resume finishes the
    study with every configuration COMPLETE once and prints no ERROR and no traceback."""
    root = tmp_path / "runs"
    args = [*ARGS, f"root={root}"]
    proc = start(args)
    wait_until_complete(root, "smoke", proc)
    time.sleep(2)
    assert proc.poll() is None, f"the study ended before it could be stopped: {proc.communicate()[1][-3000:]}"
    (os.kill if target == "driver" else os.killpg)(proc.pid, signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert proc.returncode == 143, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: study 'smoke' was interrupted by SIGTERM") and "study run KILLED" in last, last
    assert last.endswith(f"resume it with: python -m search.run {' '.join(ARGS)} root={root} resume=true"), last
    assert "Traceback" not in err, err[-3000:]
    assert "Tuner.restore" not in err and "Failed to fetch metrics" not in err, err[-3000:]  # Ray's hints
    _, parents, children = mlflow_runs(root, "smoke")
    assert [p.info.status for p in parents] == ["KILLED"]
    assert "RUNNING" not in {c.info.status for c in children}

    resumed = run_cli([*args, "resume=true"], timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert noisy(resumed.stderr) == [], noisy(resumed.stderr)[:3]
    assert optuna_states(root, "smoke") == {"COMPLETE": 4}
    _, parents, children = mlflow_runs(root, "smoke")
    assert [p.info.status for p in parents] == ["FINISHED"]
    assert len([c for c in children if c.info.status == "FINISHED"]) == 4


@pytest.mark.slow
def test_the_resume_after_kill_9_prints_no_error_and_no_traceback(tmp_path):
    root = tmp_path / "runs"
    args = [*ARGS, f"root={root}", "fixed.eval_every=10"]  # checkpoints rotate often: the case to survive
    proc = start(args)
    wait_until_complete(root, "smoke", proc)
    time.sleep(3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    resumed = run_cli([*args, "resume=true"], timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert noisy(resumed.stderr) == [], noisy(resumed.stderr)[:3]
    states = optuna_states(root, "smoke")
    assert states.get("COMPLETE") == 4 and "RUNNING" not in states and "WAITING" not in states


@pytest.mark.slow
def test_kill_9_of_the_driver_alone_leaves_no_ray_process(tmp_path):
    """kill -9 of the driver's PID (not its group) while a trial runs: every process it started — Ray's GCS,
    raylet, agents, workers, and the watcher that stops them — is gone within 15 s. Without the watcher
    ray::DashboardAgent and ray::RuntimeEnvAgent stayed (179 MB, still there after 60 s)."""
    proc = start([*ARGS, f"root={tmp_path / 'runs'}", "fixed.steps=400", "fixed.eval_every=200", "report=false"])
    deadline = time.time() + 300
    kids: set[int] = set()
    while time.time() < deadline and proc.poll() is None:
        rows = process_table()
        kids = descendants(rows, proc.pid)
        if any("ImplicitFunc" in rows[p][1] for p in kids if p in rows):
            break
        time.sleep(1)
    rows = process_table()
    assert any("DashboardAgent" in rows[p][1] for p in kids if p in rows), "no trial ran"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    deadline = time.time() + 15
    while time.time() < deadline and kids & set(process_table()):
        time.sleep(0.5)
    rows = process_table()
    left = {p: rows[p][1][:80] for p in kids if p in rows}
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, f"still running 15 s after kill -9 of the driver: {left}"


def test_a_stop_signal_that_lands_in_a_garbage_collection_callback_still_stops_the_driver():
    """SIGTERM handled while Python runs a weakref callback (SQLAlchemy's, during a study's setup): the
    KeyboardInterrupt it becomes cannot propagate from there and was lost (the study ran on to its end,
    with "Exception ignored ... KeyboardInterrupt" on stderr). It is delivered again after the callback."""
    script = """
import os, signal, sys, time, weakref
from search.preemption import handle_stop_signals, interrupted_status
signal.signal(signal.SIGINT, signal.default_int_handler)
handle_stop_signals()
class Held: pass
held = Held()
def callback(ref):
    os.kill(os.getpid(), signal.SIGTERM)
    for _ in range(10000): pass  # the handler runs here, inside the callback
ref = weakref.ref(held, callback)
try:
    del held
    time.sleep(10)
    print("lost")
except KeyboardInterrupt:
    print("stopped", *interrupted_status())
"""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], cwd=PROJECT, env=ENV, capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.split() == ["stopped", "SIGTERM", "143"], (done.stdout, done.stderr)
    assert time.monotonic() - started < 8, "the interrupt waited for the 10 s sleep to end"
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
