"""Damaged stores are met with one line before anything opens them (opening them writes: Optuna and MLflow
create their schemas in an empty SQLite file), naming the store's path, what is wrong and what to do.

Checked read-only, in this order: the SQLite files (Optuna's, the local MLflow store) can be read and
pass SQLite's quick check; the MLflow store's schema is whole (not half created); Ray's saved experiment
(its newest experiment state, searcher state and tuner file) can be read; and, for a resume, the stores
agree where a disagreement would make the resumed study lose a configuration, run one twice or loop
(Ray's experiment without the Optuna study; a configuration Ray's searcher is running that Optuna holds as
WAITING). Every refusal is a StoreError: exit 1, nothing on disk changed. ``python -m search.doctor`` runs
the same checks and more.
"""

from __future__ import annotations

import json
import pickle
import sqlite3
from pathlib import Path
from typing import Any

EMPTY = "is empty (0 bytes)"
FIX = "restore it from a backup, or start the study afresh under another root="


def doctor_command(stores, space: str) -> str:
    """The command that lists what disagrees, ready to paste (shell-quoted)."""
    import shlex
    return shlex.join(["python", "-m", "search.doctor", f"space={space}", f"root={stores.root}"])


class StoreError(Exception):
    """A store cannot be used as it is; the message is the one line to print (exit 1)."""


def sqlite_problem(path: Path) -> str | None:
    """What is wrong with the SQLite file at ``path`` (None: readable and intact, or absent)."""
    if not path.exists():
        return None
    if not path.is_file():
        return "is not a file"
    if path.stat().st_size == 0:
        return EMPTY
    try:
        rows = _quick_check(f"{path.as_uri()}?mode=ro")
    except sqlite3.Error as e:
        journal = path.with_name(path.name + "-journal")
        if "readonly" not in str(e) or not journal.exists():
            return f"cannot be read as an SQLite database ({e})"
        # a hot journal: a writer was killed mid-transaction (kill -9 of a driver). A read-only connection
        # cannot roll it back; SQLite's own recovery on a read-write open restores the last committed
        # state, as Optuna's next open would do anyway
        try:
            rows = _quick_check(path.as_uri())
        except sqlite3.Error as e2:
            return f"cannot be read as an SQLite database ({e2})"
    if rows != [("ok",)]:
        return f"fails SQLite's integrity check ({rows[0][0] if rows else 'no answer'})"
    return None


def _quick_check(uri: str) -> list:
    db = sqlite3.connect(uri, uri=True, timeout=60)
    try:
        rows = db.execute("PRAGMA quick_check").fetchall()
        db.execute("SELECT name FROM sqlite_master").fetchall()
    finally:
        db.close()
    return rows


def mlflow_schema_problem(path: Path) -> str | None:
    """What is wrong with the MLflow schema of the SQLite file at ``path``, read-only (None: MLflow's
    current schema, an empty database that MLflow will fill, or no file). MLflow creates its schema in
    dozens of migrations that are not one transaction: a start stopped among them leaves some tables
    without the last schema version, which MLflow would try to migrate again when opened (and fail,
    half way, writing). ``search.tracking.create_local_store`` makes new stores whole or not at all."""
    if not path.is_file() or path.stat().st_size == 0:
        return None
    db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=60)
    try:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            return None
        versions = [v for (v,) in db.execute("SELECT version_num FROM alembic_version")] \
            if "alembic_version" in tables else []
        runs = db.execute("SELECT count(*) FROM runs").fetchone()[0] if "runs" in tables else 0
    finally:
        db.close()
    from mlflow.store.db.utils import _get_latest_schema_revision  # MLflow's own head (no public name)

    head = _get_latest_schema_revision()
    if versions == [head]:
        return None
    import shlex

    found = f"schema version {versions[0]}" if len(versions) == 1 else "no schema version"
    if not runs:
        aside = shlex.join(["mv", str(path), f"{path}.partial"])
        return (f"holds a half-created MLflow schema ({len(tables)} tables, {found}, no run): a start was stopped "
                f"while MLflow created it; move it aside ({aside}) and run the command again")
    upgrade = shlex.join(["mlflow", "db", "upgrade", f"sqlite:///{path}"])
    return (f"has MLflow {found}, not the {head} this MLflow expects: a store of another MLflow version; back it "
            f"up, then run: {upgrade}")


def optuna_study_names(path: Path) -> list[str]:
    """The studies in Optuna's SQLite file, read-only (an empty list for a file without Optuna's tables)."""
    db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=60)
    try:
        return [name for (name,) in db.execute("SELECT study_name FROM studies")]
    except sqlite3.OperationalError:  # no such table
        return []
    finally:
        db.close()


def newest(folder: Path, pattern: str) -> Path | None:
    """Ray's newest file of a kind (its names carry the session's start time, so the last name is newest)."""
    files = sorted(folder.glob(pattern))
    return files[-1] if files else None


