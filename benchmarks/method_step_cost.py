"""Cost of a training step (one D step + one G step, the loop's Stepper) of dcgan, contrad and damage, and the peak RSS of damage
vs contrad, on the CPU.

Digits at imbalance 100, resolution 16, batch 64, ch 16, prune_ratio 0.9 with the default mask
schedule (recomputed once per pass over the data, inside the timed steps). Every measurement is a
fresh child process running one method: it loads data, builds the method, runs ``warmup`` steps and
then times ``steps`` steps one by one (real batches from the loop's sampler); its sample is the median
step time, and ``resource.getrusage`` gives its own peak RSS, so no method's memory leaks into
another's figure. The parent interleaves the children: every round runs each method once, in an
order rotated per round, so drifting load on a shared machine hits all methods alike. Headlines are
ratios of the medians over rounds; ``paired`` ratios (children of the same round) are reported too.

One intra-op thread by default (threads=N to change): a search trial gets one CPU, and on a shared
two-core machine two OpenMP pools fighting over the cores make timings meaningless.

    python benchmarks/method_step_cost.py [rounds=5] [steps=20] [warmup=3] [threads=1]

Last line: {"damage_vs_contrad_step": ..., "contrad_vs_dcgan_step": ..., "damage_vs_contrad_peak_rss": ..., ...};
targets: damage_vs_contrad_step <= 1.4 (Damage GAN's faithful D step runs 4B images through the encoder
where ContraD runs 3B: the dense pass over t1 x, t2 x, t G z plus the pruned pass over t2 x), and
damage_vs_contrad_peak_rss <= 1.1.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

METHOD_NAMES = ("dcgan", "contrad", "damage")
CONFIG = {"dataset": "digits", "imbalance": 100, "resolution": 16, "ch": 16, "batch_size": 64, "z_dim": 128,
          "device": "cpu", "seed": 0}
KNOBS = {"contrad": {"contrastive_weight": 1.0}, "damage": {"prune_ratio": 0.9, "contrastive_weight": 1.0}}


def child(method_name: str, steps: int, warmup: int, threads: int) -> None:
    import resource
    import time

    import torch

    from trainers.config import make_config
    from trainers.data import BatchSampler, load_data, to_float
    from trainers.loop import Stepper, seed_everything
    from trainers.methods import METHODS

    torch.set_num_threads(threads)
    cfg = make_config({**CONFIG, "method": method_name, **KNOBS.get(method_name, {})})
    seed_everything(cfg.seed)
    data = load_data(cfg)
    images, labels = to_float(data.train.images), data.train.labels
    sampler = BatchSampler(labels, cfg.batch_size, cfg.seed, data.num_classes)
    rss_before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # interpreter, torch, data
    method = METHODS[method_name](cfg, data, torch.device("cpu"))
    stepper = Stepper(method, cfg)
    times = []
    for step in range(warmup + steps):
        idx = sampler.next()
        start = time.perf_counter()
        method.before_step(step)  # the method's per-step hook, as the loop calls it (Damage GAN's masks)
        logs = stepper.d_step(images[idx], labels[idx], step)
        logs.update(stepper.g_step(cfg.batch_size, step))
        float(logs["loss/d"])  # a sync point, as the loop's finiteness check
        times.append(time.perf_counter() - start)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: kilobytes
    print(json.dumps({"method": method_name, "step_s": statistics.median(times[warmup:]),
                      "peak_rss_mb": peak_kb / 1024, "rss_before_method_mb": rss_before_kb / 1024,
                      "diagnostics": method.diagnostics()}))


def run_child(method_name: str, steps: int, warmup: int, threads: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", method_name, str(steps), str(warmup), str(threads)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        name, steps, warmup, threads = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
        child(name, steps, warmup, threads)
        return
    args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
    rounds, steps = int(args.get("rounds", 5)), int(args.get("steps", 20))
    warmup, threads = int(args.get("warmup", 3)), int(args.get("threads", 1))
    results: dict[str, list[dict]] = {name: [] for name in METHOD_NAMES}
    for r in range(rounds):
        order = METHOD_NAMES[r % len(METHOD_NAMES):] + METHOD_NAMES[: r % len(METHOD_NAMES)]
        for name in order:
            res = run_child(name, steps, warmup, threads)
            results[name].append(res)
            print(f"round {r}: {name:8s} {res['step_s'] * 1e3:8.1f} ms/step  peak RSS {res['peak_rss_mb']:7.1f} MB",
                  file=sys.stderr, flush=True)

    def med(name: str, key: str) -> float:
        return statistics.median(res[key] for res in results[name])

    def paired(a: str, b: str, key: str) -> float:
        return statistics.median(x[key] / y[key] for x, y in zip(results[a], results[b]))

    step = {name: med(name, "step_s") for name in METHOD_NAMES}
    rss = {name: med(name, "peak_rss_mb") for name in METHOD_NAMES}
    base = {name: med(name, "rss_before_method_mb") for name in METHOD_NAMES}
    print(json.dumps({
        "damage_vs_contrad_step": round(step["damage"] / step["contrad"], 4),
        "contrad_vs_dcgan_step": round(step["contrad"] / step["dcgan"], 4),
        "damage_vs_contrad_peak_rss": round(rss["damage"] / rss["contrad"], 4),
        "paired_damage_vs_contrad_step": round(paired("damage", "contrad", "step_s"), 4),
        "paired_contrad_vs_dcgan_step": round(paired("contrad", "dcgan", "step_s"), 4),
        # peak RSS above what the process held before the method was built (interpreter, torch, data)
        "damage_vs_contrad_training_rss": round((rss["damage"] - base["damage"])
                                                / (rss["contrad"] - base["contrad"]), 4),
        "step_s": {k: round(v, 5) for k, v in step.items()},
        "peak_rss_mb": {k: round(v, 1) for k, v in rss.items()},
        "rss_before_method_mb": {k: round(v, 1) for k, v in base.items()},
        "damage_sparsity": results["damage"][-1]["diagnostics"]["prune/sparsity"],
        "rounds": rounds, "steps": steps, "warmup": warmup, "torch_threads": threads,
    }))


if __name__ == "__main__":
    main()
