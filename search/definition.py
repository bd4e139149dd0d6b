"""What defines a study, recorded at its start and compared on every resume.

A resume continues the study the stores hold: Ray restores its pickled searcher (the old space), Optuna
holds the old configurations and MLflow the old parent run. Arguments that differ from the study's
start would be silently ignored or would split the study (the header, the report and a new parent run
using the new values, the trials the old ones). So the first start writes the study's resolved
definition to ``<root>/studies/<space>.json`` (atomically), and ``resume=true`` with anything that
differs is refused in one line naming the differing keys.

Declared safe (not compared): ``max_concurrent`` (the resumed limiter takes the new value, see
``StudyLimiter``), ``description`` and ``source`` (the space file's path: the content is what counts),
``fixed.cache_dir`` and ``fixed.data_root`` (locations, which move with a root copied to another
machine; what they hold is not a setting). Everything else is compared, ``seeds`` included, with one
exception: a finished study's ``seeds`` may be *extended* (the new list holds every old seed), and the
resume runs the new seeds of every configuration (``seeds_extension``; search.searcher says how Optuna is
told). Ray's saved experiment of the finished study cannot take new trials (its search is over), so it is
moved aside and the new seeds run as a new Ray experiment of the same Optuna study and MLflow parent run.
A sequential spec (``seeds: {sequential: ...}``) cannot change: its boundaries depend on every look.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from trainers.fields import ConfigError

SAFE_SPACE_KEYS = ("description", "source", "max_concurrent")
SAFE_FIXED_KEYS = ("cache_dir", "data_root")


class DefinitionError(ConfigError):
    """A resume whose arguments define another study than the one stored (exit 2)."""


def definition_of(space, stores) -> dict[str, Any]:
    """The study's definition as plain JSON values: the resolved space (file, preset and overrides
    applied) less the keys declared safe, its sampler seed, and the remote tracking URI (None: the
    store under the root, wherever the root now lives)."""
    spec = {k: v for k, v in space.to_dict().items() if k not in SAFE_SPACE_KEYS}
    spec["fixed"] = {k: v for k, v in spec["fixed"].items() if k not in SAFE_FIXED_KEYS}
    spec["sampler_seed"] = space.sampler_seed
    spec["tracking_uri"] = stores.remote_tracking_uri
    return json.loads(json.dumps(spec, sort_keys=True, default=str))


def definition_file(stores, name: str) -> Path:
    return stores.root / "studies" / f"{name}.json"


def record(stores, name: str, spec: dict[str, Any]) -> Path:
    """Write the definition atomically (temp file, fsync, rename): a full disk leaves the old file or none."""
    path = definition_file(stores, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(spec, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def recorded(stores, name: str) -> dict[str, Any] | None:
    """The definition recorded at the study's start; None for a study started before it was recorded."""
    path = definition_file(stores, name)
    if not path.exists():
        return None
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DefinitionError(f"{path} (the study's recorded definition) cannot be read ({type(e).__name__}: "
                              f"{e}); restore it from a backup, or start afresh under another root=") from None
    if not isinstance(spec, dict):
        raise DefinitionError(f"{path} (the study's recorded definition) is not a JSON object; restore it from "
                              f"a backup, or start afresh under another root=")
    return spec


def flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"fixed": {"steps": 20}}`` -> ``{"fixed.steps": 20}`` (lists are leaves)."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(flat(inner, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The dotted keys whose values differ, each as ``key: old -> new`` (``(unset)`` where absent)."""
    a, b = flat(old), flat(new)
    out = []
    for key in sorted(set(a) | set(b)):
        if key not in a or key not in b or a[key] != b[key] or type(a[key]) is not type(b[key]):
            out.append(f"{key}: {_short(a.get(key, '(unset)'))} -> {_short(b.get(key, '(unset)'))}")
    return out


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."


def seeds_extension(stores, name: str, spec: dict[str, Any]) -> tuple[list, list] | None:
    """(old seeds, new seeds) when ``spec`` differs from the recorded definition only by a longer list of
    seeds holding every old one; else None."""
    old = recorded(stores, name)
    if old is None:
        return None
    before, after = old.get("seeds"), spec.get("seeds")
    if (isinstance(before, list) and isinstance(after, list) and set(before) < set(after)
            and not differences({**old, "seeds": after}, spec)):
        return before, after
    return None


def prepare_seeds_extension(stores, name: str, seeds: tuple[list, list]) -> None:
    """Before a resume that extends ``seeds``: refuse it unless the study has finished (every configuration
    told), then move Ray's finished experiment aside (its search is over: it would take no new trial)."""
    import time

    from optuna.trial import TrialState

    study = stores.load_study(name)
    unfinished = study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
    if unfinished:
        raise DefinitionError(f"seeds {seeds[0]} -> {seeds[1]}: a study's seeds can be extended once it has "
                              f"finished, and {len(unfinished)} configuration(s) of '{name}' are unfinished; "
                              f"resume it with seeds={json.dumps(seeds[0]).replace(' ', '')} first, then extend")
    folder = stores.ray_experiment_dir(name)
    if folder.exists():
        aside = folder.with_name(f"{name}.seeds-{len(seeds[0])}-{time.strftime('%Y%m%d-%H%M%S')}")
        folder.rename(aside)
        print(f"# extending seeds {seeds[0]} -> {seeds[1]}: the new seeds of every configuration run as a new Ray "
              f"experiment (the finished one moved to {aside})", flush=True)


def check_resume(stores, name: str, spec: dict[str, Any]) -> bool:
    """Refuse (DefinitionError, one line) a resume whose definition differs from the recorded one, except
    by extended seeds (``seeds_extension``). Returns False when nothing was recorded (a study started before
    this check): the caller records it."""
    old = recorded(stores, name)
    if old is None:
        return False
    diff = differences(old, spec)
    if seeds_extension(stores, name, spec):
        diff = [d for d in diff if not d.startswith("seeds:")]
    if diff:
        shown = "; ".join(diff[:6]) + (f"; and {len(diff) - 6} more" if len(diff) > 6 else "")
        hint = (" (seeds may only be extended: a longer list holding every old seed, nothing else changed; a "
                "sequential spec cannot change)" if any(d.startswith("seeds") for d in diff) else "")
        raise DefinitionError(
            f"resume=true but this is not the study stored under root={stores.root} ({shown}){hint}; resume "
            f"with the arguments it started with (recorded in {definition_file(stores, name)}), or start the "
            f"changed study under another root=")
    return True
