"""Trainer overhead: seconds per step of ``trainers.loop.train`` vs a minimal hand-written PyTorch loop
for the same DCGAN (the nets of ``trainers.nets``), the same digits tensors, batch 64, ch=16,
resolution 16, Adam 2e-4 (0.5, 0.999), non-saturating loss, n_dis = 1, on the CPU.

Both sides run ``chunk`` warm-up steps and then ``window`` timed steps; start-up (imports, data,
nets) is outside the timing. The trainer reports every ``chunk`` steps, and its figure is the mean of
its own ``time/step_s`` reports after the warm-up (each covers only the steps since the previous
report, so checkpoint writes are excluded); the hand loop has one timer around the same steps. The
two alternate (ABBA order over ``rounds``) so machine noise hits both; the medians are compared.

One intra-op thread by default (threads=N to change): a search trial gets one CPU, and on a shared
two-core machine two OpenMP pools fighting over the cores turn a 50 ms step into a 1 s one.

    python benchmarks/trainer_overhead.py [rounds=6] [window=120] [chunk=30] [threads=1]

Last line: {"trainer_overhead_ratio": ..., "trainer_step_s": ..., "hand_step_s": ..., ...}
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from trainers.config import make_config
from trainers.data import load_data, to_float
from trainers.loop import train
from trainers.nets import Discriminator, Generator

CONFIG = {"method": "dcgan", "dataset": "digits", "resolution": 16, "ch": 16, "batch_size": 64, "n_dis": 1,
          "z_dim": 128, "lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.5, "beta2": 0.999, "device": "cpu", "seed": 0}


def trainer_step_s(window: int, chunk: int) -> float:
    reports = []
    train({**CONFIG, "steps": chunk + window, "eval_every": chunk}, lambda m, c: reports.append(m),
          evaluator=None)
    timed = reports[1:]  # the first report closes the warm-up
    assert sum(chunk for _ in timed) == window and timed[-1]["step"] == chunk + window
    return statistics.fmean(m["time/step_s"] for m in timed)


def hand_step_s(images: torch.Tensor, window: int, warmup: int) -> float:
    """What one would write by hand: no registries, checks, logging or checkpoints."""
    torch.manual_seed(CONFIG["seed"])
    batch, z_dim = CONFIG["batch_size"], CONFIG["z_dim"]
    G = Generator(z_dim, CONFIG["ch"], CONFIG["resolution"], images.shape[1])
    D = Discriminator(CONFIG["ch"], CONFIG["resolution"], images.shape[1])
    opt_g = torch.optim.Adam(G.parameters(), lr=CONFIG["lr_g"], betas=(CONFIG["beta1"], CONFIG["beta2"]))
    opt_d = torch.optim.Adam(D.parameters(), lr=CONFIG["lr_d"], betas=(CONFIG["beta1"], CONFIG["beta2"]))
    order, position = torch.randperm(len(images)), 0
    start = 0.0
    for step in range(warmup + window):
        if step == warmup:
            start = time.perf_counter()
        if position + batch > len(order):
            order, position = torch.randperm(len(images)), 0
        real = images[order[position:position + batch]]
        position += batch

        with torch.no_grad():
            fake = G(torch.randn(batch, z_dim))
        logits = D(torch.cat([real, fake]))
        loss_d = F.softplus(-logits[:batch]).mean() + F.softplus(logits[batch:]).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()

        loss_g = F.softplus(-D(G(torch.randn(batch, z_dim)))).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
    return (time.perf_counter() - start) / window


def main() -> None:
    args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
    rounds, window, chunk = int(args.get("rounds", 6)), int(args.get("window", 120)), int(args.get("chunk", 30))
    if window % chunk:
        sys.exit(f"window={window} must be a multiple of chunk={chunk}")
    torch.set_num_threads(int(args.get("threads", 1)))
    images = to_float(load_data(make_config({**CONFIG, "steps": 1})).train.images)
    trainer, hand = [], []
    for r in range(rounds):
        # ABBA: neither side always runs first (thermal state, other load on the machine)
        for side in (("trainer", "hand") if r % 2 == 0 else ("hand", "trainer")):
            if side == "trainer":
                trainer.append(trainer_step_s(window, chunk))
            else:
                hand.append(hand_step_s(images, window, chunk))
            print(f"round {r}: {side:7s} {(trainer if side == 'trainer' else hand)[-1] * 1e3:.2f} ms/step",
                  file=sys.stderr, flush=True)
    t, h = statistics.median(trainer), statistics.median(hand)
    paired = [a / b for a, b in zip(trainer, hand)]  # neighbours in time: slow drift cancels
    print(json.dumps({"trainer_overhead_ratio": round(t / h, 4), "trainer_step_s": round(t, 6),
                      "hand_step_s": round(h, 6), "paired_ratio_median": round(statistics.median(paired), 4),
                      "trainer_runs_s": [round(x, 6) for x in trainer], "hand_runs_s": [round(x, 6) for x in hand],
                      "rounds": rounds, "window": window, "torch_threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
