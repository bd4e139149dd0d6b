"""A report's comparisons as one family: which are made, how they pair, and the verdict after adjustment.

* **Pairing.** Two configurations are compared by seed (a seed's replicates share the training subset,
  its order and G's initialisation; across imbalance levels one seed's subsets nest, see
  ``search.stats``). Failed replicates enter at the space's ``failure_value`` (``runs.by_seed``).
* **Pooling.** The pooled effect of imbalance is the mean over configurations of their paired effects:
  per seed the paired differences are averaged across configurations, then a one-sample t on those
  per-seed means — the seed stays the unit, so correlated runs are not counted as independent.
* **Family.** Every comparison of a report is one hypothesis of one family. A space's ``primary:``
  comparisons are tested first, by Holm's step-down at the full α; only when every primary one is
  resolved are the rest tested, again by Holm at α (serial gatekeeping: the familywise error stays
  ≤ α). Without ``primary:`` the whole family is one Holm step-down. "Resolved" means resolved after
  this adjustment; an untestable comparison (n < 3 or sd 0) counts in the family at p = 1. Each
  comparison also gets a Bonferroni simultaneous interval (level 1 − α/m within its stage): conservative,
  so Holm can resolve one whose simultaneous interval still touches 0 (the table shows both).
"""

from __future__ import annotations

import gc
import math
from dataclasses import dataclass, field
from typing import Any

from search.report.runs import TrialRun, by_seed, configurations, failures_by_seed, label_of, penalty_of
from search.stats import Difference, describe, fmt_p, one_sample, paired_difference

ALPHA = 0.05
# compared between configurations besides the study's own metric(s): minority quality at equal N
COMPARED = ("kid_minority", "recall_minority")
FAILURE = "failure rate"  # the metric name of a failure-indicator comparison


def baseline_method() -> str:
    from trainers.methods import baseline_method as registry_baseline
    return registry_baseline()


@dataclass
class Comparison:
    """``b - a`` of one metric in one context, and (once the family is adjusted) its verdict."""

    section: str  # "primary", "methods", "imbalance", "failures"
    context: str
    what: str
    metric: str
    diff: Difference
    primary: bool = False
    key: tuple = ()  # (configuration a, configuration b, metric): finds a secondary that repeats a primary
    reference: float = math.nan  # the mean of arm a over the paired seeds: what a relative effect is relative to
    configs: tuple = ()  # the configurations it compares (a sequential study runs them while it is open)
    pairs: dict = field(default_factory=dict)  # seed -> the paired difference b - a (what the sequential rule tests)
    p_adjusted: float = math.nan
    sim_low: float = math.nan
    sim_high: float = math.nan
    verdict: str = ""

    @property
    def resolved(self) -> bool:
        return self.verdict == "resolved"


@dataclass
class Family:
    comparisons: list[Comparison]
    alpha: float = ALPHA
    gate_open: bool = True  # every primary comparison resolved (or none declared)

    @property
    def size(self) -> int:
        return len(self.comparisons)

    @property
    def primaries(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.primary]

    @property
    def expected_by_chance(self) -> float:
        """Unadjusted resolutions a family of this size gives when every null holds: m·α."""
        return self.size * self.alpha

    @property
    def resolved(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.resolved]

    @property
    def resolved_unadjusted(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.diff.resolved]


def compared_metrics(space) -> list[str]:
    return list(dict.fromkeys([*space.metric, *COMPARED]))


def _holm(group: list[Comparison], alpha: float, tested: bool) -> None:
    from statsmodels.stats.multitest import multipletests

    if not group:
        return
    pvalues = [c.diff.p if c.diff.testable and math.isfinite(c.diff.p) else 1.0 for c in group]
    # statsmodels' Holm calls gc.collect() on every call: 0.3-1 s each in a process that holds torch and
    # MLflow, twice per family. Frozen, the heap is not scanned; unfrozen after, nothing is kept alive
    # (both are O(1) list splices; gc.get_freeze_count() would walk the heap).
    gc.freeze()
    try:
        reject, adjusted, _, _ = multipletests(pvalues, alpha=alpha, method="holm")
    finally:
        gc.unfreeze()
    level = 1 - alpha / len(group)
    for c, rejected, p in zip(group, reject, adjusted):
        c.p_adjusted = float(p)
        c.sim_low, c.sim_high = c.diff.interval(level)
        if not math.isfinite(c.diff.estimate):
            c.verdict = "no pair"
        elif not c.diff.testable:
            c.verdict = f"untestable ({'n < 3' if c.diff.n < 3 else 'sd 0'})"
        elif not tested:
            c.verdict = "not tested (a primary comparison is unresolved)"
        else:
            c.verdict = "resolved" if rejected else "not resolved"


