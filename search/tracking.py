"""MLflow tracking, done in the driver: one parent run per study, one nested child run per trial.

Trials never open the store (on a cluster they could not reach the driver's SQLite file): a Tune
callback turns each trial's reports and checkpoints into its child run. A child run is found again
by its ``ray.trial_id`` tag, so a resumed or restarted trial logs into the same run.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
from pathlib import Path
from typing import Any

from ray import tune

from trainers.checkpoint import DATA_FILE
from trainers.config import ConfigError, flat_dict, make_config

RAY_RESULT_KEYS = {
    "timestamp", "checkpoint_dir_name", "done", "training_iteration", "trial_id", "date",
    "time_this_iter_s", "time_total_s", "pid", "hostname", "node_ip", "config", "time_since_restore",
    "iterations_since_restore", "experiment_tag", "should_checkpoint",
}
TAG_SPACE = "ltgan.space"
TAG_ROLE = "ltgan.role"
TAG_TRIAL = "ray.trial_id"


def store_uris(root: Path, tracking_uri: str | None) -> tuple[str, str | None]:
    """(tracking URI, artifact location) — SQLite + a local folder under ``root`` by default."""
    if tracking_uri:
        return tracking_uri, None
    return f"sqlite:///{(root / 'mlflow.db').resolve()}", (root / "mlartifacts").resolve().as_uri()


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def client_for(tracking_uri: str):
    from mlflow.tracking import MlflowClient
    return MlflowClient(tracking_uri=tracking_uri)


def check_reachable(tracking_uri: str, timeout_s: float = 10.0) -> None:
    """Fail before any trial starts when a remote tracking server cannot be reached."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request
    url = tracking_uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            if response.status >= 400:
                raise OSError(f"HTTP {response.status}")
    except (OSError, urllib.error.URLError) as e:
        raise ConfigError(f"tracking_uri={tracking_uri} is unreachable ({e}); start the server, fix the URI, "
                          f"or drop tracking_uri= to use the local store under root=") from None


def ensure_experiment(client, name: str, artifact_location: str | None) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    return client.create_experiment(name, artifact_location=(
        f"{artifact_location}/{name}" if artifact_location else None))


def find_parent_run(client, experiment_id: str, space_name: str):
    runs = client.search_runs([experiment_id], filter_string=(
        f"tags.`{TAG_ROLE}` = 'parent' and tags.`{TAG_SPACE}` = '{space_name}'"), max_results=5,
        order_by=["attributes.start_time DESC"])
    return runs[0] if runs else None


def start_parent_run(client, experiment_id: str, space, space_yaml: str) -> str:
    run = client.create_run(experiment_id, run_name=f"study:{space.name}", tags={
        TAG_ROLE: "parent", TAG_SPACE: space.name, "git_commit": git_commit(),
        "mlflow.note.content": space.description})
    params = {"metric": json.dumps(space.metric_arg), "mode": json.dumps(space.mode_arg),
              "sampler": space.sampler, "scheduler": json.dumps(space.scheduler),
              "num_samples": space.num_samples, "seeds": json.dumps(list(space.seeds)),
              "max_concurrent": space.max_concurrent}
    params.update({f"fixed.{k}": v for k, v in space.fixed.items()})
    for key, value in params.items():
        client.log_param(run.info.run_id, key, value)
    client.log_text(run.info.run_id, space_yaml, "space.yaml")
    return run.info.run_id


