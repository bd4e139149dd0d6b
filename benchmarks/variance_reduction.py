"""Variance reduction, measured on the main job: how much more answer a trial buys when it is scored
another way (issue 25, item 1).

Two steps, so the table can be recomputed without retraining:

    python benchmarks/variance_reduction.py collect [space=sdclr_ablation] [seeds=0,1,2] [out=FILE]
    python benchmarks/variance_reduction.py [analyse] [file=FILE] [old=G/n100/last1] [new=ema0.99/n100/last1]

and a third, to check a pick out of sample on a study already run (no training): ``from-study
space=evidence_damage root=runs/evidence out=FILE`` writes the same file from the study's MLflow runs
(each finished trial's evaluations as the study scored them: the ``G/n100`` variant only), which
``analyse file=FILE`` then reads.

``collect`` trains every trial of the space's grid (the space's own settings, ``trainers.loop.train``,
one process, sequentially, seed by seed) and scores, at every evaluation, G and EMA copies of G at
several decays (``trainers.ema.GEma``, the rule of the ``g_ema`` knob; training is the same with or
without them, so one run serves all), each sampled once with the trial's evaluation noise and scored:

* ``n100``: the space's scoring (every class on N = 100 samples against its whole 100-image test pool:
  the value has no reference-draw noise at all; ``evalsd/*`` is its bootstrap sd);
* ``n50x5`` and ``n50x1`` (G only): the first 50 samples of every class against the mean of 5 seeded
  50-image reference draws, and against the first of them alone: the scoring before issue 24.

It writes the per-evaluation values of a few metrics per trial to ``FILE`` (default
``benchmarks/variance_reduction.json``) after every trial (a rerun skips the trials already there).

``analyse`` builds, per scoring variant ``<generator>/<scoring>/last<k>`` (the trial's value: the mean
of its last k evaluations), the report's own family of comparisons (``search.report.comparisons.family``:
the primary comparison, every method against the baseline per imbalance level, every imbalance effect
and the pooled one, over the compared metrics), each a paired per-seed difference, and per comparison
its squared standardised effect ``(mean / sd of the paired differences)^2``: what n seeds multiply to
give the squared t statistic, so ``new / old`` is how many times the seeds the new way is worth.
``effective_seed_multiplier`` is the median over the comparisons of ``new / old`` (target >= 2.0). Beside
it: the median ratio of the paired differences' variances (old / new: the same multiplier where the mean
does not move), the pooled seed-to-seed variance within configurations per metric, and every variant
against the old one. Last line: JSON.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

DEFAULT_FILE = Path(__file__).with_name("variance_reduction.json")
# the EMA copies scored beside G: (name, decay, start). Half-lives 69 and 139 G steps; the start keeps the
# first, fastest-moving weights out (BigGAN/StudioGAN ema_start). Every start is >= 1, so a copy made after
# the first G step is the copy the loop's g_ema would hold then (it follows G until start). A third copy,
# 0.999 from step 500 (half-life 693), scored 4.35 kid_minority against G's 1.11 at the end of the first
# trial (DCGAN, rho=1, seed 0: its average reaches back to a G that did not yet draw digits) and was
# dropped after the first two trials to fit the run in the time there was.
EMAS = (("ema0.99", 0.99, 100), ("ema0.995", 0.995, 100))
LAST_K = 3  # the EMA copies are scored at the last LAST_K evaluations only (what last1..last3 read)
KEPT = ("kid_minority", "recall_minority", "kid_majority", "recall_majority", "precision_minority",
        "fid_minority", "fid", "kid", "minority_missing", "majority_missing", "classes_dropped",
        "evalsd/kid_minority", "evalsd/recall_minority")
OLD = "G/n100/last1"
NEW = "G/n100/last2"  # the pick (docs/methods.md, "Variance reduction")


# -- collect ------------------------------------------------------------------------------------------
class Scorer:
    """The trial's evaluator for ``trainers.loop.train``: scores G and each EMA copy several ways at every
    evaluation, records them, and reports G's own scores (the ``n100`` ones) as a trial without g_ema does."""

    def __init__(self, cfg, data, emas: Iterable[tuple[str, float, int]]):
        self.ema_from = cfg.steps - LAST_K * cfg.eval_every  # evaluations after this step score the copies too
        import torch

        from trainers.config import make_config, to_dict
        from trainers.metrics import make_evaluator

        device = torch.device("cpu")
        plain = to_dict(cfg)

        def with_eval(**changes):
            return make_config({**plain, "eval": {**plain["eval"], **changes}})

        self.evaluators = {"n100": make_evaluator(cfg, data, device),
                           "n50x5": make_evaluator(with_eval(per_class_n=50, reference_draws=5), data, device),
                           "n50x1": make_evaluator(with_eval(per_class_n=50, reference_draws=1), data, device)}
        self.spec = tuple(emas)
        self.emas: dict[str, Any] = {}
        self.rows: list[dict[str, Any]] = []

    def on_g_step(self, method) -> None:
        from trainers.ema import GEma

        if not self.emas:  # after the first G step: each copy then equals G (every start is >= 1)
            for name, decay, start in self.spec:
                if start < 1:
                    raise ValueError(f"{name}: a copy made after the first G step needs start >= 1")
                self.emas[name] = GEma(method.G, decay, start)
                self.emas[name].updates = 1
            return
        for ema in self.emas.values():
            ema.update(method.G)

    def evaluate(self, method, step: int, out_dir=None) -> dict[str, Any]:
        row: dict[str, Any] = {"step": step}
        reported = None
        for name in ("G", *(self.emas if step > self.ema_from else ())):
            swap = self.emas[name].in_place_of(method) if name != "G" else contextlib.nullcontext()
            with swap:
                drawn = self.evaluators["n100"].sample(method)
            head = (drawn["features"], drawn["judge_logits"], drawn["is_logits"])
            for scoring, evaluator in self.evaluators.items():
                if name != "G" and scoring != "n100":
                    continue
                metrics = evaluator.metrics_for(drawn["images"], drawn["labels"], drawn["draws"], head)
                row[f"{name}/{scoring}"] = {k: float(metrics[k]) for k in KEPT if k in metrics}
                if name == "G" and scoring == "n100":
                    reported = metrics
        self.rows.append(row)
        return reported


