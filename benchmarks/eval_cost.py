"""What evaluation costs a study: evaluation time / training time between two evaluations.

The settings are read at run time from the main job's space (``spaces/sdclr_ablation.yaml``): its
``fixed:`` trainer keys and every cell of its ``params`` grid (one seed), so the figure follows the
space when it is redesigned. A trial must evaluate at least 5 times: when ``steps / eval_every`` is
below 5, ``eval_every = steps // 5`` is used instead (the output says so). Each cell trains with
``trainers.loop.train`` exactly as a trial does; the loop reports ``time/eval_s`` (the evaluation) and
``time/step_s`` (training steps since the previous evaluation), so

    eval_share = sum of evaluation seconds / sum of training seconds between evaluations

over every evaluation of every cell (target <= 0.15); per cell too. One thread throughout.

Before training, the worst case an evaluation meets, at the grid's largest imbalance with the main
job's settings: an untrained G (collapsed: the judge puts all of it in one or two classes). Its
draws and seconds with the hopeless-class rule, and at the cap (the rule switched off); the peak RSS
of the process over that evaluation (VmHWM reset just before it; Linux) against its RSS before; and the draws a faithful generator (real training images drawn
with the training prior) needs to fill every class.

    python benchmarks/eval_cost.py [space=sdclr_ablation] [cells=all|N] [threads=1]

Last line: {"eval_share": ..., "eval_peak_rss_mb": ..., "collapsed_draws": ..., ...}
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch

MIN_EVALS = 5


def memory_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak since the last reset) of this process, from /proc (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: the lifetime peak


def reset_peak_rss() -> None:
    """Start VmHWM afresh, so the peak measured is the evaluation's, not the judge training's."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def main() -> None:
    args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
    threads = int(args.get("threads", 1))
    torch.set_num_threads(threads)

    from search.spaces import load_space
    from trainers.config import make_config
    from trainers.data import load_data, to_float
    from trainers.loop import train
    from trainers.methods import get_method
    from trainers.metrics import make_evaluator, perclass

    space = load_space(args.get("space", "sdclr_ablation"))
    cells = space.grid()
    if args.get("cells", "all") != "all":
        cells = cells[: int(args["cells"])]
    seed = space.seeds[0]
    base = make_config(space.trial_config(cells[0], seed))
    eval_every = base.eval_every
    note = ""
    if base.steps // eval_every < MIN_EVALS:
        eval_every = max(1, base.steps // MIN_EVALS)
        note = (f"the space evaluates every {base.eval_every} of {base.steps} steps "
                f"({base.steps // base.eval_every} evaluations); measured with eval_every={eval_every}")

    with tempfile.TemporaryDirectory() as root:
        # -- the worst case: a collapsed G at the grid's largest imbalance -------------------------
        worst = max(cells, key=lambda c: float(c.get("imbalance", base.imbalance)))
        cfg = make_config({**space.trial_config(worst, seed), "cache_dir": f"{root}/cache", "method": "dcgan"})
        data = load_data(cfg)
        ev = make_evaluator(cfg, data, torch.device("cpu"))
        method = get_method("dcgan")(cfg, data, torch.device("cpu"))
        with tempfile.TemporaryDirectory() as out:
            ev.evaluate(method, 0, out)  # warm-up: first calls of every kernel, matplotlib's font cache
        rss_before = memory_mb("VmRSS")
        reset_peak_rss()
        with tempfile.TemporaryDirectory() as out:
            t = time.perf_counter()
            collapsed = ev.evaluate(method, 0, out)
            collapsed_s = time.perf_counter() - t
        rss_peak = memory_mb("VmHWM")
        with mock.patch.object(perclass, "hopeless", lambda *a, **k: False):
            t = time.perf_counter()
            at_cap = ev.evaluate(method, 0)
            at_cap_s = time.perf_counter() - t
        scored = [collapsed[f"scored_class/{k}"] for k in range(data.num_classes)]

        # a faithful generator: real training images, classes drawn with the training prior
        rng = np.random.default_rng(0)
        judged = ev.judge_labels(data.full_train.images)
        prior = perclass.training_prior(data.train_counts)
        classes = rng.choice(data.num_classes, size=ev.max_draws, p=prior)
        pools = [torch.nonzero(judged == k).flatten() for k in range(data.num_classes)]
        rows = torch.tensor([int(pools[c][i % len(pools[c])]) for i, c in enumerate(classes)])

        class Faithful:
            conditional = False
            position = 0

            def generate(self, n, labels=None, generator=None):
                out = data.full_train.images[rows[self.position:self.position + n]]
                self.position += n
                return to_float(out)

        faithful = ev.evaluate(Faithful(), 0)

        # -- every cell of the space, trained as a trial ------------------------------------------
        per_cell, evals, trains = {}, [], []
        for cell in cells:
            trial = {**space.trial_config(cell, seed), "cache_dir": f"{root}/cache", "eval_every": eval_every}
            reports: list[dict] = []
            train(trial, lambda metrics, checkpoint: reports.append(metrics))
            eval_s = [m["time/eval_s"] for m in reports]
            # the loop's time/step_s is the mean over the steps since the previous evaluation
            previous = [0] + [m["step"] for m in reports[:-1]]
            train_s = [m["time/step_s"] * (m["step"] - p) for m, p in zip(reports, previous)]
            label = ",".join(f"{k}={v}" for k, v in cell.items())
            per_cell[label] = {"eval_share": round(sum(eval_s) / sum(train_s), 3),
                               "eval_s": round(statistics.median(eval_s), 3), "eval_s_max": round(max(eval_s), 3),
                               "train_between_s": round(statistics.median(train_s), 3),
                               "samples_drawn": int(statistics.median(m["samples_drawn"] for m in reports)),
                               "missing": int(statistics.median(m["minority_missing"] + m["majority_missing"]
                                                                for m in reports))}
            evals += eval_s
            trains += train_s
            print(json.dumps({label: per_cell[label]}), flush=True)

    print(json.dumps({
        "eval_share": round(sum(evals) / sum(trains), 4),
        "eval_share_worst_cell": max(v["eval_share"] for v in per_cell.values()),
        "eval_s_median": round(statistics.median(evals), 3),
        "train_between_evals_s_median": round(statistics.median(trains), 3),
        "evaluations": len(evals), "cells": len(cells), "eval_every": eval_every, "steps": base.steps,
        "eval_every_note": note,
        "eval_peak_rss_mb": round(rss_peak, 1), "rss_before_eval_mb": round(rss_before, 1),
        "eval_rss_increase_mb": round(rss_peak - rss_before, 1),
        "collapsed_imbalance": cfg.imbalance, "collapsed_classes_scored": sum(s == ev.per_class_n for s in scored),
        "collapsed_draws": collapsed["samples_drawn"], "collapsed_eval_s": round(collapsed_s, 3),
        "collapsed_draws_at_cap": at_cap["samples_drawn"], "collapsed_eval_s_at_cap": round(at_cap_s, 3),
        "faithful_draws": faithful["samples_drawn"],
        "faithful_missing": faithful["minority_missing"] + faithful["majority_missing"],
        "draws_cap": ev.max_draws, "per_class_n": ev.per_class_n, "num_samples": base.eval.num_samples,
        "threads": threads, "space": space.name,
    }))


if __name__ == "__main__":
    main()
