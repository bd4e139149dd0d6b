"""Sequential seeds, racing and extended seeds in the searcher, fed results by hand (no Ray): block counts,
decisions, what Optuna is told, and a resume from a saved searcher state at every point of the study."""

from __future__ import annotations

import functools
import pickle

import numpy as np
import optuna
import pytest
from ray.tune.search import Searcher

from search.spaces import SpaceError, load_space
from search.stores import Stores
from store_fixtures import new_mlflow_store

SPACE = """
name: seq_unit
metric: fid
sampler: grid
seeds: {{sequential: {{start: 3, step: 3, max: 6{margin}}}}}
fixed: {{dataset: digits, ch: 4, batch_size: 32, steps: 20, eval_every: 10, imbalance: 10}}
params:
  method: {{choice: [dcgan, damage, contrad]}}
"""
MARGIN = ", margin: {kid_minority: 1.0, recall_minority: 1.0}"


def space_file(tmp_path, margin=MARGIN, extra=""):
    path = tmp_path / "seq_unit.yaml"
    path.write_text(SPACE.format(margin=margin) + extra)
    return str(path)


def made(path):
    path.mkdir(parents=True, exist_ok=True)
    return path


def value(method: str, seed: int, metric: str) -> float:
    """The synthetic truth: damage's FID is 50 above dcgan's at every seed (resolved at the first look);
    contrad's differs by noise of sd 10 (open until the last look); kid and recall differ by 1e-3 noise
    (inside the margin of 1: futile at the first look)."""
    rng = np.random.default_rng(1000 * seed + {"dcgan": 0, "damage": 1, "contrad": 2}[method])
    base = {"fid": 200.0 + 3 * seed, "kid_minority": 0.5, "recall_minority": 0.3}[metric]
    if metric == "fid":
        return base + {"dcgan": 0.0, "damage": 50.0 + rng.normal(0, 0.5), "contrad": rng.normal(0, 10)}[method]
    return base + (0.0 if method == "dcgan" else rng.normal(0, 1e-3))


def result(config: dict) -> dict:
    return {m: value(config["method"], config["seed"], m) for m in ("fid", "kid_minority", "recall_minority")}


def drive(searcher, start: int = 0, stop_after: int | None = None, ids: str = "t"):
    """Run the searcher as Ray would with unlimited concurrency: propose until it waits, finish what runs,
    repeat; returns the proposals [(trial id, method, seed)] (stop after ``stop_after`` completions)."""
    proposed, running, done, counter = [], [], 0, start
    while True:
        while True:
            tid = f"{ids}{counter}"
            config = searcher.suggest(tid)
            if config is None or config == Searcher.FINISHED:
                break
            counter += 1
            proposed.append((tid, config["method"], config["seed"]))
            running.append((tid, config))
        if not running:
            return proposed, config
        tid, config = running.pop(0)
        searcher.on_trial_complete(tid, result(config))
        done += 1
        if stop_after is not None and done >= stop_after:
            return proposed, None


@pytest.fixture
def study(tmp_path):
    from search.searcher import ReplicateSearcher, open_study

    def make(margin=MARGIN, extra=""):
        space = load_space(space_file(tmp_path, margin, extra))
        stores = Stores.at(made(tmp_path / "runs"))
        open_study(space, stores)
        return space, stores, ReplicateSearcher(space, stores)
    return make