def adjust(comparisons: list[Comparison], alpha: float = ALPHA) -> Family:
    """The family's verdicts: Holm over the primary comparisons at α, then (when all of them resolved)
    Holm over the rest at α; without primary comparisons one Holm step-down over all."""
    primary = [c for c in comparisons if c.primary]
    secondary = [c for c in comparisons if not c.primary]
    _holm(primary, alpha, True)
    gate_open = all(c.resolved for c in primary)
    _holm(secondary, alpha, gate_open)
    return Family(primary + secondary, alpha, gate_open)


def _paired(a: dict[int, float], b: dict[int, float], detail: bool) -> Difference:
    return paired_difference(a, b, detail=detail)


def _pairs(a: dict[int, float], b: dict[int, float]) -> dict[int, float]:
    """seed -> b - a over the seeds both have a finite value for, in seed order (what ``_paired`` tests)."""
    return {s: b[s] - a[s] for s in sorted(a) if s in b and math.isfinite(a[s]) and math.isfinite(b[s])}


def _mean_a(a: dict[int, float], b: dict[int, float]) -> float:
    seeds = [s for s in a if s in b and math.isfinite(a[s]) and math.isfinite(b[s])]
    return sum(a[s] for s in seeds) / len(seeds) if seeds else math.nan


def method_comparisons(space, runs: list[TrialRun], detail: bool = True) -> list[Comparison]:
    """Every configuration of another method than the baseline's against the baseline configuration of the
    same context (imbalance, profile, the other shared settings), paired by seed, per compared metric."""
    from trainers.config import shared_keys

    baseline = baseline_method()
    if baseline not in space.methods() or len(space.methods()) < 2:
        return []
    shared = set(shared_keys())
    groups = configurations(runs)

    def context(config: tuple) -> tuple:
        return tuple((k, v) for k, v in config if k != "method" and k in shared)

    baselines = {context(c): (c, members) for c, members in groups.items() if dict(c).get("method") == baseline}
    out = []
    for config, members in groups.items():
        if dict(config).get("method", baseline) == baseline or context(config) not in baselines:
            continue
        base_config, base = baselines[context(config)]
        for metric in compared_metrics(space):
            penalty = penalty_of(space, metric)
            a, b = by_seed(base, metric, penalty), by_seed(members, metric, penalty)
            own = {k: v for k, v in config if (k, v) not in context(config)}
            out.append(Comparison("methods", label_of(dict(context(config))),
                                  f"{label_of(own)} − {baseline}", metric, _paired(a, b, detail),
                                  key=(base_config, config, metric), reference=_mean_a(a, b),
                                  configs=(base_config, config), pairs=_pairs(a, b)))
    return out


def imbalance_pairs(space, runs: list[TrialRun]) -> tuple[float, float, list[tuple[str, tuple, tuple, list, list]]]:
    """(lowest ρ, highest ρ, [(label, config at low, config at high, runs at low, runs at high)]) for every
    configuration of the long-tail profile present at both."""
    rest: dict[tuple, dict[float, tuple[tuple, list[TrialRun]]]] = {}
    for config, members in configurations(runs).items():
        cfg = dict(config)
        if "imbalance" not in cfg or cfg.get("imbalance_profile", "exp") != "exp":
            continue
        key = tuple((k, v) for k, v in config if k != "imbalance")
        rest.setdefault(key, {})[float(cfg["imbalance"])] = (config, members)
    levels = sorted({rho for by_rho in rest.values() for rho in by_rho})
    if len(levels) < 2:
        return math.nan, math.nan, []
    low, high = levels[0], levels[-1]
    return low, high, [(label_of(dict(key)), *by_rho[low], *by_rho[high])
                       for key, by_rho in rest.items() if low in by_rho and high in by_rho]


def _reorder(rows):
    return [(label, ca, cb, a, b) for label, ca, a, cb, b in rows]


