"""search.doctor: exit 0 on stores that agree, 1 with each disagreement listed on stores damaged by hand."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys

import pytest

from search.doctor import main as doctor_main
from test_damaged_stores import ray_experiment, study_on_disk
from test_search_e2e import ENV, PROJECT, run_cli


def doctor(root, capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = doctor_main(["space=smoke", f"root={root}"])
    return code, capsys.readouterr().out


def test_a_study_not_yet_run_agrees(tmp_path, capsys):
    root = tmp_path / "runs"
    study_on_disk(root)
    code, out = doctor(root, capsys)
    assert code == 0 and out.strip().splitlines()[-1].endswith("the stores agree"), out


def test_a_running_configuration_optuna_holds_as_waiting_disagrees(tmp_path, capsys):
    root = tmp_path / "runs"
    stores = study_on_disk(root)
    ray_experiment(stores, {2: {"sampled": {}, "ray_trials": {0: "abc"}, "values": {}, "told": False}})
    code, out = doctor(root, capsys)
    assert code == 1, out
    assert "disagree: Ray's searcher runs configuration 2 but Optuna holds it as WAITING" in out
    assert "note: Ray trial abc (configuration 2, seed 0) is unfinished but its folder" in out  # a resume reruns it
    assert "resume=true restarts it from scratch" in out


def test_a_damaged_store_file_disagrees_in_one_line(tmp_path, capsys):
    root = tmp_path / "runs"
    stores = study_on_disk(root)
    stores.optuna_db.write_bytes(stores.optuna_db.read_bytes()[:1000])
    code, out = doctor(root, capsys)
    assert code == 1 and f"disagree: {stores.optuna_db} (the Optuna store)" in out, out


def test_unknown_keys_are_refused(capsys):
    assert doctor_main(["space=smoke", "rooot=x"]) == 2
    assert "rooot unknown" in capsys.readouterr().err


@pytest.mark.slow
def test_doctor_on_a_finished_study_and_on_three_hand_damaged_copies(tmp_path, capsys):
    root = tmp_path / "runs"
    done = run_cli(["space=smoke", f"root={root}", "report=false"], timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    cli = subprocess.run([sys.executable, "-m", "search.doctor", "space=smoke", f"root={root}"], cwd=PROJECT,
                         env=ENV, capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0 and "the stores agree" in cli.stdout, cli.stdout + cli.stderr[-2000:]

    # 1. an Optuna value that is not the mean of its replicates
    copy = tmp_path / "value"
    shutil.copytree(root, copy)
    with sqlite3.connect(copy / "optuna.db") as db:
        db.execute("UPDATE trial_values SET value = value + 1 WHERE trial_id = (SELECT min(trial_id) FROM trials)")
    code, out = doctor(copy, capsys)
    assert code == 1 and "is not the mean of its replicates" in out, out

    # 2. one Ray trial logged into two MLflow runs, and a configuration finished twice
    copy = tmp_path / "twice"
    shutil.copytree(root, copy)
    from mlflow.tracking import MlflowClient
    client = MlflowClient(f"sqlite:///{copy / 'mlflow.db'}")
    exp = client.get_experiment_by_name("smoke")
    first, second = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("ltgan.role") == "trial"][:2]
    client.set_tag(second.info.run_id, "ray.trial_id", first.data.tags["ray.trial_id"])
    client.set_tag(second.info.run_id, "sampled", first.data.tags["sampled"])
    code, out = doctor(copy, capsys)
    assert code == 1 and f"Ray trial {first.data.tags['ray.trial_id']} has 2 runs" in out, out
    assert "FINISHED runs of configuration" in out and "has no MLflow run" in out, out

    # 3. a step logged twice, and the parent run FINISHED while a configuration is left to run
    copy = tmp_path / "steps"
    shutil.copytree(root, copy)
    client = MlflowClient(f"sqlite:///{copy / 'mlflow.db'}")
    child = next(r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("ltgan.role") == "trial")
    client.log_metric(child.info.run_id, "fid", 1.0, step=10)
    with sqlite3.connect(copy / "optuna.db") as db:
        db.execute("UPDATE trials SET state = 'RUNNING' WHERE trial_id = (SELECT max(trial_id) FROM trials)")
    code, out = doctor(copy, capsys)
    assert code == 1 and "logged fid twice at step(s) [10]" in out, out
    assert "the parent run is FINISHED but the study has unfinished configurations" in out, out
    # and search.run refuses to resume such stores, pointing at the doctor
    resumed = run_cli(["space=smoke", f"root={copy}", "report=false", "resume=true"], timeout=300)
    assert resumed.returncode == 1 and "python -m search.doctor space=smoke" in resumed.stderr, resumed.stderr[-2000:]


def test_a_study_stopped_before_it_created_its_optuna_study_agrees(tmp_path, capsys):
    """SIGTERM 12 s after a start landed between Optuna's schema and its study (the fault schedules found it):
    an optuna.db without the study and no Ray experiment is a study not started yet (search.run starts it
    afresh), not a disagreement; beside Ray's experiment it still is one."""
    import optuna

    root = tmp_path / "runs"
    root.mkdir()
    optuna.create_study(study_name="other", storage=f"sqlite:///{root / 'optuna.db'}")
    code, out = doctor(root, capsys)
    assert code == 0 and "note: no study 'smoke' is stored under" in out, out
    assert out.strip().endswith("not stored, nothing to check"), out
    (root / "ray" / "smoke").mkdir(parents=True)
    code, out = doctor(root, capsys)
    assert code == 1 and "holds no study 'smoke' but Ray's experiment" in out, out
