"""The report's sections that state what the study measured: its header, the ablation table (a cell per
configuration and metric: mean ± 95% CI over seeds), evaluation noise against training noise, and the
headline its MLflow parent run carries; ``Study``, what every section reads."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search.report.comparisons import Family, family, family_lines
from search.report.runs import TrialRun, by_seed, configurations, group_keys, penalty_of
from search.stats import mean_ci
from search.stores import Stores

TABLE_METRICS = ("fid", "kid_minority", "recall_minority", "fid_minority", "minority_missing", "classes_dropped",
                 "judge/confident_rate")


@dataclass
class Study:
    """Everything a section reads."""

    space: Any
    stores: Stores | None
    runs: list[TrialRun]
    study: Any = None  # the Optuna study
    client: Any = None
    exp: Any = None
    parent: Any = None
    out: Path | None = None
    family: Family | None = None
    efficiency: dict | None = None


def fmt(mean: float, half: float, n: int) -> str:
    if n == 0:
        return "—"
    if math.isnan(half):
        return f"{mean:.3g} (n={n})"
    return f"{mean:.3g} ± {half:.2g} (n={n})"


def cell(space, members: list[TrialRun], metric: str) -> str:
    """A configuration's mean ± half-width over seeds, failed replicates at the penalty (or excluded, said)."""
    penalty = penalty_of(space, metric)
    values = [v for r in members for v in by_seed([r], metric, penalty).values()]
    if not any(metric in r.metrics for r in members):
        return "—"  # not measured by this study's runs
    failed = sum(r.failed_on(metric) for r in members)
    interrupted = sum(r.interrupted for r in members)
    text = fmt(*mean_ci(values))
    if failed and penalty is not None:
        text = text[:-1] + f", {failed} failed at {penalty:g})" if text.endswith(")") else text
    elif failed:
        text = f"{text}; {failed} failed, excluded"
    if interrupted:
        text = f"{text}; {interrupted} unfinished (interrupted), excluded"
    return text


def header(s: Study) -> list[str]:
    states: dict[str, int] = {}
    for t in (s.study.trials if s.study is not None else []):
        states[t.state.name] = states.get(t.state.name, 0) + 1
    failed = sum(not r.finished and not r.interrupted for r in s.runs)
    interrupted = sum(r.interrupted for r in s.runs)
    space = s.space
    return [f"# Study `{space.name}`", "", space.description, "",
            f"- metric: {space.metric_arg} ({space.mode_arg}); sampler {space.sampler}; "
            f"scheduler {space.scheduler.type}; seeds "
            + (f"in blocks, looks at {list(space.sequential.looks)}" if getattr(space, "sequential", None)
               else f"{list(space.seeds)}"),
            f"- trials (MLflow child runs): {len(s.runs)}, of which failed: {failed}; unfinished (the study was "
            f"stopped or its driver killed while they ran; excluded from every value and rate, a resume reruns "
            f"them): {interrupted}",
            "- Optuna configurations: " + ", ".join(f"{k} {v}" for k, v in sorted(states.items())), ""]


def ablation_table(s: Study) -> list[str]:
    space, runs = s.space, s.runs
    keys = group_keys(space)
    penalties = {m: penalty_of(space, m) for m in TABLE_METRICS if penalty_of(space, m) is not None}
    rule = (f"a failed or diverged replicate enters at the space's failure_value ({penalties})" if penalties
            else "the space sets no failure_value, so a failed replicate is excluded from the mean and each cell "
                 "says how many were")
    lines = ["## Ablation table", "",
             f"Mean ± half-width of the 95% t confidence interval over seed replicates (n); {rule}. `failed`: "
             "failed or diverged replicates of the configuration (its failure rate is compared below).", "",
             "| " + " | ".join(keys + ["trials", "failed"] + list(TABLE_METRICS)) + " |",
             "|" + "---|" * (len(keys) + 2 + len(TABLE_METRICS))]
    groups: dict[tuple, list[TrialRun]] = {}
    for run in runs:
        groups.setdefault(tuple((k, run.sampled.get(k, "—")) for k in keys), []).append(run)
    for group, members in sorted(groups.items(), key=lambda g: [str(v) for _, v in g[0]]):
        failed = sum(r.failed_on(space.metric[0]) for r in members)
        cells = [str(v) for _, v in group] + [str(len(members)), str(failed)]
        lines.append("| " + " | ".join(cells + [cell(space, members, m) for m in TABLE_METRICS]) + " |")
    per_class_n = sorted({int(r.metrics["per_class_n"]) for r in runs if r.finished and "per_class_n" in r.metrics})
    fid_n = sorted({int(r.metrics["fid_n"]) for r in runs if r.finished and "fid_n" in r.metrics})
    return lines + ["", f"Per-class and minority figures are at equal N: every class scored on N = "
                    f"{', '.join(map(str, per_class_n)) or '—'} samples (`per_class_n`); a class short of N is missing "
                    f"(`minority_missing`) and enters its group at a penalty, never flattering it. `fid` is on "
                    f"{', '.join(map(str, fid_n)) or '—'} samples (`fid_n`). `judge/confident_rate`: the share of "
                    f"samples the judge classifies with max softmax ≥ 0.9 (read it with `classes_dropped`: a collapsed "
                    f"G that repeats one clean digit scores high).", ""]