def test_the_seeds_spec_parses_to_looks_and_bad_specs_name_the_key_and_the_fix(tmp_path):
    space = load_space(space_file(tmp_path))
    assert space.seeds == tuple(range(6)) and space.sequential.looks == (3, 6)
    assert space.sequential.margin == {"kid_minority": ("absolute", 1.0), "recall_minority": ("absolute", 1.0)}
    assert space.to_dict()["seeds"] == {"sequential": {"start": 3, "step": 3, "max": 6,
                                                       "margin": {"kid_minority": 1.0, "recall_minority": 1.0}}}
    odd = load_space("smoke", {"seeds": {"sequential": {"start": 3, "step": 4, "max": 12}}})
    assert odd.sequential.looks == (3, 7, 11, 12) and odd.sequential.margin is None
    for seeds, match in [
        ({"sequential": {"start": 3, "step": 0, "max": 12}}, r"'seeds.sequential.step' = 0 must be a whole number "
                                                             r"in 1..1000 \(e.g. seeds: \{sequential:"),
        ({"sequential": {"start": 3, "max": 12}}, r"'seeds.sequential.step' is missing; write seeds: \{sequential"),
        ({"sequential": {"start": 1, "step": 1, "max": 3}}, r"'seeds.sequential.start' = 1 must be a whole number in 2"),
        ({"sequential": {"start": 6, "step": 3, "max": 6}}, r"'seeds.sequential.max' = 6 must exceed start = 6"),
        ({"sequential": {"start": 3, "step": 3, "max": 6, "stop": 1}}, r"'seeds.sequential.stop' is not a "
                                                                      r"sequential setting; valid: start, step, max"),
        ({"race": {"start": 3}}, r"'seeds.race' is not a seeds setting; write a count, a list of seeds, or seeds: "),
        ({"sequential": {"start": 3, "step": 3, "max": 6, "margin": {"fidd": 1}}},
         r"'seeds.sequential.margin.fidd' is not a metric the report compares; valid: fid, kid_minority"),
        ({"sequential": {"start": 3, "step": 3, "max": 6, "margin": {"fid": "x%"}}},
         r"'seeds.sequential.margin.fid' = 'x%' must be a percentage"),
    ]:
        with pytest.raises(SpaceError, match=match):
            load_space("smoke", {"seeds": seeds})
    with pytest.raises(SpaceError, match=r"'seeds.sequential' races configurations on one metric"):
        load_space("gsr_lambda", {"seeds": {"sequential": {"start": 3, "step": 3, "max": 6}}})
    # a margin may name a declared primary comparison's metric (the evidence studies' claims are on fid,
    # their search metric is kid_minority); without that primary, fid is not compared and is refused
    evidence = load_space("evidence_damage")
    assert evidence.sequential.looks == (3, 6, 9, 12) and evidence.sequential.margin == {"fid": ("relative", 0.05)}
    with pytest.raises(SpaceError, match=r"'seeds.sequential.margin.fid' is not a metric the report compares"):
        load_space("evidence_damage", {"primary": None})
    # a seeds override replaces the spec whole (a list over a sequential mapping is a fixed list, as the
    # reduced evidence runs use it) and a preset's sequential spec replaces a count
    assert load_space("evidence_damage", {"seeds": [0]}).seeds == (0,)
    assert load_space("evidence_damage", {"seeds": [0]}).sequential is None
    assert load_space("sdclr_ablation", preset="sequential").sequential.looks == (3, 6, 9, 12)


def test_a_sequential_grid_runs_blocks_closes_comparisons_and_drops_a_finished_arm(study):
    space, stores, searcher = study()
    proposed, last = drive(searcher)
    assert last == Searcher.FINISHED
    seeds = {m: sorted(s for _, method, s in proposed if method == m) for m in ("dcgan", "damage", "contrad")}
    # block 1: every configuration, seeds 0-2; damage's comparisons all closed there, so block 2 (seeds 3-5)
    # runs the shared baseline and contrad only
    assert seeds == {"dcgan": list(range(6)), "damage": [0, 1, 2], "contrad": list(range(6))}
    assert len(proposed) == len({(m, s) for _, m, s in proposed}), "a replicate was proposed twice"
    looks = searcher.state["looks"]
    assert [look["look"] for look in looks] == [1, 2] and searcher.state["done"]
    first = looks[0]["decisions"]
    assert len(first) == 6  # 2 methods x (fid, kid_minority, recall_minority)
    name = "methods: all: method=damage − dcgan: fid"
    assert first[name]["verdict"] == "resolved" and first[name]["n"] == 3 and first[name]["low"] > 0
    for metric in ("kid_minority", "recall_minority"):
        for method in ("damage", "contrad"):
            entry = first[f"methods: all: method={method} − dcgan: {metric}"]
            assert entry["verdict"] == "futile" and -1 < entry["low"] < entry["high"] < 1
    assert first["methods: all: method=contrad − dcgan: fid"]["verdict"] == "continue"
    assert looks[1]["decisions"]["methods: all: method=contrad − dcgan: fid"]["verdict"] in ("inconclusive",
                                                                                            "resolved")
    # the decisions are decide_family's (Holm over the family of 6) on the paired differences, by hand
    from search.sequential import decide

    diffs = [value("damage", s, "fid") - value("dcgan", s, "fid") for s in range(3)]
    by_hand = decide(diffs, looks=[3, 6], alpha=0.05 / 6)
    assert (first[name]["low"], first[name]["high"]) == pytest.approx((by_hand.low, by_hand.high))
    # Optuna: each configuration told once, when it stopped, the mean over the seeds it ran
    trials = {t.params["method"]: t for t in stores.load_study("seq_unit").trials}
    assert {m: t.state.name for m, t in trials.items()} == dict.fromkeys(trials, "COMPLETE")
    for method, t in trials.items():
        ran = seeds[method]
        assert t.user_attrs["n_seeds"] == len(ran) and t.user_attrs["seeds"] == ran
        assert t.value == pytest.approx(np.mean([value(method, s, "fid") for s in ran]))
    assert trials["damage"].user_attrs["sequential_stopped_at_look"] == 1
    assert trials["dcgan"].user_attrs["sequential_stopped_at_look"] == 2


