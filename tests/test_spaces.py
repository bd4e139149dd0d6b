"""Space files: every shipped space validates and yields valid trainer configs; broken ones fail clearly."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import optuna
import pytest

from search.spaces import DefineByRun, SpaceError, available_spaces, load_space
from trainers.config import make_config
from trainers.methods import METHODS

optuna.logging.set_verbosity(optuna.logging.WARNING)

BASE = """
name: t
metric: fid
params:
  method: {choice: [dcgan, damage]}
  prune_ratio: {uniform: [0.1, 0.9], when: {method: damage}}
"""


@pytest.mark.parametrize("name", available_spaces())
def test_every_space_validates_and_samples_valid_configs(name):
    space = load_space(name)
    study = optuna.create_study(directions=["minimize"] * len(space.metric))
    fn = DefineByRun(space.params)
    for _ in range(6):
        trial = study.ask()
        fn(trial)
        cfg = make_config(space.trial_config(trial.params, space.seeds[0]))
        assert cfg.method in METHODS
        for p in space.params:  # a conditional parameter is sampled exactly when its condition holds
            assert (p.name in trial.params) == p.active(trial.params)
        study.tell(trial, [1.0] * len(space.metric) if len(space.metric) > 1 else 1.0)
    assert load_space(name, preset="cifar10_gpu").fixed["dataset"] == "cifar10"


def test_main_job_space_is_the_ablation_grid():
    space = load_space("sdclr_ablation")
    cells = space.grid()
    assert {c["imbalance"] for c in cells} == {1, 10, 100}
    assert all(("prune_ratio" in c) == (c["method"] == "damage") for c in cells)
    assert len(cells) == len({tuple(sorted(c.items())) for c in cells}) == space.num_samples
    assert len(space.seeds) >= 2


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("text, expected", [
    ("name: t\nmetric: fid\nparams: {method: {choice: [dcgan]\n", "malformed YAML"),
    (BASE + "bogus: 1\n", "'bogus' is not a space key"),
    (BASE + "sampeler: tpe\n", "did you mean 'sampler'"),
    (BASE.replace("uniform: [0.1, 0.9], when: {method: damage}", "uniform: [0.1, 0.9], when: {ch: 4}"),
     "not a parameter of this space"),
    ("name: t\nmetric: fid\nparams:\n  prune_ratio: {uniform: [0.1, 0.9], when: {method: damage}}\n"
     "  method: {choice: [dcgan, damage]}\n", "defined below it"),
    ("name: t\nmetric: fid\nparams:\n  method: {choice: []}\n", "non-empty list"),
    (BASE + "num_samples: 0\n", "must be >= 1"),
    (BASE + "num_samples: -3\n", "must be >= 1"),
    (BASE + "num_samples: many\n", "must be a number"),
    (BASE + "sampler: annealing\n", "is not one of"),
    (BASE.replace("metric: fid", "metric: [fid, fid_minority]") + "scheduler: {type: asha}\n",
     "asha cannot stop trials on several metrics"),
    (BASE + "fixed: {imbalance: 0.5}\n", "imbalance"),
    (BASE + "fixed: {prune_ratoi: 0.5}\n", "did you mean 'prune_ratio'"),
    (BASE + "fixed: {steps: 0}\n", "positive integer"),
    ("name: t\nmetric: fid\nparams:\n  prune_ratio: {uniform: [0.9, 0.1]}\n", "low < high"),
    ("name: t\nmetric: fid\nparams:\n  gsr_lambda: {loguniform: [0, 1]}\n", "low > 0"),
    ("name: t\nmetric: fid\nparams:\n  method: {choice: [dcgan, stylegan]}\n", "unknown method 'stylegan'"),
    ("name: t\nmetric: fid\nparams:\n  metod: {choice: [dcgan]}\n", "did you mean 'method'"),
    (BASE + "seeds: 0\n", "seeds"),
    (BASE + "resources: {cpu: 1, tpu: 2}\n", "not a resource"),
    ("name: t\nmetric: fid\nparams:\n  prune_ratio: {uniform: [0.1, 0.9]}\nsampler: grid\n", "grid sampler"),
    ("name: t\nparams:\n  method: {choice: [dcgan]}\n", "'metric' is missing"),
])
def test_broken_space_files_fail_with_file_and_key(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(SpaceError) as info:
        load_space(path)
    message = str(info.value)
    assert expected in message
    assert path in message or "space.yaml" in message
    assert "\n" not in message


def test_unknown_space_name_lists_the_available_ones():
    with pytest.raises(SpaceError) as info:
        load_space("sdclr_ablaton")
    assert "did you mean 'sdclr_ablation'" in str(info.value)
    assert "smoke" in str(info.value)


def test_overrides_and_presets_merge(tmp_path):
    space = load_space("smoke", {"num_samples": 2, "fixed": {"steps": 7}, "seeds": [3, 4]})
    assert space.num_samples == 2 and space.fixed["steps"] == 7 and space.seeds == (3, 4)
    assert space.fixed["ch"] == 4  # untouched fixed keys survive the merge
    with pytest.raises(SpaceError, match="no preset 'tpu'"):
        load_space("smoke", preset="tpu")


def test_replicate_searcher_tells_optuna_the_mean_and_fails_honestly():
    from ray.tune.search.optuna import OptunaSearch

    from search.searcher import ReplicateSearcher

    space = load_space("smoke")
    inner = OptunaSearch(space=DefineByRun(space.params), metric="fid", mode="min",
                         sampler=optuna.samplers.RandomSampler(seed=0))
    searcher = ReplicateSearcher(inner, [0, 1, 2], "fid", "min")
    configs = [searcher.suggest(f"t{i}") for i in range(6)]
    assert [c["seed"] for c in configs] == [0, 1, 2, 0, 1, 2]
    assert configs[0] == {**configs[1], "seed": 0}  # replicates share the sampled configuration
    searcher.on_trial_complete("t0", {"fid": 10.0})
    searcher.on_trial_complete("t1", {"fid": 20.0})
    assert inner._ot_study.trials[0].state == optuna.trial.TrialState.RUNNING  # waits for every replicate
    searcher.on_trial_complete("t2", {"fid": float("nan")})  # a diverged replicate is not averaged in
    first = inner._ot_study.trials[0]
    assert first.state == optuna.trial.TrialState.COMPLETE and first.value == pytest.approx(15.0)
    assert first.user_attrs["failed_replicates"] == 1
    for tid in ("t3", "t4", "t5"):
        searcher.on_trial_complete(tid, None, error=True)
    second = inner._ot_study.trials[1]
    assert second.state == optuna.trial.TrialState.FAIL and second.value is None
    assert not math.isnan(first.value)


def test_replicate_searcher_after_resume_leaves_a_configuration_already_told():
    """A driver killed after telling Optuna but before Ray saved its state: the resumed searcher (restored
    from the older state) sees the same replicate end again; Optuna's value stands and nothing raises."""
    from ray.tune.search.optuna import OptunaSearch

    from search.searcher import ReplicateSearcher

    space = load_space("smoke")
    inner = OptunaSearch(space=DefineByRun(space.params), metric="fid", mode="min",
                         sampler=optuna.samplers.RandomSampler(seed=0))
    searcher = ReplicateSearcher(inner, [0], "fid", "min")
    searcher.suggest("t0")
    saved = ReplicateSearcher.__new__(ReplicateSearcher)  # the state Ray saved: not yet told
    saved.__dict__.update(copy.deepcopy({k: v for k, v in searcher.__dict__.items() if k != "inner"}))
    searcher.on_trial_complete("t0", {"fid": 12.0})  # the old driver told Optuna, then died
    saved.inner = inner
    saved.on_trial_complete("t0", {"fid": 12.5})  # the resumed trial reports again
    first = inner._ot_study.trials[0]
    assert first.state == optuna.trial.TrialState.COMPLETE and first.value == pytest.approx(12.0)
    assert saved.groups["cfg00000"]["told"]