def collect(space_name: str, seeds: list[int] | None, out: Path) -> None:
    import torch

    from search.spaces import load_space
    from trainers.config import make_config
    from trainers.data import load_data
    from trainers.loop import train

    torch.set_num_threads(1)
    space = load_space(space_name)
    seeds = seeds or list(space.seeds)
    done = json.loads(out.read_text())["trials"] if out.exists() else []
    have = {(t["method"], float(t["imbalance"]), t["seed"]) for t in done}
    cache = os.environ.get("VR_CACHE_DIR", str(Path("runs") / "cache"))
    for seed in seeds:
        for cell in space.grid():
            trial = {**space.trial_config(cell, seed), "cache_dir": cache}
            cfg = make_config(trial)
            if (cfg.method, float(cfg.imbalance), seed) in have:
                continue
            started = time.time()
            scorer = Scorer(cfg, load_data(cfg), EMAS)
            with tempfile.TemporaryDirectory(prefix="variance-") as workdir:
                train(cfg, workdir=workdir, evaluator=scorer, on_g_step=scorer.on_g_step)
            done.append({"method": cfg.method, "imbalance": cfg.imbalance, "seed": seed, "sampled": cell,
                         "evals": scorer.rows, "seconds": round(time.time() - started, 1)})
            write_json(out, {"space": space.name, "emas": [list(e) for e in EMAS], "kept": list(KEPT),
                             "trials": done})
            print(f"{time.strftime('%H:%M:%S')} {cfg.method} rho={cfg.imbalance:g} seed={seed}: "
                  f"{done[-1]['seconds']} s, {len(done)} trials stored", flush=True)