def test_the_report_replays_the_same_looks_from_the_runs(study):
    from search.report.runs import TrialRun
    from search.report.sequential import sequential_lines
    from search.sequential_plan import replay

    space, stores, searcher = study()
    drive(searcher)
    runs = [TrialRun(f"r{m}{s}", "FINISHED", {}, {"method": m}, result({"method": m, "seed": s}), tags={"seed": str(s)})
            for m, n in (("dcgan", 6), ("damage", 3), ("contrad", 6)) for s in range(n)]
    runs.append(TrialRun("killed", "KILLED", {}, {"method": "damage"}, {}, tags={"seed": "4"}))  # interrupted
    plan = replay(space, runs)
    assert plan.looks == searcher.state["looks"] and plan.done
    text = "\n".join(sequential_lines(space, runs))
    assert "## Sequential decisions" in text and "m = 6" in text
    assert "| methods: all: method=damage − dcgan | fid | 1 of 2 | 3 |" in text
    assert "**resolved** | the interval excludes 0 |" in text
    assert "Replicates run: 15 of the 18 a fixed 6 seeds would take (83%)" in text
    assert "| method=damage | 3 | 1 |" in text


@functools.cache
def uninterrupted_looks(tmp_path) -> list[dict]:
    from search.searcher import ReplicateSearcher, open_study

    space = load_space(space_file(made(tmp_path)))
    stores = Stores.at(made(tmp_path / "runs"))
    open_study(space, stores)
    searcher = ReplicateSearcher(space, stores)
    drive(searcher)
    return searcher.state["looks"]


@pytest.mark.parametrize("kill_after", [2, 9, 11])  # within the first block, just after the look, in the second
def test_a_resume_from_any_saved_state_runs_no_replicate_twice_and_decides_the_same(study, tmp_path, kill_after,
                                                                                   tmp_path_factory):
    """Ray saves the searcher with its trials; a driver killed later loses what came after. The resumed
    searcher (restored from the saved state, its running trials finishing again) proposes the rest."""
    from search.searcher import ReplicateSearcher

    space, stores, first = study()
    saved = tmp_path / "saved.pkl"
    proposed, _ = drive(first, stop_after=kill_after)
    first.save(str(saved))
    ended = {tid for tid, (number, seed) in first.state["trials"].items()
             if seed in first.state["configs"][number]["values"]}
    running = [(tid, m, s) for tid, m, s in proposed if tid not in ended]
    drive(first, start=len(proposed), stop_after=2, ids="lost")  # the driver goes on after the save, then dies
    resumed = ReplicateSearcher(space, stores)
    resumed.restore(str(saved))
    for tid, method, seed in running:  # Ray restores the trials it saved: they finish in the resumed driver
        resumed.on_trial_complete(tid, result({"method": method, "seed": seed}))
    more, last = drive(resumed, ids="r")
    assert last == Searcher.FINISHED
    done = [(m, s) for _, m, s in proposed] + [(m, s) for _, m, s in more]
    assert len(done) == len(set(done)), "a replicate ran twice"
    assert sorted(done) == sorted([("dcgan", s) for s in range(6)] + [("damage", s) for s in range(3)]
                                  + [("contrad", s) for s in range(6)])
    assert resumed.state["looks"] == uninterrupted_looks(tmp_path_factory.getbasetemp() / "uninterrupted")
    assert sorted(t.state.name for t in stores.load_study("seq_unit").trials) == ["COMPLETE"] * 3


def test_the_searcher_state_pickles_with_its_looks(study, tmp_path):
    from search.searcher import ReplicateSearcher

    space, stores, searcher = study()
    drive(searcher, stop_after=9)
    searcher.save(str(tmp_path / "s.pkl"))
    saved = pickle.loads((tmp_path / "s.pkl").read_bytes())["state"]
    assert [look["look"] for look in saved["looks"]] == [1] and not saved["done"]
    restored = ReplicateSearcher(space, stores)
    restored.restore(str(tmp_path / "s.pkl"))
    assert restored.state["looks"] == searcher.state["looks"]


