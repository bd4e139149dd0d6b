"""Evaluation (METHODS.md, Evaluation): torch-fidelity FID/KID/IS in the judge's (offline) or
Inception's feature space, per-class FID/KID/precision/recall with every class at the same N, and the
minority-class diagnostics.

``judge`` (the cached classifier; ``judge_extractor``, the same as a torch-fidelity extractor),
``cache`` (locked, atomic cache files), ``fidelity`` (torch-fidelity wiring), ``perclass`` (equal-N
scoring, missing classes, histogram, KLs), ``evaluator`` (one evaluation: the references, sampling G
and the scoring of a saved sample set), ``scores`` (each metric registered with the names it
reports), ``names`` (every name a trial reports), ``plots`` (PNG artifacts). ``python -m
trainers.evaluate`` scores any generator's samples the same way. Nothing heavy is imported until an
evaluator is made (torch-fidelity: at its first use).
"""

from __future__ import annotations


def make_evaluator(cfg, data, device):
    """The evaluator of a trial; trains or loads the cached judge and reference statistics now.

    Raises ``ConfigError`` (one line) when ``eval.per_class_n`` or ``eval.max_draws`` cannot be met by
    the data, or when Inception features are asked for and its weights cannot be had (suggesting
    ``eval.features=judge``).
    """
    from trainers.metrics.evaluator import EvalOptions, Evaluator

    return Evaluator(EvalOptions.of(cfg), data, device)