def imbalance_comparisons(space, runs: list[TrialRun], detail: bool = True) -> list[Comparison]:
    """Highest imbalance minus lowest, paired by seed, per configuration and pooled (the mean of the
    per-configuration paired effects, per seed, then a one-sample t over seeds)."""
    low, high, rows = imbalance_pairs(space, runs)
    if not rows:
        return []
    rows = _reorder(rows)
    what = f"ρ={low:g} → ρ={high:g}"
    out = []
    for metric in compared_metrics(space):
        penalty = penalty_of(space, metric)
        per_config = []
        for label, config_a, config_b, a, b in rows:
            va, vb = by_seed(a, metric, penalty), by_seed(b, metric, penalty)
            per_config.append({s: vb[s] - va[s] for s in va if s in vb
                               and math.isfinite(va[s]) and math.isfinite(vb[s])})
            out.append(Comparison("imbalance", label, what, metric, _paired(va, vb, detail),
                                  key=(config_a, config_b, metric), reference=_mean_a(va, vb),
                                  configs=(config_a, config_b), pairs=_pairs(va, vb)))
        if len(rows) > 1:
            seeds = set.intersection(*(set(d) for d in per_config))
            pooled = {s: sum(d[s] for d in per_config) / len(per_config) for s in sorted(seeds)}
            references = [c.reference for c in out[-len(rows):] if math.isfinite(c.reference)]
            out.append(Comparison("imbalance", f"all {len(rows)} configurations pooled", what, metric,
                                  one_sample(pooled, detail=detail),
                                  reference=sum(references) / len(references) if references else math.nan,
                                  configs=tuple(c for row in rows for c in row[1:3]), pairs=dict(pooled)))
    return out


def failure_comparisons(space, runs: list[TrialRun], detail: bool = True) -> list[Comparison]:
    """The failure rate (a failed or diverged replicate = 1) of each configuration against the baseline's,
    paired by seed; only in a study where some replicate failed."""
    metric = space.metric[0]
    if not any(r.failed_on(metric) for r in runs):
        return []
    groups, out = configurations(runs), []
    for c in method_comparisons(space, runs, detail=False):
        if c.metric != metric:
            continue
        base, other = groups[c.key[0]], groups[c.key[1]]
        a, b = failures_by_seed(base, metric), failures_by_seed(other, metric)
        out.append(Comparison("failures", c.context, c.what, FAILURE, _paired(a, b, detail),
                              key=(c.key[0], c.key[1], FAILURE), configs=c.configs, pairs=_pairs(a, b)))
    return out


def _matching(runs: list[TrialRun], space, wanted: dict[str, Any]) -> dict[tuple, list[TrialRun]]:
    def value(run: TrialRun, key: str):
        return run.sampled.get(key, space.fixed.get(key))
    return {c: m for c, m in configurations(runs).items() if all(_same(value(m[0], k), v) for k, v in wanted.items())}


def _same(x, y) -> bool:
    try:
        return x == y or float(x) == float(y)
    except (TypeError, ValueError):
        return str(x) == str(y)


def primary_comparisons(space, runs: list[TrialRun], detail: bool = True) -> list[Comparison]:
    """The comparisons a space declares ``primary:``; an arm matching several configurations is their
    per-seed mean (the seeds every one of them has)."""
    out = []
    for spec in getattr(space, "primary", ()) or ():
        where = dict(spec.get("where") or {})
        metric = spec["metric"]
        penalty = penalty_of(space, metric) if metric != FAILURE else None
        arms = []
        for arm in ("a", "b"):
            groups = _matching(runs, space, {**where, **spec[arm]})
            values = [by_seed(m, metric, penalty) for m in groups.values()]
            seeds = set.intersection(*(set(v) for v in values)) if values else set()
            arms.append((tuple(groups), {s: sum(v[s] for v in values) / len(values) for s in sorted(seeds)}))
        (keys_a, a), (keys_b, b) = arms
        key = (keys_a[0], keys_b[0], metric) if len(keys_a) == 1 and len(keys_b) == 1 else ()
        out.append(Comparison("primary", label_of(where), f"{label_of(spec['b'])} − {label_of(spec['a'])}", metric,
                              _paired(a, b, detail), primary=True, key=key, reference=_mean_a(a, b),
                              configs=(*keys_a, *keys_b), pairs=_pairs(a, b)))
    return out


def members(space, runs: list[TrialRun], detail: bool = True) -> list[Comparison]:
    """Every comparison of the report, primary ones first (a secondary that repeats a primary left out),
    before adjustment: the family's hypotheses (search.sequential_plan tests them look by look)."""
    primary = primary_comparisons(space, runs, detail)
    keys = {c.key for c in primary if c.key}
    return primary + [c for make in (method_comparisons, imbalance_comparisons, failure_comparisons)
                      for c in make(space, runs, detail) if not (c.key and c.key in keys)]


