"""Fuzzing the space loader with hypothesis: generated YAML documents, command lines of overrides and
arbitrary file contents either load into a valid space or are refused with one ConfigError line -
never another exception, never a traceback, never a store written. Every refused command line also
goes through ``search.run.main``: exit 2, one ``error:`` line on stderr, nothing under root=.

A valid space: every cell of a grid and a trial sampled by its own Optuna sampler make valid trainer
configs that report the space's metric(s), its description prints as YAML, and an ASHA scheduler
builds. Bounded and seeded (``derandomize``): CI tries the same inputs every run; EXAMPLES says how
many (``test_inputs_tried`` prints the count of each kind and how many were accepted).
"""

from __future__ import annotations

import contextlib
import io
import os
import string
from pathlib import Path

import optuna
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search.run import main as run_main
from search.run import prepare
from search.study_ray import make_scheduler
from search.spaces import SAMPLERS, Space, load_space
from trainers.config import make_config
from trainers.fields import ConfigError
from trainers.metrics.names import reported_metrics

# the full fuzz (5,500 inputs) runs with --all, as CI does; the fast suite runs the first fifth of the same
# derandomised sequence (conftest sets LTGAN_FULL_FUZZ before this module is imported)
FULL = {"documents": 2500, "command_lines": 2000, "file_contents": 1000}
EXAMPLES = FULL if os.environ.get("LTGAN_FULL_FUZZ") == "1" else {kind: n // 5 for kind, n in FULL.items()}
TRIED = {kind: {"accepted": 0, "refused": 0} for kind in EXAMPLES}
SETTINGS = dict(derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
optuna.logging.set_verbosity(optuna.logging.ERROR)
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

# -- building blocks: plausible values (so that many inputs load) and junk (so that many do not) ----
junk = st.one_of(
    st.none(), st.booleans(), st.integers(-10 ** 12, 10 ** 12), st.floats(allow_nan=True, allow_infinity=True),
    st.text(string.printable, max_size=12), st.text(max_size=6),
    st.sampled_from(["", "inf", "nan", "-1", "1e999", "???", "${oc.env:HOME}", "a.b", "fixed", "[1", "{a: 1}"]))
junk_tree = st.recursive(junk, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(junk.filter(lambda k: k is None or
                                                                                   isinstance(k, (str, int, bool))),
                                                                       inner, max_size=3)), max_leaves=8)

METHODS = ["dcgan", "contrad", "damage", "cgan"]
TRAINER_VALUES = {  # a few sensible and a few wrong values of some trainer keys
    "method": METHODS + ["stylegan"],
    "dataset": ["digits", "cifar10", "imagenet"],
    "imbalance": [1, 10, 100, 0.5, 1.0],
    "imbalance_profile": ["exp", "step", "balanced_partial", "zipf"],
    "steps": [1, 4, 0, -2, 2.5],
    "ch": [4, 8, 0],
    "batch_size": [16, 32, 0],
    "eval_every": [2, 10],
    "prune_ratio": [0.0, 0.5, 0.9, 1.0],
    "contrastive_weight": [0.0, 0.1, 1.0, -1.0],
    "gsr_lambda": [0.0, 0.5, 2.0],
    "lecam_lambda": [0.0, 0.1],
    "lr_d": [1e-4, 0.0],
    "n_dis": [1, 2, None],
    "eval.num_samples": [50, 200, 0],
    "eval.features": ["judge", "inception", "clip"],
    "diffaugment": ["", "color", "colour"],
    "cache_dir": ["cache", "a\0b", "/dev/null/cache", "/etc/hostname"],
}
trainer_key = st.sampled_from([*TRAINER_VALUES, "seed", "nope", "eval.nope", "eval", "cache_dir", "data_root"])
METRICS = ["fid", "fid_minority", "kid", "loss/gsr", "prune/sparsity", "fid_class/3", "fid_class/12", "fidd",
           "judge/conditional_accuracy", "gsr/sigma_max/0", "is", "step"]


def trainer_value(key: str):
    return st.one_of(st.sampled_from(TRAINER_VALUES.get(key, [1])), junk) if key in TRAINER_VALUES else junk_tree


plain_fixed = st.dictionaries(st.sampled_from(list(TRAINER_VALUES)), st.just(None), max_size=3).flatmap(
    lambda d: st.fixed_dictionaries({k: st.sampled_from(TRAINER_VALUES[k]) for k in d}))


@st.composite
def plain_params(draw):
    """Parameters as a person writes them: a method choice first, others conditioned on it or not."""
    out: dict = {}
    if draw(st.booleans()):
        out["method"] = {"choice": draw(st.lists(st.sampled_from(METHODS), min_size=1, max_size=3, unique=True))}
    for name in draw(st.lists(st.sampled_from([k for k in TRAINER_VALUES if k != "method"]), max_size=3, unique=True)):
        values = TRAINER_VALUES[name]
        kind = draw(st.sampled_from(["choice", "choice", "uniform", "loguniform", "int"]))
        if kind == "choice":
            spec = {"choice": draw(st.lists(st.sampled_from(values), min_size=1, max_size=3, unique=True))}
        else:
            low, high = sorted(draw(st.lists(st.sampled_from([0, 0.1, 0.5, 1, 2, 10]), min_size=2, max_size=2,
                                             unique=True)))
            spec = {kind: [low, high]}
        if "method" in out and draw(st.booleans()):
            spec["when"] = {"method": draw(st.sampled_from(out["method"]["choice"]))}
        out[name] = spec
    return out or {"imbalance": {"choice": [1, 10]}}


plain_documents = st.fixed_dictionaries(
    {"name": st.sampled_from(["fuzz", "f-1", "f_2"]),
     "metric": st.sampled_from(["fid", "fid_minority", ["fid", "fid_minority"], *METRICS]),
     "params": plain_params()},
    optional={"mode": st.sampled_from(["min", "max"]), "sampler": st.sampled_from(list(SAMPLERS)),
              "scheduler": st.sampled_from(["fifo", "asha", {"type": "asha", "grace_period": 2}]),
              "num_samples": st.integers(1, 6), "max_concurrent": st.integers(1, 3),
              "seeds": st.sampled_from([1, 2, [0, 7]]), "sampler_seed": st.integers(0, 100),
              "resources": st.sampled_from([{"cpu": 1}, {"cpu": 1, "gpu": 0.25}]),
              "fixed": plain_fixed,
              "presets": st.sampled_from([{"gpu": "contrad_cifar10_gpu"}, {"gpu": ["short_check"]}])})
TOP = ["name", "description", "metric", "mode", "sampler", "scheduler", "num_samples", "max_concurrent", "resources",
       "seeds", "fixed", "params", "presets", "sampler_seed", "shedular", 1, None]


@st.composite
def documents(draw):
    """A plausible space, then up to three mutations: a key set to junk, a key dropped, a value deep in
    params or fixed replaced by junk."""
    doc = draw(plain_documents)
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["set", "drop", "deep"]))
        if action == "set":
            doc[draw(st.sampled_from(TOP))] = draw(junk_tree)
        elif action == "drop" and doc:
            doc.pop(draw(st.sampled_from(sorted(doc, key=str))))
        else:
            section = draw(st.sampled_from(["params", "fixed"]))
            target = doc.get(section)
            if isinstance(target, dict) and target:
                key = draw(st.sampled_from(sorted(target, key=str)))
                if isinstance(target[key], dict) and target[key] and draw(st.booleans()):
                    target[key][draw(st.sampled_from(sorted(target[key], key=str)))] = draw(junk_tree)
                else:
                    target[key] = draw(junk_tree)
            else:
                doc[section] = {draw(trainer_key): draw(junk_tree)}
    return doc


