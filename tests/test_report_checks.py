"""search.report checks the tracking URI and the stores as search.run does: a damaged or missing store is one
line naming it and the fix (exit 1), a wrong argument one line (exit 2), never a traceback, and nothing on
disk changed (every file under the root byte for byte, no file created)."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from search.report import main as report_main
from search.spaces import load_space
from test_damaged_stores import study_on_disk
from test_report import make_study
from test_resume_checks import snapshot
from test_search_e2e import ENV, PROJECT


def refused(root: Path, capsys, code: int, *extra: str) -> str:
    """The report's one-line refusal, with the root's files unchanged (and none created)."""
    before = snapshot(root) if root.exists() else None
    capsys.readouterr()
    assert report_main(["space=smoke", f"root={root}", *extra]) == code
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert (snapshot(root) if root.exists() else None) == before, "the refused report changed a file"
    return err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_tracking_uri_is_one_line_at_once(tmp_path, capsys):
    import time

    root = tmp_path / "runs"
    study_on_disk(root, mlflow=True)
    uri = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    err = refused(root, capsys, 2, f"tracking_uri={uri}")
    assert time.monotonic() - started < 30  # no retries (it used to retry for about 4 minutes)
    assert err.startswith(f"error: tracking_uri={uri} is unreachable") and "start the server" in err, err


@pytest.mark.parametrize("damage, what", [
    (lambda data: b"garbage " * 100, "cannot be read as an SQLite database"),
    (lambda data: data[: len(data) // 2], "cannot be read as an SQLite database"),
    (lambda data: b"", "is empty (0 bytes)"),
])
def test_a_damaged_optuna_store_is_one_line(tmp_path, capsys, damage, what):
    root = tmp_path / "runs"
    stores = study_on_disk(root, mlflow=True)
    stores.optuna_db.write_bytes(damage(stores.optuna_db.read_bytes()))
    err = refused(root, capsys, 1)
    assert err.startswith(f"error: {stores.optuna_db} (the Optuna store) {what}") and "restore it" in err, err


def test_a_missing_mlflow_store_is_one_line_and_not_created(tmp_path, capsys):
    """It used to create an empty mlflow.db and write an empty report, exit 0."""
    root = tmp_path / "runs"
    stores = study_on_disk(root)
    err = refused(root, capsys, 1)
    assert err.startswith(f"error: {stores.mlflow_db} (the MLflow store) is missing") and "backup" in err, err
    assert not stores.mlflow_db.exists() and not (root / "reports").exists()


def test_a_root_with_no_study_is_one_line_and_nothing_is_made(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    err = refused(empty, capsys, 2)
    assert "no study 'smoke' under root=" in err and "python -m search.run space=smoke" in err, err
    assert list(empty.iterdir()) == []
    nowhere = tmp_path / "no such root"
    err = refused(nowhere, capsys, 2)
    assert f"'root={nowhere}'" in err, err  # the command to paste, quoted (the path has spaces)
    assert not nowhere.exists()


def test_a_half_created_mlflow_schema_is_one_line(tmp_path, capsys):
    root = tmp_path / "runs"
    stores = study_on_disk(root)
    half_created_mlflow_store(stores.mlflow_db)
    err = refused(root, capsys, 1)
    assert err.startswith(f"error: {stores.mlflow_db} (the MLflow store) holds a half-created MLflow schema"), err


def test_another_tracking_uri_than_the_studys_is_one_line(tmp_path, capsys):
    root = tmp_path / "runs"
    study_on_disk(root, mlflow=True)  # recorded: the local store
    err = refused(root, capsys, 2, f"tracking_uri=sqlite:///{tmp_path}/other.db")
    assert "ran with tracking_uri=(none: <root>/mlflow.db)" in err and "no tracking_uri=" in err, err
    assert not (tmp_path / "other.db").exists()


def test_a_study_in_good_stores_is_reported(tmp_path, capsys):
    make_study(tmp_path, load_space("smoke"), [({"method": "dcgan", "imbalance": 1}, 0, 10.0)])
    assert report_main(["space=smoke", f"root={tmp_path}"]) == 0
    assert (tmp_path / "reports" / "smoke" / "report.md").is_file()


def half_created_mlflow_store(path: Path) -> None:
    """What a driver killed during MLflow's first schema creation leaves: MLflow's initial tables, created
    before its migrations, and no schema version."""
    import sqlalchemy
    from mlflow.store.tracking.dbmodels.initial_models import Base as InitialBase

    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    InitialBase.metadata.create_all(engine)
    engine.dispose()


def test_a_read_only_root_is_one_line(tmp_path):
    """A root nothing can be written in (the report goes under it): refused before any store is opened.
    Permission bits do not stop root: as root the report runs in a mount namespace where the root is a
    read-only bind mount (unshare); as another user the root is made read-only by its bits."""
    root = tmp_path / "runs"
    study_on_disk(root, mlflow=True)
    before = snapshot(root)
    command = [sys.executable, "-m", "search.report", "space=smoke", f"root={root}"]
    if os.geteuid() == 0:
        probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
        if probe.returncode != 0:
            pytest.skip(f"running as root without mount namespaces (unshare: {probe.stderr.strip()!r}): no way to "
                        f"make a folder read-only to this process")
        script = ('mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"')
        command = ["unshare", "-m", "sh", "-c", script, str(root), *command]
    else:
        for path in (root, *root.rglob("*")):
            path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        proc = subprocess.run(command, cwd=PROJECT, env=ENV, capture_output=True, text=True, timeout=300)
    finally:
        for path in (root, *root.rglob("*")):
            path.chmod(0o755 if path.is_dir() else 0o644)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith(f"error: root={root}: nothing can be written in {root}"), lines
    assert "Read-only file system" in lines[0] or "Permission denied" in lines[0], lines
    assert snapshot(root) == before


def test_the_doctor_and_a_resume_name_a_half_created_mlflow_store(tmp_path, capsys):
    """The same half-created schema met by the doctor (one disagreement) and by search.run (a resume and
    a new study of another space on the root: one line, exit 1, untouched)."""
    from search.doctor import main as doctor_main
    from search.run import main as run_main

    root = tmp_path / "runs"
    stores = study_on_disk(root)
    half_created_mlflow_store(stores.mlflow_db)
    stores.study_lock("other").acquire(timeout=0)  # the (empty) lock file a start of the other space makes
    stores.study_lock("other").release()
    before = snapshot(root)
    capsys.readouterr()
    assert doctor_main(["space=smoke", f"root={root}"]) == 1
    assert f"disagree: {stores.mlflow_db} (the MLflow store) holds a half-created" in capsys.readouterr().out
    other = tmp_path / "other.yaml"
    other.write_text((PROJECT / "spaces" / "smoke.yaml").read_text().replace("name: smoke", "name: other"))
    for args in (["space=smoke", "resume=true"], [f"space={other}"]):
        assert run_main([*args, f"root={root}"]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {stores.mlflow_db} (the MLflow store) holds a half-created MLflow schema")
        assert "\n" not in err and f"mv {stores.mlflow_db} {stores.mlflow_db}.partial" in err, err
    assert snapshot(root) == before


def test_an_mlflow_store_of_another_version_is_told_to_upgrade(tmp_path):
    from search.store_checks import mlflow_schema_problem

    path = tmp_path / "mlflow.db"
    half_created_mlflow_store(path)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        db.execute("INSERT INTO alembic_version VALUES ('451aebb31d03')")  # MLflow's first migration
        assert "half-created" in mlflow_schema_problem(path)  # no run in it: nothing to upgrade
        db.execute("INSERT INTO runs (run_uuid, experiment_id) VALUES ('r1', 0)")
    problem = mlflow_schema_problem(path)
    assert "schema version 451aebb31d03" in problem and f"mlflow db upgrade sqlite:///{path}" in problem, problem


def test_a_new_local_mlflow_store_is_made_whole_or_not_at_all(tmp_path, monkeypatch):
    """Stopped in MLflow's migrations (here: Ctrl-C in the first one), no mlflow.db is left, nor any
    temporary file; made without a stop, MLflow's current schema is there and MLflow opens it."""
    import mlflow.store.db.utils as mlflow_db

    from search import tracking
    from search.store_checks import mlflow_schema_problem

    path = tmp_path / "mlflow.db"

    def stopped(engine):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(mlflow_db, "_upgrade_db", stopped)
        with pytest.raises(KeyboardInterrupt):
            tracking.create_local_store(path)
    assert list(tmp_path.iterdir()) == []
    tracking.create_local_store(path)
    assert [p.name for p in tmp_path.iterdir()] == ["mlflow.db"] and mlflow_schema_problem(path) is None
    with sqlite3.connect(path) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"alembic_version", "experiments", "runs", "metrics", "params", "tags"} <= tables
    assert tracking.client_for(f"sqlite:///{path}").get_experiment("0").name == "Default"


@pytest.mark.parametrize("uri", ["runs/mlflow.db", "mlflow.db"])
def test_a_path_for_tracking_uri_is_refused_alike_by_run_and_report(uri, tmp_path, capsys):
    """search.run and search.report share one check of tracking_uri=: the same line, exit 2, nothing written."""
    from search.run import main as run_main

    root = tmp_path / "runs"
    assert run_main(["space=smoke", f"root={root}", f"tracking_uri={uri}"]) == 2
    by_run = capsys.readouterr().err.strip()
    by_report = refused(root, capsys, 2, f"tracking_uri={uri}")
    assert by_run == by_report and "is not a URI" in by_report, (by_run, by_report)
    assert not root.exists()


def test_every_mlflow_client_turns_the_artifact_progress_bar_off_unless_asked(tmp_path, monkeypatch):
    """search.run and search.report make their MLflow clients with tracking.client_for, which turns MLflow's
    per-transfer progress bar off (a bar per copied sample grid) and leaves a user's own choice alone."""
    from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR

    from search import tracking

    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    tracking.client_for(f"sqlite:///{tmp_path}/mlflow.db")
    assert MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.get() is False
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "true")
    tracking.client_for(f"sqlite:///{tmp_path}/mlflow.db")
    assert MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.get() is True
