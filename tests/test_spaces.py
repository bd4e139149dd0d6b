"""Space files: every shipped space validates and yields valid trainer configs; broken ones fail clearly."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest

from search.spaces import SpaceError, available_spaces, load_space
from search.stores import Stores
from store_fixtures import new_mlflow_store
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
    for _ in range(6):
        trial = study.ask()
        sampled = space.sample(trial)
        assert sampled == trial.params
        cfg = make_config(space.trial_config(sampled, space.seeds[0]))
        assert cfg.method in METHODS
        for p in space.params:  # a conditional parameter is sampled exactly when its condition holds
            assert (p.name in trial.params) == p.active(trial.params)
        study.tell(trial, [1.0] * len(space.metric) if len(space.metric) > 1 else 1.0)
    assert load_space(name, preset="cifar10_gpu").fixed["dataset"] == "cifar10"


def test_main_job_space_is_the_ablation_grid():
    """The main job: three methods at imbalance 1 and 100 on the embedded MNIST, seeds to pair by; the
    fixed prune_ratio reaches Damage GAN's trials only."""
    space = load_space("sdclr_ablation")
    cells = space.grid()
    assert {c["imbalance"] for c in cells} == {1, 100} and {c["method"] for c in cells} == {"dcgan", "contrad", "damage"}
    assert len(cells) == len({tuple(sorted(c.items())) for c in cells}) == space.num_samples == 6
    assert len(space.seeds) >= 3 and space.fixed["dataset"] == "mnist"
    for cell in cells:
        assert ("prune_ratio" in space.trial_config(cell, 0)) == (cell["method"] == "damage")
        assert space.trial_config(cell, 0).get("contrastive_aug") == \
            ("digits" if cell["method"] in ("contrad", "damage") else None)


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


def test_presets_resolve_through_the_shared_file(tmp_path):
    from search.spaces import PRESETS_FILE, shared_presets

    assert "presets" not in available_spaces()
    gpu = load_space("damage_gan_paper", preset="cifar10_gpu")
    # ContraD's c10_b512.gin + gan.gin, the heads of its SNDCGAN, FID on 10k Inception samples
    assert gpu.presets == ("contrad_cifar10", "contrad_heads", "inception_eval", "one_gpu")
    for key, value in {"batch_size": 512, "steps": 200000, "n_dis": 1, "lr_g": 2e-4, "beta2": 0.999,
                       "warmup_steps": 3000, "head_hidden": 512, "temperature": 0.1,
                       "eval.features": "inception", "eval.num_samples": 10000, "eval_every": 10000}.items():
        assert gpu.fixed[key] == value, key
    assert gpu.resources == {"cpu": 4, "gpu": 1} and gpu.max_concurrent == 4
    dcgan = gpu.trial_config({"method": "dcgan", "imbalance": 1}, 0)  # the baseline shares the shared keys only
    assert dcgan["batch_size"] == 512 and "head_hidden" not in dcgan and "prune_ratio" not in dcgan
    assert gpu.trial_config({"method": "damage", "imbalance": 1}, 0)["head_hidden"] == 512
    # gSR's SNGAN.json; the plain gSR arm carries no LeCam and no DiffAugment
    sngan = load_space("gsr_paper", preset="cifar10_gpu")
    for key, value in {"batch_size": 64, "steps": 120000, "n_dis": 5, "beta2": 0.9, "gsr_power_iters": 4,
                       "gsr_beta": 0.999, "eval_every": 5000}.items():
        assert sngan.fixed[key] == value, key
    assert "lecam_lambda" not in sngan.fixed and "diffaugment" not in sngan.fixed
    # any shared preset by name, or a list of them, later ones winning
    arm = load_space("gsr_lambda", preset=["gsr_cifar10_gpu", "lecam_diffaugment"])
    assert arm.fixed["lecam_lambda"] == 0.3 and arm.fixed["diffaugment"] == "color,translation,cutout"
    text = PRESETS_FILE.read_text()
    assert text.count("batch_size: 512") == 1  # one copy of each reference's values
    for name in available_spaces():  # every space's presets name shared entries only
        assert "fixed:" not in Path(f"{PRESETS_FILE.parent}/{name}.yaml").read_text().split("presets:")[1]
    assert set(shared_presets()) >= {"contrad_cifar10_gpu", "gsr_cifar10_gpu"}


