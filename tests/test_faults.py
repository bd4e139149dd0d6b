"""The fault suite: faults are injected and survived; finished trials are kept, nothing runs twice.

Trial-level faults are injected through the trainer's ``fault.*`` keys (NaN at a step, an exception at
a step, SIGKILL of the worker at a step — once), set on one cell of a study with a space condition.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from search import tracking
from search.run import main as run_main
from trainers import checkpoint as ckpt
from trainers.faults import CRASH_ENV
from trainers.loop import DivergedError, train

from processes import kill_9_and_wait
from store_fixtures import new_mlflow_store
from test_search_e2e import ENV, PROJECT, mlflow_runs, optuna_states, run_cli, start_cli, wait_until_complete

TINY = {"dataset": "digits", "ch": 4, "batch_size": 16, "steps": 6, "eval_every": 2, "keep_checkpoints": 3}


def test_crash_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    train(TINY | {"steps": 4}, workdir=tmp_path, evaluator=None)  # checkpoints at steps 2 and 4
    real_save = torch.save

    def crash(obj, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"half a checkp")  # a partial write, then the process "dies"
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        train(TINY, workdir=tmp_path, resume_from=tmp_path, evaluator=None)
    monkeypatch.setattr(torch, "save", real_save)
    state, path = ckpt.load_latest(tmp_path)
    assert state["step"] == 4 and path.name.endswith("000000004")
    assert [p.name for p in ckpt.checkpoint_dirs(tmp_path)][-1].endswith("000000004")
    last = train(TINY, workdir=tmp_path, resume_from=tmp_path, evaluator=None)
    assert last["step"] == 6


def test_corrupted_checkpoint_falls_back_to_the_previous(tmp_path):
    train(TINY, workdir=tmp_path, evaluator=None)
    newest = ckpt.checkpoint_dirs(tmp_path)[-1]
    data = (newest / ckpt.STATE_FILE).read_bytes()
    (newest / ckpt.STATE_FILE).write_bytes(data[: len(data) // 3])
    state, path = ckpt.load_latest(tmp_path)
    assert state["step"] == 4 and path != newest
    state, path = ckpt.load_latest(newest)  # asked for the corrupted one by name: its predecessor
    assert state["step"] == 4


def test_injected_nan_raises_diverged_error_not_a_metric(tmp_path):
    reports = []
    with pytest.raises(DivergedError) as info:
        train(TINY | {"fault.nan_at_step": 3}, lambda m, c: reports.append(m), workdir=tmp_path, evaluator=None)
    assert info.value.step == 3
    assert [m["step"] for m in reports] == [2]


def test_fault_seeds_limit_the_injection_to_those_seeds(tmp_path):
    faulty = TINY | {"fault.nan_at_step": 3, "fault.seeds": [1]}
    assert train(faulty | {"seed": 0}, workdir=tmp_path / "s0", evaluator=None)["step"] == 6  # not seed 0's
    with pytest.raises(DivergedError):
        train(faulty | {"seed": 1}, workdir=tmp_path / "s1", evaluator=None)


def test_same_space_twice_at_once_is_refused(tmp_path, capsys):
    root = tmp_path / "runs"
    root.mkdir()
    with FileLock(str(root / ".smoke.lock")):
        assert run_main(["space=smoke", f"root={root}"]) == 2
    err = capsys.readouterr().err
    assert "already running" in err and "Traceback" not in err
    assert not (root / "optuna.db").exists()


def test_unreachable_tracking_uri_fails_before_any_trial(tmp_path, capsys):
    root = tmp_path / "runs"
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert run_main(["space=smoke", f"root={root}", f"tracking_uri=http://127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert "unreachable" in err and "tracking_uri" in err
    assert not (root / "optuna.db").exists() and not (root / "ray").exists()


def test_tracking_server_that_refuses_our_credentials_fails_before_any_store(tmp_path, capsys):
    """A server behind basic auth answers /health to anyone and 401 to the API without credentials."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class BasicAuthServer(BaseHTTPRequestHandler):
        def do_GET(self):
            status, body = (200, b"OK") if self.path == "/health" else (401, json.dumps(
                {"error_code": "UNAUTHENTICATED", "message": "You are not authenticated."}).encode())
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), BasicAuthServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    root = tmp_path / "runs"
    try:
        uri = f"http://127.0.0.1:{server.server_address[1]}"
        assert run_main(["space=smoke", f"root={root}", f"tracking_uri={uri}"]) == 2
    finally:
        server.shutdown()
    err = capsys.readouterr().err.strip()
    assert err == (f"error: tracking_uri={uri} refuses us (HTTP 401 UNAUTHENTICATED); set MLFLOW_TRACKING_USERNAME "
                   f"and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) to an account of that server")
    assert not (root / "optuna.db").exists() and not (root / "ray").exists()


