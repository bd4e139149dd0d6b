"""Evaluation: torch-fidelity metrics in the judge's (offline) or Inception's feature space,
per-class FID and minority-class diagnostics (METHODS.md, Evaluation)."""

from __future__ import annotations


def make_evaluator(cfg, data, device):
    """The evaluator of a trial: trains or loads the cached judge and reference features now."""
    from trainers.metrics.evaluator import Evaluator

    return Evaluator(cfg, data, device)
