"""Damaged stores: one line naming the store's path, what is wrong and what to do, exit 1, no traceback, and
every file byte for byte as it was (opening a store would write: Optuna and MLflow create their schemas)."""

from __future__ import annotations

import json
import pickle

import pytest

from search import definition
from search.run import main as run_main
from search.run import prepare
from search.searcher import open_study
from store_fixtures import new_mlflow_store
from test_resume_checks import snapshot

ARGS = ["space=smoke"]


def study_on_disk(root, mlflow: bool = False):
    """A study's stores as a first start leaves them (the Optuna study, its definition, the MLflow store)."""
    _, space, stores = prepare([*ARGS, f"root={root}"])
    root.mkdir(parents=True, exist_ok=True)
    open_study(space, stores)
    definition.record(stores, space.name, definition.definition_of(space, stores))
    if mlflow:
        from mlflow.tracking import MlflowClient
        new_mlflow_store(stores.mlflow_db)
        MlflowClient(stores.tracking_uri).search_experiments()  # opens it (MLflow checks its schema)
    stores.study_lock(space.name).acquire(timeout=0)
    stores.study_lock(space.name).release()
    return stores


def ray_experiment(stores, configs: dict) -> None:
    """A saved Ray experiment of the study, as far as the checks read it: its state files."""
    folder = stores.ray_experiment_dir("smoke")
    folder.mkdir(parents=True)
    (folder / "experiment_state-2026-01-01_00-00-00.json").write_text(json.dumps({"trial_data": []}))
    with open(folder / "search_gen_state-2026-01-01_00-00-00.json", "wb") as f:  # Ray pickles it
        pickle.dump({"counter": 0}, f)
    with open(folder / "searcher-state-2026-01-01_00-00-00.pkl", "wb") as f:
        pickle.dump({"state": {"configs": configs, "trials": {}, "pending": []}, "sampler": None}, f)
    with open(folder / "tuner.pkl", "wb") as f:
        pickle.dump({"tuner": "state"}, f)


