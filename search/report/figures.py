"""The report's figures, each a function that draws one PNG and says whether it had anything to draw.

Per-class quality is drawn per *configuration* (every sampled setting but the seed), KID first: KID is
unbiased at a small N, per-class FID is not (its bias depends on each set's covariance, so at N = 50 it
can rank generators backwards) and is drawn only beside its real-vs-real floor ``fid_floor_class/<k>``
when the evaluation logs one. A class a run missed enters at its penalty (``penalty_class/<figure>/<k>``
when logged, else the worst class of the same evaluation, a lower bound of the aggregate's penalty) and is
marked. Method-specific figures are named by the method registry (``GANMethod.report_figures``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from search.report.runs import TrialRun, group_keys, label_of
from search.stats import mean_ci

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


def class_value(run: TrialRun, figure_name: str, k: int) -> tuple[float, bool]:
    """(run's ``<figure>_class/<k>``, whether the class was missing and entered at its penalty)."""
    value = run.metrics.get(f"{figure_name}_class/{k}", math.nan)
    if math.isfinite(value):
        return value, False
    from trainers.metrics.perclass import LOWER_IS_BETTER, MISSING_VALUE

    logged = run.metrics.get(f"penalty_class/{figure_name}/{k}", math.nan)
    if math.isfinite(logged):
        return logged, True
    if MISSING_VALUE.get(figure_name) is not None:  # recall, precision: a missing class covers nothing
        return MISSING_VALUE[figure_name], True
    scored = [v for key, v in run.metrics.items() if key.startswith(f"{figure_name}_class/") and math.isfinite(v)]
    lower_is_better = LOWER_IS_BETTER.get(figure_name, True)
    return ((max(scored) if lower_is_better else min(scored)) if scored else math.nan), True


def per_class_means(space, runs: list[TrialRun], figure_name: str) -> dict[str, dict[int, tuple[float, int]]]:
    """{configuration: {class: (mean over its finished runs, how many of them missed the class)}}."""
    keys = [k for k in group_keys(space) if k != "seed"]
    groups: dict[str, list[TrialRun]] = {}
    for run in runs:
        if run.finished and any(k.startswith(f"{figure_name}_class/") for k in run.metrics):
            groups.setdefault(label_of({k: run.sampled[k] for k in keys if k in run.sampled}), []).append(run)
    out = {}
    for label, members in sorted(groups.items()):
        classes = sorted({int(k.rsplit("/", 1)[1]) for r in members for k in r.metrics
                          if k.startswith(f"{figure_name}_class/")})
        out[label] = {}
        for k in classes:
            values = [class_value(r, figure_name, k) for r in members]
            finite = [v for v, _ in values if math.isfinite(v)]
            out[label][k] = (sum(finite) / len(finite) if finite else math.nan, sum(m for _, m in values))
    return out


def plot_per_class(space, runs: list[TrialRun], path: Path) -> bool:
    """Per-class KID (and recall) by configuration; per-class FID only beside its real-vs-real floor."""
    panels = [("kid", "KID (unbiased)"), ("recall", "recall")]
    if any(k.startswith("fid_floor_class/") for r in runs for k in r.metrics):
        panels.append(("fid", "FID, with its real-vs-real floor (black)"))
    panels = [(name, title, per_class_means(space, runs, name)) for name, title in panels]
    panels = [p for p in panels if p[2]]
    if not panels:
        return False
    classes = sorted({k for _, _, means in panels for d in means.values() for k in d})
    fig, axes = figure(len(panels), 1, figsize=(max(7, len(classes) * 0.9) + 3, 3.2 * len(panels)), squeeze=False)
    for ax, (name, title, means) in zip(axes.flat, panels):
        width = 0.8 / len(means)
        for i, (label, per_class) in enumerate(means.items()):
            xs = [c + i * width for c in range(len(classes))]
            heights = [per_class.get(k, (math.nan, 0))[0] for k in classes]
            bars = ax.bar(xs, heights, width, label=label)
            for bar, k in zip(bars, classes):
                if per_class.get(k, (0, 0))[1]:
                    bar.set_hatch("xx")
        if name == "fid":
            floors = [mean_ci([r.metrics.get(f"fid_floor_class/{k}", math.nan) for r in runs if r.finished])[0]
                      for k in classes]
            ax.hlines(floors, [c - width / 2 for c in range(len(classes))],
                      [c + 0.8 - width / 2 for c in range(len(classes))], colors="k", label="real-vs-real floor")
        ax.set_xticks([c + 0.4 - width / 2 for c in range(len(classes))], [str(k) for k in classes])
        ax.set_ylabel(f"{name} (mean over seeds)")
        ax.set_title(f"Per-class {title} by configuration; hatched: a run missed the class (entered at its "
                     "penalty)", fontsize=8)
    axes.flat[-1].set_xlabel("class (judge label)")
    axes.flat[0].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")  # the legend sits outside the axes
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


# method-specific figures, named by the method registry (``GANMethod.report_figures``):
# name -> (title, draw(runs, path))
METHOD_FIGURES = {
    "gsr_sigma_max": ("gSR: largest singular value of each class's gain matrix", plot_sigma_max),
}
