"""MLflow: one experiment per space, one parent run per study, one nested child run per trial.

What a run shows and how it is named lives here (MLflow only; the Tune callback that feeds it is
``search.callback``). A child run is named after what it is — ``damage p=0.9 ρ=100 seed=1``: the
method, the sampled parameters that differ between configurations, the seed — carries the shared
settings plus its own method's knobs as params, its training split as an MLflow dataset input
(``digits-exp-ρ100``, class counts in the dataset's profile) and its sample grids as stepped images.
The parent run is found again by its tags, a child run by its ``ray.trial_id`` tag.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any, Mapping

from search.runs_view import VIEW_KEY, VIEW_URL_PARAM, set_study_view
from trainers.checkpoint import DATA_FILE
from trainers.fields import ConfigError, one_line

TAG_SPACE = "ltgan.space"
TAG_ROLE = "ltgan.role"
TAG_TRIAL = "ray.trial_id"
TAG_SAMPLED = "sampled"
# MLflow 3's experiment kind for model training (its UI's enum value); the UI reads this tag when its
# GenAI / Model-training switch is not in charge
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
# short names of parameters in run names (the rest keep their own)
SHORT_NAMES = {"prune_ratio": "p", "imbalance": "ρ", "contrastive_weight": "λcon", "gsr_lambda": "λgsr",
               "lecam_lambda": "λlecam", "imbalance_profile": "profile", "diffaugment": "diffaug"}


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def check_tracking_uri(uri: Any, error: type[ConfigError] = ConfigError) -> None:
    """``tracking_uri=`` must name a server or a database by its URI (MLflow would read a bare path as a
    folder of its file store); ``error``: the command's own ConfigError (exit 2 either way)."""
    if uri is not None and not (isinstance(uri, str) and "://" in uri):
        raise error(f"tracking_uri={uri!r} is not a URI; give the server or database of the study "
                    f"(http://127.0.0.1:5000, sqlite:////abs/path/mlflow.db), or drop it to use <root>/mlflow.db")


def client_for(tracking_uri: str):
    """The MLflow client of every command (driver, callback, report, doctor, UI). MLflow draws a progress bar
    for each artifact download (the report's sample grids) and chunked upload unless told not to, and reads
    the setting at each transfer: set here, it holds for every transfer whichever command makes them."""
    from mlflow.tracking import MlflowClient

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return MlflowClient(tracking_uri=tracking_uri)


def create_local_store(path: Path) -> None:
    """A new local MLflow store made whole or not at all: MLflow creates its schema in dozens of migrations
    that are not one transaction, and a driver stopped among them (Ctrl-C, kill -9, a full disk) would leave
    a half-created ``mlflow.db`` that no later start can open. The schema is made in a temporary file beside
    it, then renamed into place (atomic). An existing store is left as it is."""
    import uuid

    if path.exists():
        return
    # a name of its own each time: MLflow caches an engine per database URI, and one cached for an earlier,
    # stopped attempt would still be connected to that attempt's (deleted) file
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        from mlflow.store.tracking import DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        # the default artifact root MlflowClient gives a store it creates (only the Default experiment uses it)
        store = SqlAlchemyStore(f"sqlite:///{tmp}", DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH)
        store.engine.dispose()  # every connection closed: the file alone holds the schema
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def unreachable(tracking_uri: str, timeout_s: float = 10.0) -> str | None:
    """Why a remote tracking server does not answer its health check (one try, no retries), or None
    when it does (and for a local store)."""
    if not tracking_uri.startswith(("http://", "https://")):
        return None
    import urllib.error
    import urllib.request
    url = tracking_uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            if response.status >= 400:
                return f"HTTP {response.status}"
    except (OSError, urllib.error.URLError) as e:
        return str(e)
    return None