# -- the property ----------------------------------------------------------------------------------
def check_valid(space: Space) -> None:
    """What the rest of the stack does with an accepted space must work."""
    assert space.num_samples >= 1 and space.max_concurrent >= 1 and space.seeds
    assert all(isinstance(s, int) and 0 <= s < 2 ** 32 for s in space.seeds)
    yaml.safe_dump(space.to_dict(), sort_keys=False, allow_unicode=True)  # what search.run prints
    study = optuna.create_study(directions=space.directions, sampler=space.make_sampler())
    cells = space.grid() if space.sampler == "grid" else []
    assert len(cells) >= space.num_samples or space.sampler != "grid"
    for cell in cells[:50]:
        assert set(space.metric) <= set(reported_metrics(make_config(space.trial_config(cell, space.seeds[0]))))
    if cells:
        study.enqueue_trial(cells[0])
    sampled = space.sample(study.ask())
    for seed in space.seeds[:3]:
        config = space.trial_config(sampled, seed)
        assert set(space.metric) <= set(reported_metrics(make_config(config)))
        assert space.sampled(config) == {k: v for k, v in sampled.items() if k in config}
    if space.scheduler["type"] == "asha":
        make_scheduler(space)


def outcome(load) -> str:
    try:
        space = load()
    except ConfigError as e:  # SpaceError and StudyError included
        message = str(e)
        assert message and "\n" not in message and "Traceback" not in message, message
        return "refused"
    check_valid(space)
    return "accepted"


@settings(max_examples=EXAMPLES["documents"], **SETTINGS)
@given(doc=documents())
def test_generated_space_documents(tmp_path_factory, doc):
    path = tmp_path_factory.mktemp("doc") / "space.yaml"
    try:
        path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    except (yaml.YAMLError, ValueError, UnicodeEncodeError):  # not writable as YAML: nothing to load
        return
    TRIED["documents"][outcome(lambda: load_space(str(path)))] += 1


