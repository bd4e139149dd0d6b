"""Evaluation: torch-fidelity FID/KID through the judge, per-class FID, diagnostics, the judge cache."""

from __future__ import annotations

import math
import multiprocessing
from pathlib import Path

import numpy as np
import pytest
import torch

from trainers.config import ConfigError, make_config
from trainers.data import load_data
from trainers.metrics import make_evaluator
from trainers.metrics.evaluator import kl_divergence
from trainers.metrics.judge import load_or_train_judge


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("metrics")
    cfg = make_config({"root": str(root), "eval.min_class_samples": 5})
    data = load_data(cfg)
    return cfg, data, make_evaluator(cfg, data, torch.device("cpu"))


def test_judge_is_accurate_on_digits(setup):
    _, _, ev = setup
    assert ev.judge_accuracy >= 0.95


def test_fid_of_the_test_set_against_itself_is_zero_and_a_shift_is_not(setup):
    _, data, ev = setup
    same, _ = ev.metrics_for(data.test.images)
    assert abs(same["fid"]) < 1e-6
    shifted = torch.roll(data.test.images, shifts=(3, 3), dims=(2, 3))
    moved, _ = ev.metrics_for(shifted)
    assert moved["fid"] > 1.0 and moved["fid"] > 100 * max(abs(same["fid"]), 1e-6)
    # KID is unbiased, so a set against itself scatters around 0: far below a real difference
    assert abs(same["kid"]) < 0.1 * moved["kid"]


def test_half_the_classes_missing_gives_nan_counts_exact_kl_and_dropped(setup):
    _, data, ev = setup
    images, labels = data.test.images, data.test.labels
    _, judge_logits = ev.extract(ev.judge, images)
    judged = judge_logits.argmax(1)
    keep = (labels < 5) & (judged == labels)  # real images of classes 0-4 the judge labels correctly
    metrics, _ = ev.metrics_for(images[keep])
    counts = np.bincount(labels[keep].numpy(), minlength=10)
    for k in range(10):
        assert metrics[f"count_class/{k}"] == counts[k]
    for k in range(5, 10):
        assert math.isnan(metrics[f"fid_class/{k}"]) and metrics[f"count_class/{k}"] == 0
    for k in range(5):
        assert math.isfinite(metrics[f"fid_class/{k}"])
    p = counts / counts.sum()
    expected_uniform = sum(p[k] * math.log(p[k] * 10) for k in range(5))
    prior = np.asarray(data.train_counts, float) / sum(data.train_counts)
    expected_prior = sum(p[k] * math.log(p[k] / prior[k]) for k in range(5))
    assert metrics["class_kl_uniform"] == pytest.approx(expected_uniform, abs=1e-12)
    assert metrics["class_kl_prior"] == pytest.approx(expected_prior, abs=1e-12)
    assert metrics["classes_dropped"] == 5
    for name, members in (("fid_minority", data.minority), ("fid_majority", data.majority)):
        finite = [metrics[f"fid_class/{c}"] for c in members if c < 5]
        assert metrics[name] == pytest.approx(np.mean(finite)) if finite else math.isnan(metrics[name])


def test_kl_divergence_by_hand():
    p = np.array([0.5, 0.5, 0.0])
    q = np.array([0.25, 0.25, 0.5])
    assert kl_divergence(p, q) == pytest.approx(math.log(2))


def test_small_sample_counts_are_handled(setup):
    _, data, ev = setup
    metrics, _ = ev.metrics_for(data.test.images[:7])
    assert math.isfinite(metrics["kid"])
    assert all(math.isnan(metrics[f"fid_class/{k}"]) for k in range(10))  # all below the floor of 5


def test_conditional_models_are_sampled_per_class(setup):
    cfg, data, ev = setup

    class Conditional:
        conditional = True

        def generate(self, n, labels=None, generator=None):
            # "generates" real test images of the requested classes
            out = []
            for y in labels.tolist():
                pool = data.test.images[data.test.labels == y]
                out.append(pool[len(out) % len(pool)].float() / 127.5 - 1)
            return torch.stack(out)

    images, labels = ev.sample(Conditional())
    assert np.bincount(labels.numpy(), minlength=10).tolist() == [100] * 10


def _train_judge(args):
    root, width = args
    cfg = make_config({"root": root})
    _, _, trained = load_or_train_judge(load_data(cfg), Path(root) / "cache", width, 2, torch.device("cpu"))
    return trained


def test_judge_cache_is_reused_and_trained_once_by_concurrent_processes(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        trained = pool.map(_train_judge, [(str(tmp_path), 8)] * 2)
    assert sorted(trained) == [False, True]  # exactly one of the two trained it
    files = list((tmp_path / "cache").glob("judge-*.pt"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    assert _train_judge((str(tmp_path), 8)) is False
    assert files[0].stat().st_mtime_ns == mtime
    assert not list((tmp_path / "cache").glob("*.tmp*"))


def test_training_reports_every_metric_and_writes_images(tmp_path, setup):
    cfg, _, _ = setup
    from trainers.loop import train

    reports = []
    train({"root": cfg.root, "ch": 4, "batch_size": 16, "steps": 4, "eval_every": 4, "eval.num_samples": 100},
          lambda m, c: reports.append((m, c)), workdir=tmp_path)
    metrics, checkpoint = reports[-1]
    for key in ("fid", "kid", "fid_minority", "fid_majority", "class_kl_uniform", "class_kl_prior",
                "classes_dropped", "judge/test_accuracy", "judge/confidence", "step"):
        assert key in metrics
    assert all(f"fid_class/{k}" in metrics and f"count_class/{k}" in metrics for k in range(10))
    pngs = sorted(p.name for p in (Path(checkpoint) / "artifacts").glob("*.png"))
    assert pngs == ["class_hist_step4.png", "samples_step4.png"]
    assert all((Path(checkpoint) / "artifacts" / p).read_bytes()[:4] == b"\x89PNG" for p in pngs)


def test_inception_without_weights_suggests_the_judge(setup, tmp_path):
    _, data, _ = setup
    cfg = make_config({"root": str(tmp_path), "eval.features": "inception",
                       "eval.inception_weights": str(tmp_path / "missing.pth"), "eval.judge_epochs": 1,
                       "eval.judge_width": 4})
    with pytest.raises(ConfigError, match="eval.features=judge"):
        make_evaluator(cfg, data, torch.device("cpu"))
