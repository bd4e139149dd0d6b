"""A sequential study's looks, replayed from its replicates: which comparisons closed at which look, and
which configurations (and seeds) the next block runs.

A space with ``seeds: {sequential: {start, step, max}}`` runs its seeds in blocks: the looks are the planned
cumulative numbers of seeds (``SequentialSeeds.looks``, e.g. 3, 6, 9, 12), block k runs seeds
``looks[k-1] .. looks[k] - 1``. After each block ``replay`` builds **the report's family** from the
replicates of the seeds so far (``search.report.comparisons.members``: primary, method and imbalance
comparisons, paired by seed, failed replicates at the space's penalty) and tests every comparison still
open with ``search.sequential.decide_family``:

* **Family rule: Holm for group-sequential tests** (Maurer & Bretz 2013, ``rule="holm"``): each open
  comparison at alpha / (m - r), r the comparisons resolved at earlier looks, tested again within the look
  after each resolution. It is valid whatever the comparisons' correlation (a shared baseline) and never
  less powerful than Bonferroni's alpha / m (benchmarks/sequential_design.py: power 0.15, 0.52, 0.95 against
  Bonferroni's 0.10, 0.44, 0.93 for the same family-wise error 0.043). A space's ``primary:`` comparisons
  get no priority here: the report's serial gatekeeping is a fixed-n procedure, and gatekeeping across
  looks needs boundaries of its own (Tamhane, Mehta & Liu 2010), so the sequential family is one Holm
  family of all m comparisons.
* **m is fixed at the first look**: the family's comparisons less the failure-rate ones (those exist
  only once some replicate failed, so they cannot be part of a family fixed in advance; the report still
  shows them, as descriptions).
* **Verdicts**: *resolved* (the repeated interval at this look's level excludes 0), *futile* (it lies
  inside ±margin: the space's ``seeds.sequential.margin``, else its ``effects:``; a relative margin is a
  share of arm a's mean over the paired seeds), *inconclusive* (the last look, or no finished pair at
  all), or open. The next block runs only the configurations of the open comparisons
  (``search.sequential.configurations_to_run``): a baseline shared by several runs while any is open.

``replay`` is a pure function of the replicates, so the searcher (on its own results) and the report (on
MLflow's runs) get the same looks, and a driver killed at any point and resumed decides the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from search.report.comparisons import ALPHA, Comparison, members
from search.report.runs import TrialRun, configurations
from search.sequential import configurations_to_run, decide, decide_family

if TYPE_CHECKING:
    from search.searcher_state import Configuration

FAMILY_RULE = "holm"
RACE_ALPHA = 0.05  # a race's level: a budget rule, not a finding of the report


@dataclass
class Plan:
    """Where a sequential study stands: ``looks`` taken (one record each), the decision that closed each
    comparison (``closed``), the comparisons still open, the configurations the next block runs
    (``running``: configuration keys as ``search.report.runs.configurations`` makes them), the replicates
    (configuration key, seed) that block still lacks (``wanted``), and whether the study is done."""

    looks: list[dict[str, Any]] = field(default_factory=list)
    closed: dict[str, dict[str, Any]] = field(default_factory=dict)
    open: list[str] = field(default_factory=list)
    running: list[tuple] = field(default_factory=list)
    wanted: list[tuple[tuple, int]] = field(default_factory=list)
    block: int = 0  # the 0-based index of the block being run (len(looks) once every look was taken)
    done: bool = False
    family_size: int = 0
    stopped_at: dict[tuple, int] = field(default_factory=dict)  # configuration -> the look after which it stopped


def name_of(c: Comparison) -> str:
    """A comparison's stable name across looks."""
    return f"{c.section}: {c.context}: {c.what}: {c.metric}"


def sequential_family(space, runs: list[TrialRun]) -> list[Comparison]:
    """The report's family (primary first) less the failure-rate comparisons (see the module's docstring)."""
    return [c for c in members(space, runs, detail=False) if c.section != "failures"]


