"""The report's "Sequential decisions" section: for a grid with ``seeds: {sequential: ...}`` the looks
replayed from MLflow's runs by the rule the study ran (``search.sequential_plan.replay``), for a space that
races the configurations' races as Optuna holds them."""

from __future__ import annotations

import math

from search.report.runs import TrialRun, configurations, label_of
from search.sequential import DEFAULT_SPENDING


def _interval(entry: dict) -> str:
    if not math.isfinite(entry.get("low", math.nan)):
        return "—"
    return f"{entry['estimate']:+.3g} [{entry['low']:+.3g}, {entry['high']:+.3g}] (level {entry['level']:.2g})"


def sequential_lines(space, runs: list[TrialRun]) -> list[str]:
    from search.sequential_plan import FAMILY_RULE, replay

    seq = space.sequential
    plan = replay(space, runs)
    margins = seq.margin if seq.margin is not None else (space.effects or {})
    margin_text = (", ".join(f"{m} {100 * v:g}%" if k == "relative" else f"{m} {v:g}" for m, (k, v) in margins.items())
                   or "none (no comparison stops for futility)")
    lines = ["## Sequential decisions", "",
             f"Seeds in blocks: looks at {', '.join(map(str, seq.looks))} seeds (`seeds: {{sequential: "
             f"{{start: {seq.start}, step: {seq.step}, max: {seq.max}}}}}`). After each block every comparison of the "
             f"family below (the report's comparisons less the failure-rate ones: m = {plan.family_size}) still open "
             f"is tested by the group-sequential t rule (`search.sequential.decide`, {DEFAULT_SPENDING} alpha "
             f"spending) under {FAMILY_RULE.capitalize()}'s rule for group-sequential tests: alpha 0.05 / (m − the "
             f"comparisons resolved before), whatever the comparisons' correlation. The interval is the repeated "
             f"confidence interval at that look's nominal level: it excludes 0 exactly when the comparison is "
             f"resolved, and all looks' intervals hold together. Futility margins: {margin_text}. The next block "
             f"ran only the configurations of open comparisons. The fixed-n table of the next section reads the "
             f"same seeds as if their number had been fixed in advance: for stopping decisions this table counts.",
             ""]
    if not plan.looks:
        return lines + ["No look taken yet (the first block has not finished).", ""]
    lines += ["| comparison | metric | closed at look | n | Δ, repeated interval | verdict | why |",
              "|---|---|---|---|---|---|---|"]
    for name, entry in plan.closed.items():
        section, context, what, metric = name.split(": ", 3)
        verdict = f"**{entry['verdict']}**" if entry["verdict"] == "resolved" else entry["verdict"]
        lines.append(f"| {section}: {context}: {what} | {metric} | {entry['look']} of {len(seq.looks)} | {entry['n']} | "
                     f"{_interval(entry)} | {verdict} | {entry['why']} |")
    last = plan.looks[-1]["decisions"]
    for name in plan.open:
        section, context, what, metric = name.split(": ", 3)
        entry = last.get(name, {})
        lines.append(f"| {section}: {context}: {what} | {metric} | open after look {len(plan.looks)} | "
                     f"{entry.get('n', 0)} | {_interval(entry) if entry else '—'} | open | the study stopped before "
                     f"its end |")
    groups = configurations(runs)
    ran = {key: len({r.seed for r in members if not r.interrupted}) for key, members in groups.items()}
    used, fixed = sum(ran.values()), len(groups) * seq.max
    lines += ["", f"Replicates run: {used} of the {fixed} a fixed {seq.max} seeds would take ({used / fixed:.0%}); "
              f"resolved {sum(e['verdict'] == 'resolved' for e in plan.closed.values())}, futile "
              f"{sum(e['verdict'] == 'futile' for e in plan.closed.values())}, inconclusive "
              f"{sum(e['verdict'] == 'inconclusive' for e in plan.closed.values())}, open {len(plan.open)}.", "",
              "| configuration | seeds run | stopped after look |", "|---|---|---|"]
    for key, count in ran.items():
        stop = plan.stopped_at.get(key)
        lines.append(f"| {label_of(dict(key))} | {count} | {stop if stop else 'running'} |")
    return lines + [""]


def racing_lines(space, study) -> list[str]:
    import optuna

    seq = space.sequential
    lines = ["## Sequential decisions (racing)", "",
             f"Each configuration started on {seq.start} seeds and got {seq.step} more (up to {seq.max}) only while it "
             f"was not resolved worse than the incumbent — the best configuration that ran all {seq.max} seeds — on "
             f"their common seeds (`search.sequential.decide`, alpha 0.05 per race: a budget rule, not a finding). "
             f"Optuna was told each configuration's mean over the seeds it ran (failed replicates at the penalty); "
             f"a raced-out one's value is its mean so far, and its MLflow runs carry the tag `raced_out`.", "",
             "| trial | configuration | seeds run | raced out | last race (Δ to the incumbent, repeated interval) |",
             "|---|---|---|---|---|"]
    trials = [t for t in (study.trials if study is not None else []) if t.state == optuna.trial.TrialState.COMPLETE]
    for t in trials:
        race = t.user_attrs.get("race") or []
        last = race[-1] if race else {}
        text = (f"{last['verdict']} vs trial {last['incumbent']}" + (
            f" [{last['low']:+.3g}, {last['high']:+.3g}] (n={last['n']})" if "low" in last else "")
                if last and last.get("incumbent") is not None else "no incumbent yet")
        lines.append(f"| {t.number} | {label_of(t.params)} | {t.user_attrs.get('n_seeds', '—')} | "
                     f"{'yes' if t.user_attrs.get('raced_out') else 'no'} | {text} |")
    raced = sum(bool(t.user_attrs.get("raced_out")) for t in trials)
    used = sum(int(t.user_attrs.get("n_seeds", 0)) for t in trials)
    lines += ["", f"{raced} of {len(trials)} configurations raced out; replicates run {used} of the "
              f"{len(trials) * seq.max} a fixed {seq.max} seeds would take.", ""]
    return lines