def test_a_preset_knob_no_method_reads_is_refused(tmp_path):
    path = write(tmp_path, "name: t\nmetric: fid\nfixed: {method: cgan}\nparams:\n  imbalance: {choice: [1, 10]}\n"
                           "presets: {cifar10_gpu: contrad_cifar10_gpu}\n")
    assert load_space(path).fixed["method"] == "cgan"  # the preset is only applied when chosen
    with pytest.raises(SpaceError) as info:
        load_space(path, preset="cifar10_gpu")
    assert "head_hidden (set by preset 'contrad_heads') is read by none of this space's methods (cgan)" \
        in str(info.value)
    bad = write(tmp_path, "name: t\nmetric: fid\nparams:\n  imbalance: {choice: [1, 10]}\n"
                          "presets: {cifar10_gpu: contrad_cifar10_gp}\n")
    with pytest.raises(SpaceError, match="did you mean 'contrad_cifar10_gpu'"):
        load_space(bad)


def test_a_knob_no_method_of_the_space_reads_is_refused(tmp_path):
    path = write(tmp_path, "name: t\nmetric: fid\nfixed: {prune_ratio: 0.9}\nparams:\n  method: {choice: [dcgan]}\n")
    with pytest.raises(SpaceError) as info:
        load_space(path)
    assert str(info.value) == f"{path}: prune_ratio is read by none of this space's methods (dcgan); drop it"


def test_a_fixed_knob_reaches_only_the_methods_that_read_it():
    for name in ("evidence_damage", "contrastive_weight", "imbalance_sweep", "damage_gan_paper"):
        space = load_space(name)
        for method in space.methods():
            config = space.trial_config({"method": method}, 0)
            make_config(config)  # accepted by the trainer: no knob of another method
            assert ("prune_ratio" in config) == (method == "damage"), (name, method)
            assert ("gsr_lambda" in config) == (method == "cgan" and "gsr_lambda" in space.fixed)


def test_child_run_names_say_what_the_trial_is(tmp_path):
    from search.tracking import run_name

    space = load_space(write(tmp_path, "name: t\nmetric: fid\nparams:\n  method: {choice: [dcgan, damage]}\n"
                                       "  prune_ratio: {choice: [0.5, 0.9], when: {method: damage}}\n"
                                       "  imbalance: {choice: [10, 100]}\n"))
    damage = space.trial_config({"method": "damage", "prune_ratio": 0.9, "imbalance": 100}, 1)
    assert run_name(space, damage) == "damage p=0.9 ρ=100 seed=1"
    assert run_name(space, space.trial_config({"method": "dcgan", "imbalance": 10}, 0)) == "dcgan ρ=10 seed=0"
    gsr = load_space("evidence_gsr")  # a fixed method still leads; every searched factor follows
    assert run_name(gsr, gsr.trial_config({"gsr_lambda": 0.5, "imbalance": 10}, 2)) == "cgan λgsr=0.5 ρ=10 seed=2"
    smoke = load_space("smoke")  # a choice of one value does not tell configurations apart
    assert run_name(smoke, smoke.trial_config({"method": "damage", "prune_ratio": 0.5, "imbalance": 1}, 0)) \
        == "damage ρ=1 seed=0"


@pytest.fixture
def smoke_study(tmp_path):
    from search.searcher import open_study

    def make(seeds, **overrides):
        space = load_space("smoke", {"seeds": seeds, **overrides})
        stores = Stores.at(tmp_path)
        open_study(space, stores)
        return space, stores
    return make


