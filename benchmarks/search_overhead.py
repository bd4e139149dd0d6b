"""Search efficiency on the main job: how much of the machine the search stack spends inside trials.

Runs ``python -m search.run space=sdclr_ablation`` (the README's main job, its own settings) as a whole
command in a fresh store, timed from the shell's point of view, then reads every trial's start and end
from its MLflow run:

    search_efficiency = summed in-trial time / (wall time x concurrent trials)

with the fixed start-up (command start to the first trial's start: imports, Ray, the stores, the
first worker) and shutdown (the last trial's end to the command's end: the report, Ray's shutdown)
seconds beside it. ``space=`` and any ``key=value`` of search.run (``seeds=[0]``, ``fixed.steps=300``
...) run a smaller study through the same path.

    python benchmarks/search_overhead.py [space=sdclr_ablation] [key=value ...]

Last line: {"search_efficiency": ..., "wall_s": ..., "in_trial_s": ..., "startup_s": ..., "shutdown_s": ...,
"trials": ..., "concurrent": ...}; target search_efficiency >= 0.90.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))


def main() -> None:
    from search import tracking
    from search.spaces import load_space
    from search.stores import Stores

    args = [a for a in sys.argv[1:] if "=" in a]
    space_name = next((a.split("=", 1)[1] for a in args if a.startswith("space=")), "sdclr_ablation")
    extra = [a for a in args if not a.startswith("space=")]
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "RAY_USAGE_STATS_ENABLED": "0"}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs"
        start = time.time()
        proc = subprocess.run([sys.executable, "-m", "search.run", f"space={space_name}", f"root={root}", *extra],
                              cwd=PROJECT, env=env, capture_output=True, text=True)
        end = time.time()
        if proc.returncode != 0:
            sys.exit(f"search.run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        space = load_space(space_name)
        client = tracking.client_for(Stores.at(root).tracking_uri)
        exp = client.get_experiment_by_name(space.name)
        runs = [r for r in client.search_runs([exp.experiment_id], max_results=10000)
                if r.data.tags.get(tracking.TAG_ROLE) == "trial"]
        in_trial = sum((r.info.end_time - r.info.start_time) / 1000 for r in runs)
        concurrent = min(space.max_concurrent, len(runs))
        wall = end - start
        print(f"{len(runs)} trials, {concurrent} at once: {in_trial:.0f} s inside trials in {wall:.0f} s of wall time",
              file=sys.stderr)
        print(json.dumps({
            "search_efficiency": round(in_trial / (wall * concurrent), 4), "wall_s": round(wall, 1),
            "in_trial_s": round(in_trial, 1), "startup_s": round(min(r.info.start_time for r in runs) / 1000 - start, 1),
            "shutdown_s": round(end - max(r.info.end_time for r in runs) / 1000, 1), "trials": len(runs),
            "concurrent": concurrent, "space": space_name, "overrides": extra, "target": 0.90}))


if __name__ == "__main__":
    main()
