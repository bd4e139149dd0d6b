"""Step cost of DCGAN, ContraD and Damage GAN on digits (batch 64, ch 16, resolution 16, CPU).

Each measurement runs in its own subprocess (so its peak RSS is its own); methods alternate over
rounds so machine noise hits all alike; the figure per method is the median over rounds.

    python benchmarks/method_step_cost.py [rounds=3] [steps=30] [threads=1]

Last line: {"damage_vs_contrad_step": ..., "contrad_vs_dcgan_step": ..., "damage_vs_contrad_peak_rss": ...}
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time


def child(method: str, steps: int, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    from trainers.config import make_config
    from trainers.data import BatchSampler, load_data, to_float
    from trainers.methods import METHODS

    cfg = make_config({"method": method, "ch": 16, "batch_size": 64, "prune_ratio": 0.9})
    data = load_data(cfg)
    m = METHODS[method](cfg, data, torch.device("cpu"))
    sampler = BatchSampler(data.train.labels, 64, 0, data.num_classes)
    images = data.train.images
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for step in range(steps + 5):
        if step == 5:  # warm-up done
            start = time.perf_counter()
        idx = sampler.next()
        m.d_step(to_float(images[idx]), data.train.labels[idx], step)
        m.g_step(step)
    elapsed = (time.perf_counter() - start) / steps
    print(json.dumps({"step_s": elapsed, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "rss_before_train_mb": rss_before / 1024}))


def main() -> None:
    args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
    if "--child" in sys.argv:
        child(args["method"], int(args["steps"]), int(args["threads"]))
        return
    rounds, steps, threads = int(args.get("rounds", 3)), int(args.get("steps", 30)), int(args.get("threads", 1))
    methods = ["dcgan", "contrad", "damage"]
    results: dict[str, list[dict]] = {m: [] for m in methods}
    for r in range(rounds):
        for method in (methods if r % 2 == 0 else methods[::-1]):
            out = subprocess.run([sys.executable, __file__, "--child", f"method={method}", f"steps={steps}",
                                  f"threads={threads}"], capture_output=True, text=True, check=True)
            results[method].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"round {r} {method}: {results[method][-1]}", flush=True)
    step = {m: statistics.median(x["step_s"] for x in results[m]) for m in methods}
    rss = {m: statistics.median(x["peak_rss_mb"] for x in results[m]) for m in methods}
    print(json.dumps({
        "damage_vs_contrad_step": round(step["damage"] / step["contrad"], 4),
        "contrad_vs_dcgan_step": round(step["contrad"] / step["dcgan"], 4),
        "damage_vs_contrad_peak_rss": round(rss["damage"] / rss["contrad"], 4),
        "step_s": {m: round(v, 5) for m, v in step.items()}, "peak_rss_mb": {m: round(v, 1) for m, v in rss.items()},
        "rounds": rounds, "steps": steps, "threads": threads}))


if __name__ == "__main__":
    main()