def margin_of(space, c: Comparison) -> float | None:
    """The futility margin of comparison ``c`` in its metric's units, or None."""
    spec = space.sequential.margin if space.sequential.margin is not None else (space.effects or {})
    if c.metric not in spec:
        return None
    kind, size = spec[c.metric]
    if kind == "absolute":
        return float(size)
    margin = size * abs(c.reference)
    return margin if math.isfinite(margin) and margin > 0 else None


def _has_result(members: list[TrialRun], seed: int) -> bool:
    """A replicate of this seed ended (finished or failed): an interrupted one does not count."""
    return any(r.seed == seed and not r.interrupted for r in members)


def replay(space, runs: list[TrialRun], keys: list[tuple] | None = None) -> Plan:
    """The looks of ``space``'s sequential study over its replicates ``runs`` (see the module's docstring);
    ``keys``: every configuration of the study (default: those with a run), the first block runs them all."""
    looks = space.sequential.looks
    seeds = space.seeds
    groups = configurations(runs)
    for key in keys or ():
        groups.setdefault(key, [])
    plan = Plan(running=list(groups))
    if not groups:
        plan.wanted = []  # nothing proposed yet: the caller runs the first block of every configuration
        return plan
    resolved = 0
    names: list[str] | None = None
    previous = 0
    for index, size in enumerate(looks):
        plan.block = index
        block_seeds = seeds[previous:size]
        plan.wanted = [(c, s) for c in plan.running for s in block_seeds if not _has_result(groups.get(c, []), s)]
        if plan.wanted:
            return plan
        look_seeds = set(seeds[:size])
        comparisons = sequential_family(space, [r for r in runs if r.seed in look_seeds])
        by_name = {name_of(c): c for c in comparisons}
        if names is None:
            names = list(by_name)
            plan.family_size = len(names)
            plan.open = list(names)
        still = {n: by_name[n] for n in plan.open if n in by_name}
        last = index == len(looks) - 1
        # identical differences (sd 0: both arms at the penalty, a metric that is 0 everywhere) say nothing
        # about the next seed: as in the report, untestable, so they stay open (decide would call a zero-width
        # interval resolved or futile)
        testable = {n: c for n, c in still.items() if len(set(c.pairs.values())) > 1}
        decisions = decide_family({n: list(c.pairs.values()) for n, c in testable.items()}, looks=looks,
                                  alpha=ALPHA, margins={n: margin_of(space, c) for n, c in testable.items()},
                                  family_size=max(1, plan.family_size), resolved_before=resolved,
                                  rule=FAMILY_RULE) if testable else {}
        record: dict[str, Any] = {"look": index + 1, "seeds": size, "decisions": {}}
        verdicts: dict[str, str] = {}
        for n in plan.open:
            c = still.get(n)
            if c is None or not c.pairs:  # no finished pair: nothing to test now or later
                entry = {"verdict": "inconclusive", "why": "no finished pair", "n": 0, "look": index + 1,
                         "low": math.nan, "high": math.nan, "estimate": math.nan, "level": math.nan, "margin": None}
            elif n not in decisions:  # sd 0
                values = list(c.pairs.values())
                entry = {"verdict": "inconclusive" if last else "continue", "n": len(values), "look": index + 1,
                         "why": "sd 0 (identical differences): untestable", "low": math.nan, "high": math.nan,
                         "estimate": values[0], "level": math.nan, "margin": None}
            else:
                d = decisions[n]
                verdict = "inconclusive" if last and d.verdict == "continue" else d.verdict
                margin = margin_of(space, c)
                why = {"resolved": "the interval excludes 0",
                       "futile": f"the interval lies inside ±{margin:.3g} (the margin)" if margin else "",
                       "inconclusive": f"the last look ({size} seeds) reached",
                       "continue": "open"}[verdict]
                entry = {"verdict": verdict, "why": why, "n": d.n, "look": index + 1, "low": d.low, "high": d.high,
                         "estimate": d.estimate, "level": d.level, "margin": margin}
            record["decisions"][n] = entry
            verdicts[n] = entry["verdict"]
            if entry["verdict"] != "continue":
                plan.closed[n] = entry
        resolved += sum(v == "resolved" for v in verdicts.values())
        plan.looks.append(record)
        needs = {n: still[n].configs if n in still else () for n in plan.open}
        nxt = [] if last else configurations_to_run(needs, verdicts)
        for c in plan.running:
            if c not in nxt:
                plan.stopped_at[c] = index + 1
        plan.open = [n for n in plan.open if verdicts[n] == "continue"]
        plan.running = [c for c in nxt if c in groups]
        previous = size
        if not plan.running:
            plan.block, plan.done, plan.wanted = index + 1, True, []
            return plan
    plan.block, plan.done, plan.running, plan.wanted = len(looks), True, [], []
    return plan