RACE = """
name: race_unit
metric: fid
sampler: random
num_samples: 6
seeds: {sequential: {start: 3, step: 3, max: 9}}
failure_value: {fid: 400.0}
fixed: {dataset: digits, ch: 4, batch_size: 32, steps: 20, eval_every: 10, imbalance: 10}
params:
  lr_g: {loguniform: [0.0001, 0.01]}
"""


def test_racing_drops_the_resolved_worse_and_never_tells_better_than_the_mean(tmp_path):
    from search.searcher import ReplicateSearcher, open_study

    path = tmp_path / "race_unit.yaml"
    path.write_text(RACE)
    space = load_space(str(path))
    stores = Stores.at(made(tmp_path / "runs"))
    open_study(space, stores)
    searcher = ReplicateSearcher(space, stores)
    searcher.start_budget()
    assert searcher.state["budget"] == 6

    def val(lr: float, seed: int) -> float | None:
        if seed == 1 and lr > 0.005:
            return None  # a failed replicate: enters at the penalty 400
        return 100.0 + 2000 * lr + 0.1 * seed * (1 + lr * 100)  # worse with lr, a seed effect shared by all

    proposed, running, counter = [], [], 0
    while True:  # two trials at a time, as max_concurrent: 2 would run them (blocks are 3 seeds)
        while len(running) < 2 and (config := searcher.suggest(f"t{counter}")) not in (None, Searcher.FINISHED):
            proposed.append(config)
            running.append((f"t{counter}", config))
            counter += 1
        if not running:
            config = searcher.suggest(f"t{counter}")
            break
        tid, config = running.pop(0)
        v = val(config["lr_g"], config["seed"])
        searcher.on_trial_complete(tid, None if v is None else {"val/fid": v, "fid": v}, error=v is None)
    assert config == Searcher.FINISHED
    replicates = [(c["lr_g"], c["seed"]) for c in proposed]
    assert len(replicates) == len(set(replicates)), "a replicate was proposed twice"
    trials = [t for t in stores.load_study("race_unit").trials]
    assert len(trials) == 6 and all(t.state.name == "COMPLETE" for t in trials)
    raced = [t for t in trials if t.user_attrs.get("raced_out")]
    full = [t for t in trials if t.user_attrs["n_seeds"] == 9]
    assert raced and full and all(t.user_attrs["n_seeds"] in (3, 6) for t in raced)
    incumbent = min(full, key=lambda t: t.value)
    for t in trials:
        seeds = t.user_attrs["seeds"]
        assert seeds == list(range(t.user_attrs["n_seeds"]))
        finished = [val(t.params["lr_g"], s) for s in seeds]
        mean_finished = np.mean([v for v in finished if v is not None])
        assert t.value >= mean_finished - 1e-9  # never better than its finished seeds' mean
        assert t.value == pytest.approx(np.mean([400.0 if v is None else v for v in finished]))
        if t.user_attrs.get("raced_out"):
            assert t.params["lr_g"] > incumbent.params["lr_g"]  # only the truly worse are raced out
            assert t.user_attrs["race"][-1]["verdict"] == "worse"


def test_extending_a_finished_studys_seeds_runs_only_the_new_seeds(tmp_path):
    from search.searcher import ReplicateSearcher, open_study

    space = load_space("smoke", {"seeds": [0, 1], "failure_value": {"fid": 90.0}})
    stores = Stores.at(made(tmp_path / "runs"))
    open_study(space, stores)
    first = ReplicateSearcher(space, stores)
    first.start_budget()
    n = 0
    while (config := first.suggest(f"a{n}")) not in (None, Searcher.FINISHED):
        first.on_trial_complete(f"a{n}", {"fid": 10.0 + config["seed"]})
        n += 1
    assert n == 8
    wider = load_space("smoke", {"seeds": [0, 1, 2], "failure_value": {"fid": 90.0}})
    second = ReplicateSearcher(wider, stores)
    second.start_budget()
    new = []
    while (config := second.suggest(f"b{len(new)}")) not in (None, Searcher.FINISHED):
        new.append(config)
        failed = config["method"] == "damage" and config["imbalance"] == 10
        second.on_trial_complete(f"b{len(new) - 1}", None if failed else {"fid": 10.0 + config["seed"]}, error=failed)
    assert sorted(c["seed"] for c in new) == [2] * 4  # only the new seed, once per configuration
    trials = stores.load_study("smoke").trials
    old, extended = trials[:4], trials[4:]
    assert [t.state.name for t in trials] == ["COMPLETE"] * 8
    assert sorted(t.user_attrs["extends"] for t in extended) == [t.number for t in old]
    for t in old:
        assert t.value == pytest.approx(10.5) and t.user_attrs["seeds"] == [0, 1]
    for t in extended:
        failed = t.params["method"] == "damage" and t.params["imbalance"] == 10
        assert t.user_attrs["seeds"] == [0, 1, 2]
        assert t.value == pytest.approx((10 + 11 + (90 if failed else 12)) / 3)
        assert t.user_attrs["ray_trials"]["0"].startswith("a") and t.user_attrs["ray_trials"]["2"].startswith("b")
    from search.doctor import _optuna, Diagnosis

    out = Diagnosis()
    _optuna(out, trials, ["fid"])
    assert not out.problems, out.problems  # the old trial extended by a new one is not "COMPLETE twice"