def check_reachable(tracking_uri: str, timeout_s: float = 10.0) -> None:
    """Fail before any store is written when a remote tracking server cannot be reached or refuses our
    credentials (a server behind ``--app-name basic-auth`` answers /health to anyone)."""
    why = unreachable(tracking_uri, timeout_s)
    if why is not None:
        raise ConfigError(f"tracking_uri={tracking_uri} is unreachable ({why}); start the server, fix the URI, "
                          f"or drop tracking_uri= to use the local store under root=")
    if not tracking_uri.startswith(("http://", "https://")):
        return
    from mlflow.exceptions import MlflowException

    try:
        client_for(tracking_uri).search_experiments(max_results=1)
    except MlflowException as e:
        if e.get_http_status_code() not in (401, 403):
            raise
        raise ConfigError(f"tracking_uri={tracking_uri} refuses us (HTTP {e.get_http_status_code()} "
                          f"{e.error_code}); set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
                          f"(or MLFLOW_TRACKING_TOKEN) to an account of that server") from None


def ensure_experiment(client, name: str, artifact_location: str | None) -> str:
    """The space's experiment (created or restored), marked as model training."""
    exp = client.get_experiment_by_name(name)
    if exp is None:
        experiment_id = client.create_experiment(name, artifact_location=artifact_location,
                                                 tags={TAG_EXPERIMENT_KIND: MODEL_TRAINING})
    else:
        experiment_id = exp.experiment_id
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(experiment_id)
        if exp.tags.get(TAG_EXPERIMENT_KIND) != MODEL_TRAINING:
            client.set_experiment_tag(experiment_id, TAG_EXPERIMENT_KIND, MODEL_TRAINING)
    return experiment_id


def runs_view_url(base_url: str, experiment_id: str) -> str:
    """The study's comparison: the experiment's runs table in the UI's model-training view, opened on the
    view ``set_study_view`` stored (``viewStateShareKey``: MLflow's own shared-view link). MLflow 3.17
    opens an experiment on its GenAI overview (traces, token usage) whatever its kind tag says: its
    GenAI / Model-training switch decides, and reads ``workflowType`` from the URL before its stored
    setting. No search facet (``searchFilter``, ``orderByKey`` ...) may travel in the URL: with one
    there, the UI ignores the shared view altogether."""
    return (f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs?{VIEW_URL_PARAM}={VIEW_KEY}"
            f"&compareRunsMode=TABLE&workflowType=machine_learning")


def where_to_look(stores, experiment_id: str, markdown: bool = False) -> str:
    """How to open a study's runs: the link itself on a tracking server, else the command that serves
    the local store and the link it will answer (the command in backticks for a markdown report)."""
    if stores.tracking_uri.startswith(("http://", "https://")):
        return runs_view_url(stores.tracking_uri, experiment_id)
    command = shlex.join(["python", "-m", "mlflow_server", f"root={stores.root}"])  # pasted into a shell
    url = runs_view_url("http://127.0.0.1:5000", experiment_id)
    return f"`{command}`, then open {url}" if markdown else f"{command}   then open {url}"


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
              "sampler": space.sampler, "scheduler": json.dumps(dict(space.scheduler)),
              "num_samples": space.num_samples, "seeds": json.dumps(list(space.seeds)),
              "max_concurrent": space.max_concurrent}
    if space.presets:
        params["presets"] = ",".join(space.presets)
    params.update({f"fixed.{k}": v for k, v in space.fixed.items()})
    for key, value in params.items():
        client.log_param(run.info.run_id, key, value)
    client.log_text(run.info.run_id, space_yaml, "space.yaml")
    set_study_view(client, experiment_id, f"study: {space.name}", space.metric, space.mode,
                   [p.name for p in space.params if p.varies])
    return run.info.run_id


# what MLflow accepts in a metric key (mlflow.utils.validation, less the colon Windows refuses)
_METRIC_KEY_REFUSED = re.compile(r"[^/\w.\- ]+")
NOTE_LIMIT = 8000  # MLflow's MAX_TAG_VAL_LENGTH: a longer run description is cut there without a word