def test_replicate_searcher_tells_optuna_the_mean_with_failures_at_their_penalty(smoke_study):
    from search.searcher import ReplicateSearcher

    space, stores = smoke_study([0, 1, 2], failure_value={"fid": 90.0})
    assert space.failure_value == {"fid": 90.0}
    searcher = ReplicateSearcher(space, stores)
    configs = [searcher.suggest(f"t{i}") for i in range(9)]
    assert [c["seed"] for c in configs] == [0, 1, 2, 0, 1, 2, 0, 1, 2]
    assert configs[0] == {**configs[1], "seed": 0}  # replicates share the sampled configuration
    # the resolved trial dict; the grid's dearest method first (damage before dcgan)
    assert configs[0]["steps"] == 20 and configs[0]["method"] == "damage" and configs[0]["prune_ratio"] == 0.5
    assert configs[6]["method"] == "dcgan" and "prune_ratio" not in configs[6]  # another method's knob
    searcher.on_trial_complete("t0", {"fid": 10.0})
    searcher.on_trial_complete("t1", {"fid": 20.0})
    study = stores.load_study("smoke")
    assert study.trials[0].state == optuna.trial.TrialState.RUNNING  # waits for every replicate
    searcher.on_trial_complete("t2", {"fid": float("nan")})  # a diverged replicate enters at its penalty
    first = stores.load_study("smoke").trials[0]
    assert first.state == optuna.trial.TrialState.COMPLETE
    assert first.value == pytest.approx((10.0 + 20.0 + 90.0) / 3) and first.value != pytest.approx(15.0)
    assert first.user_attrs["failed_replicates"] == 1 and first.user_attrs["failure_value"] == {"fid": 90.0}
    assert first.user_attrs["fid/replicates"] == [10.0, 20.0, None]
    # the same replicates ending in another order (a resume, another scheduler): the same told value
    for tid, result in (("t5", {"fid": 10.0}), ("t3", None), ("t4", {"fid": 20.0})):
        searcher.on_trial_complete(tid, result, error=result is None)
    assert stores.load_study("smoke").trials[1].value == pytest.approx(first.value)
    for tid in ("t6", "t7", "t8"):  # nothing measured: FAIL, never a made-up value
        searcher.on_trial_complete(tid, None, error=True)
    third = stores.load_study("smoke").trials[2]
    assert third.state == optuna.trial.TrialState.FAIL and third.value is None


def test_told_value_penalises_failures_and_fails_without_a_penalty():
    from search.searcher import told_value

    assert told_value([[1.0, 4.0], None], ("fid", "kid"), {"fid": 9.0, "kid": 2.0}) == [5.0, 3.0]
    assert told_value([[1.0], [3.0]], ("fid",), {}) == [2.0]  # nothing failed: no penalty needed
    assert told_value([[1.0], None], ("fid",), {}) is None  # a failure and no penalty: FAIL
    assert told_value([None, None], ("fid",), {"fid": 9.0}) is None


def test_failure_value_is_checked_and_defaults_to_the_untrained_score():
    from trainers.metrics.untrained import UNTRAINED

    space = load_space("sdclr_ablation")
    assert space.failure_value == {"kid_minority": UNTRAINED["mnist"]["kid_minority"]}
    assert load_space("sdclr_ablation", {"failure_value": {"kid_minority": 1.5}}).failure_value == {
        "kid_minority": 1.5}
    with pytest.raises(SpaceError, match=r"'failure_value.fid' is not a metric of this space; valid: kid_minority"):
        load_space("sdclr_ablation", {"failure_value": {"fid": 1.0}})
    with pytest.raises(SpaceError, match=r"'failure_value.kid_minority' must be a finite number"):
        load_space("sdclr_ablation", {"failure_value": {"kid_minority": "high"}})


def test_a_space_that_selects_is_told_the_validation_figure():
    grid = load_space("sdclr_ablation")
    assert not grid.selects and grid.objective == ("kid_minority",) and "eval.split" not in grid.fixed
    searched = load_space("gsr_lambda")  # tpe: chosen on the validation half, reported on the test half
    assert searched.selects and searched.fixed["eval.split"] == "val_test"
    assert searched.metric == ("fid", "fid_minority") and searched.objective == ("val/fid", "val/fid_minority")
    explicit = load_space("gsr_lambda", {"fixed": {"eval.split": "test"}})
    assert explicit.objective == explicit.metric


