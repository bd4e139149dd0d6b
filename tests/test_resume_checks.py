"""A resume is the same study (or the same training run) or it is refused: one line naming what differs,
exit 2, nothing on disk changed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from search import definition
from search.run import main as run_main
from search.run import prepare
from search.searcher import open_study
from trainers import checkpoint as ckpt
from trainers.loop import train
from trainers.train import main as train_main

TINY = {"method": "dcgan", "dataset": "digits", "ch": 4, "batch_size": 16, "steps": 2, "eval_every": 2,
        "eval.num_samples": 100, "eval.judge_epochs": 1}


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` with a hash of its bytes (the lock files' presence included)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def started_study(root: Path, args: list[str]) -> None:
    """The stores as a study's first start leaves them before Ray runs: the Optuna study and the recorded
    definition (what search.run writes, without starting Ray)."""
    _, space, stores = prepare([*args, f"root={root}"])
    root.mkdir(parents=True, exist_ok=True)
    open_study(space, stores)
    stores.study_lock(space.name).acquire(timeout=0)  # the lock file a first start leaves (empty, released)
    stores.study_lock(space.name).release()
    definition.record(stores, space.name, definition.definition_of(space, stores))


@pytest.mark.parametrize("changed, key", [
    (["seeds=[5]"], "seeds"),  # not an extension: seed 0 is gone
    (["fixed.steps=40"], "fixed.steps"),
    (["num_samples=2"], "num_samples"),
    (["tracking_uri=sqlite:////tmp/elsewhere/mlflow.db"], "tracking_uri"),
    (["sampler_seed=3"], "sampler_seed"),
])
def test_resume_with_another_definition_is_refused_and_touches_nothing(tmp_path, capsys, changed, key):
    root = tmp_path / "runs"
    started_study(root, ["space=smoke"])
    before = snapshot(root)
    assert run_main(["space=smoke", f"root={root}", "resume=true", *changed]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert "not the study stored" in err[0] and f"({key}: " in err[0], err[0]
    assert snapshot(root) == before
    if key == "seeds":
        assert "seeds may only be extended: a longer list holding every old seed" in err[0]


def test_extending_the_seeds_of_an_unfinished_study_is_refused_and_touches_nothing(tmp_path, capsys):
    root = tmp_path / "runs"
    started_study(root, ["space=smoke"])  # its four cells still WAITING: unfinished
    before = snapshot(root)
    assert run_main(["space=smoke", f"root={root}", "resume=true", "seeds=2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert ("seeds [0] -> [0, 1]: a study's seeds can be extended once it has finished, and 4 configuration(s) of "
            "'smoke' are unfinished; resume it with seeds=[0] first, then extend") in err[0], err[0]
    assert snapshot(root) == before


def test_an_edited_space_file_is_refused_on_resume(tmp_path, capsys):
    space = tmp_path / "mine.yaml"
    text = (Path(__file__).resolve().parent.parent / "spaces" / "smoke.yaml").read_text()
    space.write_text(text.replace("name: smoke", "name: mine"))
    root = tmp_path / "runs"
    started_study(root, [f"space={space}"])
    before = snapshot(root)
    space.write_text(text.replace("name: smoke", "name: mine").replace("imbalance: {choice: [1, 10]}",
                                                                        "imbalance: {choice: [1, 100]}"))
    assert run_main([f"space={space}", f"root={root}", "resume=true"]) == 2
    err = capsys.readouterr().err.strip()
    assert "params.imbalance.choice: [1, 10] -> [1, 100]" in err and "\n" not in err, err
    assert snapshot(root) == before


def test_safe_changes_and_moved_roots_pass_the_check(tmp_path):
    root = tmp_path / "runs"
    started_study(root, ["space=smoke"])
    _, space, stores = prepare(["space=smoke", f"root={root}", "max_concurrent=1", "fixed.cache_dir=/tmp/x"])
    assert definition.check_resume(stores, "smoke", definition.definition_of(space, stores))
    # the same root copied elsewhere: the local store's absolute path is no part of the definition
    moved = tmp_path / "moved"
    root.rename(moved)
    _, space, stores = prepare(["space=smoke", f"root={moved}"])
    assert definition.check_resume(stores, "smoke", definition.definition_of(space, stores))


def test_differences_name_each_key_and_compare_by_value_and_type():
    old = {"seeds": [0], "fixed": {"steps": 20, "ch": 4}, "tracking_uri": None}
    new = {"seeds": [0, 1], "fixed": {"steps": 20.0, "ch": 4, "lr_g": 0.1}, "tracking_uri": None}
    assert definition.differences(old, new) == ["fixed.lr_g: (unset) -> 0.1", "fixed.steps: 20 -> 20.0",
                                                "seeds: [0] -> [0, 1]"]
    assert definition.differences(old, old) == []


def test_an_unreadable_definition_is_one_line(tmp_path, capsys):
    root = tmp_path / "runs"
    started_study(root, ["space=smoke"])
    path = definition.definition_file(definition_stores(root), "smoke")
    path.write_text('{"seeds": [0')  # truncated
    before = snapshot(root)
    assert run_main(["space=smoke", f"root={root}", "resume=true"]) == 2
    err = capsys.readouterr().err.strip()
    assert str(path) in err and "cannot be read" in err and "\n" not in err
    assert snapshot(root) == before


def definition_stores(root: Path):
    from search.stores import Stores
    return Stores.at(root)


def test_train_resume_with_another_config_is_refused_in_one_line(tmp_path, capsys):
    workdir = tmp_path / "w"
    train(TINY, workdir=workdir, evaluator=None)
    before = snapshot(workdir)
    args = [f"workdir={workdir}", f"root={tmp_path}", "resume=true"]
    base = [f"{k}={v}" for k, v in TINY.items()]
    for changed, key in ((["ch=8"], "ch: 4 -> 8"), (["method=damage"], "method: dcgan -> damage"),
                         (["imbalance=10"], "imbalance: 1"), (["steps=1"], "steps: 2 -> 1")):
        assert train_main([*base, *changed, *args]) == 2, changed
        err = capsys.readouterr().err.strip()
        assert "differs from the checkpoint's" in err and key in err and "\n" not in err, err
        assert "Traceback" not in err
        assert snapshot(workdir) == before
    # a larger steps= continues the same run
    assert train_main([*[a for a in base if not a.startswith(("steps=", "eval_every="))], "steps=4",
                       "eval_every=2", *args]) == 0, capsys.readouterr().err
    assert ckpt.checkpoint_dirs(workdir)[-1].name.endswith("000000004")


def test_a_restored_limiter_takes_the_resumed_max_concurrent():
    """max_concurrent is declared safe on resume: Ray restores its ConcurrencyLimiter's saved state, and
    StudyLimiter keeps the driver's value over the saved one."""
    from ray.tune.search import Searcher

    from search.searcher import StudyLimiter

    saved = StudyLimiter(Searcher(metric="fid", mode="min"), max_concurrent=4).get_state()
    restored = StudyLimiter(Searcher(metric="fid", mode="min"), max_concurrent=4)
    try:
        StudyLimiter.resumed_max_concurrent = 1
        restored.set_state(saved)
        assert restored.max_concurrent == 1
    finally:
        StudyLimiter.resumed_max_concurrent = None
    restored.set_state(saved)
    assert restored.max_concurrent == 4
