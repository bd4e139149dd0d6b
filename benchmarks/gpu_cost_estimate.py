"""An *estimate* of the GPU cost per trial of the papers' studies (``preset=cifar10_gpu``).

No GPU is available where this is written, so nothing here is a GPU measurement. What is measured:
the floating-point operations of one real training step (``n_dis`` D steps + one G step, forward and
backward, augmentation included) of each cell of ``damage_gan_paper`` and ``gsr_paper`` at the
preset's scale, counted by ``torch.utils.flop_counter.FlopCounterMode`` on the CPU; and the
operations of one Inception-v3 forward (torchvision's architecture, the same network torch-fidelity's
``inception-v3-compat`` runs, at 299 x 299). CIFAR-10 is replaced by random uint8 images of its shape
and class counts (operation counts do not depend on pixel values).

The estimate: ``seconds = operations / sustained_throughput``, for an assumed sustained throughput of
``tflops`` (default 20 TFLOP/s: ~13 % of an A100's dense TF32 peak, a typical share for 32 x 32
convnets with small channel counts; pass tflops=N for another GPU or assumption), plus the
evaluations (``steps / eval_every`` of them, ``eval.num_samples`` Inception forwards each, plus the
test split's features once). Data loading, Python overhead and checkpoints are not in it, so real
runs take longer; treat the figures as a lower bound within a factor of about two.

    python benchmarks/gpu_cost_estimate.py [tflops=20] [throughput=FILE]

``throughput=FILE`` (a file holding ``benchmarks/gpu_throughput.py``'s last line, measured on the GPU
you will use) replaces the operation-count estimate of the training time by the measured steps per
second of the trial's method and batch size (eager), where it has them; each trial says which it used.

Last line: {"trials": {"<space>/<cell>": {"train_tflop": ..., "eval_tflop": ..., "gpu_hours": ...}, ...},
"assumed_tflops": ...}
"""

from __future__ import annotations

import json
import sys

import torch

SPACES = ("damage_gan_paper", "gsr_paper")
INCEPTION_SIDE = 299
CIFAR_TEST_IMAGES = 10_000


def synthetic_cifar(cfg):
    """A DataBundle with CIFAR-10's shapes and the config's long-tailed class counts."""
    from trainers.data import DataBundle, Split, longtail_counts, make_longtail, minority_classes

    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(10).repeat_interleave(5000)
    full = Split(torch.randint(0, 256, (len(labels), 3, 32, 32), dtype=torch.uint8, generator=gen), labels)
    counts = longtail_counts(5000, 10, cfg.imbalance, cfg.imbalance_profile)
    train = make_longtail(full, 10, counts, list(range(10)), 0)
    test = Split(full.images[:CIFAR_TEST_IMAGES], full.labels[:CIFAR_TEST_IMAGES])
    train_counts = train.counts(10)
    minority = minority_classes(train_counts, list(range(10)))
    return DataBundle("cifar10", train, full, test, 10, 3, 32, [str(k) for k in range(10)], train_counts,
                      minority, [k for k in range(10) if k not in minority], list(range(10)))


def step_flops(cfg) -> int:
    """Operations of one training step (n_dis D steps + one G step) of ``cfg`` at its batch size."""
    from torch.utils.flop_counter import FlopCounterMode

    from trainers.data import to_float
    from trainers.loop import Stepper, seed_everything
    from trainers.methods import get_method

    seed_everything(0)
    data = synthetic_cifar(cfg)
    method = get_method(cfg.method)(cfg, data, torch.device("cpu"))
    stepper = Stepper(method, cfg)
    idx = torch.randint(len(data.train), (cfg.batch_size,))
    real, labels = to_float(data.train.images[idx]), data.train.labels[idx]
    stepper.d_step(real, labels, 0)  # warm-up: lazily built state (masks) is not counted
    counter = FlopCounterMode(display=False)
    with counter:
        for _ in range(method.n_dis):
            stepper.d_step(real, labels, 1)
        stepper.g_step(cfg.batch_size, 1)
    return counter.get_total_flops()


def inception_flops() -> int:
    from torch.utils.flop_counter import FlopCounterMode
    from torchvision.models import inception_v3

    net = inception_v3(weights=None, aux_logits=False, init_weights=False).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net(torch.zeros(1, 3, INCEPTION_SIDE, INCEPTION_SIDE))
    return counter.get_total_flops()


def main() -> None:
    from search.spaces import load_space
    from trainers.config import make_config

    args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
    tflops = float(args.get("tflops", 20.0))
    measured = {}
    if "throughput" in args:
        with open(args["throughput"]) as f:
            measured = json.loads(f.read().strip().splitlines()[-1])["steps_per_s"]
    torch.set_num_threads(2)
    per_image = inception_flops()
    print(f"inception-v3 forward: {per_image / 1e9:.2f} GFLOP per image", file=sys.stderr, flush=True)
    trials = {}
    for name in SPACES:
        space = load_space(name, preset="cifar10_gpu")
        for cell in space.grid():
            cfg = make_config(space.trial_config(cell, 0))
            flops = step_flops(cfg)
            evaluations = -(-cfg.steps // cfg.eval_every)
            train_flop = flops * cfg.steps
            eval_flop = per_image * (evaluations * cfg.eval.num_samples + CIFAR_TEST_IMAGES)
            rate = measured.get(f"{cfg.method}/b{cfg.batch_size}/eager")
            train_seconds = cfg.steps / rate if rate else train_flop / (tflops * 1e12)
            seconds = train_seconds + eval_flop / (tflops * 1e12)
            key = f"{name}/" + ",".join(f"{k}={v}" for k, v in cell.items())
            trials[key] = {"step_gflop": round(flops / 1e9, 2), "batch_size": cfg.batch_size, "n_dis": cfg.n_dis
                           or None, "steps": cfg.steps, "train_tflop": round(train_flop / 1e12, 1),
                           "eval_tflop": round(eval_flop / 1e12, 1), "gpu_hours": round(seconds / 3600, 2),
                           "train_time": "measured steps/s" if rate else "operations / assumed throughput"}
            print(f"{key:75s} {flops / 1e9:8.1f} GFLOP/step  {seconds / 3600:6.2f} GPU-h", file=sys.stderr,
                  flush=True)
    print(json.dumps({"trials": trials, "inception_gflop_per_image": round(per_image / 1e9, 3),
                      "assumed_tflops": tflops}))


if __name__ == "__main__":
    main()