def test_replicate_searcher_after_resume_leaves_a_configuration_already_told(smoke_study, tmp_path):
    """A driver killed after telling Optuna but before Ray saved its state: the resumed searcher (restored
    from the older state) sees the same replicate end again; Optuna's value stands and nothing raises."""
    from search.searcher import ReplicateSearcher

    space, stores = smoke_study([0])
    searcher = ReplicateSearcher(space, stores)
    searcher.suggest("t0")
    searcher.save(str(tmp_path / "saved.pkl"))  # the state Ray saved: not yet told
    searcher.on_trial_complete("t0", {"fid": 12.0})  # the old driver told Optuna, then died
    resumed = ReplicateSearcher(space, stores)
    resumed.restore(str(tmp_path / "saved.pkl"))
    resumed.on_trial_complete("t0", {"fid": 12.5})  # the resumed trial reports again
    resumed.on_trial_complete("t0", {"fid": 13.0})
    trials = stores.load_study("smoke").trials
    first = trials[0]
    assert first.state == optuna.trial.TrialState.COMPLETE and first.value == pytest.approx(12.0)
    assert [t.state.name for t in trials[1:]] == ["WAITING"] * 3  # nothing else was asked or told


def test_resumed_searcher_fails_what_it_does_not_track_and_reruns_that_cell(smoke_study, tmp_path):
    """A driver killed after asking Optuna for a configuration but before Ray saved its state: the
    resumed searcher tells that trial FAIL and the grid cell runs once all the same."""
    from ray.tune.search import Searcher

    from search.searcher import ReplicateSearcher

    space, stores = smoke_study([0])
    searcher = ReplicateSearcher(space, stores)
    first = searcher.suggest("t0")
    searcher.save(str(tmp_path / "saved.pkl"))
    searcher.suggest("t1")  # asked, then the driver died
    resumed = ReplicateSearcher(space, stores)
    resumed.restore(str(tmp_path / "saved.pkl"))
    resumed.on_trial_complete("t0", {"fid": 1.0})
    proposed = []
    while (config := resumed.suggest(f"r{len(proposed)}")) != Searcher.FINISHED:
        proposed.append(config)
        resumed.on_trial_complete(f"r{len(proposed) - 1}", {"fid": 2.0})
    cells = sorted((c["method"], c["imbalance"]) for c in [first, *proposed])
    assert cells == sorted((c["method"], c["imbalance"]) for c in space.grid())  # each cell once
    states = [t.state.name for t in stores.load_study("smoke").trials]
    assert states.count("COMPLETE") == 4 and states.count("FAIL") == 1 and "RUNNING" not in states


def test_every_shared_preset_sets_trainer_keys_only():
    from search.spaces import PRESET_KEYS, shared_presets
    from trainers.config import all_keys

    for name, entry in shared_presets().items():
        if isinstance(entry, list):
            assert all(part in shared_presets() for part in entry), name
            continue
        assert set(entry) <= set(PRESET_KEYS), name
        for key in entry.get("fixed", {}):
            assert key in all_keys(), (name, key)


