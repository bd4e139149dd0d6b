"""Target of the spawned processes in test_metrics: kept apart from the test module so a child
imports only torch and the judge (not pytest, torch-fidelity or scikit-learn)."""

from pathlib import Path

import torch


def train_judge_when_released(root, data, barrier, results):
    from trainers.metrics.judge import load_or_train_judge

    barrier.wait()  # both processes reach the cache at the same moment
    _, _, trained = load_or_train_judge(data, Path(root) / "cache", 4, 2, torch.device("cpu"))
    results.put(trained)
