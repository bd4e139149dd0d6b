"""Cost of the group Spectral Regulariser: seconds per cgan G step with gSR on / off.

One ``cgan`` method (digits at imbalance 100, resolution 16, batch 64, ch 16, gsr_lambda 0.5, one
power iteration per step) on the CPU; the same nets and optimisers run both variants, switched by
the method's config (``gsr_lambda`` 0.5 vs 0), so the only difference is the penalty's forward and
backward. Blocks of ``block`` G steps alternate ABBA over ``rounds`` (one D step between blocks
keeps the run a GAN); each block's mean step time is one sample. The headline ratio is the median
over rounds of the paired ratio (the two blocks of a round run back to back, so load that drifts on
a shared machine cancels); ``penalty_s`` times the penalty's forward + backward alone, the floor of
the difference.

    python benchmarks/gsr_cost.py [rounds=30] [block=10] [threads=N]

Last line: {"gsr_g_step_ratio": ..., "g_step_s_gsr": ..., "g_step_s_plain": ..., "penalty_s": ..., ...};
target <= 1.10.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
import time

import torch

from trainers.config import make_config
from trainers.data import load_data, to_float
from trainers.loop import Stepper, seed_everything
from trainers.methods import METHODS
from trainers.regularizers import group_spectral_penalty

CONFIG = {"method": "cgan", "dataset": "digits", "imbalance": 100, "resolution": 16, "ch": 16,
          "batch_size": 64, "z_dim": 128, "gsr_lambda": 0.5, "gsr_power_iters": 1, "device": "cpu", "seed": 0}


def main() -> None:
    args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
    rounds, block = int(args.get("rounds", 30)), int(args.get("block", 10))
    if "threads" in args:
        torch.set_num_threads(int(args["threads"]))
    cfg = make_config(CONFIG)
    seed_everything(cfg.seed)
    data = load_data(cfg)
    method = METHODS["cgan"](cfg, data, torch.device("cpu"))
    stepper = Stepper(method, cfg)
    variants = {"gsr": cfg.knobs, "plain": dataclasses.replace(cfg.knobs, gsr_lambda=0.0)}
    real = to_float(data.train.images[: cfg.batch_size])
    labels = data.train.labels[: cfg.batch_size]

    def run_block(name: str, n: int) -> float:
        method.knobs = variants[name]
        stepper.d_step(real, labels, 0)
        start = time.perf_counter()
        for _ in range(n):
            stepper.g_step(cfg.batch_size, 0)
        return (time.perf_counter() - start) / n

    for name in variants:  # warm-up: allocator, first power-iteration vectors
        run_block(name, block)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(rounds):
        order = ("gsr", "plain") if r % 2 == 0 else ("plain", "gsr")  # ABBA
        for name in order:
            times[name].append(run_block(name, block))
    gsr, plain = statistics.median(times["gsr"]), statistics.median(times["plain"])
    ratio = statistics.median(a / b for a, b in zip(times["gsr"], times["plain"]))
    penalty = penalty_s(method, 20 * block)
    print(f"G step: {gsr * 1e3:.2f} ms with gSR, {plain * 1e3:.2f} ms without, penalty alone "
          f"{penalty * 1e3:.3f} ms ({rounds} rounds x {block} steps, {torch.get_num_threads()} threads)",
          file=sys.stderr)
    print(json.dumps({"gsr_g_step_ratio": round(ratio, 4), "ratio_of_medians": round(gsr / plain, 4),
                      "g_step_s_gsr": gsr, "g_step_s_plain": plain, "penalty_s": penalty,
                      "rounds": rounds, "block": block, "threads": torch.get_num_threads(), "target": 1.10}))


def penalty_s(method, n: int) -> float:
    """Forward + backward of the penalty alone on the method's embeddings (gradients discarded)."""
    gains = [m.gamma.weight for m in method.cbn]
    biases = [m.beta.weight for m in method.cbn]
    vectors = dict(method.gsr_vectors)
    start = time.perf_counter()
    for _ in range(n):
        loss = group_spectral_penalty(gains, biases, method.class_weights, vectors, n_iter=1, lam=0.5)
        torch.autograd.grad(loss, gains + biases)
    return (time.perf_counter() - start) / n


if __name__ == "__main__":
    main()
