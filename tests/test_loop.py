"""The one training loop: resume bit-exactness, determinism, divergence, checkpoint fallback."""

from __future__ import annotations

import math

import pytest
import torch

from trainers import checkpoint as ckpt
from trainers.loop import DivergedError, train
from trainers.methods import METHODS
from trainers.methods.dcgan import DCGAN

TINY = {"method": "dcgan", "dataset": "digits", "ch": 4, "z_dim": 16, "batch_size": 16, "device": "cpu",
        "imbalance": 10}


def run(tmp_path, name, **overrides):
    reports = []
    train({**TINY, **overrides}, lambda m, c: reports.append((m, c)), workdir=tmp_path / name, evaluator=None)
    return reports


def losses(reports):
    return [{k: v for k, v in m.items() if k.startswith("loss/")} for m, _ in reports]


def assert_same_state(a, b):
    for part in ("G", "D"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key} differs"
    for part in ("opt_g", "opt_d"):
        for pid, sa in a[part]["state"].items():
            for key, value in sa.items():
                assert torch.equal(value, b[part]["state"][pid][key]), f"{part}[{pid}].{key} differs"


def test_resume_is_bit_exact_and_survives_a_corrupted_checkpoint(tmp_path):
    # n_dis=2 so a resume lands with the sampler mid-epoch after an uneven number of batches
    straight = run(tmp_path, "straight", steps=8, eval_every=4, n_dis=2)
    first = run(tmp_path, "resumed", steps=4, eval_every=4, n_dis=2)
    reports = []
    train({**TINY, "steps": 8, "eval_every": 4, "n_dis": 2}, lambda m, c: reports.append((m, c)),
          workdir=tmp_path / "resumed", resume_from=tmp_path / "resumed", evaluator=None)
    assert [m["step"] for m, _ in straight] == [4, 8] and [m["step"] for m, _ in reports] == [8]
    assert losses(first) == losses(straight[:1]) and losses(reports) == losses(straight[1:])

    end_straight, _ = ckpt.load_latest(tmp_path / "straight")
    end_resumed, path = ckpt.load_latest(tmp_path / "resumed")
    assert path.name == "step_000000008" and end_resumed["step"] == 8
    assert_same_state(end_straight, end_resumed)
    assert torch.equal(end_straight["sampler"]["order"], end_resumed["sampler"]["order"])

    # a corrupted newest checkpoint: load_latest falls back to the previous one, by work dir or by path
    newest = tmp_path / "straight" / "checkpoints" / "step_000000008"
    data = (newest / ckpt.STATE_FILE).read_bytes()
    (newest / ckpt.STATE_FILE).write_bytes(data[: len(data) // 2])
    state, path = ckpt.load_latest(tmp_path / "straight")
    assert path.name == "step_000000004" and state["step"] == 4
    assert ckpt.load_latest(newest)[1].name == "step_000000004"
    # ... and a resume from it still reproduces the uninterrupted run
    again = []
    train({**TINY, "steps": 8, "eval_every": 4, "n_dis": 2}, lambda m, c: again.append(m),
          workdir=tmp_path / "straight", resume_from=tmp_path / "straight", evaluator=None)
    assert_same_state(ckpt.load_state(newest), end_resumed)
    assert losses([(m, None) for m in again]) == losses(straight[1:])


def test_same_seed_same_losses_other_seed_differs(tmp_path):
    a = run(tmp_path, "a", steps=3, eval_every=1, seed=0)
    b = run(tmp_path, "b", steps=3, eval_every=1, seed=0)
    c = run(tmp_path, "c", steps=3, eval_every=1, seed=1)
    assert losses(a) == losses(b)
    assert losses(a) != losses(c)
    assert all(math.isfinite(v) for row in losses(a) for v in row.values())


class Exploding(DCGAN):
    """A method added from a test module: DCGAN whose D loss becomes ``bad`` from step 3 on."""

    bad = float("nan")

    def d_loss(self, real, labels, fake, fake_labels, step):
        loss, logs = super().d_loss(real, labels, fake, fake_labels, step)
        return (loss * self.bad if step >= 3 else loss), logs


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_loss_raises_diverged_error(tmp_path, monkeypatch, bad):
    monkeypatch.setattr(Exploding, "bad", bad)
    monkeypatch.setitem(METHODS, "exploding", Exploding)  # one class, one registry entry
    reports = []
    with pytest.raises(DivergedError) as e:
        train({**TINY, "method": "exploding", "steps": 10, "eval_every": 2}, lambda m, c: reports.append(m),
              workdir=tmp_path / "w", evaluator=None)
    assert e.value.step == 3 and "step 3" in str(e.value) and "lr_d" in str(e.value)
    assert [m["step"] for m in reports] == [2]  # nothing reported after the divergence ...
    assert all(math.isfinite(v) for m in reports for v in m.values())  # ... and never a NaN metric
    assert [p.name for p in ckpt.checkpoint_dirs(tmp_path / "w")] == ["step_000000002"]


def test_real_divergence_from_a_huge_learning_rate(tmp_path):
    with pytest.raises(DivergedError) as e:
        train({**TINY, "steps": 20, "eval_every": 20, "lr_g": 1e30, "lr_d": 1e30}, workdir=tmp_path / "w",
              evaluator=None)
    assert 0 <= e.value.step < 20
    assert not all(math.isfinite(v) for v in e.value.losses.values())


def test_checkpoints_are_atomic_and_pruned(tmp_path):
    state = {"step": 0, "x": torch.arange(3)}
    for step in (1, 2, 3):
        ckpt.save_checkpoint(tmp_path, step, {**state, "step": step}, {"step": step}, {}, keep=2)
    # a crash mid-write leaves only a hidden temp dir, which is never taken for a checkpoint
    (tmp_path / "checkpoints" / ".tmp-step_000000004-1").mkdir()
    assert [p.name for p in ckpt.checkpoint_dirs(tmp_path)] == ["step_000000002", "step_000000003"]
    (tmp_path / "checkpoints" / "step_000000003" / ckpt.STATE_FILE).write_bytes(b"not a checkpoint")
    state, path = ckpt.load_latest(tmp_path)
    assert state["step"] == 2 and path.name == "step_000000002"
    (tmp_path / "checkpoints" / "step_000000002" / ckpt.STATE_FILE).unlink()
    with pytest.raises(ckpt.CheckpointError, match="no readable checkpoint"):
        ckpt.load_latest(tmp_path)


def test_every_checkpoint_records_the_training_split_and_its_minority(tmp_path):
    import json

    from trainers.config import make_config
    from trainers.data import load_data

    reports = run(tmp_path, "data", steps=2, eval_every=2)
    recorded = json.loads((ckpt.checkpoint_dirs(tmp_path / "data")[-1] / ckpt.DATA_FILE).read_text())
    data = load_data(make_config(TINY))
    # imbalance 10, exp profile, the seed's class order: the five smallest classes are its last five ranks
    order = data.class_order
    assert recorded["minority_classes"] == sorted(order[5:]) == data.minority
    assert recorded["majority_classes"] == sorted(order[:5])
    assert recorded["train_counts"] == data.train_counts and recorded["train_size"] == sum(data.train_counts)
    assert recorded["train_counts"][order[0]] > recorded["train_counts"][order[9]]
    assert reports[-1][1].endswith("step_000000002")


def test_a_checkpoint_of_an_older_format_is_refused_never_loaded(tmp_path, capsys):
    """The cGAN's 1 + gamma keeps every tensor's shape: an old checkpoint would load silently with an
    effective gain of 2. Without a format version (or with an older one) it is refused, in one line that
    names it and what changed, and nothing older is tried in its place."""
    from trainers.train import main as train_main

    cfg = {**TINY, "method": "cgan", "steps": 2, "eval_every": 2}
    train(cfg, workdir=tmp_path / "w", evaluator=None)
    path = ckpt.checkpoint_dirs(tmp_path / "w")[-1] / ckpt.STATE_FILE
    state = torch.load(path, weights_only=True)
    for old in (None, 1):
        written = {k: v for k, v in state.items() if k != "format_version"}
        if old is not None:
            written["format_version"] = old
        torch.save(written, path)
        with pytest.raises(ckpt.CheckpointFormatError) as e:
            train({**cfg, "steps": 4}, workdir=tmp_path / "w", resume_from=tmp_path / "w", evaluator=None)
        message = str(e.value)
        assert str(path) in message and "1 + gamma" in message and "\n" not in message
        assert ("before versioning" if old is None else "format 1") in message
    rc = train_main([*(f"{k}={v}" for k, v in cfg.items()), "steps=4", f"workdir={tmp_path / 'w'}", "resume=true",
                     f"root={tmp_path}"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "cannot be resumed" in err and "Traceback" not in err


def test_one_seed_pairs_methods_on_data_order_and_generator_init():
    """Replicates with the same seed are paired across methods: the same training subset, the same batch
    order and (same architecture) the same initial G; another seed draws another subset."""
    from trainers.config import make_config
    from trainers.data import BatchSampler, load_data
    from trainers.loop import seed_everything
    from trainers.methods import get_method

    def build(method, seed):
        cfg = make_config({**TINY, "method": method, "seed": seed})
        seed_everything(cfg.seed)  # as the loop does, before the data and the nets
        data = load_data(cfg)
        return data, get_method(method)(cfg, data, torch.device("cpu")), BatchSampler(
            data.train.labels, cfg.batch_size, cfg.seed, data.num_classes)

    runs = {m: build(m, 1) for m in ("dcgan", "contrad", "damage")}
    base_data, base_method, base_sampler = runs["dcgan"]
    order = [base_sampler.next() for _ in range(3)]
    for data, method, sampler in list(runs.values())[1:]:
        assert torch.equal(data.train.images, base_data.train.images)
        assert all(torch.equal(sampler.next(), idx) for idx in order)
        for key, value in base_method.G.state_dict().items():
            assert torch.equal(method.G.state_dict()[key], value), key
    other, _, _ = build("dcgan", 2)
    # another seed: another subset and another class order (the same counts by rank)
    assert [other.train_counts[c] for c in other.class_order] == [base_data.train_counts[c]
                                                                  for c in base_data.class_order]
    assert other.class_order != base_data.class_order and not torch.equal(other.train.images, base_data.train.images)
    assert other.info()["data_seed"] == 2 and base_data.info()["data_seed"] == 1


def test_linear_lr_decay_follows_sngan_schedule_and_resumes_bit_exact(tmp_path):
    # steps 8, decay from step 4: factors 1, 1, 1, 1, 4/4, 3/4, 2/4, 1/4 (SNGAN's LinearShift to 0)
    cfg = {**TINY, "steps": 8, "eval_every": 2, "lr_decay_start": 0.5, "lr_g": 1e-3, "lr_d": 2e-3, "keep_checkpoints": 10}
    train(cfg, workdir=tmp_path / "straight", evaluator=None)
    # a step-s checkpoint holds the rate its last step (index s - 1) ran at
    expected = {2: 1.0, 4: 1.0, 6: 3 / 4, 8: 1 / 4}
    for step, factor in expected.items():
        state = ckpt.load_state(tmp_path / "straight" / "checkpoints" / f"step_{step:09d}")
        assert state["opt_g"]["param_groups"][0]["lr"] == pytest.approx(1e-3 * factor)
        assert state["opt_d"]["param_groups"][0]["lr"] == pytest.approx(2e-3 * factor)
    # killed after step 4 (only its checkpoint left), resumed: the same rates and the same end state
    import shutil

    (tmp_path / "resumed" / "checkpoints").mkdir(parents=True)
    shutil.copytree(tmp_path / "straight" / "checkpoints" / "step_000000004",
                    tmp_path / "resumed" / "checkpoints" / "step_000000004")
    train(cfg, workdir=tmp_path / "resumed", resume_from=tmp_path / "resumed", evaluator=None)
    assert_same_state(ckpt.load_latest(tmp_path / "straight")[0], ckpt.load_latest(tmp_path / "resumed")[0])
    # off by default: the rate never moves
    train({**TINY, "steps": 4, "eval_every": 4}, workdir=tmp_path / "off", evaluator=None)
    assert ckpt.load_latest(tmp_path / "off")[0]["opt_g"]["param_groups"][0]["lr"] == pytest.approx(2e-4)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_the_multi_tensor_adam_update_is_bit_identical_to_the_per_parameter_loop(tmp_path, monkeypatch, method):
    """The Stepper's Adam runs foreach (multi-tensor) on CPU too, for speed; every method's weights and
    optimiser state after a few steps equal those of PyTorch's per-parameter loop bit for bit, so the
    figures of earlier runs stay reproducible."""
    from trainers import loop

    cfg = {"method": method, "steps": 6, "eval_every": 3, "warmup_steps": 2, "lr_decay_start": 0.5}
    run(tmp_path, "foreach", **cfg)
    adam = torch.optim.Adam
    monkeypatch.setattr(loop.torch.optim, "Adam", lambda *a, foreach=None, **k: adam(*a, foreach=False, **k))
    run(tmp_path, "loop", **cfg)
    a, _ = ckpt.load_latest(tmp_path / "foreach")
    b, _ = ckpt.load_latest(tmp_path / "loop")
    assert a["opt_g"]["param_groups"][0]["foreach"] is True and b["opt_g"]["param_groups"][0]["foreach"] is False
    assert_same_state(a, b)