FAULT_SPACE = """
name: {name}
description: fault injection
metric: fid
sampler: grid
max_concurrent: 2
seeds: 1
fixed: {{dataset: digits, ch: 4, batch_size: 32, steps: 20, eval_every: 10, eval.num_samples: 200,
        eval.judge_epochs: 15}}
params:
  method: {{choice: [dcgan]}}
  imbalance: {{choice: [1, 10, 100]}}
  {fault}: {{choice: [15], when: {{imbalance: 10}}}}
"""


def fault_space(tmp_path: Path, name: str, fault: str) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(FAULT_SPACE.format(name=name, fault=fault))
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["fault.nan_at_step", "fault.raise_at_step"])
def test_failing_trial_is_failed_everywhere_and_the_study_goes_on(tmp_path, fault):
    root = tmp_path / "runs"
    proc = run_cli([f"space={fault_space(tmp_path, 'faulty', fault)}", f"root={root}"], timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert optuna_states(root, "faulty") == {"COMPLETE": 2, "FAIL": 1}
    _, parents, children = mlflow_runs(root, "faulty")
    assert sorted(c.info.status for c in children) == ["FAILED", "FINISHED", "FINISHED"]
    failed = next(c for c in children if c.info.status == "FAILED")
    assert failed.data.params["imbalance"] == "10.0"
    assert failed.data.metrics["step"] == 10  # what it reported before failing is kept, nothing after
    assert "(1 failed)" in proc.stdout
    # the report still comes out, counts the failed trial in its cell and enters it at the study's penalty (the
    # untrained generator's fid on digits); the metrics with no penalty say it was excluded
    text = (root / "reports" / "faulty" / "report.md").read_text()
    from trainers.metrics.untrained import UNTRAINED

    penalty = UNTRAINED["digits"]["fid"]
    row = f"| dcgan | 10 | 15 | 1 | 1 | {penalty:.3g} (n=1, 1 failed at {penalty:g}) | —; 1 failed, excluded |"
    assert "of which failed: 1; unfinished" in text and row in text, text


@pytest.mark.slow
def test_killed_trial_worker_is_retried_from_its_checkpoint(tmp_path):
    root = tmp_path / "runs"
    proc = run_cli([f"space={fault_space(tmp_path, 'killed', 'fault.kill_at_step')}", f"root={root}"], timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert optuna_states(root, "killed") == {"COMPLETE": 3}
    client, _, children = mlflow_runs(root, "killed")
    assert len(children) == 3 and all(c.info.status == "FINISHED" for c in children)
    killed = next(c for c in children if c.data.params["imbalance"] == "10.0")
    steps = [m.step for m in client.get_metric_history(killed.info.run_id, "fid")]
    assert steps == [10, 20], f"resumed from the step-10 checkpoint, each evaluation logged once: {steps}"


@pytest.mark.slow
def test_sigint_then_resume_completes_the_study(tmp_path):
    root = tmp_path / "runs"
    args = ["space=smoke", f"root={root}", "max_concurrent=1", "fixed.steps=60", "fixed.eval_every=20"]
    proc = start_cli(args)
    wait_until_complete(root, "smoke", proc)
    time.sleep(3)
    os.kill(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    resumed = run_cli(args + ["resume=true"], timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    states = optuna_states(root, "smoke")
    assert states.get("COMPLETE") == 4 and "RUNNING" not in states
    _, parents, children = mlflow_runs(root, "smoke")
    finished = [c for c in children if c.info.status == "FINISHED"]
    assert len(parents) == 1 and len(finished) == 4
    assert len({c.data.tags["ray.trial_id"] for c in children}) == len(children)


@pytest.mark.slow
def test_two_spaces_share_a_root_without_interfering(tmp_path):
    root = tmp_path / "runs"
    spaces = [fault_space(tmp_path, name, "fault.raise_at_step") for name in ("first", "second")]
    # make both spaces fault-free: the fault applies to a cell that does not exist in them
    for path in spaces:
        Path(path).write_text(Path(path).read_text().replace("[1, 10, 100]", "[1, 100]")
                              .replace("  fault.raise_at_step: {choice: [15], when: {imbalance: 10}}\n", ""))
    procs = [subprocess.Popen([sys.executable, "-m", "search.run", f"space={p}", f"root={root}", "max_concurrent=1"],
                              cwd=PROJECT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for p in spaces]
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    for name in ("first", "second"):
        assert optuna_states(root, name) == {"COMPLETE": 2}
        _, parents, children = mlflow_runs(root, name)
        assert len(parents) == 1 and len(children) == 2


def optuna_trials(root: Path, study: str) -> list:
    import optuna

    storage = optuna.storages.RDBStorage(f"sqlite:///{root / 'optuna.db'}")
    return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)


@pytest.mark.slow
def test_driver_crash_stops_cleanly_and_resume_finishes_the_study(tmp_path):
    """An exception in the driver after the stores exist (raised from a Tune callback by the test-only
    LTGAN_TEST_DRIVER_CRASH_AFTER): exit 1, one line saying what happened and how to resume, the MLflow
    parent FAILED and the runs of unfinished trials KILLED; resume=true then finishes the study with one
    COMPLETE Optuna trial per configuration (the one told before the crash untouched), one MLflow run
    per trial and every evaluation logged once."""
    root = tmp_path / "runs"
    args = ["space=smoke", "num_samples=2", "seeds=2", "max_concurrent=2"]  # 2 configurations x 2 seeds
    crashed = run_cli([*args, f"root={root}"], env={**ENV, CRASH_ENV: "2"}, timeout=900)
    assert crashed.returncode == 1, crashed.stderr[-3000:]
    last = crashed.stderr.strip().splitlines()[-1]
    # the crash comes at the first trial result after 2 completions; when a third trial's last result came
    # before the second completion and it completes before any other result, the crash reports 3
    crash = re.match(rf"error: study 'smoke' stopped on InjectedDriverCrash: injected by {CRASH_ENV}=2 after "
                     rf"(\d) completed trials \(traceback in {re.escape(str(root))}/logs/smoke-crash-", last)
    assert crash and int(crash.group(1)) in (2, 3), last
    done = int(crash.group(1))
    resume = f"python -m search.run {' '.join(args)} root={root} resume=true"
    assert last.endswith(f"; MLflow: study run FAILED, {last.split('FAILED, ')[1].split(' ')[0]} unfinished trial "
                         f"run(s) KILLED; resume it with: {resume}"), last
    assert "Traceback" in next((root / "logs").glob("smoke-crash-*.txt")).read_text()
    # the stores as the crash left them: a configuration whose replicates both finished is COMPLETE
    # (never FAIL), any other still RUNNING for the resumed searcher to finish. Which two trials finished
    # first depends on the workers' timing (usually both replicates of the first configuration; on a slow
    # worker start, the first replicate of each), so the expected states are read from MLflow's runs
    trials = optuna_trials(root, "smoke")
    _, parents, children = mlflow_runs(root, "smoke")
    assert [p.info.status for p in parents] == ["FAILED"]
    statuses = sorted(c.info.status for c in children)
    assert statuses.count("FINISHED") == done and "RUNNING" not in statuses and set(statuses) <= {"FINISHED", "KILLED"}
    finished_seeds: dict[float, int] = {}
    for c in children:
        if c.info.status == "FINISHED":
            rho = float(c.data.params["imbalance"])
            finished_seeds[rho] = finished_seeds.get(rho, 0) + 1
    whole = {rho for rho, n in finished_seeds.items() if n == 2}
    assert len(trials) == 2 and all(t.state.name in ("COMPLETE", "RUNNING") for t in trials)
    assert {float(t.params["imbalance"]) for t in trials if t.state.name == "COMPLETE"} == whole
    told = [t for t in trials if t.state.name == "COMPLETE"]

    resumed = run_cli([*args, f"root={root}", "resume=true"], timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trials = optuna_trials(root, "smoke")
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == 2 and not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    assert sorted(t.params["imbalance"] for t in complete) == [1, 10]
    for before in told:  # told once, before the crash
        again = next(t for t in complete if t.number == before.number)
        assert (again.values, again.user_attrs, again.datetime_complete) == (before.values, before.user_attrs,
                                                                              before.datetime_complete)
    client, parents, children = mlflow_runs(root, "smoke")
    assert [p.info.status for p in parents] == ["FINISHED"]
    trial_ids = [c.data.tags["ray.trial_id"] for c in children]
    assert len(trial_ids) == len(set(trial_ids)), "a trial was logged into two MLflow runs"
    finished = [c for c in children if c.info.status == "FINISHED"]
    assert sorted((c.data.params["imbalance"], c.data.params["seed"]) for c in finished) == [
        ("1.0", "0"), ("1.0", "1"), ("10.0", "0"), ("10.0", "1")]
    assert not [c for c in children if c.info.status == "RUNNING"]
    for run in finished:  # a trial resumed from its checkpoint does not log a step twice
        assert [m.step for m in client.get_metric_history(run.info.run_id, "fid")] == [10, 20]
        assert [a.path for a in client.list_artifacts(run.info.run_id, "eval")] == [
            "eval/step_000000010", "eval/step_000000020"]


def test_stopped_runs_are_settled_by_what_ray_restored(tmp_path):
    """close_runs: the runs a stopped driver left open get the status of their restored trial."""
    from mlflow.tracking import MlflowClient

    new_mlflow_store(tmp_path / "mlflow.db")
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("x", artifact_location=(tmp_path / "a").as_uri())
    parent = client.create_run(experiment).info.run_id
    runs = {}
    for trial, status in (("done", "KILLED"), ("failed", "RUNNING"), ("resumed", "KILLED"), ("gone", "RUNNING"),
                          ("finished", "FINISHED")):
        runs[trial] = client.create_run(experiment, tags={"mlflow.parentRunId": parent, tracking.TAG_TRIAL: trial})
        client.set_terminated(runs[trial].info.run_id, status=status) if status != "RUNNING" else None
    restored = {"done": "TERMINATED", "failed": "ERROR", "resumed": "PENDING", "finished": "TERMINATED"}
    assert tracking.close_runs(client, experiment, parent, restored) == 3
    status = {trial: client.get_run(run.info.run_id).info.status for trial, run in runs.items()}
    assert status == {"done": "FINISHED", "failed": "FAILED", "resumed": "KILLED", "gone": "KILLED",
                      "finished": "FINISHED"}
    assert tracking.mark_stopped(client.tracking_uri, experiment, parent, "FAILED") == (
        "MLflow: study run FAILED, 0 unfinished trial run(s) KILLED")
    assert client.get_run(parent).info.status == "FAILED"


@pytest.mark.slow
def test_resources_larger_than_the_machine_are_refused(tmp_path):
    root = tmp_path / "runs"
    proc = run_cli(["space=smoke", f"root={root}", "resources.cpu=512"], timeout=300)
    assert proc.returncode == 2 and "resources.cpu" in proc.stderr and "Traceback" not in proc.stderr
    assert not (root / "optuna.db").exists() and not (root / "mlflow.db").exists()


PENALTY_SPACE = """
name: penalised
description: fault.seeds
metric: fid
sampler: grid
max_concurrent: 2
seeds: [0, 1]
failure_value: {fid: 1000.0}
fixed: {dataset: digits, ch: 4, batch_size: 32, steps: 20, eval_every: 10, eval.num_samples: 200,
        eval.judge_epochs: 15, fault.nan_at_step: 15, fault.seeds: [1]}
params:
  method: {choice: [dcgan]}
"""


@pytest.mark.slow
def test_a_replicate_failed_by_fault_seeds_enters_optunas_value_at_its_penalty(tmp_path):
    import optuna

    from search.stores import Stores

    root = tmp_path / "runs"
    path = tmp_path / "penalised.yaml"
    path.write_text(PENALTY_SPACE)
    proc = run_cli([f"space={path}", f"root={root}"], timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trial = Stores.at(root).load_study("penalised").trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.user_attrs["failed_replicates"] == 1
    survived, failed = trial.user_attrs["fid/replicates"]
    assert failed is None and survived is not None  # only seed 1's replicate failed
    assert trial.value == pytest.approx((survived + 1000.0) / 2) and trial.value != pytest.approx(survived)


def test_a_trial_whose_checkpoint_is_gone_restarts_from_scratch(tmp_path, capsys):
    """RestartLostTrials: a trial Ray is about to restore from a checkpoint whose folder is gone loses its
    checkpoint bookkeeping (Ray then starts it afresh); one whose checkpoint is there keeps it."""
    from types import SimpleNamespace

    from ray.train import Checkpoint, CheckpointConfig
    from ray.train._internal.checkpoint_manager import _CheckpointManager
    from ray.train._internal.session import _TrainingResult
    from ray.tune.trainable.metadata import _TrainingRunMetadata

    from search.callback import RestartLostTrials

    def trial(path) -> SimpleNamespace:
        metadata = _TrainingRunMetadata()
        metadata.checkpoint_manager = _CheckpointManager(CheckpointConfig(num_to_keep=2))
        metadata.checkpoint_manager.register_checkpoint(
            _TrainingResult(checkpoint=Checkpoint.from_directory(str(path)), metrics={"step": 20}))
        return SimpleNamespace(trial_id="t1", run_metadata=metadata, invalidate_json_state=lambda: None)

    kept = tmp_path / "trial_t0" / "checkpoint_000000"
    kept.mkdir(parents=True)
    there = trial(kept)
    RestartLostTrials().on_trial_start(0, [], there)
    assert there.run_metadata.checkpoint_manager.latest_checkpoint_result.checkpoint.path == str(kept)
    lost = trial(tmp_path / "trial_t1" / "checkpoint_000000")  # the trial's folder deleted
    RestartLostTrials().on_trial_start(0, [], lost)
    manager = lost.run_metadata.checkpoint_manager
    assert manager.latest_checkpoint_result is None and manager.checkpoint_config.num_to_keep == 2
    assert "# trial t1: its checkpoint" in capsys.readouterr().out


@pytest.mark.slow
def test_an_unfinished_trial_whose_folder_is_gone_restarts_and_no_resume_loops(tmp_path):
    """kill -9 of the driver's group, then the folder of the trial it was running deleted (checkpoints and
    all): the doctor notes it, the resume restarts that trial from scratch (it used to be marked FAIL for
    good), the study ends with every configuration COMPLETE once and the stores agree; the trial's MLflow
    run holds each step once; a second resume has nothing left to run and changes no value."""
    import shutil

    from search import store_checks
    from search.doctor import main as doctor_main

    root = tmp_path / "runs"
    # 300 steps: a trial caught at its first evaluation still runs well past the 3 s wait below, even the
    # study's last (its cheapest cells run last: Space.run_order); at 100 steps the last could end first
    args = ["space=smoke", f"root={root}", "max_concurrent=1", "fixed.steps=300", "fixed.eval_every=60",
            "report=false"]
    proc = start_cli(args)
    wait_until_complete(root, "smoke", proc)
    experiment = root / "ray" / "smoke"

    def running_with_a_checkpoint() -> bool:  # a trial at its first evaluation (of 5)
        for trial in experiment.glob("trial_*"):
            lines = (trial / "result.json").read_text().splitlines() if (trial / "result.json").exists() else []
            if any(trial.glob("checkpoint_*")) and lines and json.loads(lines[-1]).get("step") == 60:
                return True
        return False

    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not running_with_a_checkpoint():
        time.sleep(0.3)
    time.sleep(3)  # Ray saves its experiment state every 2 s (TUNE_GLOBAL_CHECKPOINT_S)
    assert proc.poll() is None, "the study ended before it could be killed"
    left = kill_9_and_wait(proc)  # (a trial worker still alive would write its folder again after the rmtree)
    assert not left, f"still running 30 s after kill -9 of the driver's group: {left}"
    state = store_checks.searcher_state(store_checks.newest(experiment, "searcher-state-*.pkl"))
    unfinished = [trial_id for config in state["configs"].values() if not config["told"]
                  for seed, trial_id in config["ray_trials"].items() if seed not in config["values"]]
    assert len(unfinished) == 1, state
    lost = experiment / f"trial_{unfinished[0]}"
    assert any(lost.glob("checkpoint_*")), "the trial to lose had no checkpoint yet"
    shutil.rmtree(lost)

    doctor = subprocess.run([sys.executable, "-m", "search.doctor", "space=smoke", f"root={root}"], cwd=PROJECT,
                            env=ENV, capture_output=True, text=True, timeout=300)
    assert doctor.returncode == 0 and f"Ray trial {unfinished[0]}" in doctor.stdout, doctor.stdout
    assert "restarts it from scratch" in doctor.stdout
    resumed = run_cli([*args, "resume=true"], timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"# trial {unfinished[0]}: its checkpoint {lost}/checkpoint_" in resumed.stdout, resumed.stdout[-3000:]
    # (a configuration asked after Ray's last save is told FAIL and its cell queued again: the documented
    # reconciliation; it then runs once, so every cell is COMPLETE exactly once)
    trials = optuna_trials(root, "smoke")
    complete = [t.params for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == 4 and all(t.state.name in ("COMPLETE", "FAIL") for t in trials), trials
    assert all(t.params in complete for t in trials), trials
    assert doctor_main(["space=smoke", f"root={root}"]) == 0
    client, _, children = mlflow_runs(root, "smoke")
    assert len([c for c in children if c.info.status == "FINISHED"]) == 4
    assert len({c.data.tags["ray.trial_id"] for c in children}) == len(children)
    rerun = next(c for c in children if c.data.tags["ray.trial_id"] == unfinished[0])
    assert [m.step for m in client.get_metric_history(rerun.info.run_id, "fid")] == [60, 120, 180, 240, 300]
    values = {t.number: t.values for t in optuna_trials(root, "smoke")}

    states = optuna_states(root, "smoke")
    again = run_cli([*args, "resume=true"], timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {t.number: t.values for t in optuna_trials(root, "smoke")} == values
    assert optuna_states(root, "smoke") == states
