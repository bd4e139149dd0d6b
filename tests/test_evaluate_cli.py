"""``python -m trainers.evaluate``: a foreign sample file scored like a trial, and every bad input as one
``error:`` line with exit code 2 (the trial -> samples.npz -> same numbers round trip: test_metrics.py)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from trainers.evaluate import main

from metrics_fixtures import digits_eval, store_args  # noqa: F401 - fixture
from test_search_e2e import ENV, PROJECT


def save(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


@pytest.fixture(scope="module")
def good(digits_eval, tmp_path_factory):
    """The shared cache's arguments, and real test images of digits (N x H x W x C uint8) with labels."""
    cfg, data, _ = digits_eval
    images = data.test.images.permute(0, 2, 3, 1).numpy()
    labels = data.test.labels.numpy()
    return store_args(cfg), images, labels, tmp_path_factory.mktemp("cli")


def run(argv, capsys):
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_a_foreign_sample_file_is_scored_with_a_trials_names(good, digits_eval, capsys):
    cache, images, labels, tmp = good
    _, data, ev = digits_eval
    plain = save(tmp / "plain.npz", images=images[..., 0])  # N x H x W is accepted for grey images
    code, out, err = run(["dataset=digits", f"images={plain}", *cache, "eval.num_samples=300",
                          "imbalance=100"], capsys)
    assert code == 0, err
    metrics = json.loads(out)
    assert metrics["fid_n"] == 300 and metrics["samples_drawn"] == len(images)
    from trainers.data import class_order

    tail = class_order(10, 0)[-1]  # seed 0's last-ranked class (the class order is the seed's)
    assert metrics[f"prior/{tail}"] == pytest.approx(1 / 339)  # the prior of a trial at imbalance=100
    for key in ("fid", "kid", "fid_minority", "kid_majority", "recall_minority", "minority_missing", "per_class_n",
                "class_kl_prior", "judge/confidence", "fid_class/0", "kid_class/9", "scored_class/3"):
        assert key in metrics
    assert all(v is None or math.isfinite(v) for v in metrics.values())  # NaN travels as null
    # conditional: classes from the labels, so every class has its ~36 real images and is scored
    labelled = save(tmp / "labelled.npz", images=images, labels=labels)
    code, out, _ = run(["dataset=digits", f"images={labelled}", *cache, "eval.num_samples=300"], capsys)
    metrics = json.loads(out)
    assert code == 0 and metrics["judge/conditional_accuracy"] > 0.95
    assert all(metrics[f"scored_class/{k}"] == ev.per_class_n for k in range(10))
    # fewer than N of a class: nothing to ask for more, the class is missing
    few = save(tmp / "few.npz", images=images[labels != 7], labels=labels[labels != 7])
    metrics = json.loads(run(["dataset=digits", f"images={few}", *cache, "eval.num_samples=300"],
                             capsys)[1])
    assert metrics["fid_class/7"] is None and metrics["scored_class/7"] == 0
    assert metrics[f"{'minority' if 7 in data.minority else 'majority'}_missing"] == 1


BAD = {
    "no_images_key": (["dataset=digits"], "images=PATH.npz"),
    "missing_file": (["dataset=digits", "images={tmp}/nope.npz"], "no such file"),
    "not_npz": (["dataset=digits", "images={tmp}/text.npz"], "cannot be read as an .npz"),
    "no_images_array": (["dataset=digits", "images={tmp}/other.npz"], "holds no 'images' array"),
    "float_images": (["dataset=digits", "images={tmp}/float.npz"], "not uint8"),
    "channels_first": (["dataset=digits", "images={tmp}/nchw.npz"], "x.transpose(0, 2, 3, 1)"),
    "wrong_channels": (["dataset=digits", "images={tmp}/rgb.npz"], "3 channel(s) but digits has 1"),
    "wrong_resolution": (["dataset=digits", "images={tmp}/small.npz"], "pass resolution=8"),
    "unit_range": (["dataset=digits", "images={tmp}/unit.npz"], "multiply by 255"),
    "too_few": (["dataset=digits", "images={tmp}/good.npz", "eval.num_samples=1000"], "eval.num_samples=360"),
    "labels_length": (["dataset=digits", "images={tmp}/short_labels.npz"], "one class per image"),
    "labels_class": (["dataset=digits", "images={tmp}/class_12.npz"], "class 12 but digits has 10 classes"),
    "labels_float": (["dataset=digits", "images={tmp}/float_labels.npz"], "not integers"),
    "empty": (["dataset=digits", "images={tmp}/empty.npz"], "holds no images"),
    "training_key": (["dataset=digits", "images={tmp}/good.npz", "method=dcgan"], "does not apply"),
    "unknown_key": (["dataset=digits", "images={tmp}/good.npz", "eval.num_sample=5"], "eval.num_samples"),
    "per_class_n": (["dataset=digits", "images={tmp}/good.npz", "eval.per_class_n=50"], "eval.per_class_n <= 35"),
    "unknown_dataset": (["dataset=nope", "images={tmp}/good.npz"], "nope"),
}


@pytest.fixture(scope="module")
def bad_files(good):
    _, images, labels, tmp = good
    (tmp / "text.npz").write_text("not a zip")
    save(tmp / "good.npz", images=images)
    save(tmp / "other.npz", pictures=images)
    save(tmp / "float.npz", images=images.astype(np.float32) / 127.5 - 1)
    save(tmp / "nchw.npz", images=images.transpose(0, 3, 1, 2).repeat(2, axis=3))
    save(tmp / "rgb.npz", images=images.repeat(3, axis=3))
    save(tmp / "small.npz", images=images[:, ::2, ::2])
    save(tmp / "unit.npz", images=(images > 127).astype(np.uint8))
    save(tmp / "short_labels.npz", images=images, labels=labels[:-1])
    save(tmp / "class_12.npz", images=images, labels=np.where(labels == 3, 12, labels))
    save(tmp / "float_labels.npz", images=images, labels=labels.astype(np.float32))
    save(tmp / "empty.npz", images=images[:0])
    return tmp


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_and_exit_2(case, bad_files, good, capsys):
    cache = good[0]
    argv, message = BAD[case]
    extra = [] if case == "too_few" else ["eval.num_samples=300"]
    code, out, err = run([a.format(tmp=bad_files) for a in argv] + cache + extra, capsys)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err


def test_the_real_command_has_no_traceback(bad_files, good):
    out = subprocess.run([sys.executable, "-m", "trainers.evaluate", "dataset=digits",
                          f"images={bad_files / 'float.npz'}", *good[0]],
                         cwd=PROJECT, env=ENV, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1
