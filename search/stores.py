"""Where a study's stores live: every path under one root, the Optuna storage, the MLflow URIs, the locks.

    <root>/                       (``root=``, default ./runs; always made absolute)
      optuna.db                   Optuna: one study per space, named after it
      mlflow.db                   MLflow backend store (unless ``tracking_uri=`` names a server)
      mlartifacts/<space>/        MLflow artifacts of the space's experiment (local store only)
      ray/<space>/                Ray Tune's experiment: its state, trial dirs and their checkpoints
      reports/<space>/            report.md and its figures (search.report)
      cache/                      the trainer's judge classifier and reference statistics (``cache_dir``)
      logs/<space>-crash-<time>.txt  the traceback of a study that stopped on an error
      studies/<space>.json        the study's definition at its start; a resume must match it (search.definition)
      .<space>.lock               held while a study of that space runs (one driver per space)
      .stores.lock                held while a driver creates the SQLite schemas (studies may share a root)

Trials run in other processes, perhaps on other nodes: every path handed to the trainer is absolute
(``trainer_paths``). This module imports nothing heavy at module level (no Ray, Optuna or MLflow).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

# the defaults every command and the trainer read (the trainer's own module: trainers imports no search)
from trainers.paths import CACHE_FOLDER, DEFAULT_DATA_ROOT, DEFAULT_ROOT  # noqa: F401 - re-exported

SQLITE_TIMEOUT_S = 60  # concurrent studies on one root wait for SQLite's lock instead of failing


@dataclass(frozen=True)
class Stores:
    """The stores of every study under ``root``; ``tracking_uri`` replaces the local MLflow store."""

    root: Path
    remote_tracking_uri: str | None = None

    @classmethod
    def at(cls, root: str | Path = DEFAULT_ROOT, tracking_uri: str | None = None) -> Stores:
        return cls(Path(str(root)).expanduser().resolve(), str(tracking_uri) if tracking_uri else None)

    # -- paths ----------------------------------------------------------------------------------
    @property
    def optuna_db(self) -> Path:
        return self.root / "optuna.db"

    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def artifacts_dir(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def ray_dir(self) -> Path:
        """Ray Tune's ``storage_path`` (absolute, as Ray requires)."""
        return self.root / "ray"

    def ray_experiment_dir(self, space: str) -> Path:
        return self.ray_dir / space

    def report_dir(self, space: str) -> Path:
        return self.root / "reports" / space

    @property
    def cache_dir(self) -> Path:
        return self.root / CACHE_FOLDER

    def crash_log(self, space: str) -> Path:
        """Where the traceback of a study that stopped on an error goes (one file per stop)."""
        return self.root / "logs" / f"{space}-crash-{time.strftime('%Y%m%d-%H%M%S')}.txt"

    def trainer_paths(self, fixed: Mapping[str, Any]) -> dict[str, str]:
        """The paths a trial reads and writes, absolute so that every worker sees the same ones: the
        shared cache under the root (unless the space fixes ``cache_dir``) and the data folder."""
        return {"cache_dir": str(Path(str(fixed.get("cache_dir", self.cache_dir))).expanduser().resolve()),
                "data_root": str(Path(str(fixed.get("data_root", DEFAULT_DATA_ROOT))).expanduser().resolve())}

    # -- locks ----------------------------------------------------------------------------------
    def study_lock(self, space: str):
        """Held by the driver of a study for its whole run; a second driver of the space is refused."""
        from filelock import FileLock
        return FileLock(str(self.root / f".{space}.lock"))

    def schema_lock(self):
        """Held while a driver creates or opens the SQLite schemas: creating them is not safe to race."""
        from filelock import FileLock
        return FileLock(str(self.root / ".stores.lock"))

    # -- Optuna ---------------------------------------------------------------------------------
    @property
    def optuna_url(self) -> str:
        return f"sqlite:///{self.optuna_db}"

    def optuna_storage(self):
        import optuna
        return optuna.storages.RDBStorage(self.optuna_url,
                                          engine_kwargs={"connect_args": {"timeout": SQLITE_TIMEOUT_S}})

    def has_study(self, space: str) -> bool:
        """Whether the Optuna study of ``space`` exists (never creates the database file)."""
        if not self.optuna_db.exists():
            return False
        from search.store_checks import optuna_study_names  # read-only: opening Optuna's storage writes its schema
        return space in optuna_study_names(self.optuna_db)

    def load_study(self, space: str):
        import optuna
        return optuna.load_study(study_name=space, storage=self.optuna_storage())

    # -- MLflow ---------------------------------------------------------------------------------
    @property
    def tracking_uri(self) -> str:
        return self.remote_tracking_uri or f"sqlite:///{self.mlflow_db}"

    @property
    def artifacts_uri(self) -> str:
        """The local store's default artifact root (what ``mlflow server`` is given)."""
        return self.artifacts_dir.as_uri()

    def experiment_artifact_location(self, space: str) -> str | None:
        """Where the experiment of ``space`` keeps its artifacts; a tracking server decides its own."""
        return None if self.remote_tracking_uri else (self.artifacts_dir / space).as_uri()