def family(space, runs: list[TrialRun], alpha: float = ALPHA, detail: bool = True) -> Family:
    """Every comparison of the report (primary ones first), adjusted as one family."""
    return adjust(members(space, runs, detail), alpha)


def comparison_table(comparisons: list[Comparison], family: Family) -> list[str]:
    """One Markdown table: the unadjusted interval and p beside the adjusted p, the simultaneous interval
    and the sign-flip permutation p; the verdict is the adjusted one."""
    if not comparisons:
        return []
    lines = ["| context | compared | metric | Δ, 95% interval (unadjusted) | p | p, Holm | simultaneous interval "
             "| sign-flip p | verdict |", "|---|---|---|---|---|---|---|---|---|"]
    for c in comparisons:
        sim = (f"[{c.sim_low:+.3g}, {c.sim_high:+.3g}]" if math.isfinite(c.sim_low) else "—")
        verdict = f"**{c.verdict}**" if c.resolved else c.verdict
        lines.append(f"| {c.context} | {c.what} | {c.metric} | {describe(c.diff)} | {fmt_p(c.diff.p)} | "
                     f"{fmt_p(c.p_adjusted)} | {sim} | {fmt_p(c.diff.perm_p)} | {verdict} |")
    return lines


def family_lines(fam: Family) -> list[str]:
    """What the family is and what chance alone would resolve in it."""
    if not fam.size:
        return []
    m, alpha = fam.size, fam.alpha
    primaries = fam.primaries
    rule = (f"{len(primaries)} declared primary comparison(s) tested first by Holm at α = {alpha:g}; the other "
            f"{m - len(primaries)} are tested (Holm at α = {alpha:g}) only if every primary one resolves "
            f"(serial gatekeeping) — here the gate is {'open' if fam.gate_open else 'closed'}" if primaries
            else f"one Holm step-down over all {m} at α = {alpha:g} (no `primary:` comparison declared)")
    smallest = sorted({c.diff.n for c in fam.comparisons if c.diff.n >= 3})
    perm = ("; the sign-flip p cannot go below 2/2^n = " + ", ".join(f"{2 / 2 ** n:.3g} (n={n})" for n in smallest)
            if smallest and smallest[0] <= 6 else "")
    return [f"**Family**: {m} comparisons; {rule}. If every one of them were null, about {m * alpha:.1f} would "
            f"resolve by chance unadjusted (m·α); the adjustment keeps the chance of any false resolution ≤ {alpha:g}. "
            f"Resolved: {len(fam.resolved)} after adjustment, {len(fam.resolved_unadjusted)} unadjusted. "
            f"Simultaneous intervals: Bonferroni, level 1 − α/m within each stage. Untestable (n < 3 or sd 0) "
            f"comparisons count in m at p = 1{perm}.", ""]


def declared_effect_lines(space, fam: Family) -> list[str]:
    """Power for the effects the space declared before the study (``effects:``): never for an observed Δ."""
    from search.stats import MAX_SEEDS, power, sd_interval, seeds_needed

    effects = getattr(space, "effects", None) or {}
    if not effects:
        return []
    lines = ["| context | compared | metric | declared effect | power at this n | seeds for 80% power "
             "(over the sd's 95% range) |", "|---|---|---|---|---|---|"]
    for c in fam.comparisons:
        if c.metric not in effects or not c.diff.testable:
            continue
        kind, size = effects[c.metric]
        reference, effect = c.reference, size
        if kind == "relative":
            if not math.isfinite(reference):
                continue
            effect = size * abs(reference)
        sd_low, sd_high = sd_interval(c.diff.sd, c.diff.n)
        needed = [seeds_needed(effect, sd, paired=True) for sd in (c.diff.sd, sd_low, sd_high)]
        text = [str(n) if n else f">{MAX_SEEDS}" for n in needed]
        declared = f"{size:.3g}" if kind == "absolute" else f"{100 * size:g}% of {reference:.3g} = {effect:.3g}"
        lines.append(f"| {c.context} | {c.what} | {c.metric} | {declared} | "
                     f"{power(effect, c.diff.sd, c.diff.n, True):.2f} | {text[0]} ({text[1]}–{text[2]}) |")
    return lines if len(lines) > 2 else []


