"""Imbalance profiles (METHODS.md): how many training images each class rank keeps under ``imbalance``
(``rho = n_max / n_min``) and ``imbalance_profile``, which classes hold which rank for a seed, and which
classes are the minority. ``trainers.data`` cuts a dataset's training split to these counts.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from trainers.fields import ConfigError


def longtail_counts(n_max: int, num_classes: int, rho: float, profile: str = "exp") -> list[int]:
    """Images per class rank ``k = 0..K-1`` under an imbalance ``rho = n_max / n_min``.

    ``exp``: ``int(n_max * (1/rho) ** (k / (K-1)))`` (CIFAR-LT); ``step``: the first ``ceil(K/2)``
    classes keep ``n_max``, the rest ``int(n_max / rho)``; ``balanced_partial``: the ``exp`` total
    split evenly over classes (the remainder goes one each to the first classes).
    """
    if profile not in PROFILES:
        raise ConfigError(f"unknown imbalance_profile '{profile}'; valid: {', '.join(PROFILES)}")
    if rho < 1:
        raise ConfigError(f"imbalance = {rho} must be >= 1 (1 = balanced)")
    if num_classes < 1 or n_max < 1:
        raise ConfigError(f"need n_max >= 1 and num_classes >= 1, got {n_max}, {num_classes}")
    return PROFILES[profile](n_max, num_classes, rho)


def _exp_counts(n_max: int, k: int, rho: float) -> list[int]:
    if k == 1:
        return [n_max]
    return [int(n_max * (1.0 / rho) ** (i / (k - 1))) for i in range(k)]


def _step_counts(n_max: int, k: int, rho: float) -> list[int]:
    head = math.ceil(k / 2)
    return [n_max] * head + [int(n_max / rho)] * (k - head)


def _balanced_partial_counts(n_max: int, k: int, rho: float) -> list[int]:
    total = sum(_exp_counts(n_max, k, rho))
    base, extra = divmod(total, k)
    return [base + (1 if i < extra else 0) for i in range(k)]


PROFILES: dict[str, Callable[[int, int, float], list[int]]] = {
    "exp": _exp_counts,
    "step": _step_counts,
    "balanced_partial": _balanced_partial_counts,
}


def class_order(num_classes: int, seed: int) -> list[int]:
    """The classes by rank (0 = head) for ``seed``: a seeded permutation, so which classes are the
    minority varies between seeds (an imbalance effect, not a digit effect: docs/methods.md) while every
    configuration of one seed shares it."""
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randperm(num_classes, generator=gen).tolist()


def minority_classes(counts: list[int], class_order: list[int], num_minority: int | None = None) -> list[int]:
    """The ``num_minority`` (default ``floor(K/2)``) classes with the fewest training images.

    Ties (e.g. a balanced split) go to the classes ranked last, so the choice is stable.
    """
    k = len(counts)
    m = k // 2 if num_minority is None else num_minority
    if not 0 <= m <= k:
        raise ConfigError(f"num_minority = {m} must lie in [0, {k}]")
    rank = {c: r for r, c in enumerate(class_order)}
    ordered = sorted(range(k), key=lambda c: (counts[c], -rank[c]))
    return sorted(ordered[:m])