def metric_key(key: str) -> str:
    """``kid_minority/dcgan ρ=100`` -> ``kid_minority/dcgan_ρ100``: a key MLflow takes (it refuses ``=``,
    ``,``, ``(`` ...; a path that does not normalise to itself)."""
    parts = [_METRIC_KEY_REFUSED.sub("_", part.replace("=", "")).strip(" _") for part in key.split("/")]
    parts = [re.sub(r"\s+", "_", part) for part in parts if part not in ("", ".", "..")]
    cleaned = "/".join(parts)
    if not cleaned:
        raise ValueError(f"metric key {key!r} has no character MLflow accepts")
    return cleaned[:250]


def set_parent_summary(client, parent_run_id: str, markdown: str, metrics: Mapping[str, float]) -> None:
    """The study's answer on its parent run: ``markdown`` as the run's description (MLflow renders
    ``mlflow.note.content`` as Markdown on the run page) and ``metrics`` (one value per configuration and
    metric, e.g. ``kid_minority/dcgan_rho100``; keys made acceptable to MLflow by ``metric_key``), so the
    parent row alone compares configurations. Raises ValueError when two keys become one."""
    from mlflow.entities import Metric

    keys: dict[str, str] = {}
    for key in metrics:
        cleaned = metric_key(key)
        if keys.setdefault(cleaned, key) != key:
            raise ValueError(f"metric keys {keys[cleaned]!r} and {key!r} both become {cleaned!r} in MLflow")
    if len(markdown) > NOTE_LIMIT:
        tail = "\n\n… (cut at MLflow's limit for a run description: the full report is this run's `report/` artifact)"
        markdown = markdown[:NOTE_LIMIT - len(tail)].rsplit("\n", 1)[0] + tail
    client.set_tag(parent_run_id, "mlflow.note.content", markdown)
    now = int(time.time() * 1000)
    batch = [Metric(cleaned, float(metrics[key]), now, 0) for cleaned, key in keys.items()]
    for start in range(0, len(batch), 1000):  # MLflow's log_batch limit on metrics
        client.log_batch(parent_run_id, metrics=batch[start:start + 1000])


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def run_name(space, config: Mapping[str, Any]) -> str:
    """``damage p=0.9 ρ=100 seed=1``: the method, the sampled parameters that differ between the
    space's configurations (short names), the seed."""
    sampled = space.sampled(config)
    varying = [p.name for p in space.params if p.varies and p.name != "method" and p.name in sampled]
    parts = [str(config.get("method", space.methods()[0]))]
    parts += [f"{SHORT_NAMES.get(name, name)}={_short(sampled[name])}" for name in varying]
    return " ".join([*parts, f"seed={config['seed']}"])