# command lines: key=value as a person types them, values in the CLI's (OmegaConf dotlist) syntax
cli_value = st.one_of(
    st.sampled_from(["1", "0", "-1", "2.5", "1e3", "true", "null", "inf", "nan", "", "fid", "[fid,kid]",
                     "[fid, fid_minority]", "grid", "tpe", "asha", "{type: asha}", "[0,7]", "[", "}", "${x}",
                     "${oc.env:HOME}", "damage", "cifar10", "digits", "x=y", "'quoted'", "a b", "[[1]]"]),
    st.integers(-10 ** 6, 10 ** 6).map(str), st.text(string.printable.strip(), max_size=8))
cli_key = st.sampled_from([
    "num_samples", "max_concurrent", "seeds", "sampler", "scheduler", "scheduler.type", "scheduler.grace_period",
    "metric", "mode", "name", "resources.cpu", "resources.gpu", "sampler_seed", "description", "params",
    "params.imbalance.choice", "params.method.choice", "fixed", "preset", "resume", "report", "tracking_uri",
    "ray_address", "space", "bogus", *(f"fixed.{k}" for k in TRAINER_VALUES), "fixed.seed", "fixed.nope", "fixed.eval",
    "params.prune_ratio.when", "params.imbalance.when.method"])
PLAIN_ARGS = ["num_samples=1", "num_samples=3", "max_concurrent=2", "seeds=2", "seeds=[0,7]", "sampler=tpe",
              "sampler=random", "sampler=qmc", "sampler=nsga2", "scheduler=asha", "scheduler=fifo",
              "metric=fid_minority",
              "metric=[fid,fid_minority]", "mode=max", "resources.cpu=0.5", "sampler_seed=3", "preset=cifar10_gpu",
              "preset=short_check", "report=false", "description=x", "fixed.steps=8", "fixed.imbalance=100",
              "fixed.eval.num_samples=100", "fixed.batch_size=16", "fixed.eval_every=4", "fixed.ch=8"]
command_lines = st.lists(st.one_of(st.sampled_from(PLAIN_ARGS), st.sampled_from(PLAIN_ARGS),
                                   st.tuples(cli_key, cli_value).map("=".join),
                                   st.sampled_from(["novalue", "=1", "a.=1"])), max_size=3)


@settings(max_examples=EXAMPLES["command_lines"], **SETTINGS)
@given(args=command_lines)
def test_generated_command_lines(tmp_path_factory, args):
    root = tmp_path_factory.mktemp("cli") / "runs"
    argv = ["space=smoke", *args, f"root={root}"]
    result = outcome(lambda: prepare(argv)[1])
    TRIED["command_lines"][result] += 1
    if result == "refused":  # the same line through the real command: exit 2, one line, nothing written
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            assert run_main(argv) == 2
        lines = err.getvalue().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in lines[0], lines
    assert not root.exists()


@settings(max_examples=EXAMPLES["file_contents"], **SETTINGS)
@given(content=st.one_of(st.text(max_size=200), st.binary(max_size=200),
                         st.sampled_from([b"\xff\xfe", b"name: caf\xe9\n", b"a: &x [*x]\nname: t\n", b"[" * 5000,
                                          b"\xef\xbb\xbfname: t\nmetric: fid\nparams: {ch: {choice: [4]}}\n"])))
def test_arbitrary_file_contents(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("raw") / "space.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    TRIED["file_contents"][outcome(lambda: load_space(str(path)))] += 1


def test_inputs_tried():
    """How many inputs the fuzz tried (shown with -s) - run after the three above."""
    if not any(sum(counts.values()) for counts in TRIED.values()):
        pytest.skip("run with the fuzz tests above")
    print(f"\nfuzzed inputs: {TRIED} - {sum(sum(c.values()) for c in TRIED.values())} in all")
    for kind in ("documents", "command_lines"):
        assert TRIED[kind]["accepted"] and TRIED[kind]["refused"], TRIED  # both sides of the loader are reached


def test_the_draft_findings_are_one_line_refusals(tmp_path):
    """Inputs the fuzz found, kept as plain regression cases."""
    base = "name: t\nmetric: fid\nparams: {imbalance: {choice: [1, 10]}}\n"
    for extra, expected in (("scheduler: 1\n", "'scheduler' must be fifo, asha or a mapping"),
                            ("sampler: []\n", "'sampler' = [] is not one of"),
                            ("sampler_seed: [1]\n", "'sampler_seed' must be a number"),
                            ("resources: 2\n", "'resources' must be a mapping"),
                            ("seeds: 100000000\n", "'seeds' = 100000000 must be a count in 1..1000"),
                            ("seeds: [-1]\n", "each in [0, 2**32)"),
                            ("1: x\n", "'1' is not a space key"),
                            ("num_samples: .inf\n", "must be a finite number")):
        path = Path(tmp_path) / "space.yaml"
        path.write_text(base + extra)
        with pytest.raises(ConfigError) as info:
            load_space(str(path))
        assert expected in str(info.value), (extra, str(info.value))
