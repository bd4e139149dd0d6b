"""Checkpoints: one directory per evaluation, written atomically, loaded with weights_only=True.

A checkpoint directory holds ``state.pt`` (format version, nets, optimisers, RNG states, step, method
state),
``metrics.json``, ``config.json`` and ``data.json`` (the training split's class counts and its
minority/majority classes), plus anything the evaluation wrote (``artifacts/``). It is
assembled in a temporary directory and renamed into place, so a crash mid-write leaves the previous
checkpoint intact; a corrupted one is skipped in favour of the one before.

``state.pt`` carries ``format_version``. A change that keeps every tensor's shape but changes what a
tensor means (the cGAN's gain becoming ``1 + gamma``) would otherwise load silently into the new
meaning, so a checkpoint of another format is refused with one line that names it and what changed.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainers.fields import ConfigError

STATE_FILE = "state.pt"
FORMAT_VERSION = 2
FORMAT_CHANGES = {
    2: "the cGAN's conditional-BN gain is 1 + gamma with gamma initialised orthogonally (it was a gain "
       "initialised to 1), Damage GAN's mask applies after spectral norm, and the loop owns the optimisers",
}
DATA_FILE = "data.json"
PREFIX = "step_"


class CheckpointError(RuntimeError):
    pass


class CheckpointFormatError(ConfigError):
    """A readable checkpoint of another format: never loaded, never skipped for an older one (those are
    older still); the run has to start afresh."""


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": list(_flatten_py(random.getstate())),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _flatten_py(state):
    version, internal, gauss = state
    return [version, list(internal), gauss]


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_dirs(workdir: str | Path) -> list[Path]:
    """Finished checkpoint directories under ``workdir/checkpoints``, oldest first."""
    base = Path(workdir) / "checkpoints"
    if not base.is_dir():
        return []
    return sorted(p for p in base.iterdir() if p.is_dir() and p.name.startswith(PREFIX))


def save_checkpoint(workdir: str | Path, step: int, state: dict[str, Any], metrics: dict[str, Any],
                    config: dict[str, Any], artifacts: str | Path | None = None, keep: int = 2,
                    data: dict[str, Any] | None = None) -> Path:
    base = Path(workdir) / "checkpoints"
    base.mkdir(parents=True, exist_ok=True)
    final = base / f"{PREFIX}{step:09d}"
    tmp = base / f".tmp-{PREFIX}{step:09d}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    torch.save({**state, "format_version": FORMAT_VERSION}, tmp / STATE_FILE)
    (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1, default=float))
    (tmp / "config.json").write_text(json.dumps(config, indent=1))
    if data is not None:
        (tmp / DATA_FILE).write_text(json.dumps(data, indent=1))
    if artifacts is not None and Path(artifacts).is_dir():
        shutil.move(str(artifacts), tmp / "artifacts")
    for f in tmp.rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    if final.exists():  # a re-run of the same step after a resume: replace it whole
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in checkpoint_dirs(workdir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_state(path: str | Path) -> dict[str, Any]:
    """The state of one checkpoint directory (or a ``state.pt`` file); CheckpointError if unreadable."""
    path = Path(path)
    file = path / STATE_FILE if path.is_dir() else path
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, corrupted or missing: the caller falls back
        raise CheckpointError(f"checkpoint {file} cannot be read ({type(e).__name__}: {e})") from e
    found = state.get("format_version") if isinstance(state, dict) else None
    if found != FORMAT_VERSION:
        what = "no format version (written before versioning)" if found is None else f"format {found}"
        raise CheckpointFormatError(
            f"checkpoint {file} has {what}, this trainer reads format {FORMAT_VERSION} "
            f"({FORMAT_CHANGES[FORMAT_VERSION]}); it cannot be resumed: start the run afresh "
            f"(without resume=true, or with another workdir/root)")
    return state


def load_latest(path: str | Path) -> tuple[dict[str, Any], Path]:
    """Load ``path`` if it is a checkpoint; if it is a work dir, the newest readable checkpoint in it."""
    path = Path(path)
    if (path / STATE_FILE).exists():
        candidates = [path]
        # a sibling older checkpoint is the fallback for a corrupted one
        if path.parent.name == "checkpoints":
            candidates += [p for p in reversed(checkpoint_dirs(path.parent.parent)) if p.name < path.name]
    else:
        candidates = list(reversed(checkpoint_dirs(path)))
    errors = []
    for cand in candidates:
        try:
            return load_state(cand), cand
        except CheckpointError as e:
            errors.append(str(e))
    raise CheckpointError("no readable checkpoint under " + str(path) + (": " + "; ".join(errors) if errors else ""))
