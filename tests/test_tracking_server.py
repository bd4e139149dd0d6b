"""A real MLflow tracking server (slow; CI runs them with --all): ``mlflow server`` on 127.0.0.1 with a
SQLite backend and proxied artifacts in a temp dir. The smoke study logs everything to it and resumes
against it with one run per trial; a server that stays down longer than the MLflow client's retry
window stops the study cleanly (never a hang), and resume=true after the server is back loses nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from test_search_e2e import ENV, PROJECT, free_port, optuna_states, run_cli, wait_until_complete

# the MLflow client's retry window shortened for the outage test: 2 retries, 1 s backoff factor
# (about 2 s of retries against a closed port instead of about 4 minutes by default)
SHORT_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


class Server:
    """``mlflow server`` in its own session (so that it, and only it, can be killed with its workers)."""

    def __init__(self, folder: Path, port: int):
        self.folder, self.port, self.proc = folder, port, None
        self.uri = f"http://127.0.0.1:{port}"
        self.artifacts = folder / "artifacts"

    def start(self) -> Server:
        mlflow = str(Path(sys.executable).parent / "mlflow")
        command = [mlflow, "server", "--backend-store-uri", f"sqlite:///{self.folder / 'mlflow.db'}",
                   "--artifacts-destination", str(self.artifacts), "--serve-artifacts",
                   "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        log = open(self.folder / "server.log", "ab")
        self.proc = subprocess.Popen(command, cwd=self.folder, env=ENV, stdout=log, stderr=log,
                                     start_new_session=True)
        deadline = time.time() + 120
        while time.time() < deadline:
            assert self.proc.poll() is None, (self.folder / "server.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        raise AssertionError(f"mlflow server did not answer on {self.uri}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=60)

    def client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(self.uri)


@pytest.fixture
def server(tmp_path):
    folder = tmp_path / "server"
    folder.mkdir()
    server = Server(folder, free_port()).start()
    yield server
    server.kill()


def study_runs(client, experiment: str = "smoke"):
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    return ([r for r in runs if r.data.tags.get("ltgan.role") == "parent"],
            [r for r in runs if r.data.tags.get("ltgan.role") == "trial"])


def artifact_paths(client, run_id: str, path: str | None = None) -> list[str]:
    out = []
    for item in client.list_artifacts(run_id, path):
        out += artifact_paths(client, run_id, item.path) if item.is_dir else [item.path]
    return out


def check_complete_study(client, steps: list[int]) -> None:
    """Everything of a finished smoke study is on the server, each trial in one run, each step once."""
    parents, children = study_runs(client)
    assert [p.info.status for p in parents] == ["FINISHED"]
    assert len({c.data.tags["ray.trial_id"] for c in children}) == len(children)
    finished = [c for c in children if c.info.status == "FINISHED"]
    # a trial Ray had not saved when the driver stopped is run again under a new trial; its run is KILLED
    assert all(c.info.status == "KILLED" for c in children if c not in finished)
    assert sorted((c.data.tags["method"], c.data.params["imbalance"]) for c in finished) == [
        ("damage", "1.0"), ("damage", "10.0"), ("dcgan", "1.0"), ("dcgan", "10.0")]
    for child in finished:
        run_id = child.info.run_id
        assert [m.step for m in client.get_metric_history(run_id, "fid")] == steps
        assert [m.step for m in client.get_metric_history(run_id, "fid_minority")] == steps
        assert "fid_class/9" in child.data.metrics and child.data.metrics["step"] == steps[-1]
        files = artifact_paths(client, run_id)
        for step in steps:
            assert f"eval/step_{step:09d}/samples_step{step}.png" in files
            assert f"eval/step_{step:09d}/class_hist_step{step}.png" in files
        for key in ("samples", "class_hist"):
            logged = sorted(int(p.split("+step+")[1].split("+")[0]) for p in files
                            if p.startswith(f"images/{key}+step+") and p.endswith(".png"))
            assert logged == steps, files
        assert "data.json" in files and "trial_config.json" in files
        assert [i.dataset.name for i in client.get_run(run_id).inputs.dataset_inputs] == [
            f"digits-exp-ρ{float(child.data.params['imbalance']):g}"]
    report = artifact_paths(client, parents[0].info.run_id, "report")
    assert "report/report.md" in report and "report/per_class.png" in report


@pytest.mark.slow
def test_smoke_study_logs_everything_to_a_tracking_server_and_resumes_against_it(server, tmp_path):
    root = tmp_path / "runs"
    args = ["space=smoke", f"root={root}", f"tracking_uri={server.uri}"]
    proc = run_cli(args, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert optuna_states(root, "smoke") == {"COMPLETE": 4}
    client = server.client()
    check_complete_study(client, [10, 20])
    assert len(study_runs(client)[1]) == 4
    # the server kept the artifacts (proxied to its destination); nothing went to the local store
    stored = [p.name for p in server.artifacts.rglob("*.png")]
    assert "samples_step20.png" in stored and "per_class.png" in stored
    assert not (root / "mlflow.db").exists() and not (root / "mlartifacts").exists()
    # resume=true against the server: the finished study stays one run per trial
    again = run_cli([*args, "resume=true"], timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    check_complete_study(client, [10, 20])
    assert len(study_runs(client)[0]) == 1


@pytest.mark.slow
def test_tracking_server_down_longer_than_the_retry_window_stops_then_resumes_losing_nothing(server, tmp_path):
    root = tmp_path / "runs"
    args = ["space=smoke", f"root={root}", f"tracking_uri={server.uri}", "max_concurrent=1", "fixed.steps=40"]
    log = open(tmp_path / "driver.log", "w+")
    driver = subprocess.Popen([sys.executable, "-m", "search.run", *args], cwd=PROJECT,
                              env={**ENV, **SHORT_RETRIES}, stdout=log, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        wait_until_complete(root, "smoke", driver)  # one trial finished, the next one under way
        assert driver.poll() is None, "the study ended before the server could be killed"
        server.kill()
        down = time.time()
        _, stderr = driver.communicate(timeout=300)  # never a hang: it stops on its own
        stopped_after = time.time() - down
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    print(f"\nserver down -> driver exited after {stopped_after:.1f} s (retry window shortened: {SHORT_RETRIES})")
    assert driver.returncode == 1, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: study 'smoke' stopped on TrackingError: MLflow did not take "), last
    assert ("the MLflow runs stay as they were (tracking server unreachable: " in last
            and last.endswith(f"resume=true settles them; resume it with: python -m search.run space=smoke "
                              f"tracking_uri={server.uri} max_concurrent=1 fixed.steps=40 root={root} resume=true"))
    assert stopped_after < 120
    states = optuna_states(root, "smoke")
    assert states.get("COMPLETE", 0) >= 1 and states.get("COMPLETE", 0) < 4

    server.start()  # back, on the same port with the same stores
    resumed = run_cli([*args, "resume=true"], timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert optuna_states(root, "smoke").get("COMPLETE") == 4
    assert "RUNNING" not in optuna_states(root, "smoke")
    check_complete_study(server.client(), [10, 20, 30, 40])
