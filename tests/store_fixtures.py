"""A new local MLflow store for tests that need one to exist but do not test how it is made: made once per
session by ``search.tracking.create_local_store`` (as ``search.run`` makes it) and copied. MLflow builds its
schema in dozens of migrations, 2-8 s a store on two busy cores; a copy opens in milliseconds and MLflow
still checks its schema version on every open. The tests of store creation call create_local_store (or
MLflow) themselves."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from search import tracking


@functools.cache
def _template() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="mlflow-store-template-"))
    atexit.register(shutil.rmtree, folder, True)
    path = folder / "mlflow.db"
    tracking.create_local_store(path)
    return path


def new_mlflow_store(path: Path) -> None:
    """``path`` as a new, empty local MLflow store (left alone when it exists, as create_local_store does)."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_template(), path)