def test_a_tell_that_fails_stops_the_run_and_the_resumed_searcher_tells_it(smoke_study, tmp_path, monkeypatch):
    """A full disk when Optuna is told: Ray swallows what on_trial_complete raises, so the searcher keeps
    the configuration untold, raises at its next result or suggestion, and a searcher resumed from the
    state Ray saved tells it (the configuration is never left RUNNING, nor told twice)."""
    from search.searcher import ReplicateSearcher

    space, stores = smoke_study([0])
    searcher = ReplicateSearcher(space, stores)
    searcher.suggest("t0")
    searcher.suggest("t1")
    real_tell = searcher._tell

    def full_disk(*args):
        raise OSError(28, "database or disk is full")

    monkeypatch.setattr(searcher, "_tell", full_disk)
    searcher.on_trial_complete("t0", {"fid": 12.0})  # does not raise into Ray
    for call in (lambda: searcher.on_trial_result("t1", {"fid": 3.0}), lambda: searcher.suggest("t2")):
        with pytest.raises(RuntimeError, match="could not be told a configuration's value .*disk is full"):
            call()
    assert stores.load_study("smoke").trials[0].state == optuna.trial.TrialState.RUNNING
    monkeypatch.setattr(searcher, "_tell", real_tell)
    searcher.save(str(tmp_path / "saved.pkl"))  # what Ray saved before the run ended
    resumed = ReplicateSearcher(space, stores)
    resumed.restore(str(tmp_path / "saved.pkl"))
    resumed.on_trial_complete("t1", {"fid": 3.0})  # reconciles first: the untold configuration is told
    trials = stores.load_study("smoke").trials
    assert [(t.state.name, t.value) for t in trials[:2]] == [("COMPLETE", 12.0), ("COMPLETE", 3.0)]


REPORT_KEYS_SPACE = """
name: rk
metric: kid_minority
seeds: 2
fixed: {dataset: digits, steps: 4, eval_every: 2}
params:
  method: {choice: [dcgan, damage]}
  imbalance: {choice: [1, 10]}
"""


def test_report_keys_primary_effects_and_blocks(tmp_path):
    space = load_space(write(tmp_path, REPORT_KEYS_SPACE + """
primary: {a: {method: dcgan}, b: {method: damage}, metric: fid, where: {imbalance: 10}}
effects: {fid: 5%, kid_minority: 0.5}
blocks: [imbalance]
"""))
    assert space.primary == ({"a": {"method": "dcgan"}, "b": {"method": "damage"}, "metric": "fid",
                              "where": {"imbalance": 10}},)
    assert space.effects == {"fid": ("relative", 0.05), "kid_minority": ("absolute", 0.5)}
    assert space.blocks == ("imbalance",)
    assert load_space(write(tmp_path, REPORT_KEYS_SPACE)).primary == ()


@pytest.mark.parametrize("extra, message", [
    ("primary: {a: {method: dcgan}, b: {method: damage}}", "'primary[0].metric' is missing"),
    ("primary: {a: {method: gan}, b: {method: damage}, metric: fid}", "'primary[0].a.method' = 'gan' is not one"),
    ("primary: {a: {lr: 1}, b: {method: damage}, metric: fid}", "neither a parameter nor a fixed key"),
    ("primary: {a: {method: dcgan}, b: {method: dcgan}, metric: fid}", "a and b must differ"),
    ("primary: {a: {method: dcgan}, b: {method: damage}, metric: fid, when: {}}", "'primary[0].when' is not a key"),
    ("effects: {fid: five}", "'effects.fid' must be a number"),
    ("effects: {fid: -2%}", "'effects.fid' = '-2%' must be > 0"),
    ("blocks: [imbalanc]", "'blocks.imbalanc' is not a parameter of this space"),
])
def test_report_keys_are_refused_in_one_line(tmp_path, extra, message):
    with pytest.raises(SpaceError) as e:
        load_space(write(tmp_path, REPORT_KEYS_SPACE + extra + "\n"))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_cgan_space_without_gsr_lambda_says_gsr_is_off(tmp_path, capsys):
    from types import SimpleNamespace

    from search.study_output import gsr_off_note, print_study

    off = load_space(write(tmp_path, "name: t\nmetric: fid\nfixed: {method: cgan}\n"
                                     "params:\n  imbalance: {choice: [1, 10]}\n"))
    print_study(off, SimpleNamespace(root=tmp_path), resume=False)
    lines = [line for line in capsys.readouterr().out.splitlines() if "without gSR" in line]
    assert lines == [gsr_off_note(off)] and "gsr_lambda" in lines[0]
    mixed = load_space(write(tmp_path, "name: t\nmetric: fid\nparams:\n  method: {choice: [dcgan, cgan]}\n"))
    assert gsr_off_note(mixed) is not None
    for name in ("gsr_paper", "gsr_lambda", "evidence_gsr", "imbalance_sweep", "sdclr_ablation", "smoke"):
        assert gsr_off_note(load_space(name)) is None, name  # gSR searched or fixed, or no cgan


