"""The score of an untrained generator: what a failed or diverged replicate is worth.

A replicate that fails (an exception, a NaN loss) has no final score, and averaging only the survivors
would let a configuration that diverges on most seeds look as good as its lucky ones. So each failed
replicate enters its configuration's mean at a penalty fixed before any study runs: by default the
score of a generator that never trained (its initial weights, evaluated exactly as a trial is), the
mean over three seeds, per dataset. A space may set its own (``failure_value:`` in the space file;
``search.spaces``); ``search.searcher`` applies it.

The table below was measured once with

    python benchmarks/untrained_penalty.py space=sdclr_ablation    # mnist, the main job's settings
    python benchmarks/untrained_penalty.py space=contrastive_weight  # digits, its searched spaces'

which evaluates an untrained DCGAN at the space's fixed settings (imbalance 100 where the space has it,
else its first cell) for seeds 0, 1, 2 and prints the mean of every metric a penalty is kept for. The
figures depend on the evaluation settings (``eval.per_class_n``, ``eval.num_samples``, resolution);
they are penalties, not estimates, so they are re-measured only when those change a lot. Untrained
generators put nearly all samples in one or two classes, so most classes are missing and enter at
their wrong-class penalty: the group figures are close to their worst possible values.
"""

from __future__ import annotations

import statistics

# the metrics a penalty is kept for: those a study optimises (lower or higher is better)
PENALISED = ("fid", "kid", "fid_minority", "fid_majority", "kid_minority", "kid_majority", "precision_minority",
             "precision_majority", "recall_minority", "recall_majority")

# dataset -> metric -> the untrained DCGAN's score (see the module doc for the commands)
UNTRAINED: dict[str, dict[str, float]] = {
    # sdclr_ablation: 16x16, ch 16, imbalance 100, eval.num_samples 1000, per_class_n 100, split test
    "mnist": {"fid": 476.0181, "kid": 3666.0194, "fid_minority": 322.6304, "fid_majority": 322.6304,
              "kid_minority": 3591.9003, "kid_majority": 3591.9003, "precision_minority": 0.0,
              "precision_majority": 0.0, "recall_minority": 0.0, "recall_majority": 0.0},
    # contrastive_weight: digits at its default resolution, eval.num_samples 500, split val_test (N = 17)
    "digits": {"fid": 95.384, "kid": 35.0159, "fid_minority": 50.9908, "fid_majority": 51.2509,
               "kid_minority": 21.8971, "kid_majority": 21.8971, "precision_minority": 0.0,
               "precision_majority": 0.0, "recall_minority": 0.0, "recall_majority": 0.0},
}


def measure(configs: list[dict]) -> dict[str, float]:
    """The mean over ``configs`` (trainer configs, one per seed) of an untrained generator's metrics."""
    import torch

    from trainers.config import make_config
    from trainers.data import load_data
    from trainers.loop import build_evaluator, resolve_device, seed_everything
    from trainers.methods import get_method

    scores: dict[str, list[float]] = {name: [] for name in PENALISED}
    for config in configs:
        cfg = make_config(config)
        seed_everything(cfg.seed)
        device = resolve_device(cfg.device)
        data = load_data(cfg)
        method = get_method(cfg.method)(cfg, data, device)
        evaluator = build_evaluator(cfg, data, device)
        with torch.no_grad():
            metrics = evaluator.evaluate(method, 0)
        for name in PENALISED:
            scores[name].append(float(metrics[name]))
    return {name: round(statistics.fmean(values), 4) for name, values in scores.items()}
