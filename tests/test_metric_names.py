"""The declared metric names (``trainers.metrics.names``) are exactly what a trial reports: a real
training run with a real evaluation, for every method (and the cGAN with its optional losses on)."""

from __future__ import annotations

import pytest
import torch

from trainers.config import make_config
from trainers.data import DATASETS, NUM_CLASSES, load_data
from trainers.loop import train
from trainers.methods import METHODS
from trainers.metrics import make_evaluator
from trainers.metrics.names import reported_metrics

TINY = {"dataset": "digits", "ch": 4, "batch_size": 16, "steps": 2, "eval_every": 2, "eval.num_samples": 60,
        "eval.judge_epochs": 1, "eval.judge_width": 4, "eval.images": False}
CASES = [{"method": m} for m in sorted(METHODS)] + [{"method": "cgan", "gsr_lambda": 0.5, "lecam_lambda": 0.1}]


@pytest.fixture(scope="module")
def evaluator(tmp_path_factory):
    cfg = make_config({**TINY, "cache_dir": str(tmp_path_factory.mktemp("cache"))})
    return cfg.cache_dir, make_evaluator(cfg, load_data(cfg), torch.device("cpu"))


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_declared_names_are_what_a_trial_reports(case, evaluator, tmp_path):
    cache_dir, ev = evaluator
    cfg = make_config({**TINY, **case, "cache_dir": cache_dir})
    reports = []
    train(cfg, lambda metrics, checkpoint: reports.append(metrics), workdir=tmp_path, evaluator=ev)
    assert reports
    declared = reported_metrics(cfg)
    assert len(declared) == len(set(declared))
    for metrics in reports:
        assert sorted(metrics) == sorted(declared)


def test_the_validation_split_declares_its_val_names(tmp_path):
    """eval.split=val_test adds val/<figure> (a space that selects is told them): declared = reported."""
    cfg = make_config({**TINY, "eval.split": "val_test", "cache_dir": str(tmp_path)})
    reports = []
    train(cfg, lambda metrics, checkpoint: reports.append(metrics), workdir=tmp_path / "w")
    declared = reported_metrics(cfg)
    assert sorted(reports[-1]) == sorted(declared) and "val/kid_minority" in declared
    assert "evalsd/kid_minority" in declared and "fid_floor_class/0" in declared


def test_every_dataset_declares_its_class_count():
    assert set(NUM_CLASSES) == set(DATASETS)
    cfg = make_config({"dataset": "digits"})
    assert load_data(cfg).num_classes == NUM_CLASSES["digits"]