def test_a_searcher_pickled_by_the_older_driver_state_layout_resumes(smoke_study, tmp_path):
    """Ray keeps the searcher pickled in its tuner state. One pickled before its driver state became a
    dataclass carried it as ``_db``/``_study``/``_reconciled``/``_failure``/``_plan_cache`` (None/False):
    unpickling such a state (what pickle does: ``__setstate__`` with the saved ``__dict__``) gives a
    searcher that proposes and tells as before, and a pickle of it carries no driver state."""
    import pickle

    from search.searcher import ReplicateSearcher

    space, stores = smoke_study([0])
    searcher = ReplicateSearcher(space, stores)
    assert searcher.suggest("t0")["seed"] == 0
    old = searcher.__getstate__()  # the older layout: its state as a plain dict under "state"
    assert isinstance(old["state"], dict) and old["state"]["trials"] == {"t0": (0, 0)}
    old.update(_db=None, _study=None, _reconciled=False, _failure=None, _plan_cache=None)
    resumed = ReplicateSearcher.__new__(ReplicateSearcher)
    resumed.__setstate__(pickle.loads(pickle.dumps(old)))
    assert not {"_db", "_study", "_reconciled", "_failure", "_plan_cache"} & set(resumed.__dict__)
    resumed.on_trial_complete("t0", {"fid": 12.0})
    assert stores.load_study("smoke").trials[0].value == pytest.approx(12.0)
    again = pickle.loads(pickle.dumps(resumed))
    assert again._driver is None and again.state["configs"][0]["told"]


def test_a_callback_pickled_by_the_older_layout_starts_a_fresh_driver(tmp_path):
    """Ray pickles the MLflow callback when a study starts; the older layout kept ``_commit`` and its (then
    empty) driver state in ``__dict__``."""
    import pickle

    from search.callback import MLflowTrialCallback

    space = load_space("smoke")
    old = {"tracking_uri": f"sqlite:///{tmp_path}/m.db", "experiment_id": "1", "parent_run_id": "p", "space": space,
           "_commit": "abc", "_runs": {}, "_client": None, "_runs_settled": False, "_data_logged": set(),
           "_gpus_tagged": set(), "_logged_step": {"metrics": {}, "images": {}}, "_failure": None}
    new_mlflow_store(tmp_path / "m.db")  # what the driver opens: a store as search.run makes it
    callback = MLflowTrialCallback.__new__(MLflowTrialCallback)
    callback.__setstate__(pickle.loads(pickle.dumps(old)))
    assert (callback.tracking_uri, callback.experiment_id, callback.parent_run_id, callback.commit) == (
        old["tracking_uri"], "1", "p", "abc")
    assert callback.driver.runs.ids == {} and callback.driver.latch.failure is None
    again = pickle.loads(pickle.dumps(callback))
    assert again._driver is None and again.commit == "abc" and set(again.__getstate__()) == set(MLflowTrialCallback.CONFIG)


