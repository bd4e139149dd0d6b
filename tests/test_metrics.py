"""Evaluation: FID/KID through torch-fidelity in the judge's space, per-class FID, the minority
diagnostics against hand computations, the judge cache under concurrency, the loop's report."""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
from pathlib import Path

import numpy as np
import pytest
import torch

from trainers.config import ConfigError, make_config
from trainers.data import load_data, to_float
from trainers.metrics import make_evaluator
from trainers.metrics.cache import load_or_compute
from trainers.metrics.fidelity import JUDGE_NAME
from trainers.metrics.judge import load_or_train_judge
from trainers.metrics.perclass import kl_divergence, training_prior

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("metrics")
    cfg = make_config({"dataset": "digits", "cache_dir": str(root / "cache"), "eval.min_class_samples": 5})
    data = load_data(cfg)
    return cfg, data, make_evaluator(cfg, data, CPU)


def evaluator_for(cfg, data, **eval_keys):
    """Another evaluator on the same root (the cached judge and reference are reused)."""
    return make_evaluator(make_config({"dataset": "digits", "cache_dir": cfg.cache_dir, **{f"eval.{k}": v for k, v in eval_keys.items()}}),
                          data, CPU)


class Replay:
    """A stand-in G that "generates" given uint8 images in order (the full sampling path)."""

    conditional = False

    def __init__(self, images: torch.Tensor):
        self.images = images
        self.position = 0

    def generate(self, n, labels=None, generator=None):
        out = self.images[self.position:self.position + n]
        self.position += n
        return to_float(out)


def test_judge_is_accurate_on_digits_and_cached(setup):
    cfg, _, ev = setup
    assert ev.judge_accuracy >= 0.95
    assert ev.judge_path.parent == Path(cfg.cache_dir) and ev.judge_path.name.startswith("judge-")
    assert ev.ref_features.shape == (len(ev.data.test), 32)  # the documented 32-d judge features


def test_fid_of_a_set_against_itself_is_zero_and_a_shift_is_not(setup, tmp_path):
    cfg, data, _ = setup
    test = data.test.images
    ev = evaluator_for(cfg, data, num_samples=len(test), batch_size=100, min_class_samples=5)
    same = ev.evaluate(Replay(test), 0, tmp_path / "same")
    assert abs(same["fid"]) < 1e-6
    shifted = torch.roll(test, shifts=(3, 3), dims=(2, 3))
    moved = ev.evaluate(Replay(shifted), 0, tmp_path / "moved")
    assert moved["fid"] > 1.0
    assert abs(same["kid"]) < 0.1 * moved["kid"]  # KID is unbiased: around 0, far below a real gap
    judged = ev.features_of(test)[1].argmax(1)
    for k in range(10):  # each class against itself: exactly 0 where the judge labels the class right
        if torch.equal(judged == k, data.test.labels == k):
            assert abs(same[f"fid_class/{k}"]) < 1e-6
        assert same[f"fid_class/{k}"] < 0.2 * moved[f"fid_class/{k}"] or math.isnan(moved[f"fid_class/{k}"])
    assert sum(math.isfinite(moved[f"fid_class/{k}"]) for k in range(10)) >= 5

    # the same numbers as torch-fidelity's own pipeline with the registered judge
    import torch_fidelity

    from trainers.metrics.fidelity import UInt8Dataset

    ref = torch_fidelity.calculate_metrics(
        input1=UInt8Dataset(shifted), input2=UInt8Dataset(test), feature_extractor=JUDGE_NAME,
        feature_extractor_weights_path=str(ev.judge_path), fid=True, kid=True, kid_subset_size=100,
        cuda=False, verbose=False, cache=False, save_cpu_ram=True)
    assert moved["fid"] == pytest.approx(ref["frechet_inception_distance"], rel=1e-3)
    assert moved["kid"] == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-3)


def test_half_the_classes_missing_gives_nan_counts_exact_kl_and_dropped(setup, tmp_path):
    cfg, data, ev = setup
    images, labels = data.test.images, data.test.labels
    judged = ev.features_of(images)[1].argmax(1)
    keep = (labels < 5) & (judged == labels)  # real images of classes 0-4 that the judge labels right
    ev = evaluator_for(cfg, data, num_samples=int(keep.sum()), min_class_samples=5)
    metrics = ev.evaluate(Replay(images[keep]), 3, tmp_path)

    counts = [int((labels[keep] == k).sum()) for k in range(10)]
    total = sum(counts)
    for k in range(10):
        assert metrics[f"count_class/{k}"] == counts[k] == metrics[f"judged_class/{k}"]
    for k in range(5, 10):
        assert counts[k] == 0 and math.isnan(metrics[f"fid_class/{k}"])
    for k in range(5):
        assert math.isfinite(metrics[f"fid_class/{k}"])
    # KL(p || q) by hand, naive loop
    kl_uniform = kl_prior = 0.0
    for k in range(5):
        p = counts[k] / total
        kl_uniform += p * math.log(p / 0.1)
        kl_prior += p * math.log(p / (data.train_counts[k] / sum(data.train_counts)))
    assert metrics["class_kl_uniform"] == pytest.approx(kl_uniform, abs=1e-12)
    assert metrics["class_kl_prior"] == pytest.approx(kl_prior, abs=1e-12)
    assert metrics["classes_dropped"] == 5
    for name, members in (("fid_minority", data.minority), ("fid_majority", data.majority)):
        finite = [metrics[f"fid_class/{c}"] for c in members if c < 5]
        if finite:
            assert metrics[name] == pytest.approx(sum(finite) / len(finite))
        else:
            assert math.isnan(metrics[name])
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["class_hist_step3.png", "samples_step3.png"]


