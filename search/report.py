"""The study report:  python -m search.report space=NAME [root=runs] [tracking_uri=...]

Reads the Optuna study and the MLflow runs of a space and writes ``<root>/reports/<space>/report.md``
with PNG figures beside it: the ablation table (mean ± 95% CI over seed replicates, with n, the
per-class N and the missing classes) grouped by the factors the space varies; the comparisons a
reviewer asks for (each method against the baseline paired by seed within an imbalance level, each
imbalance against the lowest unpaired, with what the seeds could and could not resolve, see
``search.stats``); the search's efficiency; the best configurations; a sample grid per configuration;
per-class FID, class histograms against the training prior, learning curves, gSR spectral norms,
Optuna importances and, for several objectives, the Pareto front. The folder is also logged to the
study's MLflow parent run.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search import tracking
from search.stats import Difference, describe, mean_ci, paired_difference, welch_difference
from search.stores import Stores
from trainers.cli import run_command
from trainers.config import ConfigError, parse_overrides

TABLE_METRICS = ("fid", "kid_minority", "recall_minority", "fid_minority", "minority_missing", "classes_dropped",
                 "judge/confident_rate")
# compared between configurations besides the study's own metric(s): minority quality at equal N
COMPARED = ("kid_minority", "recall_minority")
BASELINE = "dcgan"
MIN_TRIALS_FOR_IMPORTANCE = 4
MAX_GRIDS = 12


@dataclass
class TrialRun:
    """One finished or failed trial as MLflow has it."""

    run_id: str
    status: str
    params: dict[str, str]
    sampled: dict[str, Any]
    metrics: dict[str, float]  # last value of each metric
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    start_ms: int = 0
    end_ms: int | None = None

    @property
    def seed(self) -> int:
        return int(self.tags.get("seed", "0"))

    @property
    def finished(self) -> bool:
        return self.status == "FINISHED"


def fmt(mean: float, half: float, n: int) -> str:
    if n == 0:
        return "—"
    if math.isnan(half):
        return f"{mean:.3g} (n={n})"
    return f"{mean:.3g} ± {half:.2g} (n={n})"


def group_keys(space) -> list[str]:
    """The factors an ablation table groups by: every choice/int parameter of the space."""
    return [p.name for p in space.params if p.kind in ("choice", "int")]


def study_of(client, space) -> tuple[Any, Any]:
    """(the MLflow experiment of ``space``, its study's parent run); None for what does not exist."""
    exp = client.get_experiment_by_name(space.name)
    return exp, tracking.find_parent_run(client, exp.experiment_id, space.name) if exp else None


def load_runs(space, tracking_uri: str) -> list[TrialRun]:
    client = tracking.client_for(tracking_uri)
    return trial_runs(client, *study_of(client, space))


def trial_runs(client, exp, parent) -> list[TrialRun]:
    """The study's trials (the parent run's children), with the fid and sigma_max histories."""
    if exp is None or parent is None:
        return []
    runs = client.search_runs([exp.experiment_id], filter_string=(
        f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"), max_results=10000)
    out = []
    for run in runs:
        sampled = json.loads(run.data.tags.get(tracking.TAG_SAMPLED, "{}"))
        trial = TrialRun(run.info.run_id, run.info.status, dict(run.data.params), sampled, dict(run.data.metrics),
                         tags=dict(run.data.tags), start_ms=run.info.start_time, end_ms=run.info.end_time)
        for key in run.data.metrics:
            if key == "fid" or key.startswith("gsr/sigma_max/"):
                trial.history[key] = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
        out.append(trial)
    return out


def ablation_rows(space, runs: list[TrialRun]) -> list[dict[str, Any]]:
    keys = group_keys(space)
    groups: dict[tuple, list[TrialRun]] = {}
    for run in runs:
        group = tuple((k, run.sampled.get(k, "—")) for k in keys)
        groups.setdefault(group, []).append(run)
    rows = []
    for group, members in sorted(groups.items(), key=lambda g: [str(v) for _, v in g[0]]):
        finished = [r for r in members if r.finished]
        row: dict[str, Any] = dict(group)
        row["trials"] = len(members)
        row["failed"] = len(members) - len(finished)
        for metric in TABLE_METRICS:
            row[metric] = mean_ci([r.metrics.get(metric, math.nan) for r in finished])
        rows.append(row)
    return rows


def label_of(config: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items()) or "all"


def configurations(runs: list[TrialRun]) -> dict[tuple, list[TrialRun]]:
    """The trials of each sampled configuration (its seed replicates), in a stable order."""
    groups: dict[tuple, list[TrialRun]] = {}
    for run in runs:
        groups.setdefault(tuple(sorted(run.sampled.items(), key=lambda kv: kv[0])), []).append(run)
    return dict(sorted(groups.items(), key=lambda g: [str(v) for _, v in g[0]]))


def by_seed(members: list[TrialRun], metric: str) -> dict[int, float]:
    """A configuration's value of ``metric`` per seed: finished replicates only (a failed one is absent)."""
    return {r.seed: r.metrics.get(metric, math.nan) for r in members if r.finished}


def compared_metrics(space) -> list[str]:
    return list(dict.fromkeys([*space.metric, *COMPARED]))


def method_comparisons(space, runs: list[TrialRun]) -> list[tuple[str, str, str, Difference]]:
    """(context, configuration, metric, difference to the baseline) for every configuration of another
    method than the baseline's: paired by seed against the baseline configuration of the same context
    (imbalance, profile, the other shared settings) — one seed's replicates share their data subset,
    its order and G's initialisation."""
    from trainers.config import shared_keys

    if BASELINE not in space.methods() or len(space.methods()) < 2:
        return []
    shared = set(shared_keys())
    groups = configurations(runs)

    def context(config: tuple) -> tuple:
        return tuple((k, v) for k, v in config if k != "method" and k in shared)

    baselines = {context(c): members for c, members in groups.items() if dict(c).get("method") == BASELINE}
    out = []
    for config, members in groups.items():
        if dict(config).get("method", BASELINE) == BASELINE or context(config) not in baselines:
            continue
        base = baselines[context(config)]
        for metric in compared_metrics(space):
            out.append((label_of(dict(context(config))), label_of(dict(config)), metric,
                        paired_difference(by_seed(base, metric), by_seed(members, metric))))
    return out


def imbalance_comparisons(space, runs: list[TrialRun]) -> list[tuple[str, str, str, Difference]]:
    """(configuration without imbalance, 'rho a -> rho b', metric, difference) of the highest imbalance
    against the lowest, per configuration and over all of them pooled: unpaired (Welch), since another
    imbalance is another training split."""
    if not any(p.name == "imbalance" and p.varies for p in space.params):
        return []
    rest: dict[tuple, dict[float, list[TrialRun]]] = {}
    for config, members in configurations(runs).items():
        key = tuple((k, v) for k, v in config if k not in ("imbalance", "imbalance_profile"))
        profile = dict(config).get("imbalance_profile", "exp")
        if profile != "exp":
            continue  # the long-tail profile is the one compared across imbalances
        rest.setdefault(key, {}).setdefault(float(dict(config)["imbalance"]), []).extend(members)
    levels = sorted({rho for by_rho in rest.values() for rho in by_rho})
    if len(levels) < 2:
        return []
    low, high = levels[0], levels[-1]
    rows = [(label_of(dict(key)), by_rho[low], by_rho[high]) for key, by_rho in rest.items()
            if low in by_rho and high in by_rho]
    if len(rows) > 1:
        rows.append(("all configurations pooled", [r for _, a, _ in rows for r in a], [r for _, _, b in rows for r in b]))
    out = []
    for label, a, b in rows:
        for metric in compared_metrics(space):
            values_a, values_b = ([r.metrics.get(metric, math.nan) for r in group if r.finished] for group in (a, b))
            out.append((label, f"ρ={low:g} → ρ={high:g}", metric, welch_difference(values_a, values_b)))
    return out


def comparison_lines(title: str, note: str, rows: list[tuple[str, str, str, Difference]]) -> list[str]:
    if not rows:
        return []
    lines = [f"## {title}", "", note, "", "| context | compared | metric | difference (95% interval, n) |",
             "|---|---|---|---|"]
    lines += [f"| {context} | {what} | {metric} | {describe(diff)} |" for context, what, metric, diff in rows]
    resolved = [r for r in rows if r[3].resolved]
    lines += ["", f"{len(resolved)} of {len(rows)} comparisons resolved (interval excludes 0).", ""]
    return lines


def search_efficiency(space, runs: list[TrialRun], parent) -> dict[str, float] | None:
    """``efficiency`` over the study's own span: from MLflow's run times (a resumed study's wall time
    includes the interruption)."""
    if parent is None:
        return None
    # written at the end of a study, before its parent run is closed: the study's end is now
    return efficiency_between(runs, parent.info.start_time, parent.info.end_time or int(time.time() * 1000),
                      space.max_concurrent)


def efficiency_between(runs: list[TrialRun], start_ms: int, end_ms: int, max_concurrent: int) -> dict[str, float] | None:
    """Summed in-trial time / (the wall time from ``start_ms`` to ``end_ms`` x concurrent trials), with the
    fixed start-up (the start to the first trial) and shutdown (the last trial to the end) seconds."""
    ended = [r for r in runs if r.end_ms]
    if not ended:
        return None
    wall = (end_ms - start_ms) / 1000
    in_trial = sum((r.end_ms - r.start_ms) / 1000 for r in ended)
    concurrent = max(1, min(max_concurrent, len(runs)))
    return {"search_efficiency": in_trial / (wall * concurrent) if wall > 0 else math.nan, "wall_s": wall,
            "in_trial_s": in_trial, "concurrent": concurrent,
            "startup_s": (min(r.start_ms for r in runs) - start_ms) / 1000,
            "shutdown_s": (end_ms - max(r.end_ms for r in ended)) / 1000}


def sample_grids(client, runs: list[TrialRun], out: Path) -> list[tuple[str, str]]:
    """The last sample grid of each configuration's lowest-seed finished run, copied beside the report:
    [(configuration, file name)]."""
    import re

    grids = []
    for config, members in list(configurations(runs).items())[:MAX_GRIDS]:
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
        import shutil
        shutil.rmtree(leftover, ignore_errors=True)
    return grids


def figure(rows: int = 1, cols: int = 1, **subplots):
    """A figure on its own Agg canvas and its axes (``Figure.subplots`` arguments): no pyplot, so no
    global backend switch and nothing to close."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=subplots.pop("figsize", None))
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, cols, **subplots)


def colour_cycle() -> list[str]:
    from matplotlib import rcParams
    return rcParams["axes.prop_cycle"].by_key()["color"]


def plot_per_class_fid(runs: list[TrialRun], path: Path) -> bool:
    by_method: dict[str, dict[int, list[float]]] = {}
    for run in runs:
        if run.status != "FINISHED":
            continue
        method = run.params.get("method", "?")
        for key, value in run.metrics.items():
            if key.startswith("fid_class/") and math.isfinite(value):
                by_method.setdefault(method, {}).setdefault(int(key.split("/")[1]), []).append(value)
    if not by_method:
        return False
    classes = sorted({k for d in by_method.values() for k in d})
    fig, ax = figure(figsize=(max(6, len(classes) * 0.7), 3.5))
    width = 0.8 / len(by_method)
    for i, (method, per_class) in enumerate(sorted(by_method.items())):
        means = [sum(per_class.get(k, [math.nan])) / max(1, len(per_class.get(k, []))) for k in classes]
        ax.bar([c + i * width for c in range(len(classes))], means, width, label=method)
    ax.set_xticks([c + 0.4 - width / 2 for c in range(len(classes))], [str(k) for k in classes])
    ax.set_xlabel("class (judge label)")
    ax.set_ylabel("FID (mean over trials)")
    ax.set_title("Per-class FID by method")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def plot_class_histograms(space, runs: list[TrialRun], path: Path) -> bool:
    keys = [k for k in group_keys(space) if k != "seed"]
    groups: dict[str, list[TrialRun]] = {}
    for run in runs:
        if run.finished and any(k.startswith("count_class/") for k in run.metrics):
            groups.setdefault(label_of({k: run.sampled.get(k, "—") for k in keys}), []).append(run)
    if not groups:
        return False
    n = len(groups)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = figure(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
    for ax, (label, members) in zip(axes.flat, sorted(groups.items())):
        classes = sorted(int(k.split("/")[1]) for k in members[0].metrics if k.startswith("count_class/"))
        gen = [sum(r.metrics.get(f"count_class/{c}", 0) for r in members) for c in classes]
        total = sum(gen) or 1
        ax.bar(classes, [g / total for g in gen], color="tab:blue", alpha=0.7, label="generated")
        prior = [sum(r.metrics.get(f"prior/{c}", math.nan) for r in members) / len(members) for c in classes]
        if all(math.isfinite(p) for p in prior):
            ax.plot(classes, prior, "k.--", label="training prior")
        ax.set_title(label, fontsize=8)
        ax.set_xticks(classes)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("Class histogram of generated samples vs training prior (last evaluation)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def plot_curves(runs: list[TrialRun], key: str, path: Path, title: str, ylabel: str) -> bool:
    """One line per run of metric ``key`` over steps, coloured by method, one line style per imbalance."""
    series = [(run, run.history[key]) for run in runs if key in run.history]
    if not series:
        return False
    fig, ax = figure(figsize=(6.5, 3.8))
    colours: dict[str, Any] = {}
    cycle = colour_cycle()
    imbalances = sorted({float(run.params.get("imbalance", "nan")) for run, _ in series})
    styles = dict(zip(imbalances, ["-", "--", ":", "-."] * len(imbalances)))
    for run, points in series:
        method, rho = run.params.get("method", "?"), float(run.params.get("imbalance", "nan"))
        colour = colours.setdefault(method, cycle[len(colours) % len(cycle)])
        label = method + (f" ρ={rho:g}" if len(imbalances) > 1 else "")
        points = sorted(points)
        ax.plot([p[0] for p in points], [p[1] for p in points], color=colour, alpha=0.6, marker=".",
                linestyle=styles[rho], label=label if label not in ax.get_legend_handles_labels()[1] else None)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def plot_sigma_max(runs: list[TrialRun], path: Path) -> bool:
    """The gSR paper's spectral-explosion plot: ``gsr/sigma_max/<k>`` over steps, one panel per
    ``gsr_lambda`` (0 = gSR off), one line per class (mean over the panel's runs), coloured from the
    head class (most training images, dark) to the tail (light) by the training prior."""
    panels: dict[float, list[TrialRun]] = {}
    for run in runs:
        if any(k.startswith("gsr/sigma_max/") for k in run.history):
            panels.setdefault(float(run.params.get("gsr_lambda", "nan")), []).append(run)
    if not panels:
        return False
    from matplotlib import colormaps

    fig, axes = figure(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False, sharey=True)
    for ax, (lam, members) in zip(axes.flat, sorted(panels.items())):
        classes = sorted({int(k.rsplit("/", 1)[1]) for r in members for k in r.history if k.startswith("gsr/")})
        prior = {c: mean_ci([r.metrics.get(f"prior/{c}", math.nan) for r in members])[0] for c in classes}
        by_rank = sorted(classes, key=lambda c: -prior[c] if math.isfinite(prior[c]) else c)
        colours = colormaps["viridis"]
        for rank, c in enumerate(by_rank):
            steps: dict[int, list[float]] = {}
            for r in members:
                for step, value in r.history.get(f"gsr/sigma_max/{c}", []):
                    steps.setdefault(step, []).append(value)
            xs = sorted(steps)
            label = f"class {c}" + (" (head)" if rank == 0 else " (tail)" if rank == len(by_rank) - 1 else "")
            ax.plot(xs, [sum(steps[x]) / len(steps[x]) for x in xs], marker=".",
                    color=colours(rank / max(1, len(by_rank) - 1)), label=label)
        ax.set_title(f"gsr_lambda = {lam:g}" + (" (gSR off)" if lam == 0 else "") + f", {len(members)} runs",
                     fontsize=9)
        ax.set_xlabel("step")
    axes.flat[0].set_ylabel("sigma_max of the class's gain matrix\n(max over layers)")
    axes.flat[-1].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def plot_pareto(study, space, path: Path) -> bool:
    import optuna

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < 2:
        return False
    best = {t.number for t in study.best_trials}
    fig, ax = figure(figsize=(5, 4))
    for group, colour, label in ((False, "tab:gray", "dominated"), (True, "tab:red", "Pareto front")):
        pts = [t.values for t in complete if (t.number in best) == group]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], c=colour, label=label)
    ax.set_xlabel(f"{space.metric[0]} ({space.mode[0]})")
    ax.set_ylabel(f"{space.metric[1]} ({space.mode[1]})")
    ax.legend()
    ax.set_title("Pareto front")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def importances(study, space) -> dict[str, float] | str:
    import optuna

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < MIN_TRIALS_FOR_IMPORTANCE:
        return f"not computed: {len(complete)} complete configurations, {MIN_TRIALS_FOR_IMPORTANCE} needed"
    try:
        # a seeded forest: the same study gives the same figures (and order of ties) in every rebuild
        return optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0),
            target=(lambda t: t.values[0]) if space.multi_objective else None)
    except (ValueError, RuntimeError) as e:  # e.g. a single varying parameter, conditional spaces
        return f"not computed: {e}"


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
    study = stores.load_study(space.name)
    states: dict[str, int] = {}
    for t in study.trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    failed_runs = sum(r.status != "FINISHED" for r in runs)

    lines = [f"# Study `{space.name}`", "", space.description, "",
             f"- metric: {space.metric_arg} ({space.mode_arg}); sampler {space.sampler}; "
             f"scheduler {space.scheduler['type']}; seeds {list(space.seeds)}",
             f"- trials (MLflow child runs): {len(runs)}, of which failed or killed: {failed_runs}",
             "- Optuna configurations: " + ", ".join(f"{k} {v}" for k, v in sorted(states.items())), ""]

    keys = group_keys(space)
    rows = ablation_rows(space, runs)
    lines += ["## Ablation table", "",
              "Mean ± half-width of the 95% t confidence interval over finished seed replicates (n). "
              "Failed trials are counted, never averaged in.", ""]
    header = keys + ["trials", "failed"] + list(TABLE_METRICS)
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [str(row[k]) for k in keys] + [str(row["trials"]), str(row["failed"])]
        cells += [fmt(*row[m]) for m in TABLE_METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    per_class_n = sorted({int(r.metrics["per_class_n"]) for r in runs if r.finished and "per_class_n" in r.metrics})
    fid_n = sorted({int(r.metrics["fid_n"]) for r in runs if r.finished and "fid_n" in r.metrics})
    lines += ["", f"Per-class and minority figures are at equal N: every class scored on N = "
              f"{', '.join(map(str, per_class_n)) or '—'} samples (`per_class_n`); a class short of N is missing "
              f"(`minority_missing`) and enters its group at a penalty, never flattering it. `fid` is on "
              f"{', '.join(map(str, fid_n)) or '—'} samples (`fid_n`). `judge/confident_rate`: the share of samples "
              f"the judge classifies with max softmax ≥ 0.9 (read it with `classes_dropped`: a collapsed G that "
              f"repeats one clean digit scores high).", ""]

    lines += comparison_lines(
        "Methods against the baseline, paired by seed",
        f"Difference to `{BASELINE}` at the same imbalance (configuration − baseline), over the seeds both "
        "finished: a seed's replicates share the training subset, its order and G's initialisation. "
        "For an unresolved comparison: the smallest |Δ| these seeds detect with 80% power, and the seeds the "
        "observed Δ would need.", method_comparisons(space, runs))
    lines += comparison_lines(
        "The effect of imbalance, unpaired",
        "Highest imbalance minus lowest (long-tail `exp` profile), per configuration and pooled: another imbalance "
        "is another training split, so the groups are compared with Welch's interval.",
        imbalance_comparisons(space, runs))

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    lines += ["## Best configurations", ""]
    if not complete:
        lines += ["No configuration completed.", ""]
    elif space.multi_objective:
        lines += [f"Pareto-optimal configurations ({', '.join(space.metric)}):", ""]
        for t in sorted(study.best_trials, key=lambda t: t.values):
            lines.append(f"- {t.params}: " + ", ".join(f"{m} {v:.4g}" for m, v in zip(space.metric, t.values)))
        lines.append("")
    else:
        reverse = space.mode[0] == "max"
        for t in sorted(complete, key=lambda t: t.value, reverse=reverse)[:5]:
            lines.append(f"- {space.metric[0]} {t.value:.4g} (mean over {len(space.seeds)} seeds, "
                         f"{t.user_attrs.get('failed_replicates', 0)} failed): {t.params}")
        lines.append("")

    figures = [
        ("per_class_fid.png", "Per-class FID", lambda p: plot_per_class_fid(runs, p)),
        ("class_histograms.png", "Generated class histogram vs training prior",
         lambda p: plot_class_histograms(space, runs, p)),
        ("learning_curves.png", "Learning curves",
         lambda p: plot_curves(runs, "fid", p, "FID over training", "FID")),
        ("gsr_sigma_max.png", "gSR: largest singular value of each class's gain matrix",
         lambda p: plot_sigma_max(runs, p)),
    ]
    if space.multi_objective:
        figures.append(("pareto_front.png", "Pareto front", lambda p: plot_pareto(study, space, p)))
    for name, title, draw in figures:
        if draw(out / name):
            lines += [f"## {title}", "", f"![{title}]({name})", ""]

    imp = importances(study, space)
    lines += ["## Parameter importances (Optuna, fANOVA)", ""]
    if not imp:
        lines += ["not computed: no parameter varies across the complete configurations", ""]
    elif isinstance(imp, str):
        lines += [imp, ""]
    else:
        lines += [f"- {k}: {v:.3f}" for k, v in imp.items()] + [""]
    grids = sample_grids(client, runs, out)
    if grids:
        lines += ["## Sample grids", "", "The last evaluation of each configuration (its lowest seed): one row per "
                  "class the judge assigned, blank where G drew fewer.", ""]
        lines += [f"**{label}**\n\n![{label}]({name})\n" for label, name in grids]
    efficiency = search_efficiency(space, runs, parent)
    if efficiency:
        lines += ["## Search efficiency", "",
                  f"search_efficiency = summed in-trial time / (wall time × concurrent trials) = "
                  f"{efficiency['in_trial_s']:.0f} s / ({efficiency['wall_s']:.0f} s × {efficiency['concurrent']}) = "
                  f"**{efficiency['search_efficiency']:.2f}**; fixed start-up {efficiency['startup_s']:.0f} s, "
                  f"shutdown {efficiency['shutdown_s']:.0f} s (from MLflow's run times; a resumed study's wall time "
                  f"includes the interruption).", ""]
    if exp is not None:
        look = tracking.where_to_look(stores, exp.experiment_id, markdown=True)
        lines += ["## Open the runs", "", f"{look} (experiment `{space.name}`: expand the study's parent run to "
                  "see its trials).", ""]
    report = out / "report.md"
    tmp = report.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(report)

    if parent is not None:
        client.log_artifacts(parent.info.run_id, str(out), artifact_path="report")
        if efficiency:
            client.log_metric(parent.info.run_id, "search_efficiency", efficiency["search_efficiency"])
    return report


def main(argv: list[str] | None = None) -> int:
    return run_command(__doc__, _report, argv)


def _report(argv: list[str]) -> int:
    from search.spaces import load_space

    args = parse_overrides(argv)
    unknown = set(args) - {"space", "root", "tracking_uri", "preset"}
    if unknown:
        raise ConfigError(f"unknown key(s) {sorted(unknown)}; valid: space, root, tracking_uri, preset")
    if "space" not in args:
        raise ConfigError("say which study: space=NAME")
    space = load_space(str(args["space"]), preset=args.get("preset"))
    stores = Stores.at(args.get("root", "runs"), args.get("tracking_uri"))
    if not stores.has_study(space.name):
        raise ConfigError(f"no study '{space.name}' under root={stores.root}; run it first with "
                          f"python -m search.run space={space.name} root={stores.root}")
    print(f"report: {write_report(space, stores)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
