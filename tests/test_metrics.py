"""Evaluation: FID/KID through torch-fidelity in the judge's space, per-class figures at equal N, the
minority diagnostics against hand computations, the judge cache under concurrency, the loop's report.
(The equal-N properties themselves: test_equal_n.py; the command: test_evaluate_cli.py.)"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
from pathlib import Path

import numpy as np
import pytest
import torch

from trainers.config import make_config
from trainers.fields import ConfigError
from trainers.data import load_data, to_float
from trainers.metrics import make_evaluator
from trainers.metrics.cache import load_or_compute
from trainers.metrics.fidelity import JUDGE_NAME
from trainers.metrics.judge import load_or_train_judge
from trainers.metrics.perclass import kl_divergence, training_prior

from metrics_fixtures import (CPU, Replay, ReplayByLabel, digits_eval, evaluator_for,  # noqa: F401 - fixture
                              store, store_of)

PER_CLASS = ("fid", "kid", "precision", "recall")


@pytest.fixture(scope="module")
def setup(digits_eval):
    return digits_eval


def test_judge_is_accurate_on_digits_and_cached(setup):
    cfg, _, ev = setup
    assert ev.judge_accuracy >= 0.95
    assert ev.judge_path.parent == Path(cfg.cache_dir) and ev.judge_path.name.startswith("judge-")
    assert ev.ref_features.shape == (len(ev.data.test), 32)  # the documented 32-d judge features


def test_fid_of_a_set_against_itself_is_zero_and_a_shift_is_not(setup, tmp_path):
    cfg, data, _ = setup
    test = data.test.images
    ev = evaluator_for(cfg, data, num_samples=len(test), batch_size=100)
    same = ev.evaluate(Replay(test), 0, tmp_path / "same")
    assert abs(same["fid"]) < 1e-6 and same["fid_n"] == len(test)
    shifted = torch.roll(test, shifts=(3, 3), dims=(2, 3))
    moved = ev.evaluate(Replay(shifted), 0, tmp_path / "moved")
    assert moved["fid"] > 1.0
    assert abs(same["kid"]) < 0.1 * moved["kid"]  # KID is unbiased: around 0, far below a real gap
    for k in range(10):  # each class's own test images score far better than shifted ones
        assert math.isfinite(same[f"fid_class/{k}"])
        if math.isfinite(moved[f"fid_class/{k}"]):
            assert same[f"fid_class/{k}"] < 0.2 * moved[f"fid_class/{k}"]
            assert same[f"kid_class/{k}"] < 0.2 * moved[f"kid_class/{k}"]
        # near 0 (slightly negative: the unbiased MMD^2 of a set against nearly itself) next to the
        # distance between classes
        assert abs(same[f"kid_class/{k}"]) < 0.05 * ev.wrong_class[k]["kid"]
    assert sum(math.isfinite(moved[f"fid_class/{k}"]) for k in range(10)) >= 5
    assert same["recall_minority"] > moved["recall_minority"] and same["fid_minority"] < moved["fid_minority"]

    # the same numbers as torch-fidelity's own pipeline with the registered judge
    import torch_fidelity

    from trainers.metrics.fidelity import UInt8Dataset

    ref = torch_fidelity.calculate_metrics(
        input1=UInt8Dataset(shifted), input2=UInt8Dataset(test), feature_extractor=JUDGE_NAME,
        feature_extractor_weights_path=str(ev.judge_path), fid=True, kid=True, kid_subset_size=100,
        cuda=False, verbose=False, cache=False, save_cpu_ram=True)
    assert moved["fid"] == pytest.approx(ref["frechet_inception_distance"], rel=1e-3)
    assert moved["kid"] == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-3)


def test_missing_classes_are_counted_and_enter_the_group_means_at_their_penalty(setup, tmp_path):
    """Real images of classes 0-4 only, nothing more to draw: 5+ classes missing. Counts, KLs and the
    group means by hand, every missing class at max(wrong-class figure, worst scored class)."""
    cfg, data, ev = setup
    images, labels = data.test.images, data.test.labels
    judged = ev.features_of(images)[1].argmax(1)
    keep = (labels < 5) & (judged == labels)  # real images of classes 0-4 that the judge labels right
    n = int(keep.sum())
    ev = evaluator_for(cfg, data, num_samples=n, max_draws=n)  # the cap leaves no top-up
    metrics = ev.evaluate(Replay(images[keep]), 3, tmp_path)

    per_class_n = ev.per_class_n
    counts = [int((labels[keep] == k).sum()) for k in range(10)]
    total = sum(counts)
    missing = [counts[k] < per_class_n for k in range(10)]
    assert metrics["per_class_n"] == per_class_n == 35 and metrics["samples_drawn"] == n == metrics["fid_n"]
    for k in range(10):
        assert metrics[f"count_class/{k}"] == counts[k] == metrics[f"judged_class/{k}"]
        assert metrics[f"scored_class/{k}"] == min(counts[k], per_class_n)
        for name in PER_CLASS:
            assert math.isnan(metrics[f"{name}_class/{k}"]) == missing[k]
    assert all(missing[5:]) and not all(missing[:5])
    # KL(p || q) by hand, naive loop
    kl_uniform = kl_prior = 0.0
    for k in range(5):
        p = counts[k] / total
        kl_uniform += p * math.log(p / 0.1)
        kl_prior += p * math.log(p / (data.train_counts[k] / sum(data.train_counts)))
    assert metrics["class_kl_uniform"] == pytest.approx(kl_uniform, abs=1e-12)
    assert metrics["class_kl_prior"] == pytest.approx(kl_prior, abs=1e-12)
    assert metrics["classes_dropped"] == 5
    # the group means over every class of the group; a missing class at its penalty
    for name in PER_CLASS:
        scored = [metrics[f"{name}_class/{k}"] for k in range(10) if not missing[k]]
        for group, members in (("minority", data.minority), ("majority", data.majority)):
            values = []
            for k in members:
                if not missing[k]:
                    values.append(metrics[f"{name}_class/{k}"])
                elif name in ("fid", "kid"):
                    values.append(max([ev.wrong_class[k][name]] + scored))
                else:
                    values.append(0.0)  # recall/precision: nothing of the class is covered
            assert metrics[f"{name}_{group}"] == pytest.approx(sum(values) / len(values), rel=1e-12)
            assert metrics[f"{group}_missing"] == sum(missing[k] for k in members)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["class_hist_step3.png", "samples.npz", "samples_step3.png"]


def test_per_class_figures_are_torch_fidelity_on_each_class_slice(setup):
    """Each class's first N samples against its N-image reference, through torch-fidelity's own
    functions: FID, KID (its 100 subsets, against our one exact subset) and precision/recall."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_kid import kid_features_to_metric
    from torch_fidelity.metric_prc import prc_features_to_metric

    _, data, ev = setup
    images = data.full_train.images[:600]
    feats, logits, _ = ev.features_of(images)
    metrics = ev.metrics_for(images)
    judged = logits.argmax(1)
    ref, n = ev.ref_features, ev.per_class_n
    for k in range(10):
        mine = feats[judged == k][:n]  # the first N in row order
        # the value is the mean over the class's reference draws (N subsamples of its pool, or the whole pool)
        draws = ev.parts[""]["classes"][k]["value"]
        pool = int((ev.ref_labels == k).sum())
        assert len(draws) == (ev.ecfg.reference_draws if n < pool else 1)
        figures = {"fid": [], "kid": [], "precision": [], "recall": []}
        for index in draws:
            assert len(set(index.tolist())) == n and bool((ev.ref_labels[index] == k).all())
            real = ref[index]
            fid = fid_statistics_to_metric(fid_features_to_statistics(mine), fid_features_to_statistics(real), False)
            figures["fid"].append(fid["frechet_inception_distance"])
            kid = kid_features_to_metric(mine, real, kid_subset_size=n, verbose=False)
            figures["kid"].append(kid["kernel_inception_distance_mean"])
            prc = prc_features_to_metric(mine, real, verbose=False)
            figures["precision"].append(prc["precision"])
            figures["recall"].append(prc["recall"])
        for name, values in figures.items():
            assert metrics[f"{name}_class/{k}"] == pytest.approx(np.mean(values), rel=1e-9)
    overall = fid_statistics_to_metric(fid_features_to_statistics(feats), fid_features_to_statistics(ref), False)
    assert metrics["fid"] == pytest.approx(overall["frechet_inception_distance"], rel=1e-12)


