"""Search-stack overhead: the smoke study through Ray + Optuna + MLflow vs the same trial configs run
directly with ``trainers.loop.train`` at the same concurrency (a process pool), both as whole commands
timed from the shell's point of view. Trials are sized to ~20 s each.

    python benchmarks/search_overhead.py [steps=300]

Last line: {"search_overhead_ratio": ..., "per_trial_overhead_s": ..., ...}
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent


def _one(cfg: dict) -> float:
    import torch

    from trainers.loop import train

    torch.set_num_threads(1)
    return float(train(cfg).get("fid", float("nan")))


def direct(root: str, steps: int) -> None:
    """Child-process entry: every trial config of the smoke grid through a pool of max_concurrent workers."""
    from search.spaces import load_space

    space = load_space("smoke", {"fixed": {"steps": steps, "eval_every": steps // 2, "cache_dir": f"{root}/cache"}})
    configs = [space.trial_config(cell, seed) for cell in space.grid()[: space.num_samples] for seed in space.seeds]
    import multiprocessing

    with ProcessPoolExecutor(space.max_concurrent, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_one, configs))


def timed(cmd: list[str]) -> float:
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=PROJECT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return elapsed


def main() -> None:
    args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
    if "--direct" in sys.argv:
        direct(args["root"], int(args["steps"]))
        return
    steps = int(args.get("steps", 300))
    with tempfile.TemporaryDirectory() as tmp:
        warm = Path(tmp) / "warm"
        # train the judge once so neither side pays for it
        timed([sys.executable, "-m", "trainers.train", "steps=2", "eval_every=2", "ch=4", f"root={warm}",
               "eval.num_samples=200", "eval.judge_epochs=15", f"workdir={warm}/w"])
        cache = warm / "cache"
        times = {"direct": [], "search": []}
        for round_index in range(2):  # interleaved, so machine noise hits both alike
            root = Path(tmp) / f"direct{round_index}"
            root.mkdir()
            os.symlink(cache, root / "cache")
            times["direct"].append(timed([sys.executable, __file__, "--direct", f"root={root}", f"steps={steps}"]))
            root = Path(tmp) / f"search{round_index}"
            root.mkdir()
            os.symlink(cache, root / "cache")
            times["search"].append(timed([sys.executable, "-m", "search.run", "space=smoke", f"root={root}",
                                          f"fixed.steps={steps}", f"fixed.eval_every={steps // 2}",
                                          "report=false"]))
            print(f"round {round_index}: direct {times['direct'][-1]:.1f} s, search {times['search'][-1]:.1f} s",
                  flush=True)
    from search.spaces import load_space

    space = load_space("smoke")
    trials = space.num_samples * len(space.seeds)
    direct_s, search_s = min(times["direct"]), min(times["search"])
    print(json.dumps({"search_overhead_ratio": round(search_s / direct_s, 4),
                      "per_trial_overhead_s": round((search_s - direct_s) / trials * space.max_concurrent, 3),
                      "direct_s": round(direct_s, 2), "search_s": round(search_s, 2), "trials": trials,
                      "steps_per_trial": steps}))


if __name__ == "__main__":
    main()
