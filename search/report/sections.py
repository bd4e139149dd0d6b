"""``write_report``: the report as a list of section functions, each turning the study into Markdown lines."""

from __future__ import annotations

import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from search import tracking
from search.report import figures
from search.report.comparisons import (Family, comparison_table, declared_effect_lines, family, family_lines,
                                       baseline_method)
from search.report.runs import (TrialRun, by_seed, configurations, group_keys, label_of, penalty_of,
                                search_efficiency, study_of, trial_runs)
from search.stats import mean_ci
from search.stores import Stores

TABLE_METRICS = ("fid", "kid_minority", "recall_minority", "fid_minority", "minority_missing", "classes_dropped",
                 "judge/confident_rate")
MIN_TRIALS_FOR_IMPORTANCE = 4
MAX_GRIDS = 12
DEFAULT_BLOCKS = ("imbalance", "imbalance_profile")  # data conditions: never ranked like a hyperparameter


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


def blocks_of(space) -> list[str]:
    declared = getattr(space, "blocks", None)
    names = {p.name for p in space.params}
    return [b for b in (declared if declared is not None else DEFAULT_BLOCKS) if b in names]


# -- sections ------------------------------------------------------------------------------------------
def header(s: Study) -> list[str]:
    states: dict[str, int] = {}
    for t in (s.study.trials if s.study is not None else []):
        states[t.state.name] = states.get(t.state.name, 0) + 1
    failed = sum(not r.finished and not r.interrupted for r in s.runs)
    interrupted = sum(r.interrupted for r in s.runs)
    space = s.space
    return [f"# Study `{space.name}`", "", space.description, "",
            f"- metric: {space.metric_arg} ({space.mode_arg}); sampler {space.sampler}; "
            f"scheduler {space.scheduler['type']}; seeds "
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


NOTES = {
    "primary": ("Primary comparisons (declared in the space)", "Tested first, at the full α."),
    "methods": ("Methods against the baseline, paired by seed", None),
    "imbalance": ("The effect of imbalance, paired by seed",
                  "Highest imbalance minus lowest (long-tail `exp` profile), per configuration and pooled. For one "
                  "seed the ρ-subsets nest and G's initialisation is the same, so the levels pair by seed; the pooled "
                  "row is the mean of the per-configuration paired effects: per seed the differences are averaged "
                  "over configurations, then a one-sample t over seeds."),
    "failures": ("Failure rate against the baseline, paired by seed",
                 "Per seed 1 if the replicate failed or diverged, else 0."),
}


def comparisons(s: Study) -> list[str]:
    fam = s.family
    if not fam or not fam.size:
        return []
    lines = ["## Comparisons, adjusted for multiplicity", "", *family_lines(fam)]
    for section, (title, note) in NOTES.items():
        rows = [c for c in fam.comparisons if c.section == section]
        if not rows:
            continue
        if section == "methods":
            note = (f"Difference to `{baseline_method()}` at the same imbalance (configuration − baseline), paired "
                    "by seed: a seed's replicates share the training subset, its order and G's initialisation.")
        lines += [f"### {title}", "", note, "", *comparison_table(rows, fam), ""]
    lines += ["An unresolved comparison gives the smallest |Δ| these seeds detect with 80% power, with its range over "
              "the 95% chi-square interval of the sd (an sd from a few seeds is itself uncertain).", ""]
    effects = declared_effect_lines(s.space, fam)
    if effects:
        lines += ["### Effects declared before the study (`effects:`)", "",
                  "Power and seeds needed for the effect sizes the space declared in advance — never for an "
                  "observed difference (that would be post-hoc power, a function of the observed t alone).", "",
                  *effects, ""]
    return lines


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


def best_configurations(s: Study) -> list[str]:
    import optuna

    space = s.space
    complete = [t for t in s.study.trials if t.state == optuna.trial.TrialState.COMPLETE] if s.study else []
    lines = ["## Best configurations", ""]
    if not complete:
        return lines + ["No configuration completed.", ""]
    blocks = blocks_of(space)
    penalty = penalty_of(space, space.metric[0])
    if blocks:
        lines += [f"Ranked within each level of {', '.join(blocks)} (a data condition is a block, not a knob); the "
                  "values are the ones the sampler was told.", ""]
    by_block: dict[tuple, list] = {}
    extended = {t.user_attrs.get("extends") for t in complete}  # seeds extended on resume: the newer trial counts
    for t in complete:
        if t.number not in extended:
            by_block.setdefault(tuple((b, t.params.get(b)) for b in blocks), []).append(t)
    for block, trials in sorted(by_block.items(), key=lambda kv: [str(v) for _, v in kv[0]]):
        if blocks:
            lines.append(f"**{label_of(dict(block))}**")
            lines.append("")
        if space.multi_objective:
            front = [t for t in trials if not any(_dominates(o, t, space) for o in trials)]
            for t in sorted(front, key=lambda t: t.values):
                lines.append(f"- {t.params}: " + ", ".join(f"{m} {v:.4g}" for m, v in zip(space.metric, t.values)))
        else:
            for t in sorted(trials, key=lambda t: t.value, reverse=space.mode[0] == "max")[:5]:
                k = int(t.user_attrs.get("failed_replicates", 0))
                n = int(t.user_attrs.get("n_seeds", len(space.seeds)))  # sequential seeds: those it ran
                averaged = (f"mean over {n} seeds, {k} failed entered at {penalty:g}" if k and penalty is not None
                            else f"mean over the {n - k} finished of {n} seeds; {k} failed, excluded" if k
                            else f"mean over {n} seed{'s' if n > 1 else ''}")
                raced = "; raced out" if t.user_attrs.get("raced_out") else ""
                lines.append(f"- {space.metric[0]} {t.value:.4g} ({averaged}{raced}): {t.params}")
        lines.append("")
    return lines


def _dominates(a, b, space) -> bool:
    sign = [1 if m == "min" else -1 for m in space.mode]
    better = [x * s <= y * s for x, y, s in zip(a.values, b.values, sign)]
    return all(better) and any(x * s < y * s for x, y, s in zip(a.values, b.values, sign))


def figure_sections(s: Study) -> list[str]:
    from trainers.methods import METHODS

    space, runs, out = s.space, s.runs, s.out
    drawn = [("per_class.png", "Per-class quality by configuration", lambda p: figures.plot_per_class(space, runs, p)),
             ("class_histograms.png", "Generated class histogram vs training prior",
              lambda p: figures.plot_class_histograms(space, runs, p)),
             ("learning_curves.png", "Learning curves",
              lambda p: figures.plot_curves(runs, "fid", p, "FID over training", "FID"))]
    for name in dict.fromkeys(f for m in space.methods() if m in METHODS for f in METHODS[m].report_figures):
        title, draw = figures.METHOD_FIGURES[name]
        drawn.append((f"{name}.png", title, lambda p, draw=draw: draw(runs, p)))
    if space.multi_objective and s.study is not None:
        drawn.append(("pareto_front.png", "Pareto front", lambda p: figures.plot_pareto(s.study, space, p)))
    lines = []
    for name, title, draw in drawn:
        if draw(out / name):
            lines += [f"## {title}", "", f"![{title}]({name})", ""]
    return lines


def importances(study, space, trials=None) -> dict[str, float] | str:
    """fANOVA importances (seeded forest) of ``trials`` (default: the study's complete ones)."""
    import optuna

    complete = [t for t in (trials if trials is not None else study.trials)
                if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < MIN_TRIALS_FOR_IMPORTANCE:
        return f"not computed: {len(complete)} complete configurations, {MIN_TRIALS_FOR_IMPORTANCE} needed"
    if trials is not None:
        sub = optuna.create_study(directions=study.directions)
        sub.add_trials(complete)
        study = sub
    try:
        # a seeded forest: the same study gives the same figures (and order of ties) in every rebuild
        return optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0),
            target=(lambda t: t.values[0]) if space.multi_objective else None)
    except (ValueError, RuntimeError) as e:  # e.g. a single varying parameter, conditional spaces
        return f"not computed: {e}"