def from_study(space_name: str, root: str, out: Path) -> None:
    """The payload ``collect`` writes, from a study's finished trials in MLflow: every evaluation's value of
    the kept metrics (the study's own scoring, ``G/n100``), so ``analyse`` compares its last-k variants on
    seeds and conditions the pick was not made on."""
    from search import tracking
    from search.report import load_runs
    from search.spaces import load_space
    from search.stores import Stores

    space = load_space(space_name)
    stores = Stores.at(root)
    client = tracking.client_for(stores.tracking_uri)
    trials = []
    for run in load_runs(space, stores.tracking_uri):
        if not run.finished:
            continue
        steps: dict[int, dict[str, float]] = {}
        for metric in KEPT:
            if metric in run.metrics:
                for m in client.get_metric_history(run.run_id, metric):
                    steps.setdefault(int(m.step), {})[metric] = float(m.value)
        evals = [{"step": step, "G/n100": values} for step, values in sorted(steps.items())]
        trials.append({"method": run.sampled.get("method", space.fixed.get("method")),
                       "imbalance": float(run.sampled.get("imbalance", space.fixed.get("imbalance", 1))),
                       "seed": run.seed, "sampled": run.sampled, "evals": evals})
    write_json(out, {"space": space.name, "emas": [], "kept": list(KEPT), "from_study": str(stores.root),
                     "trials": trials})
    print(f"{len(trials)} finished trials of {space.name} under {stores.root} -> {out}")


def write_json(path: Path, payload: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=0, default=float))
    os.replace(tmp, path)


# -- analyse ------------------------------------------------------------------------------------------
def trial_value(trial: Mapping[str, Any], variant: str, metric: str) -> float:
    """The trial's value of ``metric`` under ``variant`` = ``<generator>/<scoring>/last<k>``: the mean of
    its last k evaluations' values."""
    generator, scoring, last = variant.split("/")
    k = int(last.removeprefix("last"))
    values = [row[f"{generator}/{scoring}"][metric] for row in trial["evals"][-k:]]
    return sum(values) / len(values) if len(values) == k else math.nan


def runs_for(trials: list[Mapping[str, Any]], variant: str, metrics: Iterable[str]):
    """The trials as the report's ``TrialRun``s, their metrics the values under ``variant``."""
    from search.report.runs import TrialRun

    metrics = list(metrics)
    return [TrialRun(f"trial-{i}", "FINISHED", {}, dict(t["sampled"]),
                     {m: trial_value(t, variant, m) for m in metrics}, tags={"seed": str(t["seed"])})
            for i, t in enumerate(trials)]


def standardised_effects(space, trials: list[Mapping[str, Any]], variant: str) -> dict[tuple, dict[str, float]]:
    """Per comparison of the report's family: its paired mean, sd, n and squared standardised effect."""
    from search.report.comparisons import compared_metrics, family

    metrics = dict.fromkeys([*compared_metrics(space), *(spec["metric"] for spec in space.primary)])
    fam = family(space, runs_for(trials, variant, metrics), detail=False)
    out = {}
    for c in fam.comparisons:
        d = c.diff
        z2 = (d.estimate / d.sd) ** 2 if math.isfinite(d.sd) and d.sd > 0 else math.nan
        out[(c.section, c.context, c.what, c.metric)] = {"mean": d.estimate, "sd": d.sd, "n": d.n, "z2": z2}
    return out


def multiplier(old: Mapping[tuple, Mapping[str, float]], new: Mapping[tuple, Mapping[str, float]]) -> dict[str, float]:
    """Median over the comparisons of new/old squared standardised effect, and of old/new variance; how many
    comparisons gained (a sign count: with 3 seeds the median alone hides how mixed the gains are)."""
    effect, variance = [], []
    for key, o in old.items():
        n = new.get(key)
        if n is None:
            continue
        if math.isfinite(o["z2"]) and math.isfinite(n["z2"]) and o["z2"] > 0:
            effect.append(n["z2"] / o["z2"])
        if math.isfinite(o["sd"]) and math.isfinite(n["sd"]) and n["sd"] > 0:
            variance.append(o["sd"] ** 2 / n["sd"] ** 2)
    return {"effective_seed_multiplier": statistics.median(effect) if effect else math.nan,
            "variance_ratio": statistics.median(variance) if variance else math.nan,
            "comparisons": len(effect), "gained": sum(r > 1 for r in effect)}


