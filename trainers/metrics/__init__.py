"""Evaluation (METHODS.md, Evaluation): torch-fidelity FID/KID/IS in the judge's (offline) or
Inception's feature space, per-class FID and minority-class diagnostics.

``judge`` (the cached classifier), ``cache`` (locked, atomic cache files), ``fidelity``
(torch-fidelity wiring), ``perclass`` (per-class FID, histogram, KLs), ``evaluator`` (one
evaluation), ``plots`` (PNG artifacts). Nothing heavy is imported until ``make_evaluator`` runs.
"""

from __future__ import annotations


def make_evaluator(cfg, data, device):
    """The evaluator of a trial; trains or loads the cached judge and reference statistics now.

    Raises ``ConfigError`` (one line, suggesting ``eval.features=judge``) when Inception features are
    asked for and its weights cannot be had.
    """
    from trainers.metrics.evaluator import Evaluator

    return Evaluator(cfg, data, device)