def importance_section(s: Study) -> list[str]:
    import optuna

    if s.study is None:
        return []
    blocks = blocks_of(s.space)
    lines = ["## Parameter importances (Optuna, fANOVA)", ""]
    complete = [t for t in s.study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    by_block: dict[tuple, list] = {}
    for t in complete:
        by_block.setdefault(tuple((b, t.params.get(b)) for b in blocks), []).append(t)
    if blocks:
        lines += [f"Within each level of {', '.join(blocks)}.", ""]
    for block, trials in sorted(by_block.items(), key=lambda kv: [str(v) for _, v in kv[0]]) or [((), [])]:
        prefix = f"**{label_of(dict(block))}**: " if blocks and block else ""
        if blocks:
            trials = [_without(t, blocks) for t in trials]
        imp = importances(s.study, s.space, trials if blocks else None)
        if not imp:
            lines += [prefix + "not computed: no parameter varies across the complete configurations", ""]
        elif isinstance(imp, str):
            lines += [prefix + imp, ""]
        else:
            lines += ([prefix, ""] if prefix else []) + [f"- {k}: {v:.3f}" for k, v in imp.items()] + [""]
    return lines


def _without(trial, names: list[str]):
    import optuna

    keep = {k: v for k, v in trial.params.items() if k not in names}
    return optuna.trial.create_trial(params=keep, distributions={k: trial.distributions[k] for k in keep},
                                     values=trial.values, state=trial.state)


def sample_grids(s: Study) -> list[str]:
    """The last sample grid of each configuration's lowest-seed finished run, copied beside the report."""
    if s.client is None:
        return []
    client, out, grids = s.client, s.out, []
    for config, members in list(configurations(s.runs).items())[:MAX_GRIDS]:
        done = sorted((r for r in members if r.finished), key=lambda r: r.seed)
        if not done:
            continue
        run = done[0]
        steps = sorted(a.path for a in client.list_artifacts(run.run_id, "eval") if a.is_dir)
        pngs = [a.path for a in client.list_artifacts(run.run_id, steps[-1])] if steps else []
        samples = [p for p in pngs if Path(p).name.startswith("samples") and p.endswith(".png")]
        if not samples:
            continue
        name = "samples_" + re.sub(r"[^A-Za-z0-9_.=-]+", "_", label_of(dict(config))) + f"_seed{run.seed}.png"
        local = Path(client.download_artifacts(run.run_id, samples[0], str(out)))
        local.replace(out / name)
        grids.append((f"{label_of(dict(config))}, seed {run.seed}, {Path(samples[0]).stem.split('_')[-1]}", name))
    for leftover in out.glob("eval"):  # the artifact tree download_artifacts recreated
        shutil.rmtree(leftover, ignore_errors=True)
    if not grids:
        return []
    return ["## Sample grids", "", "The last evaluation of each configuration (its lowest seed): one row per "
            "class the judge assigned, blank where G drew fewer.", "",
            *[f"**{label}**\n\n![{label}]({name})\n" for label, name in grids]]


def efficiency(s: Study) -> list[str]:
    e = s.efficiency
    if not e:
        return []
    return ["## Search efficiency", "",
            f"search_efficiency = summed in-trial time / (wall time × concurrent trials) = "
            f"{e['in_trial_s']:.0f} s / ({e['wall_s']:.0f} s × {e['concurrent']}) = **{e['search_efficiency']:.2f}**; "
            f"fixed start-up {e['startup_s']:.0f} s, shutdown {e['shutdown_s']:.0f} s (from MLflow's run times; a "
            f"resumed study's wall time includes the interruption).", ""]


def where_to_look(s: Study) -> list[str]:
    if s.exp is None:
        return []
    look = tracking.where_to_look(s.stores, s.exp.experiment_id, markdown=True)
    return ["## Open the runs", "", f"{look} (experiment `{s.space.name}`: the link opens the study's shared view, "
            "its trials grouped by configuration with the study's metrics as columns; the parent run's description "
            "is this report's headline).", ""]


def sequential_decisions(s: Study) -> list[str]:
    from search.report.sequential import racing_lines, sequential_lines

    if getattr(s.space, "sequential", None) is None:
        return []
    return racing_lines(s.space, s.study) if s.space.selects else sequential_lines(s.space, s.runs)


SECTIONS: list[Callable[[Study], list[str]]] = [
    header, ablation_table, sequential_decisions, comparisons, evaluation_noise, best_configurations, figure_sections, importance_section,
    sample_grids, efficiency, where_to_look]


def write_report(space, stores: Stores, runs: list[TrialRun] | None = None) -> Path:
    """Write the report of ``space`` from ``stores`` beside them and log it to the parent MLflow run
    (``runs``: the study's trials, when the caller has loaded them already)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = stores.report_dir(space.name)
    out.mkdir(parents=True, exist_ok=True)
    client = tracking.client_for(stores.tracking_uri)
    exp, parent = study_of(client, space)
    runs = trial_runs(client, exp, parent) if runs is None else runs
    s = Study(space, stores, runs, stores.load_study(space.name), client, exp, parent, out, family(space, runs),
              search_efficiency(space, runs, parent))
    lines = [line for section in SECTIONS for line in section(s)]
    report = out / "report.md"
    tmp = report.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(report)
    if parent is not None:
        client.log_artifacts(parent.info.run_id, str(out), artifact_path="report")
        if s.efficiency:
            client.log_metric(parent.info.run_id, "search_efficiency", s.efficiency["search_efficiency"])
        # the parent row carries the answer: the headline as its description, a mean per configuration and metric
        tracking.set_parent_summary(client, parent.info.run_id, *headline(space, runs, s.family))
    return report


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