def seed_variance(trials: list[Mapping[str, Any]], variant: str, metric: str) -> float:
    """The pooled variance across seeds within configurations (each configuration's sample variance,
    weighted by its degrees of freedom): the training-seed noise a scoring leaves."""
    groups: dict[tuple, list[float]] = {}
    for t in trials:
        groups.setdefault(tuple(sorted((k, str(v)) for k, v in t["sampled"].items())), []).append(
            trial_value(t, variant, metric))
    ss = df = 0.0
    for values in groups.values():
        values = [v for v in values if math.isfinite(v)]
        if len(values) >= 2:
            ss += statistics.variance(values) * (len(values) - 1)
            df += len(values) - 1
    return ss / df if df else math.nan


def variants_of(payload: Mapping[str, Any]) -> list[str]:
    """Every ``<generator>/<scoring>/last<k>`` that every trial can give (its last k evaluations scored so)."""
    trials = payload["trials"]
    names = set.intersection(*({key for row in t["evals"] for key in row if key != "step"} for t in trials))
    out = []
    for name in sorted(names):
        k = min(sum(name in row for row in t["evals"][::-1][:LAST_K]) for t in trials)
        out += [f"{name}/last{j}" for j in range(1, k + 1)]
    return out


def analyse(payload: Mapping[str, Any], old: str = OLD, new: str = NEW, space=None) -> dict[str, Any]:
    from search.report.comparisons import compared_metrics
    from search.spaces import load_space

    space = space or load_space(payload["space"])
    trials = payload["trials"]
    base = standardised_effects(space, trials, old)
    table = {}
    for variant in variants_of(payload):
        effects = standardised_effects(space, trials, variant)
        table[variant] = {**multiplier(base, effects),
                          **{f"seed_var/{m}": seed_variance(trials, variant, m) for m in compared_metrics(space)}}
    chosen = standardised_effects(space, trials, new)
    headline = multiplier(base, chosen)
    per_comparison = [{"comparison": " | ".join(map(str, key)), "old_z2": o["z2"], "new_z2": chosen[key]["z2"],
                       "old_sd": o["sd"], "new_sd": chosen[key]["sd"]} for key, o in base.items()]
    return {"old": old, "new": new, **headline, "target": 2.0, "trials": len(trials),
            "seeds": sorted({t["seed"] for t in trials}), "variants": table, "per_comparison": per_comparison}


def print_table(result: Mapping[str, Any]) -> None:
    print(f"old = {result['old']}; each variant: median over {result['comparisons']} comparisons of new/old "
          f"(mean/sd)^2, of old/new sd^2, and the pooled seed variance within configurations")
    for variant, row in sorted(result["variants"].items(), key=lambda kv: -kv[1]["effective_seed_multiplier"]
                               if math.isfinite(kv[1]["effective_seed_multiplier"]) else 0):
        seed_vars = " ".join(f"{k.split('/', 1)[1]}={v:.3g}" for k, v in row.items() if k.startswith("seed_var/"))
        print(f"  {variant:24s} effect x{row['effective_seed_multiplier']:.2f}  variance x{row['variance_ratio']:.2f}  "
              f"{seed_vars}")
    for row in result["per_comparison"]:
        print(f"  {row['comparison']}: (mean/sd)^2 {row['old_z2']:.3g} -> {row['new_z2']:.3g}")


def main(argv: list[str]) -> int:
    command = argv[0] if argv and "=" not in argv[0] else "analyse"
    args = dict(a.split("=", 1) for a in argv if "=" in a)
    path = Path(args.get("file", args.get("out", DEFAULT_FILE)))
    if command == "collect":
        seeds = [int(s) for s in args["seeds"].split(",")] if "seeds" in args else None
        collect(args.get("space", "sdclr_ablation"), seeds, path)
        return 0
    if command == "from-study":
        if "out" not in args or "space" not in args:
            print("error: from-study needs space=NAME root=DIR out=FILE (out: not the main job's own file)",
                  file=sys.stderr)
            return 2
        from_study(args["space"], args.get("root", "runs"), path)
        return 0
    result = analyse(json.loads(path.read_text()), args.get("old", OLD), args.get("new", NEW))
    print_table(result)
    summary = {k: v for k, v in result.items() if k not in ("variants", "per_comparison")}
    summary["by_variant"] = {k: round(v["effective_seed_multiplier"], 3) for k, v in result["variants"].items()}
    print(json.dumps(summary, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