def refused(root, capsys, expected: list[str]) -> str:
    before = snapshot(root)
    capsys.readouterr()  # what setting the stores up printed
    assert run_main([*ARGS, f"root={root}", "resume=true"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    for part in expected:
        assert part in err, err
    assert snapshot(root) == before, "the failed start changed a file"
    return err


@pytest.mark.parametrize("damage, what", [
    (lambda data: data[: len(data) // 2], "cannot be read as an SQLite database"),
    (lambda data: b"", "is empty (0 bytes)"),
    (lambda data: b"garbage " * 100, "cannot be read as an SQLite database"),
])
def test_a_damaged_optuna_store_is_one_line_and_untouched(tmp_path, capsys, damage, what):
    root = tmp_path / "runs"
    stores = study_on_disk(root)
    stores.optuna_db.write_bytes(damage(stores.optuna_db.read_bytes()))
    refused(root, capsys, [f"error: {stores.optuna_db} (the Optuna store) {what}", "restore it from a backup",
                           "root="])


def test_a_truncated_mlflow_store_is_one_line_and_untouched(tmp_path, capsys):
    root = tmp_path / "runs"
    stores = study_on_disk(root, mlflow=True)
    data = stores.mlflow_db.read_bytes()
    stores.mlflow_db.write_bytes(data[: len(data) // 3])
    refused(root, capsys, [f"{stores.mlflow_db} (the MLflow store)", "restore it from a backup"])


@pytest.mark.parametrize("name", ["experiment_state-2026-01-01_00-00-00.json",
                                  "searcher-state-2026-01-01_00-00-00.pkl"])
def test_a_truncated_ray_state_is_named_by_the_doctor_and_set_aside_on_resume(tmp_path, capsys, name):
    """What a full disk left behind (a 0-byte experiment state, a truncated searcher state): the doctor
    names the file; a resume moves Ray's experiment aside, whole, and continues from Optuna."""
    from search.doctor import main as doctor_main
    from search.doctor import ready_to_resume

    root = tmp_path / "runs"
    stores = study_on_disk(root)
    ray_experiment(stores, {})
    path = stores.ray_experiment_dir("smoke") / name
    data = path.read_bytes()
    path.write_bytes(b"" if name.endswith(".json") else data[: len(data) // 2])
    capsys.readouterr()
    assert doctor_main(["space=smoke", f"root={root}"]) == 1
    assert f"disagree: {path} (Ray's saved experiment of study 'smoke')" in capsys.readouterr().out
    files = sorted(p.name for p in stores.ray_experiment_dir("smoke").iterdir())
    assert ready_to_resume(stores, "smoke", True, ["fid"]) is False  # a new Ray experiment, from Optuna
    out = capsys.readouterr().out
    assert out.startswith(f"# recovering: {name} (Ray's saved experiment)") and "restart from scratch" in out, out
    aside = next(root.glob("ray/smoke.damaged-*"))
    assert sorted(p.name for p in aside.iterdir()) == files and not stores.ray_experiment_dir("smoke").exists()


def test_an_emptied_optuna_store_beside_ray_state_is_refused(tmp_path, capsys):
    """Ray's experiment intact, the Optuna store replaced by a fresh one: the values are gone; refused
    (it used to loop: every resume reran a trial and failed on 'Cannot tell a WAITING trial')."""
    root = tmp_path / "runs"
    stores = study_on_disk(root)
    ray_experiment(stores, {})
    stores.optuna_db.unlink()
    import optuna
    optuna.create_study(study_name="other", storage=stores.optuna_storage())  # a valid store, without ours
    refused(root, capsys, ["holds no study 'smoke'", "Ray's experiment"])


def test_trials_rewritten_to_waiting_are_one_actionable_line(tmp_path, capsys):
    """A grid study's queued cells are WAITING; Ray's searcher says configuration 0 is running: Optuna's
    copy is older than Ray's (or was rewritten). One line that says so and what to do."""
    root = tmp_path / "runs"
    stores = study_on_disk(root)
    ray_experiment(stores, {0: {"sampled": {}, "ray_trials": {}, "values": {}, "told": False},
                            1: {"sampled": {}, "ray_trials": {}, "values": {}, "told": True}})
    refused(root, capsys, ["trial(s) [0] are WAITING", "restore both from the same backup", "search.doctor"])


@pytest.mark.slow
def test_a_lost_ray_state_is_rebuilt_from_optuna_and_the_study_finishes(tmp_path):
    """kill -9, then Ray's newest experiment state left at 0 bytes (as a full disk leaves it): the resume
    sets Ray's experiment aside, says so, runs the unfinished configurations and the stores agree."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from search.doctor import main as doctor_main
    from test_search_e2e import ENV, PROJECT, optuna_states, run_cli, wait_until_complete

    root = tmp_path / "runs"
    args = ["space=smoke", f"root={root}", "max_concurrent=1", "fixed.steps=60", "fixed.eval_every=20",
            "report=false"]
    proc = subprocess.Popen([sys.executable, "-m", "search.run", *args], cwd=PROJECT, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_until_complete(root, "smoke", proc)
    time.sleep(2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    state = sorted((root / "ray" / "smoke").glob("experiment_state-*.json"))[-1]
    state.write_bytes(b"")
    resumed = run_cli([*args, "resume=true"], timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"# recovering: {state.name} (Ray's saved experiment) is empty (0 bytes)" in resumed.stdout
    states = optuna_states(root, "smoke")
    assert states.get("COMPLETE") == 4 and "RUNNING" not in states and "WAITING" not in states, states
    assert doctor_main(["space=smoke", f"root={root}"]) == 0


def test_a_hot_journal_left_by_a_killed_writer_is_not_damage(tmp_path):
    """kill -9 of a driver mid-transaction leaves ``optuna.db-journal`` (a hot journal): a read-only
    connection cannot roll it back ("attempt to write a readonly database"), but the store is not damaged —
    SQLite's own recovery restores the last committed state, which the check then reads."""
    import sqlite3
    import subprocess
    import sys

    from search.store_checks import sqlite_problem

    db = tmp_path / "optuna.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (a)")
    con.execute("INSERT INTO t VALUES (1)")
    con.commit()
    con.close()
    writer = (f"import os, sqlite3\ncon = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
              "con.execute('PRAGMA cache_size=1')\ncon.execute('BEGIN')\n"
              "for i in range(20000):\n    con.execute('INSERT INTO t VALUES (?)', (i,))\nos._exit(0)\n")
    subprocess.run([sys.executable, "-c", writer], check=True)  # exits without commit or rollback
    assert (tmp_path / "optuna.db-journal").stat().st_size > 0
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True).execute("PRAGMA quick_check").fetchall()
    assert sqlite_problem(db) is None
    assert sqlite3.connect(db).execute("SELECT count(*) FROM t").fetchall() == [(1,)]  # committed state
