"""The Ray Tune function trainable: one trial = ``trainers.loop.train(config, report)``.

``config`` is the trial dict the searcher proposed, already resolved (fixed and sampled settings, the
seed, absolute paths): the worker builds nothing. Every evaluation becomes
``tune.report(metrics, checkpoint=...)``; a restarted trial (worker killed, study resumed) continues
from ``tune.get_checkpoint()``. A diverged trial leaves a marker so Ray's retries of it fail at once
instead of diverging again.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

DIVERGED_MARKER = "diverged.json"
GPU_IDS = "ray/gpu_ids"  # the GPUs Ray assigned the trial, in every result (the driver tags the run with them)


def report_value(value: Any) -> Any:
    """Ray results must be plain numbers; keep NaN (a class below the sample floor) as NaN."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def run_trial(config: dict[str, Any]) -> None:
    """Ray entry point: train on ``config`` in the trial's directory, reporting every evaluation."""
    import torch
    from ray import tune

    from trainers.loop import DivergedError, train

    # one INFO line per checkpoint from every worker would bury the progress table
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)
    context = tune.get_context()
    trial_dir = Path(context.get_trial_dir())
    marker = trial_dir / DIVERGED_MARKER
    if marker.exists():
        raise DivergedError(**json.loads(marker.read_text()))
    cpus = int((context.get_trial_resources().required_resources or {}).get("CPU", 1)) or 1
    torch.set_num_threads(max(1, cpus))
    gpus = assigned_gpus()

    def report(metrics: dict[str, Any], checkpoint_dir: str) -> None:
        tune.report({**{k: report_value(v) for k, v in metrics.items()}, GPU_IDS: gpus},
                    checkpoint=tune.Checkpoint.from_directory(checkpoint_dir))

    workdir = trial_dir / "work"
    checkpoint = tune.get_checkpoint()
    try:
        if checkpoint is None:
            train(config, report, workdir=workdir)
        else:
            with checkpoint.as_directory() as ckpt_dir:
                train(config, report, workdir=workdir, resume_from=ckpt_dir)
    except DivergedError as e:
        marker.write_text(json.dumps({"step": e.step, "losses": e.losses}))  # NaN survives as JSON NaN
        raise


def assigned_gpus() -> str:
    """The GPU ids Ray assigned this trial (``ray.get_gpu_ids()``, which Ray also puts in
    CUDA_VISIBLE_DEVICES), comma-separated, or "none". A share of a GPU on a machine without CUDA (a
    cluster that declares GPUs it does not have) trains on the CPU, and says so once."""
    import sys

    import ray
    import torch

    ids = [str(g) for g in ray.get_gpu_ids()]
    if ids and not torch.cuda.is_available():
        print(f"warning: Ray assigned GPU {','.join(ids)} (CUDA_VISIBLE_DEVICES="
              f"{os.environ.get('CUDA_VISIBLE_DEVICES', '')}) but CUDA is not available here: this trial trains on "
              f"the CPU", file=sys.stderr, flush=True)
    return ",".join(ids) or "none"


def warm_worker() -> None:
    """Ray worker setup hook: import what every trial imports (torch, the trainer, the metrics,
    scikit-learn's digits loader), so the first trial of each worker starts at once."""
    import sklearn.datasets  # noqa: F401

    import trainers.loop  # noqa: F401
    import trainers.metrics.evaluator  # noqa: F401


def worker_env() -> dict[str, str]:
    """Environment every Ray worker needs (set through the runtime env, so a cluster gets it too)."""
    return {"RAY_CHDIR_TO_TRIAL_DIR": "0", "MLFLOW_DISABLE_TELEMETRY": "true",
            "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