def training_split_input(cfg, info: Mapping[str, Any]):
    """The trial's training split as an MLflow dataset input named ``<dataset>-<profile>-ρ<rho>``, its
    class counts and minority/majority classes in the dataset's profile (no file: the split is made
    by ``trainers.data`` from these settings)."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    profile = json.dumps({k: info.get(k) for k in ("train_size", "num_classes", "train_counts", "minority_classes",
                                                    "majority_classes", "class_order", "resolution", "channels")})
    source = CodeDatasetSource({"module": "trainers.data", "dataset": cfg.dataset,
                                "data_seed": info.get("data_seed", cfg.data_seed),
                                "imbalance_profile": cfg.imbalance_profile, "imbalance": cfg.imbalance})
    dataset = Dataset(name=f"{cfg.dataset}-{cfg.imbalance_profile}-ρ{cfg.imbalance:g}",
                      digest=hashlib.sha256((source.to_json() + profile).encode()).hexdigest()[:8],
                      source_type="code",  # CodeDatasetSource's type
                      source=source.to_json(), profile=profile)
    return DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, "train")])


def log_training_split(client, run_id: str, cfg, info: Mapping[str, Any]) -> None:
    """The split as tags, as data.json and as a dataset input (the UI's Dataset column and filter); the
    input last, as a resumed trial takes it to mean the rest was logged."""
    for key in ("minority_classes", "majority_classes", "train_counts"):
        client.set_tag(run_id, key, json.dumps(info.get(key)))
    client.log_dict(run_id, dict(info), DATA_FILE)
    client.log_inputs(run_id, datasets=[training_split_input(cfg, info)])


IMAGES_DIR = "images"  # where MLflow's log_image puts stepped images: <key>+step+<k>+timestamp+...
_STEPPED_IMAGE = re.compile(r"^(?P<key>.+)\+step\+(?P<step>\d+)\+")


def logged_images(client, run_id: str) -> set[tuple[str, int]]:
    """The (key, step) of every stepped image the run holds."""
    found = set()
    for info in client.list_artifacts(run_id, IMAGES_DIR):
        match = _STEPPED_IMAGE.match(info.path.rsplit("/", 1)[-1])
        if match:
            found.add((match["key"], int(match["step"])))
    return found


def log_evaluation_images(client, run_id: str, folder: Path, step: int,
                          present: set[tuple[str, int]] = frozenset()) -> None:
    """Every PNG of an evaluation (``samples_step<k>.png`` ...) as a stepped image under its name
    without the step (``samples``), so that MLflow's image view steps through training. ``present``: the
    (key, step) the run holds already (a driver stopped between two images of a step), not logged twice."""
    import mlflow

    for path in sorted(folder.glob("*.png")):
        key = re.sub(r"_step\d+$", "", path.stem)
        if (key, step) not in present:
            client.log_image(run_id, mlflow.Image(str(path)), key=key, step=step)


# a trial's run status from the status Ray restored it with; other trials run again and reopen theirs
RUN_STATUS_OF_TRIAL = {"TERMINATED": "FINISHED", "ERROR": "FAILED"}


def close_runs(client, experiment_id: str, parent_run_id: str, trial_status: Mapping[str, str]) -> int:
    """Settle the child runs a stopped driver left open (its crash handler marks the runs of unfinished
    trials KILLED, ``kill -9`` leaves them RUNNING): a run whose trial Ray no longer knows is KILLED,
    a run whose trial Ray restored as finished or errored gets FINISHED or FAILED (the driver stopped
    before it could say so). ``trial_status``: Ray trial id -> Ray's status. Returns the runs changed."""
    runs = client.search_runs([experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
                              max_results=10000)
    changed = 0
    for run in runs:
        status = trial_status.get(run.data.tags.get(TAG_TRIAL))
        wanted = RUN_STATUS_OF_TRIAL.get(status) if status else "KILLED"
        if wanted and run.info.status in ("RUNNING", "KILLED") and run.info.status != wanted:
            client.set_terminated(run.info.run_id, status=wanted)
            changed += 1
    return changed


def mark_stopped(tracking_uri: str, experiment_id: str | None, parent_run_id: str | None, status: str) -> str:
    """After a study stopped before its end: its parent run gets ``status`` (FAILED, KILLED) and the runs
    of its unfinished trials KILLED. Says what was done; never raises, never waits on a server that
    does not answer its health check."""
    if parent_run_id is None:
        return "no MLflow run was started"
    why = unreachable(tracking_uri, timeout_s=5)
    if why is not None:
        return f"the MLflow runs stay as they were (tracking server unreachable: {why}); resume=true settles them"
    try:
        client = client_for(tracking_uri)
        killed = close_runs(client, experiment_id, parent_run_id, {})
        client.set_terminated(parent_run_id, status=status)
    except Exception as e:  # a store that fails now (a full disk) must not hide why the study stopped
        return f"the MLflow runs could not be marked ({one_line(e)[:200]}); resume=true settles them"
    return f"MLflow: study run {status}, {killed} unfinished trial run(s) KILLED"
