"""Config errors people will make, and what the CLI does with them (one line, exit 2, no traceback)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from trainers import train as cli
from trainers.config import flat_dict, make_config, parse_overrides, to_dict
from trainers.fields import ConfigError
from trainers.methods import get_method
from trainers.settings import TrainConfig


def test_defaults_and_plain_dict_round_trip():
    cfg = make_config({})
    assert cfg == TrainConfig() and cfg.method == "dcgan" and cfg.dataset == "mnist"
    assert cfg.imbalance == 1.0
    damage = make_config({"method": "damage"})
    assert damage.knobs.prune_ratio == 0.9 and damage.knobs.contrastive_weight == 1.0
    assert make_config({"method": "cgan"}).knobs.gsr_lambda == 0.0
    for c in (cfg, damage, make_config({"method": "cgan", "gsr_lambda": 0.5})):
        assert make_config(to_dict(c)) == c
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.steps = 5
    nested = make_config({"eval": {"num_samples": 7}, "imbalance": 100})
    dotted = make_config({"eval.num_samples": 7, "imbalance": 100})
    assert nested == dotted and nested.eval.num_samples == 7
    assert isinstance(nested.imbalance, float)  # int widens to float
    assert flat_dict(nested)["eval.num_samples"] == 7


def test_each_method_reads_only_its_own_knobs():
    assert set(flat_dict(make_config({"method": "dcgan"}))) & {"prune_ratio", "contrastive_weight", "gsr_lambda"} == set()
    damage = flat_dict(make_config({"method": "damage", "prune_ratio": 0.5}))
    assert damage["prune_ratio"] == 0.5 and "contrastive_weight" in damage and "gsr_lambda" not in damage
    cgan = flat_dict(make_config({"method": "cgan"}))
    assert "gsr_lambda" in cgan and "prune_ratio" not in cgan and "head_hidden" not in cgan
    for data, readers in (({"method": "dcgan", "prune_ratio": 0.5}, "damage"),
                          ({"method": "contrad", "prune_ratio": 0.5}, "damage"),
                          ({"method": "dcgan", "contrastive_weight": 2.0}, "contrad, damage"),
                          ({"method": "damage", "gsr_lambda": 0.5}, "cgan")):
        with pytest.raises(ConfigError) as e:
            make_config(data)
        key = next(k for k in data if k != "method")
        assert f"'{key}' is not read by method '{data['method']}' (only by {readers})" in str(e.value)


@pytest.mark.parametrize("data,key,hint", [
    ({"method": "damage", "prune_ratoi": 0.5}, "prune_ratoi", "did you mean 'prune_ratio'?"),
    ({"prune_ratoi": 0.5}, "prune_ratoi", "did you mean 'prune_ratio'?"),
    ({"imbalence": 10}, "imbalance", "did you mean 'imbalance'?"),
    ({"contrastive_wieght": 1}, "contrastive_wieght", "did you mean 'contrastive_weight'?"),
    ({"eval.num_sample": 5}, "eval.num_sample", "did you mean 'eval.num_samples'?"),
    ({"eval": {"num_sample": 5}}, "eval.num_sample", "did you mean 'eval.num_samples'?"),
])
def test_unknown_keys_suggest_the_closest(data, key, hint):
    with pytest.raises(ConfigError) as e:
        make_config(data)
    assert f"'{key}'" in str(e.value) and hint in str(e.value)


@pytest.mark.parametrize("data,fragment", [
    ({"steps": "abc"}, "'steps' must be int"),
    ({"steps": 1.5}, "'steps' must be int"),
    ({"steps": True}, "'steps' must be int"),
    ({"imbalance": "high"}, "'imbalance' must be float"),
    ({"download": "yes"}, "'download' must be bool"),
    ({"eval": 5}, "'eval' must be a mapping"),
    ({"eval.num_samples": "many"}, "'eval.num_samples' must be int"),
])
def test_wrong_types_name_the_key(data, fragment):
    with pytest.raises(ConfigError, match=fragment):
        make_config(data)


@pytest.mark.parametrize("data,fragment", [
    ({"imbalance": 0.5}, "'imbalance' = 0.5 is out of range"),
    ({"imbalance": float("nan")}, "'imbalance' = nan is out of range"),
    ({"method": "damage", "prune_ratio": 1.0}, "'prune_ratio' = 1.0 is out of range [0.0, 1.0)"),
    ({"method": "damage", "prune_ratio": -0.1}, "'prune_ratio' = -0.1 is out of range"),
    ({"method": "contrad", "contrastive_weight": -1}, "'contrastive_weight'"),
    ({"method": "cgan", "gsr_lambda": -0.5}, "'gsr_lambda'"),
    ({"warmup_steps": -1}, "'warmup_steps' = -1 is out of range"),
    ({"method": "contrad", "head_hidden": 0}, "'head_hidden' = 0 must be a positive integer"),
    ({"lr_d": 0}, "'lr_d' = 0.0 is out of range"),
    ({"steps": 0}, "'steps' = 0 must be a positive integer"),
    ({"steps": -3}, "'steps' = -3 must be a positive integer"),
    ({"batch_size": 0}, "'batch_size'"),
    ({"eval_every": 0}, "'eval_every'"),
    ({"imbalance_profile": "linear"}, "unknown imbalance_profile 'linear'; valid: balanced_partial, exp, step"),
])
def test_out_of_range_values(data, fragment):
    with pytest.raises(ConfigError) as e:
        make_config(data)
    assert fragment in str(e.value)


def test_boundary_values_are_accepted():
    cfg = make_config({"method": "damage", "prune_ratio": 0.0, "imbalance": 1, "steps": 1})
    assert cfg.knobs.prune_ratio == 0.0
    assert make_config({"method": "damage", "prune_ratio": 0.99, "steps": 3.0}).steps == 3


def test_parse_overrides_types_values():
    out = parse_overrides(["method=damage", "imbalance=100", "prune_ratio=0.5", "eval.num_samples=20",
                           "download=true", "lr_d=1e-3", "class_order_seed=null"])
    assert out == {"method": "damage", "imbalance": 100, "prune_ratio": 0.5, "eval": {"num_samples": 20},
                   "download": True, "lr_d": 1e-3, "class_order_seed": None}
    with pytest.raises(ConfigError, match="not key=value"):
        parse_overrides(["steps"])


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown method 'gan'; valid: .*dcgan"):
        get_method("gan")


@pytest.mark.parametrize("argv,fragment", [
    (["prune_ratoi=0.5"], "did you mean 'prune_ratio'?"),
    (["imbalance=0.5"], "'imbalance' = 0.5"),
    (["method=damage", "prune_ratio=1.0"], "'prune_ratio' = 1.0"),
    (["prune_ratio=0.5"], "'prune_ratio' is not read by method 'dcgan' (only by damage)"),
    (["steps=0"], "'steps' = 0"),
    (["method=gan", "steps=1", "device=cpu"], "unknown method 'gan'"),
    (["dataset=svhn", "steps=1"], "unknown dataset 'svhn'"),
    (["eval.num_sample=3"], "did you mean 'eval.num_samples'?"),
    (["steps"], "not key=value"),
])
def test_cli_bad_input_is_one_line_exit_2(argv, fragment, capsys, tmp_path):
    rc = cli.main(argv + [f"root={tmp_path}"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and fragment in err
    assert "Traceback" not in err
    assert not (tmp_path / "train").exists()  # nothing stored by a refused run


def test_cli_process_missing_dataset_exits_2(tmp_path):
    """The real entry point: a missing dataset is one line on stderr, exit 2, nothing on stdout."""
    root = tmp_path / "data"
    proc = subprocess.run([sys.executable, "-m", "trainers.train", "dataset=cifar10", f"data_root={root}",
                           f"root={tmp_path / 'runs'}", "steps=2", "device=cpu"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"data_root='{root}'" in lines[0] and "download=true" in lines[0]
    assert proc.stdout == ""
