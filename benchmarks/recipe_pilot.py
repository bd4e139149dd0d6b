"""The CPU recipe pilot of the DCGAN baseline on mnist (issue 16, item 2): one training run per call.

    python benchmarks/recipe_pilot.py name=LABEL [out=FILE] [key=value ...]   # one run, JSON lines to out
    python benchmarks/recipe_pilot.py name=LABEL resume=true steps=N [...]    # continue LABEL's run to N steps
    python benchmarks/recipe_pilot.py table [out=FILE]                       # the markdown table of out

Every ``key=value`` other than ``name``/``out`` is a trainer config key (``steps=2000 eval_every=500
resolution=16 ch=8 lr_d=4e-4 ...``); the defaults here are ``method=dcgan dataset=mnist device=cpu``
and ``root=runs/pilot`` (the judge and reference statistics are cached there once per resolution).
The run goes through ``trainers.loop.train`` with the standard evaluator, wrapped so that each
evaluation also reports, from the same seeded samples the evaluator scored:

* ``judge/confident_rate``: the share of generated samples whose judge max softmax is >= 0.9;
* ``confident_classes``: classes holding at least ``1/(4K)`` of the samples among the confident ones
  (the evaluator's ``classes_dropped`` threshold, counted on confidently classified samples only).

Without a learning-rate schedule, the checkpoints at 500, 1000, ... steps of one run are exactly the
runs with those step budgets, so one run per setting gives every budget. Timing: one intra-op thread
(``torch.set_num_threads(1)``; set ``OMP_NUM_THREADS=1`` too); ``train_s`` is the loop's wall time
without evaluations and ``train_cpu_s`` the process CPU time without evaluations (less affected by
other processes on a shared machine).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

DEFAULTS = {"method": "dcgan", "dataset": "mnist", "device": "cpu", "keep_checkpoints": 100}


class ConfidentRate:
    """The loop's evaluator, timed, plus ``confident_classes`` counted on the overall set it scored (the
    evaluator reports ``judge/confident_rate`` itself, with the same threshold)."""

    def __init__(self, inner):
        self.inner = inner
        self.wall = self.cpu = 0.0
        self.scored: dict = {}
        sample = inner.sample

        def remember(method):  # the evaluator's own draw, kept for the count below
            self.scored = sample(method)
            return self.scored

        inner.sample = remember

    def evaluate(self, method, step, out_dir=None):
        import torch

        from trainers.metrics.scores import CONFIDENT

        wall, cpu = time.perf_counter(), time.process_time()
        metrics = self.inner.evaluate(method, step, out_dir)
        confidence, judged = self.scored["judge_logits"].softmax(1).max(1)
        k = self.inner.data.num_classes
        confident = judged[confidence >= CONFIDENT]
        metrics["confident_classes"] = int((torch.bincount(confident, minlength=k) >= len(judged) / (4 * k)).sum())
        self.wall += time.perf_counter() - wall
        self.cpu += time.process_time() - cpu
        return metrics


def run(name: str, out: Path, overrides: dict, resume: bool = False) -> None:
    import torch

    from trainers.cli import nan_as_null
    from trainers.config import make_config, parse_overrides
    from trainers.data import load_data
    from trainers.loop import build_evaluator, resolve_device, train

    torch.set_num_threads(1)
    overrides = dict(overrides)
    root = Path(overrides.pop("root", "runs/pilot"))  # as trainers.train's root=: the cache goes under it
    overrides.setdefault("cache_dir", str(root / "cache"))
    cfg = make_config({**DEFAULTS, **parse_overrides([f"{k}={v}" for k, v in overrides.items()])})
    workdir = root / "work" / name
    offset = {"train_s": 0.0, "train_cpu_s": 0.0}
    if resume:  # the same run continued: its seconds so far come from its last row
        earlier = [json.loads(line) for line in out.read_text().splitlines() if line.strip()] if out.exists() else []
        earlier = [r for r in earlier if r["name"] == name]
        if not earlier or not workdir.exists():
            raise SystemExit(f"error: resume=true but {out} has no row of {name} or {workdir} is missing")
        offset = {k: earlier[-1][k] for k in offset}
    elif workdir.exists():
        raise SystemExit(f"error: {workdir} exists; choose another name= or remove it")
    judge_wall = time.perf_counter()
    evaluator = ConfidentRate(build_evaluator(cfg, load_data(cfg), resolve_device(cfg.device)))
    judge_wall = time.perf_counter() - judge_wall
    setting = {k: getattr(cfg, k) for k in ("resolution", "ch", "imbalance", "lr_g", "lr_d", "beta1", "beta2",
                                            "batch_size", "seed")}
    setting["resolution"] = evaluator.inner.data.resolution
    start_wall, start_cpu = time.perf_counter(), time.process_time()

    def report(metrics, checkpoint):
        pngs = sorted(Path(checkpoint).rglob(f"samples_step{metrics['step']}.png"))
        row = {"name": name, **setting, "step": metrics["step"],
               **{k: metrics.get(k) for k in ("fid", "kid", "classes_dropped", "class_kl_uniform",
                                              "judge/confidence", "judge/confident_rate", "confident_classes",
                                              "fid_minority", "kid_minority", "judge/test_accuracy")},
               "judged": [metrics.get(f"judged_class/{c}") for c in range(evaluator.inner.data.num_classes)],
               "train_s": offset["train_s"] + time.perf_counter() - start_wall - evaluator.wall,
               "train_cpu_s": offset["train_cpu_s"] + time.process_time() - start_cpu - evaluator.cpu,
               "eval_s_total": evaluator.wall, "setup_s": judge_wall,
               "judge_trained": evaluator.inner.judge_trained,
               "judge_train_s": evaluator.inner.judge_train_seconds,
               "samples_png": str(pngs[0]) if pngs else None, "overrides": overrides}
        row["s_per_step"] = row["train_s"] / row["step"]
        line = json.dumps(nan_as_null(row))
        print(line, flush=True)
        with open(out, "a") as f:
            f.write(line + "\n")

    train(cfg, report, workdir=workdir, resume_from=workdir if resume else None, evaluator=evaluator)


def table(out: Path) -> str:
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    head = ("| setting | res | ch | rho | lr_g / lr_d | betas | seed | steps | FID | KID | dropped | KL to uniform "
            "| judge conf. | confident rate | confident classes | train s (wall) | train s (CPU) | s/step |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    fmt = lambda v, f: "—" if v is None else format(v, f)
    for r in rows:
        lines.append(
            f"| {r['name'].rsplit('-s', 1)[0]} | {r['resolution']} | {r['ch']} | {r['imbalance']:g} "
            f"| {r['lr_g']:g} / {r['lr_d']:g} | ({r['beta1']:g}, {r['beta2']:g}) | {r['seed']} | {r['step']} "
            f"| {fmt(r['fid'], '.2f')} | {fmt(r['kid'], '.3f')} | {r['classes_dropped']} "
            f"| {fmt(r['class_kl_uniform'], '.3f')} | {fmt(r['judge/confidence'], '.3f')} "
            f"| {fmt(r['judge/confident_rate'], '.3f')} | {r['confident_classes']} | {r['train_s']:.0f} "
            f"| {r['train_cpu_s']:.0f} | {r['s_per_step']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = dict(a.split("=", 1) for a in argv if "=" in a)
    out = Path(args.pop("out", "runs/pilot/pilot.jsonl"))
    if "table" in argv:
        print(table(out))
        return 0
    if "name" not in args:
        print(__doc__, file=sys.stderr)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    resume = args.pop("resume", "false").lower() == "true"
    run(args.pop("name"), out, args, resume)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