def test_an_older_saved_searcher_state_restores_and_saves_back_the_same(smoke_study, tmp_path):
    """The state in Ray's searcher-state-*.pkl as earlier versions wrote it (a plain dict; one from before
    ``metrics``, ``budget``, ``looks`` and ``done`` lacks them) restores, and saves back as the same dict
    with the missing fields at their defaults."""
    import pickle

    from search.searcher import ReplicateSearcher

    space, stores = smoke_study([0, 1])
    first = ReplicateSearcher(space, stores)
    sampled = first.suggest("t0")  # asks Optuna for configuration 0
    config = {"sampled": space.sampled(sampled), "ray_trials": {0: "t0", 1: "t1"}, "values": {0: [12.0], 1: None},
              "told": False, "race": [], "told_value": None}
    old = {"configs": {0: config}, "trials": {"t0": (0, 0), "t1": (0, 1)}, "pending": [], "asked": 1}
    (tmp_path / "old.pkl").write_bytes(pickle.dumps({"state": old, "sampler": first.sampler}))
    resumed = ReplicateSearcher(space, stores)
    resumed.restore(str(tmp_path / "old.pkl"))
    expected = {**old, "budget": None, "looks": [], "done": False,
                "configs": {0: {k: v for k, v in config.items() if k != "told_value"} | {"metrics": {}}}}
    assert resumed.state == expected
    resumed.save(str(tmp_path / "again.pkl"))
    assert pickle.loads((tmp_path / "again.pkl").read_bytes())["state"] == expected


def test_scheduler_and_resources_are_typed_read_only_mappings():
    """``scheduler`` and ``resources`` are frozen records with typed fields that still read, compare and
    serialise as the plain dicts a space file spells (asha's settings only under asha)."""
    import dataclasses
    import json

    import yaml

    from search.space_model import Resources, Scheduler

    fifo = load_space("smoke")
    assert isinstance(fifo.scheduler, Scheduler) and fifo.scheduler.type == "fifo"
    assert fifo.scheduler == {"type": "fifo"} and "grace_period" not in fifo.scheduler
    asha = load_space("smoke", {"scheduler": {"type": "asha", "grace_period": 3}, "resources": {"gpu": 0.5}})
    assert (asha.scheduler.type, asha.scheduler.grace_period, asha.scheduler.reduction_factor) == ("asha", 3, 2.0)
    assert json.loads(json.dumps(dict(asha.scheduler))) == {"type": "asha", "grace_period": 3, "reduction_factor": 2}
    assert isinstance(asha.resources, Resources) and (asha.resources.cpu, asha.resources.gpu) == (1.0, 0.5)
    assert asha.resources == {"cpu": 1, "gpu": 0.5} and {"gpu": 0.5, "cpu": 1} == asha.resources
    assert asha.resources != {"cpu": 1}
    plain = asha.to_dict()
    assert type(plain["scheduler"]) is dict and type(plain["resources"]) is dict
    assert yaml.safe_load(yaml.safe_dump(plain))["resources"] == {"cpu": 1, "gpu": 0.5}
    with pytest.raises(dataclasses.FrozenInstanceError):
        asha.resources.cpu = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        asha.scheduler["type"] = "fifo"  # type: ignore[index]


def test_a_grid_is_enqueued_dearest_cells_first_and_equal_costs_keep_the_grid_order(tmp_path):
    """Longest-processing-time first: the contrastive methods (dearer steps) run before DCGAN, so the last
    trials on a few workers are the cheap ones; the cells are the grid's, each once."""
    from search.searcher import open_study

    space = load_space("sdclr_ablation")
    stores = Stores.at(tmp_path)
    study = open_study(space, stores)
    queued = [(t.system_attrs["fixed_params"]["method"], t.system_attrs["fixed_params"]["imbalance"])
              for t in study.get_trials(deepcopy=False)]
    assert queued == [("damage", 1), ("damage", 100), ("contrad", 1), ("contrad", 100), ("dcgan", 1), ("dcgan", 100)]
    assert sorted(queued) == sorted((c["method"], c["imbalance"]) for c in space.grid())
    steps = space.fixed["steps"]
    assert space.cost({"method": "dcgan", "imbalance": 1}) == steps
    assert METHODS["damage"].step_cost > METHODS["contrad"].step_cost > METHODS["dcgan"].step_cost == 1.0
    cgan = METHODS["cgan"]
    per_step = cgan.step_cost * 6 / (1 + cgan.default_n_dis)  # 5 D steps a G step against the default
    assert space.cost({"method": "cgan", "n_dis": 5}) == pytest.approx(per_step * steps)