# -- end to end: the real Ray/Optuna/MLflow stack, killed between looks -----------------------------------
TINY = ["space=smoke_sequential", "seeds.sequential.start=2", "seeds.sequential.step=2", "seeds.sequential.max=4",
        "max_concurrent=2"]


def _finished_runs(root) -> int:
    import sqlite3

    try:
        with sqlite3.connect(root / "mlflow.db") as db:
            return db.execute("select count(*) from runs r join tags t on t.run_uuid = r.run_uuid where "
                              "t.key = 'ltgan.role' and t.value = 'trial' and r.status = 'FINISHED'").fetchone()[0]
    except sqlite3.Error:
        return 0


def _outcome(root):
    """Per configuration the seeds of its finished runs, and the looks replayed from MLflow (verdict, look, n)."""
    from search.report.runs import configurations, load_runs
    from search.sequential_plan import replay

    space = load_space("smoke_sequential", {"seeds": {"sequential": {"start": 2, "step": 2, "max": 4}}})
    stores = Stores.at(root)
    runs = load_runs(space, stores.tracking_uri)
    seeds = {key: sorted(r.seed for r in members if r.finished) for key, members in configurations(runs).items()}
    plan = replay(space, runs)
    looks = [{name: (d["verdict"], d["look"], d["n"]) for name, d in look["decisions"].items()} for look in plan.looks]
    told = sorted((tuple(sorted(t.params.items())), t.state.name, t.user_attrs.get("n_seeds"))
                  for t in stores.load_study("smoke_sequential").trials)
    return seeds, looks, told, plan.done


@pytest.mark.slow
def test_a_sequential_study_killed_between_looks_resumes_to_the_same_blocks_and_decisions(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    project = Path(__file__).resolve().parent.parent
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "RAY_USAGE_STATS_ENABLED": "0"}
    whole = subprocess.run([sys.executable, "-m", "search.run", *TINY, f"root={tmp_path / 'whole'}"], cwd=project,
                           env=env, capture_output=True, text=True, timeout=1200)
    assert whole.returncode == 0, whole.stderr[-3000:]
    root = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "search.run", *TINY, f"root={root}"], cwd=project, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 900
        while time.time() < deadline and proc.poll() is None and _finished_runs(root) < 8:  # block 1: 4 x 2
            time.sleep(0.5)
        time.sleep(1)  # the first look is taken; the second block is under way
        assert proc.poll() is None, "the study ended before it could be killed between its looks"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    resumed = subprocess.run([sys.executable, "-m", "search.run", *TINY, f"root={root}", "resume=true"], cwd=project,
                             env=env, capture_output=True, text=True, timeout=1200)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    seeds, looks, told, done = _outcome(root)
    assert done and (seeds, looks, told) == _outcome(tmp_path / "whole")[:3]
    assert all(len(s) == len(set(s)) for s in seeds.values()), f"a replicate finished twice: {seeds}"
    assert "## Sequential decisions" in (root / "reports" / "smoke_sequential" / "report.md").read_text()