def _numeric(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return None


class MLflowTrialCallback(tune.Callback):
    """Mirrors every trial into a nested MLflow run of the study's parent run."""

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str, space):
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.space = space
        self._runs: dict[str, str] = {}
        self._client = None
        self._orphans_closed = False
        self._data_logged: set[str] = set()
        self._commit = git_commit()

    @property
    def client(self):
        if self._client is None:
            self._client = client_for(self.tracking_uri)
        return self._client

    def run_id(self, trial) -> str:
        tid = trial.trial_id
        if tid in self._runs:
            return self._runs[tid]
        found = self.client.search_runs([self.experiment_id], filter_string=(
            f"tags.`{TAG_TRIAL}` = '{tid}' and tags.`mlflow.parentRunId` = '{self.parent_run_id}'"),
            max_results=1)
        if found:
            run_id = found[0].info.run_id
            self.client.update_run(run_id, status="RUNNING")
        else:
            run_id = self._create(trial)
        self._runs[tid] = run_id
        return run_id

    def _create(self, trial) -> str:
        sampled = dict(trial.config)
        seed = sampled.get("seed")
        cfg = make_config(self.space.trial_config({k: v for k, v in sampled.items() if k != "seed"}, seed))
        method = cfg.method
        name = f"{method}-" + "-".join(f"{k}={v}" for k, v in sampled.items() if k not in ("method",))
        run = self.client.create_run(self.experiment_id, run_name=name[:250], tags={
            "mlflow.parentRunId": self.parent_run_id, TAG_TRIAL: trial.trial_id, TAG_SPACE: self.space.name,
            TAG_ROLE: "trial", "method": method, "seed": str(seed), "git_commit": self._commit,
            "sampled": json.dumps(sampled, default=str)})
        from mlflow.entities import Param
        params = [Param(k, str(v)) for k, v in flat_dict(cfg).items()]
        for start in range(0, len(params), 100):
            self.client.log_batch(run.info.run_id, params=params[start:start + 100])
        self.client.log_dict(run.info.run_id, {"sampled": sampled, "config": flat_dict(cfg)}, "trial_config.json")
        return run.info.run_id

    def on_step_begin(self, iteration, trials, **info):
        if not self._orphans_closed:  # once per driver: runs a killed driver left behind
            self._orphans_closed = True
            close_orphans(self.client, self.experiment_id, self.parent_run_id, {t.trial_id for t in trials})

    def on_trial_start(self, iteration, trials, trial, **info):
        self.run_id(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        from mlflow.entities import Metric
        run_id = self.run_id(trial)
        step = int(result.get("step", result.get("training_iteration", 0)))
        now = int(time.time() * 1000)
        metrics = []
        for key, value in result.items():
            number = _numeric(value)
            if key in RAY_RESULT_KEYS or number is None:
                continue
            metrics.append(Metric(key, number, now, step))
        for start in range(0, len(metrics), 500):
            self.client.log_batch(run_id, metrics=metrics[start:start + 500])

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        run_id = self.run_id(trial)
        with checkpoint.as_directory() as directory:
            directory = Path(directory)
            metrics_file = directory / "metrics.json"
            step = json.loads(metrics_file.read_text()).get("step", 0) if metrics_file.exists() else 0
            data_file = directory / DATA_FILE
            if run_id not in self._data_logged and data_file.exists():
                self._log_data(run_id, json.loads(data_file.read_text()))
            artifacts = directory / "artifacts"
            if artifacts.is_dir() and any(artifacts.iterdir()):
                self.client.log_artifacts(run_id, str(artifacts), artifact_path=f"eval/step_{int(step):09d}")

    def _log_data(self, run_id: str, info: dict[str, Any]) -> None:
        """The trial's training split as tags (shown and filterable in the UI) and as data.json."""
        self.client.set_tag(run_id, "minority_classes", json.dumps(info.get("minority_classes")))
        self.client.set_tag(run_id, "majority_classes", json.dumps(info.get("majority_classes")))
        self.client.set_tag(run_id, "train_counts", json.dumps(info.get("train_counts")))
        self.client.log_dict(run_id, info, DATA_FILE)
        self._data_logged.add(run_id)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.client.set_terminated(self.run_id(trial), status="FINISHED")

    def on_trial_error(self, iteration, trials, trial, **info):
        run_id = self.run_id(trial)
        error = getattr(trial, "error_file", None)
        message = ""
        if error and Path(error).exists():
            message = Path(error).read_text()[-2000:]
        self.client.set_tag(run_id, "error", message or "trial failed")
        self.client.set_terminated(run_id, status="FAILED")


def close_orphans(client, experiment_id: str, parent_run_id: str, live_trial_ids: set[str]) -> int:
    """Mark child runs left RUNNING by a killed driver whose trial Ray no longer knows as KILLED."""
    runs = client.search_runs([experiment_id], filter_string=(
        f"tags.`mlflow.parentRunId` = '{parent_run_id}' and attributes.status = 'RUNNING'"), max_results=10000)
    closed = 0
    for run in runs:
        if run.data.tags.get(TAG_TRIAL) not in live_trial_ids:
            client.set_terminated(run.info.run_id, status="KILLED")
            closed += 1
    return closed


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