def test_per_class_fid_is_torch_fidelity_on_each_class_slice(setup):
    """The sorted-slice fast path against torch-fidelity's own statistics on boolean-masked slices."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    _, data, ev = setup
    images = data.full_train.images[:600]
    feats, logits, _ = ev.features_of(images)
    metrics, judged = ev.metrics_for(images)
    ref = ev.ref_features
    for k in range(10):
        mine = torch.from_numpy(judged == k)
        expected = fid_statistics_to_metric(fid_features_to_statistics(feats[mine]),
                                            fid_features_to_statistics(ref[ev.ref_labels == k]), False)
        assert metrics[f"fid_class/{k}"] == pytest.approx(expected["frechet_inception_distance"], rel=1e-9)
    overall = fid_statistics_to_metric(fid_features_to_statistics(feats), fid_features_to_statistics(ref), False)
    assert metrics["fid"] == pytest.approx(overall["frechet_inception_distance"], rel=1e-12)


def test_kl_conventions_by_hand():
    assert kl_divergence(np.array([0.5, 0.5, 0.0]), np.array([0.25, 0.25, 0.5])) == pytest.approx(math.log(2))
    assert training_prior([3, 1]).tolist() == [0.75, 0.25]
    assert training_prior([3, 0]).tolist() == pytest.approx([3 / 3.5, 0.5 / 3.5])  # a class with no images


def test_small_sample_counts_are_handled(setup):
    cfg, data, ev = setup
    few, _ = ev.metrics_for(data.test.images[:7])  # KID subset capped to 7 (configured 100)
    assert math.isfinite(few["kid"]) and math.isfinite(few["fid"])
    assert all(math.isnan(few[f"fid_class/{k}"]) for k in range(10))  # every class below the floor of 5
    one, _ = ev.metrics_for(data.test.images[:1])
    assert math.isnan(one["kid"]) and math.isnan(one["fid"]) and one["classes_dropped"] == 9
    tiny = evaluator_for(cfg, data, num_samples=3, batch_size=2, kid_subset_size=1000)
    metrics = tiny.evaluate(Replay(data.test.images), 0)
    assert math.isfinite(metrics["kid"]) and sum(metrics[f"count_class/{k}"] for k in range(10)) == 3


def test_conditional_models_are_sampled_per_class(setup):
    cfg, data, _ = setup

    class Conditional:
        conditional = True

        def generate(self, n, labels=None, generator=None):
            assert labels is not None and len(labels) == n
            pools = {y: data.test.images[data.test.labels == y] for y in range(10)}
            return torch.stack([to_float(pools[y][i % len(pools[y])]) for i, y in enumerate(labels.tolist())])

    ev = evaluator_for(cfg, data, num_samples=1003, batch_size=128, min_class_samples=5)
    metrics = ev.evaluate(Conditional(), 0)
    assert [metrics[f"count_class/{k}"] for k in range(10)] == [101] * 3 + [100] * 7
    assert metrics["judge/conditional_accuracy"] > 0.95
    assert sum(metrics[f"judged_class/{k}"] for k in range(10)) == 1003
    assert all(math.isfinite(metrics[f"fid_class/{k}"]) for k in range(10))


def test_evaluation_leaves_the_global_rng_alone(setup, tmp_path):
    _, data, _ = setup
    from trainers.methods import get_method

    cfg = make_config({"dataset": "digits", "cache_dir": str(tmp_path / "cache"), "ch": 4, "eval.num_samples": 50, "eval.judge_width": 4,
                       "eval.judge_epochs": 1})
    method = get_method("dcgan")(cfg, data, CPU)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    ev = make_evaluator(cfg, data, CPU)  # trains a (tiny) judge here
    first = ev.evaluate(method, 1)
    assert ev.judge_trained and torch.equal(torch.get_rng_state(), before)
    assert ev.evaluate(method, 2)["fid"] == first["fid"]  # the same evaluation noise every time


def test_judge_cache_is_trained_once_by_concurrent_processes_and_reused(setup, tmp_path):
    """This process and a spawned one reach the same empty cache at the same moment."""
    from judge_worker import train_judge_when_released

    data = setup[1]
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    child = ctx.Process(target=train_judge_when_released, args=(str(tmp_path), data, barrier, results))
    child.start()
    train_judge_when_released(str(tmp_path), data, barrier, results)
    child.join(timeout=120)
    assert child.exitcode == 0
    assert sorted(results.get(timeout=5) for _ in range(2)) == [False, True]  # exactly one trained
    files = list((tmp_path / "cache").glob("judge-*.pt"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    _, payload, trained = load_or_train_judge(data, tmp_path / "cache", 4, 2, CPU)
    assert not trained and files[0].stat().st_mtime_ns == mtime  # the second call trains nothing
    assert set(payload) >= {"state_dict", "test_accuracy"}
    assert not [p for p in (tmp_path / "cache").iterdir() if ".tmp" in p.name]


def test_a_damaged_cache_file_is_recomputed(tmp_path):
    path = tmp_path / "cache" / "thing.pt"
    path.parent.mkdir()
    path.write_bytes(b"half a file")
    payload, computed = load_or_compute(path, lambda: {"x": torch.ones(2)})
    assert computed and torch.equal(payload["x"], torch.ones(2))
    assert load_or_compute(path, lambda: pytest.fail("recomputed"))[1] is False


def test_training_reports_every_metric_and_writes_images(tmp_path, setup):
    cfg, _, _ = setup
    from trainers.loop import train

    reports, plain = [], []
    trial = {"dataset": "digits", "cache_dir": cfg.cache_dir, "ch": 4, "batch_size": 16, "steps": 4, "eval_every": 2, "eval.num_samples": 100}
    train(trial, lambda m, c: reports.append((m, c)), workdir=tmp_path / "evaluated")
    train(trial, lambda m, c: plain.append(m), workdir=tmp_path / "plain", evaluator=None)
    # evaluating (sampling G, the judge) leaves the training stream exactly as it was
    assert [m["loss/d"] for m, _ in reports] == [m["loss/d"] for m in plain]
    assert [m["loss/g"] for m, _ in reports] == [m["loss/g"] for m in plain]
    metrics, checkpoint = reports[-1]
    for key in ("fid", "kid", "fid_minority", "fid_majority", "class_kl_uniform", "class_kl_prior",
                "classes_dropped", "judge/test_accuracy", "judge/confidence", "step"):
        assert key in metrics, key
    assert "is" not in metrics  # only with Inception features
    for k in range(10):
        assert {f"fid_class/{k}", f"count_class/{k}", f"judged_class/{k}", f"prior/{k}"} <= set(metrics)
    pngs = sorted(p.name for p in (Path(checkpoint) / "artifacts").glob("*.png"))
    assert pngs == ["class_hist_step4.png", "samples_step4.png"]
    assert all((Path(checkpoint) / "artifacts" / p).read_bytes()[:4] == b"\x89PNG" for p in pngs)


def test_inception_without_weights_suggests_the_judge_before_any_write(setup, tmp_path):
    _, data, _ = setup
    cfg = make_config({"dataset": "digits", "cache_dir": str(tmp_path / "runs" / "cache"), "eval.features": "inception",
                       "eval.inception_weights": str(tmp_path / "missing.pth")})
    with pytest.raises(ConfigError, match="eval.features=judge") as err:
        make_evaluator(cfg, data, CPU)
    assert "\n" not in str(err.value) and "eval.inception_weights" in str(err.value)
    assert not (tmp_path / "runs").exists()  # refused before the judge was trained or cached


@pytest.mark.slow
def test_inception_features_give_is_and_per_class_fid(setup, tmp_path):
    """The real inception-v3-compat path, with random weights saved to a file (no download)."""
    from unittest import mock

    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    from trainers.data import Split

    _, data, _ = setup
    with mock.patch.object(FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None), \
            mock.patch("torch.load", lambda *a, **k: {}):
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path="x")
    weights = tmp_path / "inception.pth"
    torch.save(net.state_dict(), weights)
    pick = torch.cat([torch.nonzero(data.test.labels == k).flatten()[:2] for k in range(10)])
    small = dataclasses.replace(data, test=Split(data.test.images[pick], data.test.labels[pick]))
    cfg = make_config({"dataset": "digits", "cache_dir": setup[0].cache_dir, "eval.features": "inception", "eval.inception_weights": str(weights),
                       "eval.num_samples": 20, "eval.min_class_samples": 2, "eval.batch_size": 10})
    # the real network and code path, at a smaller input size (75, Inception's minimum) for CPU time
    with mock.patch.object(FeatureExtractorInceptionV3, "INPUT_IMAGE_SIZE", 75):
        ev = make_evaluator(cfg, small, CPU)
        metrics = ev.evaluate(Replay(small.test.images), 0)
    assert ev.ref_features.shape == (20, 2048)
    assert all(math.isfinite(metrics[f"fid_class/{k}"]) for k in range(10))
    assert math.isfinite(metrics["is"]) and math.isfinite(metrics["kid"])
    assert abs(metrics["fid"]) < 1e-3 * max(1.0, float(ev.ref_stats["sigma"].trace()))
