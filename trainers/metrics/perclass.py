"""Per-class FID and the minority-class diagnostics (METHODS.md, Evaluation).

Conventions, fixed here once:

* ``class_kl_uniform = KL(p || u)`` and ``class_kl_prior = KL(p || pi)``, in nats, where ``p`` is the
  histogram of generated samples over the judge's labels, ``u`` uniform and ``pi`` the training
  prior ``train_counts / sum``. This direction (generated first) stays finite when G drops classes:
  an empty class contributes ``0 log 0 = 0``, so no smoothing of ``p`` is needed and the value is
  exact; dropping is counted separately by ``classes_dropped``. ``KL(u || p)`` would be infinite for
  any dropped class and its value would be set by an arbitrary smoothing constant.
* The only smoothing: a class with **zero** training images (possible under an extreme imbalance)
  gets half an image in ``pi`` (``n_k = 0.5``, then renormalised), so ``class_kl_prior`` stays finite
  when G (rightly or not) produces it. With every ``n_k > 0`` the prior is used exactly.
* ``classes_dropped``: classes holding fewer than ``1/(4K)`` of the samples.
* ``fid_class/<k>`` is NaN (never a made-up number) when class ``k`` has fewer generated samples than
  the floor, or fewer than two real test images; ``count_class/<k>`` says how many it had.
  ``fid_minority`` / ``fid_majority`` average the finite per-class FIDs of those classes (NaN if none).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import torch

from trainers.metrics import fidelity


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) in nats; terms with p = 0 contribute 0."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def training_prior(train_counts: Sequence[int]) -> np.ndarray:
    counts = np.asarray(train_counts, dtype=np.float64)
    counts = np.where(counts > 0, counts, 0.5)
    return counts / counts.sum()


def class_diagnostics(judged: np.ndarray, num_classes: int, train_counts: Sequence[int]) -> dict[str, float]:
    """KL of the generated class histogram to uniform and to the training prior; dropped classes."""
    counts = np.bincount(np.asarray(judged, dtype=np.int64), minlength=num_classes).astype(np.float64)
    if counts.sum() == 0:
        return {"class_kl_uniform": math.nan, "class_kl_prior": math.nan, "classes_dropped": num_classes}
    p = counts / counts.sum()
    return {
        "class_kl_uniform": kl_divergence(p, np.full(num_classes, 1.0 / num_classes)),
        "class_kl_prior": kl_divergence(p, training_prior(train_counts)),
        "classes_dropped": int(np.sum(p < 1.0 / (4 * num_classes))),
    }


def per_class_fid(features: torch.Tensor, classes: np.ndarray, reference: Mapping[int, dict],
                  num_classes: int, min_samples: int) -> dict[str, float]:
    """``fid_class/<k>`` and ``count_class/<k>`` from one feature tensor sliced by class.

    ``reference[k]`` are the real test statistics of class ``k`` (absent: fewer than two images).
    """
    out: dict[str, float] = {}
    floor = max(2, min_samples)
    classes = np.asarray(classes, dtype=np.int64)
    counts = np.bincount(classes, minlength=num_classes)
    # one stable sort, then contiguous views: no boolean mask over all features per class
    order = np.argsort(classes, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)])
    by_class = features.to(torch.float64).numpy()[order]
    for k in range(num_classes):
        count = int(counts[k])
        out[f"count_class/{k}"] = count
        out[f"fid_class/{k}"] = (fidelity.fid_of_features(by_class[starts[k]:starts[k + 1]], reference[k])
                                 if count >= floor and k in reference else math.nan)
    return out


def group_means(per_class: Mapping[str, float], minority: Sequence[int], majority: Sequence[int]) -> dict[str, float]:
    out = {}
    for name, members in (("fid_minority", minority), ("fid_majority", majority)):
        finite = [per_class[f"fid_class/{k}"] for k in members if math.isfinite(per_class[f"fid_class/{k}"])]
        out[name] = float(np.mean(finite)) if finite else math.nan
    return out
