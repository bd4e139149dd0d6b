"""The Tune callback that turns each trial's reports and checkpoints into its MLflow child run.

It runs in the driver: trials never open the store (on a cluster they could not reach the driver's
SQLite file); their checkpoints reach the driver through Ray's trial storage.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ray import tune

from search import tracking
from search.trainable import GPU_IDS
from trainers.checkpoint import DATA_FILE
from trainers.config import flat_dict, make_config

RAY_RESULT_KEYS = {
    "timestamp", "checkpoint_dir_name", "done", "training_iteration", "trial_id", "date",
    "time_this_iter_s", "time_total_s", "pid", "hostname", "node_ip", "config", "time_since_restore",
    "iterations_since_restore", "experiment_tag", "should_checkpoint",
}
BATCH = {"params": 100, "metrics": 500}  # MLflow's log_batch limits


def _numeric(value: Any) -> float | None:
    if isinstance(value, (bool, int, float)):
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
        self._gpus_tagged: set[str] = set()
        self._commit = tracking.git_commit()

    @property
    def client(self):
        if self._client is None:
            self._client = tracking.client_for(self.tracking_uri)
        return self._client

    def run_id(self, trial) -> str:
        tid = trial.trial_id
        if tid in self._runs:
            return self._runs[tid]
        found = self.client.search_runs([self.experiment_id], filter_string=(
            f"tags.`{tracking.TAG_TRIAL}` = '{tid}' and tags.`mlflow.parentRunId` = '{self.parent_run_id}'"),
            max_results=1)
        if found:
            run_id = found[0].info.run_id
            self.client.update_run(run_id, status="RUNNING")
        else:
            run_id = self._create(trial)
        self._runs[tid] = run_id
        return run_id

    def _create(self, trial) -> str:
        from mlflow.entities import Param

        config = dict(trial.config)  # the resolved trial dict: shared keys and this method's knobs only
        cfg = make_config(config)
        sampled = self.space.sampled(config)
        run = self.client.create_run(self.experiment_id, run_name=tracking.run_name(self.space, config), tags={
            "mlflow.parentRunId": self.parent_run_id, tracking.TAG_TRIAL: trial.trial_id,
            tracking.TAG_SPACE: self.space.name, tracking.TAG_ROLE: "trial", "method": cfg.method,
            "seed": str(cfg.seed), "git_commit": self._commit, tracking.TAG_SAMPLED: json.dumps(sampled, default=str)})
        params = [Param(k, str(v)) for k, v in flat_dict(cfg).items()]
        for start in range(0, len(params), BATCH["params"]):
            self.client.log_batch(run.info.run_id, params=params[start:start + BATCH["params"]])
        self.client.log_dict(run.info.run_id, {"sampled": sampled, "config": flat_dict(cfg)}, "trial_config.json")
        return run.info.run_id

    def on_step_begin(self, iteration, trials, **info):
        if not self._orphans_closed:  # once per driver: runs a killed driver left behind
            self._orphans_closed = True
            tracking.close_orphans(self.client, self.experiment_id, self.parent_run_id, {t.trial_id for t in trials})

    def on_trial_start(self, iteration, trials, trial, **info):
        self.run_id(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        from mlflow.entities import Metric

        run_id = self.run_id(trial)
        if GPU_IDS in result and run_id not in self._gpus_tagged:
            self.client.set_tag(run_id, "ray.gpu_ids", str(result[GPU_IDS]))
            self._gpus_tagged.add(run_id)
        step = int(result.get("step", result.get("training_iteration", 0)))
        now = int(time.time() * 1000)
        metrics = [Metric(key, _numeric(value), now, step) for key, value in result.items()
                   if key not in RAY_RESULT_KEYS and _numeric(value) is not None]
        for start in range(0, len(metrics), BATCH["metrics"]):
            self.client.log_batch(run_id, metrics=metrics[start:start + BATCH["metrics"]])

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        run_id = self.run_id(trial)
        with checkpoint.as_directory() as directory:
            directory = Path(directory)
            metrics_file = directory / "metrics.json"
            step = int(json.loads(metrics_file.read_text()).get("step", 0)) if metrics_file.exists() else 0
            data_file = directory / DATA_FILE
            if run_id not in self._data_logged and data_file.exists():
                if not self.client.get_run(run_id).inputs.dataset_inputs:  # a resumed trial logged it already
                    tracking.log_training_split(self.client, run_id, make_config(trial.config),
                                                json.loads(data_file.read_text()))
                self._data_logged.add(run_id)
            artifacts = directory / "artifacts"
            if artifacts.is_dir() and any(artifacts.iterdir()):
                self.client.log_artifacts(run_id, str(artifacts), artifact_path=f"eval/step_{step:09d}")
                tracking.log_evaluation_images(self.client, run_id, artifacts, step)

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
