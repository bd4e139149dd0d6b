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
    from search.report import efficiency_between, load_runs
    from search.run import prepare

    args = [a for a in sys.argv[1:] if "=" in a]
    space_name = next((a.split("=", 1)[1] for a in args if a.startswith("space=")), "sdclr_ablation")
    extra = [a for a in args if not a.startswith("space=")]
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "RAY_USAGE_STATS_ENABLED": "0"}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs"
        command = [f"space={space_name}", f"root={root}", *extra]
        start = time.time()
        proc = subprocess.run([sys.executable, "-m", "search.run", *command], cwd=PROJECT, env=env,
                              capture_output=True, text=True)
        end = time.time()
        if proc.returncode != 0:
            sys.exit(f"search.run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        _, space, stores = prepare(command)  # the space as search.run saw it, overrides and preset included
        runs = load_runs(space, stores.tracking_uri)
        # the shell's span, not the parent run's: imports, Ray's start and shutdown count as overhead
        figures = efficiency_between(runs, int(start * 1000), int(end * 1000), space.max_concurrent)
        print(f"{len(runs)} trials, {figures['concurrent']} at once: {figures['in_trial_s']:.0f} s inside trials "
              f"in {figures['wall_s']:.0f} s of wall time", file=sys.stderr)
        print(json.dumps({
            "search_efficiency": round(figures["search_efficiency"], 4), "wall_s": round(figures["wall_s"], 1),
            "in_trial_s": round(figures["in_trial_s"], 1), "startup_s": round(figures["startup_s"], 1),
            "shutdown_s": round(figures["shutdown_s"], 1), "trials": len(runs),
            "concurrent": figures["concurrent"], "space": space_name, "overrides": extra, "target": 0.90}))


if __name__ == "__main__":
    main()
