"""The shared shape of every command: ``--help`` prints the module's doc; a ConfigError (a person's
mistake) becomes one ``error:`` line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Callable

from trainers.paths import CACHE_FOLDER, DEFAULT_ROOT
from trainers.fields import ConfigError, one_line


def nan_as_null(metrics: dict) -> dict:
    """``metrics`` ready for one JSON line: JSON has no NaN, so a non-finite float is written as null."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}


def directory_arg(key: str, value: object, write: bool = True) -> Path:
    """The folder named by ``key=value``, which may not exist yet: refused with one line when it, or
    the nearest of its parents that exists, is not a directory or (``write``) cannot be written."""
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        # root= (null), root=1e3, root=true, root=[a,b] would become folders named None, 1000.0, True, ...
        raise ConfigError(f"{key}={value!r} is not a folder's path; give one (a path that reads as a number "
                          f"or as true/null needs YAML quotes, in the shell: '{key}=\"2024\"')")
    try:
        path = Path(value).expanduser().absolute()
    except RuntimeError as e:  # ~nouser: no such user's home
        raise ConfigError(f"{key}={value}: {str(e).rstrip('.')}; give the folder's full path") from None
    if "\0" in str(path):
        raise ConfigError(f"{key}={value!r} holds a NUL byte; give a folder's path")
    existing = next(p for p in (path, *path.parents) if p.exists())
    if existing == path and not path.is_dir():
        raise ConfigError(f"{key}={value} exists and is not a directory; give a folder (new or existing)")
    if not existing.is_dir():
        raise ConfigError(f"{key}={value} cannot be made: {existing} is a file, not a directory; give another folder")
    if write:
        writable(key, value, existing)
    return path


def writable(key: str, value: object, existing: Path) -> None:
    """Refuse ``existing`` (the folder or its nearest existing parent) unless a folder can really be made
    in it: permission bits say nothing to root, nor about a read-only mount or /proc. The probe is
    removed at once."""
    import tempfile

    try:
        os.rmdir(tempfile.mkdtemp(prefix=".write-check-", dir=existing))
    except OSError as e:
        raise ConfigError(f"{key}={value}: nothing can be written in {existing} ({e.strerror or e}); give a "
                          f"folder you can write to") from None


def root_and_cache(overrides: dict) -> Path:
    """A command's ``root=`` (the store root, default ``runs``), popped from its overrides, with
    ``cache_dir`` defaulting to ``<root>/cache`` as for a study's trials; either refused in one line
    when it cannot be a folder (the judge and reference statistics are written there)."""
    root = directory_arg("root", overrides.pop("root", DEFAULT_ROOT))  # ~ expanded
    overrides.setdefault("cache_dir", str(root / CACHE_FOLDER))
    directory_arg("cache_dir", overrides["cache_dir"])
    return root


def run_command(doc: str | None, body: Callable[[list[str]], int], argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(doc)
        return 0
    try:
        return body(argv)
    except ConfigError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
