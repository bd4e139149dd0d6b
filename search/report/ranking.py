"""The report's sections that rank: the best configurations (or the Pareto front) within each data
condition, and Optuna's fANOVA parameter importances."""

from __future__ import annotations

from search.report.runs import label_of, penalty_of
from search.report.summary import Study

MIN_TRIALS_FOR_IMPORTANCE = 4
DEFAULT_BLOCKS = ("imbalance", "imbalance_profile")  # data conditions: never ranked like a hyperparameter


def blocks_of(space) -> list[str]:
    declared = getattr(space, "blocks", None)
    names = {p.name for p in space.params}
    return [b for b in (declared if declared is not None else DEFAULT_BLOCKS) if b in names]


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
