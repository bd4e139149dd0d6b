"""The study report:  python -m search.report space=NAME [root=runs] [tracking_uri=...]

Reads the Optuna study and the MLflow runs of a space and writes ``<root>/reports/<space>/report.md``
with PNG figures beside it: the ablation table (mean ± 95% CI over seed replicates, with n) grouped
by the factors the space varies, the best configurations, per-class FID, class histograms against
the training prior, learning curves, gSR spectral norms, Optuna importances and, for several
objectives, the Pareto front. The folder is also logged to the study's MLflow parent run.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search import tracking
from search.stores import Stores
from trainers.cli import run_command
from trainers.config import ConfigError, parse_overrides

TABLE_METRICS = ("fid", "fid_minority", "fid_majority", "class_kl_uniform", "classes_dropped")
MIN_TRIALS_FOR_IMPORTANCE = 4


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


def mean_ci(values: list[float], level: float = 0.95) -> tuple[float, float, int]:
    """(mean, half-width of the two-sided t confidence interval, n); half-width NaN for n < 2."""
    values = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    n = len(values)
    if n == 0:
        return math.nan, math.nan, 0
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan, 1
    from scipy import stats

    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n), n


def fmt(mean: float, half: float, n: int) -> str:
    if n == 0:
        return "—"
    if math.isnan(half):
        return f"{mean:.3g} (n={n})"
    return f"{mean:.3g} ± {half:.2g} (n={n})"


def group_keys(space) -> list[str]:
    """The factors an ablation table groups by: every choice/int parameter of the space."""
    return [p.name for p in space.params if p.kind in ("choice", "int")]


def load_runs(space, tracking_uri: str) -> list[TrialRun]:
    client = tracking.client_for(tracking_uri)
    exp = client.get_experiment_by_name(space.name)
    if exp is None:
        return []
    parent = tracking.find_parent_run(client, exp.experiment_id, space.name)
    if parent is None:
        return []
    runs = client.search_runs([exp.experiment_id], filter_string=(
        f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"), max_results=10000)
    out = []
    for run in runs:
        sampled = json.loads(run.data.tags.get(tracking.TAG_SAMPLED, "{}"))
        trial = TrialRun(run.info.run_id, run.info.status, dict(run.data.params), sampled, dict(run.data.metrics),
                         tags=dict(run.data.tags))
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
        finished = [r for r in members if r.status == "FINISHED"]
        row: dict[str, Any] = dict(group)
        row["trials"] = len(members)
        row["failed"] = len(members) - len(finished)
        for metric in TABLE_METRICS:
            row[metric] = mean_ci([r.metrics.get(metric, math.nan) for r in finished])
        rows.append(row)
    return rows


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
        if run.status == "FINISHED" and any(k.startswith("count_class/") for k in run.metrics):
            label = ", ".join(f"{k}={run.sampled.get(k, '—')}" for k in keys) or "all"
            groups.setdefault(label, []).append(run)
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
    """One line per run of metric ``key`` over steps, coloured by method."""
    series = [(run, run.history[key]) for run in runs if key in run.history]
    if not series:
        return False
    fig, ax = figure(figsize=(6.5, 3.8))
    colours: dict[str, Any] = {}
    cycle = colour_cycle()
    for run, points in series:
        label = run.params.get("method", "?")
        colour = colours.setdefault(label, cycle[len(colours) % len(cycle)])
        points = sorted(points)
        ax.plot([p[0] for p in points], [p[1] for p in points], color=colour, alpha=0.6, marker=".",
                label=label if label not in ax.get_legend_handles_labels()[1] else None)
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
        return optuna.importance.get_param_importances(study, target=(lambda t: t.values[0])
                                                       if space.multi_objective else None)
    except (ValueError, RuntimeError) as e:  # e.g. a single varying parameter, conditional spaces
        return f"not computed: {e}"


def write_report(space, stores: Stores) -> Path:
    """Write the report of ``space`` from ``stores`` beside them and log it to the parent MLflow run."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = stores.report_dir(space.name)
    out.mkdir(parents=True, exist_ok=True)
    runs = load_runs(space, stores.tracking_uri)
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
    lines.append("")

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
    client = tracking.client_for(stores.tracking_uri)
    exp = client.get_experiment_by_name(space.name)
    if exp is not None:
        lines += ["## Open the runs", "", f"`{tracking.where_to_look(stores, exp.experiment_id)}` "
                  f"(experiment `{space.name}`: expand the study's parent run to see its trials).", ""]
    report = out / "report.md"
    tmp = report.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(report)

    parent = tracking.find_parent_run(client, exp.experiment_id, space.name) if exp else None
    if parent is not None:
        client.log_artifacts(parent.info.run_id, str(out), artifact_path="report")
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
