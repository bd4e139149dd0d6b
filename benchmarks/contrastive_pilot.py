"""The contrastive recipe pilot (issue 26): runs and the acceptance table of ``recipe_pilot.py`` rows.

    python benchmarks/contrastive_pilot.py table [out=docs/pilot/contrastive.jsonl] [budgets=1500,2100]

Each row of ``out`` is one evaluation of one run of ``benchmarks/recipe_pilot.py`` (the main job's
settings, ``docs/pilot.md``, "Contrastive methods", has the commands). A run's name is
``METHOD[-POLICY]-sSEED``; its budget ``b`` is its evaluation at step ``b`` (no learning-rate schedule:
the first ``b`` steps of a longer run are the run with budget ``b``). Per method, policy and budget:

* FID mean ± sd over seeds (sample sd), and ``classes_dropped`` per seed (the evaluator's count of
  classes holding fewer than 1/(4K) of the samples);
* late degradation: seeds whose FID at the budget exceeds 1.1 x the best FID of its earlier evaluations;
* seconds: the loop's wall and process CPU time to the budget, evaluations excluded.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

LATE = 1.1  # a seed degrades late when its last FID > LATE x its best earlier FID


def load(out: Path) -> dict[tuple[str, str, int], list[dict]]:
    """(method, policy, seed) -> its evaluations in step order. Where a seed was run twice (a 1,500-step
    run, then a longer one to read a second budget), the longest run stands: its first steps are the
    shorter run's (same seed, no schedule), so nothing is counted twice."""
    runs: dict[tuple[str, str, int], dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for line in out.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            o = r["overrides"]
            runs[(o["method"], o.get("contrastive_aug", "—"), int(r["seed"]))][int(o["steps"])].append(r)
    return {k: sorted(by_budget[max(by_budget)], key=lambda r: r["step"]) for k, by_budget in runs.items()}


def at_budget(evals: list[dict], budget: int) -> dict | None:
    """The run's figures at ``budget`` steps, or None if it did not get there."""
    upto = [r for r in evals if r["step"] <= budget]
    if not upto or upto[-1]["step"] != budget:
        return None
    last, earlier = upto[-1], [r["fid"] for r in upto[:-1]]
    return {"fid": last["fid"], "dropped": last["classes_dropped"], "late": bool(earlier) and last["fid"] > LATE * min(earlier),
            "best_earlier": min(earlier) if earlier else None, "train_s": last["train_s"],
            "train_cpu_s": last["train_cpu_s"], "fids": [r["fid"] for r in upto]}


def table(out: Path, budgets: list[int]) -> str:
    runs = load(out)
    groups: dict[tuple[str, str, int], list[tuple[int, dict]]] = defaultdict(list)
    for (method, policy, seed), evals in runs.items():
        for b in budgets:
            fig = at_budget(evals, b)
            if fig is not None:
                groups[(method, policy, b)].append((seed, fig))
    lines = ["| method | contrastive_aug | steps | seeds | FID mean ± sd | classes dropped per seed | "
             "late degradation | train s per trial, wall (CPU) |", "|---|---|---|---|---|---|---|---|"]
    for (method, policy, b), seeds in sorted(groups.items()):
        seeds.sort()
        fids = [f["fid"] for _, f in seeds]
        sd = statistics.stdev(fids) if len(fids) > 1 else float("nan")
        dropped = " / ".join(str(f["dropped"]) for _, f in seeds)
        late = sum(f["late"] for _, f in seeds)
        wall = statistics.mean(f["train_s"] for _, f in seeds)
        cpu = statistics.mean(f["train_cpu_s"] for _, f in seeds)
        lines.append(f"| {method} | {policy} | {b} | {', '.join(str(s) for s, _ in seeds)} | "
                     f"{statistics.mean(fids):.2f} ± {sd:.2f} | {dropped} | {late} of {len(seeds)} | "
                     f"{wall:.0f} ({cpu:.0f}) |")
    return "\n".join(lines)


def curves(out: Path) -> str:
    """One line per run: FID (dropped classes) at every evaluation."""
    lines = ["| run | FID (classes dropped) at 300, 600, ... steps |", "|---|---|"]
    for (method, policy, seed), evals in sorted(load(out).items()):
        cells = " / ".join(f"{r['fid']:.2f} ({r['classes_dropped']})" for r in evals)
        lines.append(f"| {method} {policy} seed {seed} | {cells} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = dict(a.split("=", 1) for a in argv if "=" in a)
    out = Path(args.get("out", "docs/pilot/contrastive.jsonl"))
    budgets = [int(b) for b in args.get("budgets", "1500,2100").split(",")]
    if "table" not in argv:
        print(__doc__, file=sys.stderr)
        return 2
    print(table(out, budgets))
    print()
    print(curves(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
