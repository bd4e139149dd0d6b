"""search/stores.py: every path of a study from one object, no store created by looking, no heavy import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from search.stores import Stores

PROJECT = Path(__file__).resolve().parent.parent


def test_every_path_of_a_study_lives_under_the_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stores = Stores.at("runs")
    root = tmp_path / "runs"
    assert stores.root == root and stores.root.is_absolute()
    assert stores.optuna_db == root / "optuna.db" and stores.optuna_url == f"sqlite:///{root}/optuna.db"
    assert stores.mlflow_db == root / "mlflow.db" and stores.tracking_uri == f"sqlite:///{root}/mlflow.db"
    assert stores.artifacts_uri == (root / "mlartifacts").as_uri()
    assert stores.experiment_artifact_location("smoke") == (root / "mlartifacts" / "smoke").as_uri()
    assert stores.ray_dir == root / "ray" and stores.ray_experiment_dir("smoke") == root / "ray" / "smoke"
    assert stores.report_dir("smoke") == root / "reports" / "smoke"
    assert stores.cache_dir == root / "cache"
    assert Path(stores.study_lock("smoke").lock_file) == root / ".smoke.lock"
    assert Path(stores.schema_lock().lock_file) == root / ".stores.lock"


def test_trainer_paths_are_absolute_and_a_fixed_cache_dir_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stores = Stores.at(tmp_path / "runs")
    assert stores.trainer_paths({}) == {"cache_dir": str(tmp_path / "runs" / "cache"),
                                        "data_root": str(tmp_path / "data")}
    assert stores.trainer_paths({"cache_dir": "shared", "data_root": "/datasets"}) == {
        "cache_dir": str(tmp_path / "shared"), "data_root": "/datasets"}


def test_a_tracking_server_replaces_the_local_mlflow_store(tmp_path):
    stores = Stores.at(tmp_path, tracking_uri="http://127.0.0.1:5000")
    assert stores.tracking_uri == "http://127.0.0.1:5000"
    assert stores.experiment_artifact_location("smoke") is None  # the server decides
    assert stores.optuna_db == tmp_path / "optuna.db"  # Optuna stays under the root


def test_looking_for_a_study_creates_no_store(tmp_path):
    stores = Stores.at(tmp_path / "runs")
    assert not stores.has_study("smoke")
    assert not (tmp_path / "runs").exists()


def test_importing_stores_imports_no_search_stack():
    code = "import sys, search.stores; print(sorted(m for m in ('ray', 'optuna', 'mlflow', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_trainer_imports_nothing_of_the_search_stack():
    """trainers/ knows nothing of Ray, Optuna, MLflow or search/ (DESIGN.md): importing a trial's code and
    its CLIs loads none of them."""
    code = ("import sys, trainers.train, trainers.evaluate, trainers.loop, trainers.settings, trainers.cli; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'search', 'ray', 'optuna', 'mlflow'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
