"""Ray's GPU scheduling, tested on a logical GPU: a local cluster that declares one GPU (no CUDA needed),
trials asking for a quarter of it, four at once and a fifth waiting; each trial's assigned GPU ids on its
MLflow run; a GPU share without CUDA trains on the CPU and says so; asking for more GPUs than the
cluster has is refused before any store is written. The cluster runs in its own temp dir, HOME and
auth token, and only its own processes are stopped."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from test_search_e2e import ENV, free_port, mlflow_runs, run_cli

SPACE = """
name: gpu
description: five replicates asking for a quarter of a GPU each
metric: fid
sampler: grid
max_concurrent: 5
resources: {cpu: 1, gpu: 0.25}
seeds: 5
fixed: {dataset: digits, ch: 4, batch_size: 16, steps: 60, eval_every: 30, eval.num_samples: 200,
        eval.judge_epochs: 5}
params:
  method: {choice: [dcgan]}
  imbalance: {choice: [10]}
"""


@pytest.fixture
def logical_gpu_cluster(tmp_path):
    """`ray start --head --num-gpus=1 --block` in its own process group (stopping it stops only it)."""
    ray_cli = str(Path(sys.executable).parent / "ray")
    home = tmp_path / "home"
    home.mkdir()
    temp = tempfile.mkdtemp(prefix="rg", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    env = {**ENV, "RAY_AUTH_MODE": "token", "HOME": str(home)}
    gen = subprocess.run([ray_cli, "get-auth-token", "--generate"], env=env, capture_output=True, text=True, timeout=120)
    assert gen.returncode == 0, gen.stderr[-2000:]
    port = free_port()
    head = subprocess.Popen([ray_cli, "start", "--head", "--block", f"--port={port}", "--num-cpus=8", "--num-gpus=1",
                             "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}",
                             "--object-store-memory=100000000", "--node-ip-address=127.0.0.1"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        status = None
        for _ in range(60):
            status = subprocess.run([ray_cli, "status", f"--address=127.0.0.1:{port}"], env=env, capture_output=True,
                                    text=True, timeout=60)
            if status.returncode == 0 and "GPU" in status.stdout:
                break
            time.sleep(2)
        assert status is not None and status.returncode == 0, status.stderr[-2000:] if status else ""
        yield f"127.0.0.1:{port}", env
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


def most_at_once(intervals: list[tuple[int, int]]) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, change in events:  # an end before a start at the same millisecond
        running += change
        peak = max(peak, running)
    return peak


@pytest.mark.slow
def test_quarter_gpu_trials_run_four_at_once_on_a_logical_gpu(tmp_path, logical_gpu_cluster):
    address, env = logical_gpu_cluster
    space = tmp_path / "gpu.yaml"
    space.write_text(SPACE)
    root = tmp_path / "runs"
    # more GPUs per trial than the cluster has: refused before any store is written
    refused = run_cli([f"space={space}", f"root={root}", f"ray_address={address}", "resources.gpu=2"], env=env,
                      timeout=300)
    assert refused.returncode == 2 and "resources.gpu" in refused.stderr and "Traceback" not in refused.stderr
    assert not (root / "optuna.db").exists() and not (root / "mlflow.db").exists()

    proc = run_cli([f"space={space}", f"root={root}", f"ray_address={address}"], env=env, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, _, children = mlflow_runs(root, "gpu")
    assert len(children) == 5 and all(c.info.status == "FINISHED" for c in children)
    assert {c.data.tags.get("ray.gpu_ids") for c in children} == {"0"}  # the one logical GPU, shared
    intervals = sorted((c.info.start_time, c.info.end_time) for c in children)
    assert most_at_once(intervals) == 4, intervals
    fifth = intervals[-1][0]
    assert fifth >= min(end for _, end in intervals[:4]), "the fifth trial started before a GPU share was free"
    assert "CUDA is not available here: this trial trains on the CPU" in proc.stdout + proc.stderr
