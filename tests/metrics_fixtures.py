"""One digits evaluator (its judge trained once into a session root) shared by the metrics tests, and
stand-in generators that replay given images through the real sampling path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainers.config import make_config
from trainers.data import load_data, to_float
from trainers.metrics import make_evaluator

CPU = torch.device("cpu")


def store(path) -> dict:
    """The config keys that put the judge and reference cache under ``path``: the one place to change
    when the store keys change."""
    return {"cache_dir": str(Path(path) / "cache")}


def store_of(cfg) -> dict:
    """The store keys of an existing config and its dataset: another evaluator or a trial on the same
    cache and data."""
    return {"cache_dir": cfg.cache_dir, "dataset": cfg.dataset}


def store_args(cfg) -> list[str]:
    """The cache as a ``key=value`` argument of a command (which names its dataset itself)."""
    return [f"cache_dir={cfg.cache_dir}"]


@pytest.fixture(scope="session")
def digits_eval(tmp_path_factory):
    """(cfg, data, evaluator) with the default eval config on digits."""
    root = tmp_path_factory.mktemp("metrics")
    cfg = make_config({**store(root), "dataset": "digits"})
    data = load_data(cfg)
    return cfg, data, make_evaluator(cfg, data, CPU)


def evaluator_for(cfg, data, **eval_keys):
    """Another evaluator on the same root (the cached judge and reference are reused)."""
    return make_evaluator(make_config({**store_of(cfg), **{f"eval.{k}": v for k, v in eval_keys.items()}}),
                          data, CPU)


class Replay:
    """A stand-in unconditional G that "generates" given uint8 images in order, wrapping around."""

    conditional = False

    def __init__(self, images: torch.Tensor):
        self.images = images
        self.position = 0
        self.drawn = 0

    def generate(self, n, labels=None, generator=None):
        idx = torch.arange(self.position, self.position + n) % len(self.images)
        self.position += n
        self.drawn += n
        return to_float(self.images[idx])


class ReplayByLabel:
    """A stand-in conditional G: the i-th request for class ``y`` (over all calls) is ``pools[y][i]``, cycling."""

    conditional = True

    def __init__(self, pools: dict[int, torch.Tensor]):
        self.pools = pools
        self.requested: list[torch.Tensor] = []
        self.seen: dict[int, int] = {}

    def generate(self, n, labels=None, generator=None):
        assert labels is not None and len(labels) == n
        self.requested.append(labels.clone())
        out = []
        for y in labels.tolist():
            i = self.seen[y] = self.seen.get(y, -1) + 1
            out.append(to_float(self.pools[y][i % len(self.pools[y])]))
        return torch.stack(out)