def runs_of(configs: dict[int, Configuration]) -> list[TrialRun]:
    """A searcher's replicates so far (its state's configurations) as the report's TrialRun records."""
    runs = []
    for number, config in configs.items():
        for seed, metrics in config.metrics.items():
            runs.append(TrialRun(str(config.ray_trials.get(seed, number)), "FAILED" if metrics is None
                                 else "FINISHED", {}, dict(config.sampled), dict(metrics or {}),
                                 tags={"seed": str(seed)}))
    return runs


# -- racing (a space that selects) -------------------------------------------------------------------------
def per_seed(space, config: Configuration) -> dict[int, float]:
    """A configuration's objective per seed, a failed replicate at the penalty (absent without one)."""
    penalty = space.failure_value.get(space.metric[0])
    out = {}
    for seed, values in config.values.items():
        value = values[0] if values is not None else penalty
        if value is not None:
            out[seed] = float(value)
    return out


def incumbent_of(space, configs: dict[int, Configuration], number: int) -> int | None:
    """The best configuration other than ``number`` (by its told mean) that ran every seed and was not
    raced out; None before one has."""
    done = [(c.told_value, n) for n, c in configs.items() if n != number and c.told
            and c.told_value is not None and not c.raced_out
            and len(c.values) >= space.sequential.looks[-1]]
    if not done:
        return None
    return (min(done) if space.mode[0] == "min" else max(done))[1]


def race(space, config: Configuration, incumbent: Configuration | None, number: int | None) -> dict[str, Any]:
    """One race of ``config`` against the incumbent on their common seeds: ``verdict`` "worse" (resolved
    worse: it stops), "resolved" (better), "continue", or "no incumbent"."""
    record: dict[str, Any] = {"seeds": len(config.values), "incumbent": number, "verdict": "no incumbent"}
    if incumbent is None:
        return record
    mine, theirs = per_seed(space, config), per_seed(space, incumbent)
    diffs = [mine[s] - theirs[s] for s in sorted(mine) if s in theirs]
    if len(diffs) >= 2:
        d = decide(diffs, looks=space.sequential.looks, alpha=RACE_ALPHA)
        worse = d.verdict == "resolved" and (d.low > 0 if space.mode[0] == "min" else d.high < 0)
        record.update(verdict="worse" if worse else d.verdict, n=d.n, low=d.low, high=d.high)
    return record


def tag_raced_out(tracking_uri: str, experiment: str, trial_ids, seeds: int) -> None:
    """Tag the MLflow runs of a raced-out configuration's replicates (made by the driver's callback)."""
    from pathlib import Path

    from search import tracking

    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri.removeprefix("sqlite:///")).exists():
        return  # no MLflow store yet (a searcher fed by hand): no run to tag, and none to create
    client = tracking.client_for(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    for trial_id in trial_ids if found is not None else ():
        for run in client.search_runs([found.experiment_id], max_results=5,
                                      filter_string=f"tags.`{tracking.TAG_TRIAL}` = '{trial_id}'"):
            client.set_tag(run.info.run_id, "raced_out", f"true (after {seeds} seeds)")
