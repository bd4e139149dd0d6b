"""Does the report's family of comparisons keep its promises under a global null?

    python benchmarks/report_calibration.py [studies=2000] [seed=0]

Simulates null studies of the main job's shape (spaces/sdclr_ablation.yaml: dcgan, contrad, damage x
imbalance {1, 100}): every configuration identical in distribution. Each study's trial values go through
the report's own code path — ``TrialRun`` objects into ``search.report.comparisons.family`` (method
comparisons against the shared baseline, imbalance paired by seed per configuration and pooled, the
failure-rate comparisons, Holm) — as the report builds them. Realism: a per-seed effect shared by every
configuration of the seed (what pairing removes), ``kid_minority`` and ``recall_minority`` scored on the
same runs (correlation -0.6), replicates failing at 5% and entered at a failure_value penalty. Cells:
n = 3 and 6 seeds x normal, t(3) and lognormal trial values, ``studies`` each.

Reports ``familywise_false_resolution`` (share of studies with at least one resolved comparison) after
Holm and unadjusted, and ``interval_coverage`` of single comparisons' unadjusted 95% intervals (testable
ones), overall and per cell; two extra cells without failures (normal, n = 3 and 6) give the t interval's
coverage where no penalty outlier widens it. Last stdout line: JSON.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from search.report.comparisons import family  # noqa: E402
from search.report.runs import TrialRun  # noqa: E402
from search.spaces import load_space  # noqa: E402

METHODS = ("dcgan", "contrad", "damage")
LEVELS = (1, 100)
FAIL_RATE = 0.05
PENALTY = {"kid_minority": 6.0, "recall_minority": 0.0}
CORRELATION = -0.6  # kid (lower better) and recall (higher better) of one run move against each other


def null_space():
    space = load_space("sdclr_ablation")
    fields = {f: getattr(space, f) for f in space.__dataclass_fields__}
    # the simulation's own penalty (its values are on its own scale, not the untrained generator's)
    return SimpleNamespace(**{**fields, "failure_value": PENALTY}, methods=space.methods)


def draw(rng: np.random.Generator, dist: str, size) -> np.ndarray:
    if dist == "normal":
        return rng.standard_normal(size)
    if dist == "t3":
        return rng.standard_t(3, size) / math.sqrt(3)  # unit variance
    if dist == "lognormal":
        sigma = 0.8  # skewed, centred and scaled to unit variance
        mean, var = math.exp(sigma ** 2 / 2), (math.exp(sigma ** 2) - 1) * math.exp(sigma ** 2)
        return (rng.lognormal(0.0, sigma, size) - mean) / math.sqrt(var)
    raise ValueError(dist)


def study_runs(rng: np.random.Generator, n: int, dist: str, fail_rate: float = FAIL_RATE) -> list[TrialRun]:
    cells = [(m, rho) for m in METHODS for rho in LEVELS]
    seed_effect = draw(rng, dist, (n, 2)) * 0.7  # shared by a seed's configurations: what pairing removes
    z1, z2 = draw(rng, dist, (len(cells), n)), draw(rng, dist, (len(cells), n))
    kid = 2.0 + 0.5 * (seed_effect[None, :, 0] + z1)
    recall = 0.5 + 0.05 * (seed_effect[None, :, 1] + CORRELATION * z1 + math.sqrt(1 - CORRELATION ** 2) * z2)
    failed = rng.random((len(cells), n)) < fail_rate
    runs = []
    for i, (method, rho) in enumerate(cells):
        for s in range(n):
            metrics = {} if failed[i, s] else {"kid_minority": float(kid[i, s]), "recall_minority": float(recall[i, s])}
            runs.append(TrialRun(f"{method}{rho}{s}", "FAILED" if failed[i, s] else "FINISHED", {},
                                 {"method": method, "imbalance": rho}, metrics, tags={"seed": str(s)}))
    return runs


def main(argv: list[str]) -> int:
    args = dict(a.split("=", 1) for a in argv if "=" in a)
    studies, seed = int(args.get("studies", 2000)), int(args.get("seed", 0))
    space = null_space()
    family(space, study_runs(np.random.default_rng(seed), 3, "normal"), detail=False)  # imports done
    rng = np.random.default_rng(seed)
    cells, started = {}, time.time()
    totals = {"adjusted": 0, "unadjusted": 0, "covered": 0, "intervals": 0, "studies": 0, "family_size": []}
    plan = [(n, dist, FAIL_RATE) for n in (3, 6) for dist in ("normal", "t3", "lognormal")]
    plan += [(n, "normal", 0.0) for n in (3, 6)]  # without failures: the t interval's own coverage
    for n, dist, fail_rate in plan:
        name = f"n{n}_{dist}" + ("" if fail_rate else "_no_failures")
        adjusted = unadjusted = covered = intervals = 0
        sizes = []
        for _ in range(studies):
            fam = family(space, study_runs(rng, n, dist, fail_rate), detail=False)
            sizes.append(fam.size)
            adjusted += bool(fam.resolved)
            unadjusted += bool(fam.resolved_unadjusted)
            for c in fam.comparisons:
                if c.diff.testable and c.metric != "failure rate":
                    intervals += 1
                    covered += c.diff.low <= 0 <= c.diff.high
        cells[name] = {"familywise_false_resolution": round(adjusted / studies, 4),
                                 "familywise_false_resolution_unadjusted": round(unadjusted / studies, 4),
                                 "interval_coverage": round(float(covered / max(1, intervals)), 4),
                                 "family_size": round(float(np.mean(sizes)), 1)}
        print(f"{name}: {cells[name]}", flush=True)
        if not fail_rate:
            continue  # the headline figures are over the six cells with failures
        totals["adjusted"] += adjusted
        totals["unadjusted"] += unadjusted
        totals["covered"] += covered
        totals["intervals"] += intervals
        totals["studies"] += studies
    total = totals["studies"]
    fwer = totals["adjusted"] / total
    result = {"studies": total, "studies_per_cell": studies,
              "familywise_false_resolution": round(fwer, 4),
              "familywise_false_resolution_mc_error": round(math.sqrt(fwer * (1 - fwer) / total), 4),
              "familywise_false_resolution_unadjusted": round(totals["unadjusted"] / total, 4),
              "interval_coverage": round(float(totals["covered"] / totals["intervals"]), 4),
              "interval_coverage_no_failures": round(float(np.mean(
                  [cells[f"n{n}_normal_no_failures"]["interval_coverage"] for n in (3, 6)])), 4),
              "intervals": totals["intervals"], "failure_rate": FAIL_RATE, "cells": cells,
              "seconds": round(time.time() - started, 1)}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
