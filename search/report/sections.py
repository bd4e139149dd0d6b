"""``write_report``: the report as a list of section functions, each turning the study into Markdown lines.
What the study measured is in ``summary``, the rankings in ``ranking``; here the comparisons, figures,
sample grids, the search's efficiency and where to open the runs."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Callable

from search import tracking
from search.report import figures
from search.report.comparisons import baseline_method, comparison_table, declared_effect_lines, family, family_lines
from search.report.ranking import best_configurations, importance_section
from search.report.runs import TrialRun, configurations, label_of, search_efficiency, study_of, trial_runs
from search.report.summary import Study, ablation_table, evaluation_noise, header, headline
from search.stores import Stores

MAX_GRIDS = 12


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
