"""The Tune callback that turns each trial's reports and checkpoints into its MLflow child run.

It runs in the driver: trials never open the store (on a cluster they could not reach the driver's
SQLite file); their checkpoints reach the driver through Ray's trial storage.

When the store fails (a tracking server down for longer than the MLflow client's own retries, a full
disk under a local store) the study stops instead of going on without its records: the failure is
raised where Ray lets it end the run, before Ray saves an experiment state that counts the event as
done, so ``resume=true`` replays what was not recorded. Ray swallows what ``on_checkpoint``,
``on_trial_complete`` and ``on_trial_error`` raise (it would drop the checkpoint or fail the trial),
so a failure there is kept and raised at the next step of Ray's loop. A resumed trial reports again
from its last checkpoint: the steps its run already holds are not logged twice.

Its jobs, one class each: ``TrialRuns`` finds or creates a trial's run, ``SentSteps`` remembers the last
step each run holds, ``FailureLatch`` keeps the store's first failure, ``CheckpointArtifacts`` logs what a
checkpoint carries; ``CallbackDriver`` holds them for one driver process (no pickle carries them).
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray import tune

from search import tracking
from search.trainable import GPU_IDS
from trainers.checkpoint import DATA_FILE
from trainers.config import flat_dict, make_config
from trainers.fields import one_line

RAY_RESULT_KEYS = {
    "timestamp", "checkpoint_dir_name", "done", "training_iteration", "trial_id", "date",
    "time_this_iter_s", "time_total_s", "pid", "hostname", "node_ip", "config", "time_since_restore",
    "iterations_since_restore", "experiment_tag", "should_checkpoint",
}
BATCH = {"params": 100, "metrics": 500}  # MLflow's log_batch limits
EVAL_DIR = "eval"  # eval/step_<9 digits>/: the PNGs of one evaluation


class TrackingError(RuntimeError):
    """The MLflow store did not take what the study sent it (after the client's own retries)."""


def _numeric(value: Any) -> float | None:
    if isinstance(value, (bool, int, float)):
        return float(value)
    return None


class FailureLatch:
    """The first failure of the store, kept: once MLflow did not take something, every later event raises it,
    so nothing more is sent (or waited for)."""

    def __init__(self) -> None:
        self.failure: TrackingError | None = None

    def check(self) -> None:
        if self.failure is not None:
            raise self.failure

    @contextlib.contextmanager
    def sending(self, what: str):
        """The MLflow calls of one event; a failure becomes the study's TrackingError, raised now and kept."""
        self.check()
        try:
            yield
        except Exception as e:
            self.failure = TrackingError(f"MLflow did not take {what} ({type(e).__name__}: {one_line(e)[:300]})")
            raise self.failure from e


class SentSteps:
    """The last step whose metrics, and whose evaluation images, each run holds: a resumed trial reports again
    from its last checkpoint, and what its run already holds is not sent twice."""

    KINDS = ("metrics", "images")

    def __init__(self) -> None:
        self.last: dict[str, dict[str, int]] = {kind: {} for kind in self.KINDS}  # kind -> run id -> step
        # run id -> the (key, step) of the images a resumed run holds beyond its last eval/step_<k> folder: the
        # driver stopped between two images of one evaluation, and the rest of it is logged without them
        self.partial_images: dict[str, set[tuple[str, int]]] = {}

    def already_sent(self, kind: str, run_id: str, step: int) -> bool:
        return step <= self.last[kind].get(run_id, -1)

    def mark(self, kind: str, run_id: str, step: int) -> None:
        self.last[kind][run_id] = step

    def recall(self, client, run) -> None:
        """What a resumed trial's run already holds: its last ``step`` metric and its last eval/step_<k> folder."""
        run_id = run.info.run_id
        if "step" in run.data.metrics:
            self.mark("metrics", run_id, int(run.data.metrics["step"]))
        steps = [int(a.path.rsplit("_", 1)[1]) for a in client.list_artifacts(run_id, EVAL_DIR)
                 if a.is_dir and a.path.rsplit("_", 1)[-1].isdigit()]
        done = max(steps, default=-1)
        if steps:
            self.mark("images", run_id, done)
        self.partial_images[run_id] = {(key, step) for key, step in tracking.logged_images(client, run_id)
                                       if step > done}


class TrialRuns:
    """Finds or creates the child run of each trial (found again after a resume, by the trial's tag)."""

    def __init__(self, client, experiment_id: str, parent_run_id: str, space, commit: str,
                 sent: SentSteps) -> None:
        self.client, self.experiment_id, self.parent_run_id = client, experiment_id, parent_run_id
        self.space, self.commit, self.sent = space, commit, sent
        self.ids: dict[str, str] = {}  # Ray trial id -> MLflow run id

    def run_id(self, trial) -> str:
        tid = trial.trial_id
        if tid in self.ids:
            return self.ids[tid]
        found = self.client.search_runs([self.experiment_id], filter_string=(
            f"tags.`{tracking.TAG_TRIAL}` = '{tid}' and tags.`mlflow.parentRunId` = '{self.parent_run_id}'"),
            max_results=1)
        if found:
            run_id = found[0].info.run_id
            self.client.update_run(run_id, status="RUNNING")
            if not found[0].data.params:  # the store failed between creating the run and describing it
                config = dict(trial.config)
                self._describe(run_id, make_config(config), self.space.sampled(config))
            self.sent.recall(self.client, found[0])
        else:
            run_id = self._create(trial)
        self.ids[tid] = run_id
        return run_id

    def _create(self, trial) -> str:
        config = dict(trial.config)  # the resolved trial dict: shared keys and this method's knobs only
        cfg = make_config(config)
        sampled = self.space.sampled(config)
        run = self.client.create_run(self.experiment_id, run_name=tracking.run_name(self.space, config), tags={
            "mlflow.parentRunId": self.parent_run_id, tracking.TAG_TRIAL: trial.trial_id,
            tracking.TAG_SPACE: self.space.name, tracking.TAG_ROLE: "trial", "method": cfg.method,
            "seed": str(cfg.seed), "git_commit": self.commit, tracking.TAG_SAMPLED: json.dumps(sampled, default=str)})
        self._describe(run.info.run_id, cfg, sampled)
        return run.info.run_id

    def _describe(self, run_id: str, cfg, sampled: dict) -> None:
        """The trial's config as params and as trial_config.json (the params last: they say it is done)."""
        from mlflow.entities import Param

        flat = flat_dict(cfg)
        self.client.log_dict(run_id, {"sampled": sampled, "config": flat}, "trial_config.json")
        params = [Param(k, str(v)) for k, v in flat.items()]
        for start in range(0, len(params), BATCH["params"]):
            self.client.log_batch(run_id, params=params[start:start + BATCH["params"]])


class CheckpointArtifacts:
    """Logs what a trial's checkpoint carries to its run: the training split once, the evaluation images of
    each step once."""

    def __init__(self, client, sent: SentSteps) -> None:
        self.client, self.sent = client, sent
        self.data_logged: set[str] = set()  # run ids whose training split is logged

    def log(self, run_id: str, trial, checkpoint) -> None:
        with checkpoint.as_directory() as directory:
            directory = Path(directory)
            metrics_file = directory / "metrics.json"
            step = int(json.loads(metrics_file.read_text()).get("step", 0)) if metrics_file.exists() else 0
            data_file = directory / DATA_FILE
            if run_id not in self.data_logged and data_file.exists():
                if not self.client.get_run(run_id).inputs.dataset_inputs:  # a resumed trial logged it already
                    tracking.log_training_split(self.client, run_id, make_config(trial.config),
                                                json.loads(data_file.read_text()))
                self.data_logged.add(run_id)
            artifacts = directory / "artifacts"
            if artifacts.is_dir() and any(artifacts.iterdir()) and not self.sent.already_sent("images", run_id, step):
                # the eval/step_<k> folder last: a resumed trial finds it only when the images went too
                tracking.log_evaluation_images(self.client, run_id, artifacts, step,
                                               present=self.sent.partial_images.get(run_id, frozenset()))
                self.client.log_artifacts(run_id, str(artifacts), artifact_path=f"{EVAL_DIR}/step_{step:09d}")
                self.sent.mark("images", run_id, step)


@dataclass
class CallbackDriver:
    """What one driver process learns while it runs; no pickle carries it (a resumed driver starts empty)."""

    latch: FailureLatch
    sent: SentSteps
    runs: TrialRuns
    artifacts: CheckpointArtifacts
    runs_settled: bool = False  # the runs a stopped driver left open are closed (once per driver)
    gpus_tagged: set[str] = field(default_factory=set)  # run ids tagged with their GPUs

    @classmethod
    def start(cls, callback: MLflowTrialCallback) -> CallbackDriver:
        client = tracking.client_for(callback.tracking_uri)
        sent = SentSteps()
        runs = TrialRuns(client, callback.experiment_id, callback.parent_run_id, callback.space, callback.commit, sent)
        return cls(FailureLatch(), sent, runs, CheckpointArtifacts(client, sent))


class MLflowTrialCallback(tune.Callback):
    """Mirrors every trial into a nested MLflow run of the study's parent run."""

    CONFIG = ("tracking_uri", "experiment_id", "parent_run_id", "space", "commit")  # what a pickle carries

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str, space):
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.space = space
        self.commit = tracking.git_commit()
        self._driver: CallbackDriver | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.CONFIG}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Ray pickles the callback when the study starts; one pickled by an older version named the commit
        # ``_commit`` and carried its (then empty) driver state, which a driver starts afresh
        self.__dict__.update({key: state.get(key, state.get(f"_{key}")) for key in self.CONFIG}, _driver=None)

    @property
    def driver(self) -> CallbackDriver:
        if self._driver is None:
            self._driver = CallbackDriver.start(self)
        return self._driver

    @property
    def client(self):
        return self.driver.runs.client

    def run_id(self, trial) -> str:
        return self.driver.runs.run_id(trial)

    # -- Ray's loop: a failure kept from a hook whose exceptions Ray swallows ends the run here ---------
    def on_step_begin(self, iteration, trials, **info):
        driver = self.driver
        driver.latch.check()
        if not driver.runs_settled:  # once per driver: runs a stopped driver left open
            with driver.latch.sending("the status of the runs a stopped driver left open"):
                tracking.close_runs(self.client, self.experiment_id, self.parent_run_id,
                                    {t.trial_id: t.status for t in trials})
            driver.runs_settled = True

    def on_step_end(self, iteration, trials, **info):
        self.driver.latch.check()

    # -- trial events --------------------------------------------------------------------------------
    def on_trial_start(self, iteration, trials, trial, **info):
        with self.driver.latch.sending(f"the run of trial {trial.trial_id}"):
            self.run_id(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        from mlflow.entities import Metric

        driver = self.driver
        step = int(result.get("step", result.get("training_iteration", 0)))
        with driver.latch.sending(f"the step-{step} metrics of trial {trial.trial_id}"):
            run_id = self.run_id(trial)
            if GPU_IDS in result and run_id not in driver.gpus_tagged:
                self.client.set_tag(run_id, "ray.gpu_ids", str(result[GPU_IDS]))
                driver.gpus_tagged.add(run_id)
            if driver.sent.already_sent("metrics", run_id, step):
                return
            now = int(time.time() * 1000)
            metrics = [Metric(key, _numeric(value), now, step) for key, value in result.items()
                       if key not in RAY_RESULT_KEYS and _numeric(value) is not None]
            for start in range(0, len(metrics), BATCH["metrics"]):
                self.client.log_batch(run_id, metrics=metrics[start:start + BATCH["metrics"]])
            driver.sent.mark("metrics", run_id, step)

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        # raised here, Ray drops this checkpoint (the trial goes on); the kept failure then ends the run
        # at the end of this step, and a resumed trial evaluates this step again from the one before
        with self.driver.latch.sending(f"the evaluation artifacts of trial {trial.trial_id}"):
            self.driver.artifacts.log(self.run_id(trial), trial, checkpoint)

    def on_trial_complete(self, iteration, trials, trial, **info):
        # not raised to Ray, which would fail a finished trial; the run is settled when the study resumes
        with contextlib.suppress(TrackingError), self.driver.latch.sending(f"the end of trial {trial.trial_id}"):
            self.client.set_terminated(self.run_id(trial), status="FINISHED")

    def on_trial_error(self, iteration, trials, trial, **info):
        with contextlib.suppress(TrackingError), self.driver.latch.sending(f"the failure of trial {trial.trial_id}"):
            run_id = self.run_id(trial)
            error = getattr(trial, "error_file", None)
            message = ""
            if error and Path(error).exists():
                message = Path(error).read_text()[-2000:]
            self.client.set_tag(run_id, "error", message or "trial failed")
            self.client.set_terminated(run_id, status="FAILED")


class RestartLostTrials(tune.Callback):
    """A trial about to continue from a checkpoint that is gone (its folder under ``ray/<space>/`` deleted,
    a root copied without it) restarts from scratch instead. Ray would fail its restore ("does not exist
    on storage anymore"), retry it from the same missing checkpoint, then mark it ERROR: its configuration
    told FAIL though nothing prevents running it again, and no later resume would rerun it. Trials are
    seeded, so the rerun reproduces the steps the trial's MLflow run already holds (not logged twice:
    ``MLflowTrialCallback``). Ray calls ``on_trial_start`` just before it schedules the restore; it has no
    public way to drop a trial's checkpoint, so the trial's checkpoint bookkeeping is replaced by an empty
    one of the same configuration."""

    def on_trial_start(self, iteration, trials, trial, **info):
        from ray.train._internal.checkpoint_manager import _CheckpointManager

        manager = trial.run_metadata.checkpoint_manager
        latest = manager.latest_checkpoint_result if manager is not None else None
        if latest is None or checkpoint_exists(latest.checkpoint):
            return
        trial.run_metadata.checkpoint_manager = _CheckpointManager(checkpoint_config=manager.checkpoint_config)
        trial.invalidate_json_state()
        print(f"# trial {trial.trial_id}: its checkpoint {latest.checkpoint.path} is gone (its folder deleted?); "
              f"restarting it from scratch", flush=True)


def checkpoint_exists(checkpoint) -> bool:
    """Whether a Ray checkpoint's folder is on its storage (local disk, or a cluster's shared/cloud storage)."""
    import pyarrow.fs

    try:
        return checkpoint.filesystem.get_file_info(checkpoint.path).type != pyarrow.fs.FileType.NotFound
    except OSError:
        return False