def test_validation_and_test_halves_and_the_sd_over_reference_draws(setup):
    """eval.split=val_test: val/<figure> against one half of each class's test images, the normal
    names against the other (disjoint); evalsd/<figure> is the sd over the draws of the group figure,
    recomputed here with torch-fidelity's KID on each draw."""
    from torch_fidelity.metric_kid import kid_features_to_metric

    cfg, data, _ = setup
    ev = evaluator_for(cfg, data, split="val_test")
    assert ev.per_class_n == min(min(int((data.test.labels == k).sum()) // 2 for k in range(10)),
                                 min(int((data.test.labels == k).sum()) - int((data.test.labels == k).sum()) // 2
                                     for k in range(10)))
    images = data.full_train.images[:900]
    feats, logits, _ = ev.features_of(images)
    metrics = ev.metrics_for(images)
    judged, n = logits.argmax(1), ev.per_class_n
    for prefix in ("", "val/"):
        other = "val/" if not prefix else ""
        for k in range(10):
            mine = {int(i) for d in ev.parts[prefix]["classes"][k]["value"] for i in d}
            theirs = {int(i) for d in ev.parts[other]["classes"][k]["value"] for i in d}
            assert not mine & theirs and all(int(data.test.labels[i]) == k for i in mine)

        def kid_of(k, index):
            mine = feats[judged == k][:n]
            return kid_features_to_metric(mine, ev.ref_features[index], kid_subset_size=n,
                                          verbose=False)["kernel_inception_distance_mean"]

        assert all(int((judged == k).sum()) >= n for k in range(10))  # every class scored
        value = [np.mean([kid_of(k, i) for i in ev.parts[prefix]["classes"][k]["value"]]) for k in data.minority]
        assert metrics[f"{prefix}kid_minority"] == pytest.approx(np.mean(value), rel=1e-9)
        if not prefix:
            spread = [ev.parts[""]["classes"][k]["spread"] for k in data.minority]
            per_draw = [np.mean([kid_of(k, s[d]) for k, s in zip(data.minority, spread)]) for d in range(5)]
            assert metrics["evalsd/kid_minority"] == pytest.approx(np.std(per_draw, ddof=1), rel=1e-9)
            assert metrics["evalsd/kid_minority"] > 0
    assert metrics["val/kid_minority"] != metrics["kid_minority"]
    assert math.isfinite(metrics["evalsd/fid"]) and metrics["evalsd/fid"] > 0


def test_kl_conventions_by_hand():
    assert kl_divergence(np.array([0.5, 0.5, 0.0]), np.array([0.25, 0.25, 0.5])) == pytest.approx(math.log(2))
    assert training_prior([3, 1]).tolist() == [0.75, 0.25]
    assert training_prior([3, 0]).tolist() == pytest.approx([3 / 3.5, 0.5 / 3.5])  # a class with no images


def test_small_sample_counts_are_handled(setup):
    cfg, data, ev = setup
    few = ev.metrics_for(data.test.images[:7])  # KID subset capped to 7 (configured 100)
    assert few["fid_n"] == 7 and math.isfinite(few["kid"]) and math.isfinite(few["fid"])
    assert all(math.isnan(few[f"fid_class/{k}"]) for k in range(10))  # every class short of N
    assert few["minority_missing"] + few["majority_missing"] == 10
    # no class scored at all: each enters at its wrong-class figure; finite, never NaN
    assert few["fid_minority"] == pytest.approx(np.mean([ev.wrong_class[k]["fid"] for k in data.minority]))
    assert few["recall_majority"] == 0.0
    one = ev.metrics_for(data.test.images[:1])
    assert math.isnan(one["kid"]) and math.isnan(one["fid"]) and one["classes_dropped"] == 9
    assert all(math.isfinite(one[f"{name}_{group}"]) for name in PER_CLASS for group in ("minority", "majority"))
    tiny = evaluator_for(cfg, data, num_samples=3, batch_size=2, kid_subset_size=1000, max_draws=9)
    metrics = tiny.evaluate(Replay(data.test.images), 0)
    assert math.isfinite(metrics["kid"]) and sum(metrics[f"count_class/{k}"] for k in range(10)) == 3
    assert metrics["fid_n"] == 3  # the overall set stays at num_samples, whatever the top-up drew
    # 6 more draws up to the cap could not give any class its 35: nothing more is drawn
    assert metrics["samples_drawn"] == 3 and metrics["minority_missing"] + metrics["majority_missing"] == 10


def test_conditional_models_are_sampled_per_class_and_topped_up_directly(setup, tmp_path):
    cfg, data, _ = setup
    pools = {y: data.test.images[data.test.labels == y] for y in range(10)}
    ev = evaluator_for(cfg, data, num_samples=1003, batch_size=128)
    metrics = ev.evaluate(ReplayByLabel(pools), 0)
    assert [metrics[f"count_class/{k}"] for k in range(10)] == [101] * 3 + [100] * 7
    assert metrics["judge/conditional_accuracy"] > 0.95
    assert sum(metrics[f"judged_class/{k}"] for k in range(10)) == 1003
    assert metrics["samples_drawn"] == 1003  # every class already has N: nothing more asked
    assert all(math.isfinite(metrics[f"{name}_class/{k}"]) for name in PER_CLASS for k in range(10))

    # 5 a class in the overall set: each class is asked for exactly the N - 5 it lacks
    small = evaluator_for(cfg, data, num_samples=50, batch_size=64)
    g = ReplayByLabel(pools)
    metrics = small.evaluate(g, 0, tmp_path)
    n = small.per_class_n
    requested = torch.cat(g.requested)
    assert torch.equal(requested[:50], torch.arange(10).repeat_interleave(5))
    assert torch.equal(requested[50:], torch.arange(10).repeat_interleave(n - 5))
    assert metrics["samples_drawn"] == 50 + 10 * (n - 5) and metrics["fid_n"] == 50
    assert all(metrics[f"scored_class/{k}"] == n for k in range(10))
    with np.load(tmp_path / "samples.npz") as saved:
        assert torch.equal(torch.from_numpy(saved["labels"]), requested)
        assert saved["images"].shape == (50 + 10 * (n - 5), 16, 16, 1) and saved["images"].dtype == np.uint8
        assert int(saved["draws"]) == metrics["samples_drawn"]
        first_of_class_3 = saved["images"][15]  # the overall set is class-sorted, 5 a class
        assert np.array_equal(first_of_class_3[..., 0], pools[3][0, 0].numpy())


def test_evaluation_leaves_the_global_rng_alone(setup, tmp_path):
    _, data, _ = setup
    from trainers.methods import get_method

    cfg = make_config({**store(tmp_path), "ch": 4, "eval.num_samples": 50, "eval.judge_width": 4,
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


EVAL_KEYS = ("fid", "kid", "fid_n", "per_class_n", "samples_drawn", "draws_cap", "fid_minority", "fid_majority",
             "kid_minority", "kid_majority", "recall_minority", "recall_majority", "precision_minority",
             "precision_majority", "minority_missing", "majority_missing", "class_kl_uniform", "class_kl_prior",
             "classes_dropped", "judge/test_accuracy", "judge/confidence")
CLASS_KEYS = ("fid_class", "kid_class", "recall_class", "precision_class", "scored_class", "count_class",
              "judged_class", "prior")


def rescored(cfg, checkpoint: str, trial: dict, capsys) -> dict:
    """``python -m trainers.evaluate`` (in-process) on a checkpoint's samples.npz, with the trial's keys."""
    from trainers.evaluate import main

    keys = [f"{k}={v}" for k, v in trial.items() if k in (*store_of(cfg), "imbalance") or k.startswith("eval.")]
    capsys.readouterr()
    assert main(["dataset=digits", f"images={Path(checkpoint) / 'artifacts' / 'samples.npz'}", *keys]) == 0
    return json.loads(capsys.readouterr().out)


def same_numbers(trial_metrics: dict, cli: dict) -> None:
    """Every key of the command's output, equal to the trial's (NaN written as null)."""
    for key, value in cli.items():
        mine = trial_metrics[key]
        assert (value is None and math.isnan(mine)) or value == mine, (key, mine, value)


def test_training_reports_every_metric_and_its_samples_rescore_to_the_same_numbers(tmp_path, setup, capsys):
    cfg, _, _ = setup
    from trainers.loop import train

    reports, plain = [], []
    trial = {**store_of(cfg), "ch": 4, "batch_size": 16, "steps": 4, "eval_every": 2, "eval.num_samples": 100,
             "imbalance": 10}
    train(trial, lambda m, c: reports.append((m, c)), workdir=tmp_path / "evaluated")
    train(trial, lambda m, c: plain.append(m), workdir=tmp_path / "plain", evaluator=None)
    # evaluating (sampling G, the judge) leaves the training stream exactly as it was
    assert [m["loss/d"] for m, _ in reports] == [m["loss/d"] for m in plain]
    assert [m["loss/g"] for m, _ in reports] == [m["loss/g"] for m in plain]
    metrics, checkpoint = reports[-1]
    for key in EVAL_KEYS + ("step",):
        assert key in metrics, key
    assert "is" not in metrics  # only with Inception features
    for k in range(10):
        assert {f"{name}/{k}" for name in CLASS_KEYS} <= set(metrics)
    assert metrics["fid_n"] == 100 and metrics["per_class_n"] == 35
    for group in ("minority", "majority"):  # never NaN, even for a 4-step generator
        assert all(math.isfinite(metrics[f"{name}_{group}"]) for name in ("fid", "kid", "recall", "precision"))
    artifacts = Path(checkpoint) / "artifacts"
    pngs = sorted(p.name for p in artifacts.glob("*.png"))
    assert pngs == ["class_hist_step4.png", "samples_step4.png"]
    assert all((artifacts / p).read_bytes()[:4] == b"\x89PNG" for p in pngs)
    with np.load(artifacts / "samples.npz") as saved:
        assert set(saved.files) == {"images", "draws"}  # unconditional: no labels
        assert saved["images"].dtype == np.uint8 and saved["images"].shape[1:] == (16, 16, 1)
        assert len(saved["images"]) >= 100 and int(saved["draws"]) == metrics["samples_drawn"]

    cli = rescored(cfg, checkpoint, trial, capsys)
    assert set(cli) == set(metrics) - {"step", "epoch", "loss/d", "loss/g", "time/step_s", "time/eval_s"}
    same_numbers(metrics, cli)


def test_a_conditional_trials_samples_rescore_to_the_same_numbers(tmp_path, setup, capsys):
    cfg, _, _ = setup
    from trainers.loop import train

    reports = []
    trial = {**store_of(cfg), "method": "cgan", "ch": 4, "batch_size": 16, "steps": 2, "eval_every": 2,
             "eval.num_samples": 60, "eval.images": False}
    train(trial, lambda m, c: reports.append((m, c)), workdir=tmp_path / "cgan")
    metrics, checkpoint = reports[-1]
    with np.load(Path(checkpoint) / "artifacts" / "samples.npz") as saved:
        # 6 a class in the overall set, then each class asked for the 29 it lacks
        assert np.array_equal(saved["labels"], np.concatenate([np.repeat(np.arange(10), 6),
                                                               np.repeat(np.arange(10), 29)]))
    assert metrics["samples_drawn"] == 60 + 290 and "judge/conditional_accuracy" in metrics
    same_numbers(metrics, rescored(cfg, checkpoint, trial, capsys))


def test_inception_without_weights_suggests_the_judge_before_any_write(setup, tmp_path):
    _, data, _ = setup
    cfg = make_config({**store(tmp_path / "runs"), "eval.features": "inception",
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
    pick = torch.cat([torch.nonzero(data.test.labels == k).flatten()[:4] for k in range(10)])
    small = dataclasses.replace(data, test=Split(data.test.images[pick], data.test.labels[pick]))
    # 4 test images a class: N = 4; the replay cycles until a class the judge once mislabels has 4 too
    cfg = make_config({**store_of(setup[0]), "eval.features": "inception", "eval.inception_weights": str(weights),
                       "eval.num_samples": 40, "eval.max_draws": 200, "eval.batch_size": 10})
    # the real network and code path, at a smaller input size (75, Inception's minimum) for CPU time
    with mock.patch.object(FeatureExtractorInceptionV3, "INPUT_IMAGE_SIZE", 75):
        ev = make_evaluator(cfg, small, CPU)
        metrics = ev.evaluate(Replay(small.test.images), 0)
    assert ev.ref_features.shape == (40, 2048) and ev.per_class_n == 4
    assert all(math.isfinite(metrics[f"{name}_class/{k}"]) for name in PER_CLASS for k in range(10))
    assert math.isfinite(metrics["is"]) and math.isfinite(metrics["kid"])
    assert abs(metrics["fid"]) < 1e-3 * max(1.0, float(ev.ref_stats["sigma"].trace()))
