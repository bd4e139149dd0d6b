"""Files computed once per dataset and shared by every trial: the judge and the reference statistics.

Many trials (Ray workers, several processes at once) ask for the same file. A file lock next to it
makes exactly one of them compute it while the others wait; the writer saves to a temporary name,
fsyncs and ``os.replace``s it into place, so no reader ever sees a half-written file. Everything is
loaded with ``torch.load(weights_only=True)``: a cache holds tensors and plain values only.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Callable

import torch


def digest(*parts: Any) -> str:
    """A short content hash of strings, numbers and tensors (tensors by their bytes)."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            t = part.detach().cpu().contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.numpy().tobytes())
        else:
            h.update(repr(part).encode())
        h.update(b"|")
    return h.hexdigest()[:20]


def _save_atomically(payload: dict, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_or_compute(path: Path, compute: Callable[[], dict]) -> tuple[dict, bool]:
    """(payload, whether this call computed it). ``compute`` runs at most once across processes."""
    from filelock import FileLock

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if path.exists():
            try:
                return torch.load(path, map_location="cpu", weights_only=True), False
            except Exception:  # noqa: BLE001 - a damaged file (disk full, foreign writer): recompute it
                pass
        payload = compute()
        _save_atomically(payload, path)
        return torch.load(path, map_location="cpu", weights_only=True), True