@pytest.mark.slow
def test_extending_seeds_on_resume_runs_the_new_seeds(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    project = Path(__file__).resolve().parent.parent
    root = tmp_path / "runs"
    args = ["space=smoke", f"root={root}", "fixed.steps=10", "fixed.eval_every=10"]

    def run(*extra):
        return subprocess.run([sys.executable, "-m", "search.run", *args, *extra], cwd=project, capture_output=True,
                              text=True, timeout=900)
    first = run()
    assert first.returncode == 0, first.stderr[-3000:]
    wider = run("seeds=[0,1]", "resume=true")
    assert wider.returncode == 0, wider.stderr[-3000:]
    assert "# extending seeds [0] -> [0, 1]" in wider.stdout
    from search.report.runs import configurations, load_runs

    space = load_space("smoke", {"seeds": [0, 1]})
    runs = load_runs(space, Stores.at(root).tracking_uri)
    assert sorted(sorted(r.seed for r in m if r.finished) for m in configurations(runs).values()) == [[0, 1]] * 4
    trials = Stores.at(root).load_study("smoke").trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 8
    assert sorted(t.user_attrs["n_seeds"] for t in trials) == [1] * 4 + [2] * 4
    again = run("seeds=[0,1]", "resume=true")  # the extended study resumes as itself: nothing runs
    assert again.returncode == 0 and "# extending seeds" not in again.stdout, again.stderr[-2000:]


def test_a_raced_out_configuration_is_tagged_in_mlflow(tmp_path):
    from search import tracking
    from search.sequential_plan import tag_raced_out

    uri = f"sqlite:///{made(tmp_path / 'runs') / 'mlflow.db'}"
    new_mlflow_store(made(tmp_path / "runs") / "mlflow.db")
    client = tracking.client_for(uri)
    experiment = client.create_experiment("race_unit")
    runs = {tid: client.create_run(experiment, tags={tracking.TAG_TRIAL: tid}).info.run_id for tid in ("a", "b", "c")}
    tag_raced_out(uri, "race_unit", ["a", "b"], 6)
    tags = {tid: client.get_run(run).data.tags.get("raced_out") for tid, run in runs.items()}
    assert tags == {"a": "true (after 6 seeds)", "b": "true (after 6 seeds)", "c": None}


def test_a_space_that_selects_asks_its_budget_of_configurations_then_finishes(tmp_path):
    """Ray asks until the searcher says FINISHED (num_samples=-1): a fixed-seed tpe study stops at num_samples."""
    from search.searcher import ReplicateSearcher, open_study

    space = load_space("contrastive_weight", {"num_samples": 3, "seeds": 2})
    stores = Stores.at(made(tmp_path / "runs"))
    open_study(space, stores)
    searcher = ReplicateSearcher(space, stores)
    assert searcher.start_budget() == 3
    proposed = []
    while (config := searcher.suggest(f"t{len(proposed)}")) not in (None, Searcher.FINISHED):
        proposed.append(config)
        searcher.on_trial_complete(f"t{len(proposed) - 1}", {m: 1.0 for m in space.objective})
    assert config == Searcher.FINISHED and [c["seed"] for c in proposed] == [0, 1] * 3
    assert [t.state.name for t in stores.load_study(space.name).trials] == ["COMPLETE"] * 3


@pytest.mark.slow
def test_a_racing_study_runs_end_to_end_and_tells_each_configuration_its_mean(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from search.report.runs import configurations, load_runs

    space_path = tmp_path / "race_e2e.yaml"
    space_path.write_text(RACE.replace("race_unit", "race_e2e").replace("num_samples: 6", "num_samples: 3")
                          .replace("start: 3, step: 3, max: 9", "start: 2, step: 2, max: 4")
                          .replace("steps: 20", "steps: 10").replace("failure_value: {fid: 400.0}\n", ""))
    root = tmp_path / "runs"
    proc = subprocess.run([sys.executable, "-m", "search.run", f"space={space_path}", f"root={root}", "max_concurrent=2"],
                          cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    space = load_space(str(space_path))
    stores = Stores.at(root)
    trials = stores.load_study("race_e2e").trials
    assert len(trials) == 3 and all(t.state.name == "COMPLETE" for t in trials)
    runs = load_runs(space, stores.tracking_uri)
    by_config = configurations(runs)
    for t in trials:
        members = by_config[tuple(sorted(t.params.items()))]
        assert sorted(r.seed for r in members) == list(range(t.user_attrs["n_seeds"])) and t.user_attrs["n_seeds"] in (2, 4)
        assert t.value == pytest.approx(np.mean([r.metrics["val/fid"] for r in members]))
        assert all(("raced_out" in r.tags) == bool(t.user_attrs.get("raced_out")) for r in members)
    assert "## Sequential decisions (racing)" in (root / "reports" / "race_e2e" / "report.md").read_text()
