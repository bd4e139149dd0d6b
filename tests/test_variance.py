"""Variance reduction: the EMA copy of G (``g_ema``), its checkpoint, the shared D trunk across methods, and
the arithmetic of ``benchmarks/variance_reduction.py``."""

from __future__ import annotations

import copy
import json
import importlib.util
import math
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from trainers import checkpoint as ckpt
from trainers.ema import GEma
from trainers.loop import train

TINY = {"method": "dcgan", "dataset": "digits", "ch": 4, "z_dim": 16, "batch_size": 16, "device": "cpu",
        "imbalance": 10}


def _named(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_ema_update_is_the_hand_ema_and_copies_buffers():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = GEma(net, decay=0.75, start=2)
    hand = {k: v.clone() for k, v in net.named_parameters()}
    for t in range(1, 6):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        net(torch.randn(8, 3))  # moves BatchNorm's running statistics
        ema.update(net)
        for name, p in net.named_parameters():
            # the first `start` updates copy G; later ones average
            hand[name] = p.detach().clone() if t <= 2 else 0.75 * hand[name] + 0.25 * p.detach()
    got = dict(ema.G.named_parameters())
    for name, value in hand.items():
        assert torch.allclose(got[name], value, atol=1e-6), name
        assert not torch.equal(got[name], dict(net.named_parameters())[name])
    for (name, b_ema), b in zip(ema.G.named_buffers(), net.buffers()):
        assert torch.equal(b_ema, b), name
    assert ema.updates == 5 and not any(p.requires_grad for p in ema.G.parameters())


class Recording:
    """An evaluator that records the generator it is handed and reports a number computed from its samples."""

    def __init__(self):
        self.seen: list[dict[str, torch.Tensor]] = []

    def evaluate(self, method, step, out_dir=None):
        self.seen.append(_named(method.G))
        images = method.generate(6, generator=torch.Generator().manual_seed(0))
        return {"sample_sum": float(images.double().sum())}


def test_loop_ema_follows_g_steps_and_is_what_is_evaluated(tmp_path):
    after_steps: list[dict[str, torch.Tensor]] = []
    evaluator = Recording()
    reports = []
    train({**TINY, "steps": 5, "eval_every": 5, "g_ema": 0.9, "g_ema_start": 1},
          lambda m, c: reports.append(m), workdir=tmp_path / "on", evaluator=evaluator,
          on_g_step=lambda method: after_steps.append(_named(method.G)))
    hand = dict(after_steps[0])  # the first update copies G (start=1), then the EMA of the next four
    for weights in after_steps[1:]:
        hand = {k: (0.9 * hand[k] + 0.1 * v if v.is_floating_point() and "running" not in k else v)
                for k, v in weights.items()}
    state, _ = ckpt.load_latest(tmp_path / "on")
    for key, value in hand.items():
        assert torch.allclose(state["G_ema"]["G"][key].double(), value.double(), atol=1e-6), key
    assert state["G_ema"]["updates"] == 5
    # the evaluation saw the EMA copy, not G
    assert all(torch.equal(evaluator.seen[0][k], state["G_ema"]["G"][k]) for k in hand)
    assert not all(torch.equal(evaluator.seen[0][k], state["G"][k]) for k in hand)
    # ... and training is the same as without it
    off = []
    train({**TINY, "steps": 5, "eval_every": 5}, lambda m, c: off.append(m), workdir=tmp_path / "off",
          evaluator=Recording())
    losses = [{k: v for k, v in m.items() if k.startswith("loss/")} for m in (reports[0], off[0])]
    assert losses[0] == losses[1]
    assert torch.equal(ckpt.load_latest(tmp_path / "off")[0]["G"]["fc.weight"], state["G"]["fc.weight"])
    assert "G_ema" not in ckpt.load_latest(tmp_path / "off")[0]


def test_resume_with_g_ema_gives_identical_numbers(tmp_path):
    cfg = {**TINY, "g_ema": 0.8, "g_ema_start": 2, "eval_every": 3, "n_dis": 2}
    straight = []
    train({**cfg, "steps": 6}, lambda m, c: straight.append(m), workdir=tmp_path / "straight", evaluator=Recording())
    first, second = [], []
    train({**cfg, "steps": 3}, lambda m, c: first.append(m), workdir=tmp_path / "resumed", evaluator=Recording())
    train({**cfg, "steps": 6}, lambda m, c: second.append(m), workdir=tmp_path / "resumed",
          resume_from=tmp_path / "resumed", evaluator=Recording())
    keys = ["sample_sum", "loss/d", "loss/g"]
    assert [[m[k] for k in keys] for m in first + second] == [[m[k] for k in keys] for m in straight]
    a, b = ckpt.load_latest(tmp_path / "straight")[0], ckpt.load_latest(tmp_path / "resumed")[0]
    assert a["G_ema"]["updates"] == b["G_ema"]["updates"] == 6
    for key, value in a["G_ema"]["G"].items():
        assert torch.equal(value, b["G_ema"]["G"][key]), key


def test_resume_with_g_ema_from_a_checkpoint_without_it_is_refused(tmp_path):
    from trainers.config import ConfigError

    train({**TINY, "steps": 2, "eval_every": 2}, workdir=tmp_path / "w", evaluator=None)
    with pytest.raises(ConfigError, match="g_ema=0.9 but the checkpoint"):
        train({**TINY, "steps": 4, "eval_every": 2, "g_ema": 0.9}, workdir=tmp_path / "w",
              resume_from=tmp_path / "w", evaluator=None)


# -- common random numbers: the D trunk -------------------------------------------------------------------
def _built(method: str, seed: int, **extra):
    from trainers.config import make_config
    from trainers.data import load_data
    from trainers.loop import seed_everything
    from trainers.methods import get_method

    cfg = make_config({**TINY, "method": method, "seed": seed, **extra})
    seed_everything(cfg.seed)  # as the loop does, before the data and the nets
    data = load_data(cfg)
    return get_method(method)(cfg, data, torch.device("cpu"))


def _same(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_methods_with_one_seed_share_the_initial_d_trunk():
    """DCGAN, ContraD and Damage GAN build the same SNDCGAN trunk: with one seed its initial weights (and
    spectral norm's power-iteration vectors) are the same, so a comparison between them does not carry
    the noise of two trunk initialisations; the cGAN's gSR/LeCam arms share theirs too."""
    runs = {m: _built(m, 1) for m in ("dcgan", "contrad", "damage")}
    for method in ("contrad", "damage"):
        assert _same(runs[method].D.encoder, runs["dcgan"].D.encoder), method
        assert _same(runs[method].G, runs["dcgan"].G), method
    assert not _same(_built("dcgan", 2).D.encoder, runs["dcgan"].D.encoder)
    # the knobs of a method do not move its trunk: ContraD with wider heads, the cGAN with gSR and LeCam
    assert _same(_built("contrad", 1, head_hidden=64, proj_dim=32).D.encoder, runs["dcgan"].D.encoder)
    plain, regularised = _built("cgan", 1), _built("cgan", 1, gsr_lambda=0.5, lecam_lambda=0.3)
    assert _same(plain.D.encoder, regularised.D.encoder) and _same(plain.G, regularised.G)


# -- the benchmark's arithmetic ----------------------------------------------------------------------------
def _benchmark():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "variance_reduction.py"
    spec = importlib.util.spec_from_file_location("variance_reduction", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _synthetic(transform=None):
    """Three seeds of the main job's six cells, two evaluations each, under the variant ``G/n100``."""
    rng = np.random.default_rng(5)
    trials = []
    for seed in range(3):
        for method in ("dcgan", "contrad", "damage"):
            for rho in (1, 100):
                evals = []
                for step in (1, 2):
                    values = {"kid_minority": float(rng.normal(0.1 * rho ** 0.1, 0.02)),
                              "recall_minority": float(rng.normal(0.5, 0.05))}
                    row = {"step": step, "G/n100": values}
                    if transform is not None:
                        row["X/n100"] = {k: transform(v, seed, step) for k, v in values.items()}
                    evals.append(row)
                trials.append({"method": method, "imbalance": rho, "seed": seed,
                               "sampled": {"method": method, "imbalance": rho}, "evals": evals})
    return {"space": "sdclr_ablation", "trials": trials}


def test_benchmark_effects_match_a_hand_computation():
    bench = _benchmark()
    from search.spaces import load_space

    space = load_space("sdclr_ablation")
    payload = _synthetic()
    effects = bench.standardised_effects(space, payload["trials"], "G/n100/last1")
    assert len(effects) == 17  # the primary one, 2 x 4 method comparisons, 2 x (3 imbalance + 1 pooled)
    # the primary comparison by hand: Damage GAN - ContraD at rho=100, kid_minority, the last evaluation
    value = {(t["method"], t["imbalance"], t["seed"]): t["evals"][-1]["G/n100"]["kid_minority"]
             for t in payload["trials"]}
    diffs = np.array([value["damage", 100, s] - value["contrad", 100, s] for s in range(3)])
    primary = next(v for k, v in effects.items() if k[0] == "primary")
    assert primary["z2"] == pytest.approx((diffs.mean() / diffs.std(ddof=1)) ** 2)
    # last2: the mean of the two evaluations
    value2 = {(t["method"], t["imbalance"], t["seed"]): np.mean([r["G/n100"]["kid_minority"] for r in t["evals"]])
              for t in payload["trials"]}
    diffs2 = np.array([value2["damage", 100, s] - value2["contrad", 100, s] for s in range(3)])
    primary2 = next(v for k, v in bench.standardised_effects(space, payload["trials"], "G/n100/last2").items()
                    if k[0] == "primary")
    assert primary2["z2"] == pytest.approx((diffs2.mean() / diffs2.std(ddof=1)) ** 2)


def test_benchmark_multiplier_median_and_invariances():
    bench = _benchmark()
    old = {("a",): {"z2": 1.0, "sd": 2.0}, ("b",): {"z2": 4.0, "sd": 1.0}, ("c",): {"z2": 2.0, "sd": 1.0}}
    new = {("a",): {"z2": 3.0, "sd": 1.0}, ("b",): {"z2": 4.0, "sd": 0.5}, ("c",): {"z2": 1.0, "sd": math.nan}}
    got = bench.multiplier(old, new)
    assert got["effective_seed_multiplier"] == statistics.median([3.0, 1.0, 0.5])
    assert got["variance_ratio"] == statistics.median([4.0, 4.0])
    assert got["gained"] == 1 and got["comparisons"] == 3
    # scaling every value leaves (mean/sd)^2 alone and divides the variance by the square of the scale
    scaled = bench.analyse(_synthetic(lambda v, seed, step: 2.0 * v), new="X/n100/last1")
    assert scaled["effective_seed_multiplier"] == pytest.approx(1.0)
    assert scaled["variance_ratio"] == pytest.approx(0.25)
    # a shift common to one seed's trials cancels in every paired difference
    shifted = bench.analyse(_synthetic(lambda v, seed, step: v + 0.3 * seed), new="X/n100/last1")
    assert shifted["effective_seed_multiplier"] == pytest.approx(1.0)
    assert set(shifted["variants"]) == {f"{g}/n100/last{k}" for g in ("G", "X") for k in (1, 2)}


class Counting:
    """An evaluator whose figure is the step (a float) beside an int that must not be averaged."""

    def evaluate(self, method, step, out_dir=None):
        return {"figure": float(step), "count": step}


def test_last_k_reports_the_mean_of_the_last_k_evaluations_and_resumes_exactly(tmp_path):
    cfg = {**TINY, "eval_every": 1, "eval": {"last_k": 2}}
    straight = []
    train({**cfg, "steps": 4}, lambda m, c: straight.append(m), workdir=tmp_path / "s", evaluator=Counting())
    assert [m["figure"] for m in straight] == [1.0, 1.5, 2.5, 3.5]
    assert [m["count"] for m in straight] == [1, 2, 3, 4]
    resumed = []
    train({**cfg, "steps": 2}, lambda m, c: resumed.append(m), workdir=tmp_path / "r", evaluator=Counting())
    train({**cfg, "steps": 4}, lambda m, c: resumed.append(m), workdir=tmp_path / "r", resume_from=tmp_path / "r",
          evaluator=Counting())
    assert [m["figure"] for m in resumed] == [1.0, 1.5, 2.5, 3.5]


def test_benchmark_reads_a_primary_on_a_metric_outside_the_family_and_groups_by_configuration():
    """On the evidence study (its primary compares fid, which the family's own metrics leave out; two
    configurations share method and imbalance, told apart by imbalance_profile): the primary comparison
    is measured, and the seed variance is pooled within each configuration, never across the two."""
    bench = _benchmark()
    from search.spaces import load_space

    space = load_space("evidence_damage")
    rng = np.random.default_rng(7)
    cells = [(m, 10, None) for m in ("dcgan", "contrad", "damage")] + [
        (m, 100, p) for m in ("dcgan", "contrad", "damage") for p in ("exp", "balanced_partial")]
    trials = []
    for seed in range(3):
        for method, rho, profile in cells:
            sampled = {"method": method, "imbalance": rho, **({"imbalance_profile": profile} if profile else {})}
            offset = 5.0 if profile == "balanced_partial" else 0.0  # a configuration's own level
            evals = [{"step": step, "G/n100": {"fid": float(rng.normal(9.0 + offset, 0.5)),
                                               "kid_minority": float(rng.normal(1.0 + offset, 0.1)),
                                               "recall_minority": float(rng.normal(0.5, 0.05))}}
                     for step in (1, 2)]
            trials.append({"method": method, "imbalance": rho, "seed": seed, "sampled": sampled, "evals": evals})
    effects = bench.standardised_effects(space, trials, "G/n100/last1")
    primary = next(v for k, v in effects.items() if k[0] == "primary")
    fid = {(t["method"], t["sampled"].get("imbalance_profile"), t["seed"]): t["evals"][-1]["G/n100"]["fid"]
           for t in trials if t["imbalance"] == 100}
    diffs = np.array([fid["damage", "exp", s] - fid["contrad", "exp", s] for s in range(3)])
    assert primary["z2"] == pytest.approx((diffs.mean() / diffs.std(ddof=1)) ** 2)
    groups: dict = {}
    for t in trials:
        groups.setdefault(json.dumps(t["sampled"], sort_keys=True), []).append(t["evals"][-1]["G/n100"]["kid_minority"])
    pooled = np.mean([np.var(v, ddof=1) for v in groups.values()])  # equal sizes: the plain mean pools them
    assert bench.seed_variance(trials, "G/n100/last1", "kid_minority") == pytest.approx(pooled)