def ray_state_problem(experiment_dir: Path) -> tuple[Path, str] | None:
    """(file, what is wrong) for the first unreadable file of Ray's saved experiment, None if readable."""
    if not experiment_dir.is_dir():
        return None
    for pattern, kind in (("experiment_state-*.json", "json"), ("search_gen_state-*.json", "pickle"),
                          ("searcher-state-*.pkl", "pickle"), ("tuner.pkl", "pickle")):
        path = newest(experiment_dir, pattern)
        if path is None:
            continue
        if path.stat().st_size == 0:
            return path, "is empty (0 bytes)"
        try:
            if kind == "json":
                json.loads(path.read_text(encoding="utf-8"))
            elif path.name.startswith("searcher-state"):
                searcher_state(path)
            else:
                with open(path, "rb") as f:  # only that it is whole: ends with pickle's STOP opcode
                    f.seek(-1, 2)
                    if f.read(1) != b".":
                        raise ValueError("truncated")
        except (OSError, ValueError, EOFError, pickle.UnpicklingError) as e:
            return path, f"cannot be read ({type(e).__name__}: {e})"
    return None


def searcher_state(path: Path) -> dict[str, Any]:
    """The ReplicateSearcher's saved state (configs, trials, pending); ValueError if it is not one."""
    with open(path, "rb") as f:
        saved = pickle.load(f)  # the driver's own file under the study's root
    if not isinstance(saved, dict) or not isinstance(saved.get("state"), dict):
        raise ValueError("not a saved searcher state")
    return saved["state"]


def check_files(stores, space: str, resume: bool = True, ray: bool = True) -> None:
    """Every store file of the study readable, or StoreError naming it. An empty (0-byte) SQLite file is
    an empty database to SQLite: refused on a resume (the study it held is gone), fine for a new study."""
    for path, what in ((stores.optuna_db, "the Optuna store"),
                       *(((stores.mlflow_db, "the MLflow store"),) if not stores.remote_tracking_uri else ())):
        problem = sqlite_problem(path)
        if not resume and problem == EMPTY:
            continue
        if problem:
            raise StoreError(f"{path} ({what}) {problem}; {FIX}")
    if not stores.remote_tracking_uri:
        problem = mlflow_schema_problem(stores.mlflow_db)
        if problem:
            raise StoreError(f"{stores.mlflow_db} (the MLflow store) {problem}")
    problem = ray_state_problem(stores.ray_experiment_dir(space)) if ray else None
    if problem:
        path, what = problem
        raise StoreError(f"{path} (Ray's saved experiment of study '{space}') {what}: a full disk or an "
                         f"interrupted copy; {FIX}")


def check_ray_against_optuna(stores, space: str, has_ray: bool) -> None:
    names = optuna_study_names(stores.optuna_db) if stores.optuna_db.exists() else []
    if has_ray and space not in names:
        raise StoreError(f"{stores.optuna_db} (the Optuna store) holds no study '{space}' but Ray's experiment "
                         f"{stores.ray_experiment_dir(space)} does: the Optuna store was emptied or replaced, and "
                         f"the finished configurations' values are lost with it; {FIX}")
    path = newest(stores.ray_experiment_dir(space), "searcher-state-*.pkl") if has_ray else None
    if path is None:
        return
    state = searcher_state(path)
    running = {int(n) for n, c in state.get("configs", {}).items() if not c.get("told")}
    if not running:
        return
    db = sqlite3.connect(f"{stores.optuna_db.as_uri()}?mode=ro", uri=True, timeout=60)
    try:
        waiting = sorted(n for (n,) in db.execute(
            "SELECT t.number FROM trials t JOIN studies s ON s.study_id = t.study_id "
            "WHERE s.study_name = ? AND t.state = 'WAITING'", (space,)) if n in running)
    finally:
        db.close()
    if waiting:
        raise StoreError(f"{stores.optuna_db} (the Optuna store): trial(s) {waiting} are WAITING but Ray's "
                         f"searcher ({path.name}) is running them: the Optuna store was rewritten or restored "
                         f"from an older copy than Ray's state; restore both from the same backup, or start the "
                         f"study afresh under another root= ({doctor_command(stores, space)} "
                         f"lists what disagrees)")


def set_aside_damaged_ray_state(stores, space: str) -> bool:
    """Recovery on a resume: Ray's saved experiment unreadable (a full disk left a 0-byte state file) is
    moved aside, whole, and the study continues from Optuna (which holds every told configuration) as
    a new Ray experiment: its unfinished configurations run again from scratch. Says so; True if moved."""
    import time

    folder = stores.ray_experiment_dir(space)
    problem = ray_state_problem(folder)
    if problem is None:
        return False
    aside = folder.with_name(f"{space}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    folder.rename(aside)
    path, what = problem
    print(f"# recovering: {path.name} (Ray's saved experiment) {what}; moved Ray's experiment to {aside} and "
          f"continuing from the Optuna study: unfinished configurations restart from scratch", flush=True)
    return True