def evaluation_noise(s: Study) -> list[str]:
    """Variance share of evaluation (reference draws) vs training seeds, where trials log ``evalsd/<m>``."""
    space, rows = s.space, []
    for metric in dict.fromkeys([*space.metric, *TABLE_METRICS]):
        evaluation, total, n = [], [], 0
        for members in configurations(s.runs).values():
            done = [r for r in members if r.finished and math.isfinite(r.metrics.get(metric, math.nan))
                    and f"evalsd/{metric}" in r.metrics]
            if len(done) < 2:
                continue
            values = [r.metrics[metric] for r in done]
            mean = sum(values) / len(values)
            total.append(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
            draws = [max(1.0, r.metrics.get("eval_draws", 1.0)) for r in done]
            evaluation.append(sum(r.metrics[f"evalsd/{metric}"] ** 2 / d for r, d in zip(done, draws)) / len(done))
            n += len(done)
        if total and sum(total) > 0:
            share = min(1.0, sum(evaluation) / sum(total))
            rows.append(f"| {metric} | {share:.0%} | {1 - share:.0%} | {n} |")
    if not rows:
        return []
    return ["## Evaluation noise against training noise", "",
            "Within a configuration, the variance of a metric over seeds has two sources: the evaluation (which "
            "reference images and samples were drawn: `evalsd/<metric>`² over the draws, divided by `eval_draws` "
            "when the trial's value is their mean) and training (the seed). Shares of the pooled within-"
            "configuration variance:", "",
            "| metric | evaluation | training seeds | runs |", "|---|---|---|---|", *rows, ""]


def headline(space, runs: list[TrialRun], fam: Family | None = None) -> tuple[str, dict[str, float]]:
    """(Markdown: the ablation table and the comparisons resolved after adjustment; per-configuration means
    keyed ``<metric>/<value>_<value>...`` without '=', e.g. ``kid_minority/dcgan_rho100``) for the study's
    MLflow parent run."""
    fam = fam or family(space, runs)
    s = Study(space, None, runs, family=fam)
    resolved = fam.resolved
    lines = [*ablation_table(s), *family_lines(fam), "### Resolved after adjustment", ""]
    lines += ([f"- {c.context}: {c.what}, {c.metric}: {c.diff.estimate:+.3g} "
               f"(p = {c.diff.p:.2g}, Holm {c.p_adjusted:.2g})" for c in resolved] or ["- none"])
    means: dict[str, float] = {}
    for config, members in configurations(runs).items():
        ordered = sorted(config, key=lambda kv: (kv[0] != "method", kv[0]))  # the method first: dcgan_rho100
        name = "_".join(_short(k, v) for k, v in ordered) or "all"
        for metric in dict.fromkeys([*space.metric, *TABLE_METRICS]):
            mean = mean_ci(list(by_seed(members, metric, penalty_of(space, metric)).values()))[0]
            if math.isfinite(mean):
                means[f"{metric}/{name}"] = mean
    return "\n".join(lines) + "\n", means


def _short(key: str, value) -> str:
    word = {"imbalance": "rho", "method": ""}.get(key, re.sub(r"[^A-Za-z0-9]+", "", key)[:12])
    return re.sub(r"[^A-Za-z0-9_.-]+", "", f"{word}{value:g}" if isinstance(value, float) else f"{word}{value}")
