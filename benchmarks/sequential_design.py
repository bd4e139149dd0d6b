"""The sequential rule for seeds (``search.sequential``) by simulation: its type I error for normal,
heavy-tailed (t, 3 df) and skewed (lognormal minus lognormal) differences, its power beside a fixed
12-seed design, and a family of six comparisons against a shared baseline.

Every verdict comes from ``search.sequential.assess`` at ``search.sequential.nominal_level`` — the
vectorised core that ``decide`` itself calls — and a subsample is replayed through ``decide`` (one
comparison) and ``decide_family`` + ``configurations_to_run`` (the family) one sequence at a time, which
must give the same verdicts and trial counts (``replayed_agree``).

    python benchmarks/sequential_design.py [sequences=200000] [family_sequences=100000] [replay=1000]
                                           [compare_sequences=100000] [seed=7]

Family scenario: standardised effects (mean / sd of the paired differences) 0, 0, 0.5, 0.9, 1.5, 3 of six
methods against one baseline, all arms of equal variance (so two comparisons' differences correlate
0.5); blocks of 3 seeds up to 12; the next block runs every method whose comparison is open and the
baseline while any is open. Fixed 12 runs 7 x 12 = 84 trials. Bonferroni gives each comparison
alpha / 6; "unadjusted" gives each 0.05. Power counts "resolved" with the true effect's sign.
``familywise_type1_all_null``: the same family with all six effects 0, Bonferroni, the headline margin.

Last line: {"type1_normal": ..., "type1_t3": ..., "type1_lognormal": ..., "power_at_fixed12_mde": ...,
"trials_ratio": ..., ...}
"""

from __future__ import annotations

import json
import math
import sys
import time

import numpy as np

LOOKS = (3, 6, 9, 12)
ALPHA = 0.05
EFFECTS = (0.0, 0.0, 0.5, 0.9, 1.5, 3.0)
MARGINS = (None, 1.0, 1.5)  # futility margins in sd of the paired differences; 1.0 ≈ what fixed 12 detects
HEADLINE_MARGIN = 1.0
FAILURE_RATE = 0.1  # each replicate fails independently: looks fall short of their planned sizes


def run_sequences(x: np.ndarray, *, alpha: float, margin: float | None, spending: str,
                  present: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each sequence of differences x[..., :12] decided at every look until it closes: the verdict index,
    the planned look size it closed at, and the mean there. ``present`` masks failed replicates out: a
    look then has fewer differences, and sequences are grouped by that n (decide's rule for it)."""
    from search import sequential as sq

    shape = x.shape[:-1]
    codes = np.zeros(shape, dtype=int)
    closed_at = np.full(shape, LOOKS[-1])
    estimate = np.full(shape, np.nan)
    present = np.ones(x.shape, dtype=bool) if present is None else present
    for size in LOOKS:
        mask = present[..., :size]
        count = mask.sum(-1)
        total = np.where(mask, x[..., :size], 0.0).sum(-1)
        mean = total / np.maximum(count, 1)
        squares = np.where(mask, (x[..., :size] - mean[..., None]) ** 2, 0.0).sum(-1)
        sd = np.sqrt(squares / np.maximum(count - 1, 1))
        for n in np.unique(count[codes == 0]):
            if n < 2:
                continue  # no interval yet: "continue"
            group = (codes == 0) & (count == n)
            last = sq.look_of(int(n), LOOKS) == len(LOOKS) - 1
            verdict, _, _ = sq.assess(mean[group], sd[group], int(n), sq.nominal_level(int(n), LOOKS, alpha, spending),
                                      margin=margin, last=last)
            newly = np.zeros(shape, dtype=bool)
            newly[group] = verdict != 0
            codes[group] = verdict
            closed_at[newly] = size
            estimate[newly] = mean[newly]
    return codes, closed_at, estimate


def run_family_holm(diffs: np.ndarray, *, alpha: float, margin: float | None,
                    spending: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``run_sequences`` for a family (sequences x comparisons x seeds) under decide_family's "holm" rule:
    at each look the open comparisons of a sequence are tested at alpha / (comparisons not yet resolved),
    again after each round that resolves some, as decide_family does."""
    from search import sequential as sq

    sequences, size_of_family = diffs.shape[:2]
    codes = np.zeros((sequences, size_of_family), dtype=int)
    closed_at = np.full(codes.shape, LOOKS[-1])
    estimate = np.full(codes.shape, np.nan)
    for size in LOOKS:
        mean, sd = diffs[..., :size].mean(-1), diffs[..., :size].std(-1, ddof=1)
        last = size == LOOKS[-1]
        still_open = codes == 0
        while True:
            remaining = size_of_family - (codes == 1).sum(1)
            verdicts = np.zeros(codes.shape, dtype=int)
            for count in np.unique(remaining[still_open.any(1)]):
                chosen = (remaining == count)[:, None] & still_open
                level = sq.nominal_level(size, LOOKS, alpha / count, spending)
                verdicts[chosen] = sq.assess(mean[chosen], sd[chosen], size, level, margin=margin, last=last)[0]
            newly = still_open & (verdicts == 1)
            if not newly.any():
                break
            codes[newly], closed_at[newly], estimate[newly] = 1, size, mean[newly]
            still_open &= ~newly
        closing = still_open & (verdicts != 0)
        codes[closing], closed_at[closing], estimate[closing] = verdicts[closing], size, mean[closing]
    return codes, closed_at, estimate


def draw(kind: str, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    if kind == "normal":
        return rng.standard_normal(shape)
    if kind == "t3":
        return rng.standard_t(3, shape)
    return rng.lognormal(0.0, 1.0, shape) - rng.lognormal(0.0, 1.0, shape)  # two identical skewed arms


def type1(kind: str, sequences: int, rng: np.random.Generator, spending: str,
          failures: bool = False) -> tuple[float, float]:
    resolved = 0
    for start in range(0, sequences, 50_000):
        chunk = min(50_000, sequences - start)
        x = draw(kind, rng, (chunk, LOOKS[-1]))
        present = rng.random(x.shape) >= FAILURE_RATE if failures else None
        codes, _, _ = run_sequences(x, alpha=ALPHA, margin=None, spending=spending, present=present)
        resolved += int((codes == 1).sum())
    p = resolved / sequences
    return p, math.sqrt(p * (1 - p) / sequences)


def family_arms(rng: np.random.Generator, sequences: int) -> tuple[np.ndarray, np.ndarray]:
    """Per seed: the baseline's value and the six methods'; each arm has variance 1/2, so a difference has sd 1."""
    baseline = rng.standard_normal((sequences, LOOKS[-1])) / math.sqrt(2)
    methods = rng.standard_normal((sequences, len(EFFECTS), LOOKS[-1])) / math.sqrt(2)
    return baseline, methods + np.asarray(EFFECTS)[None, :, None]


def family(baseline: np.ndarray, methods: np.ndarray, *, rule: str, margin: float | None, spending: str) -> dict:
    diffs = methods - baseline[:, None, :]
    if rule == "holm":
        codes, closed_at, estimate = run_family_holm(diffs, alpha=ALPHA, margin=margin, spending=spending)
    else:
        alpha_each = ALPHA / len(EFFECTS) if rule == "bonferroni" else ALPHA
        codes, closed_at, estimate = run_sequences(diffs, alpha=alpha_each, margin=margin, spending=spending)
    # a method runs until its comparison closes; the baseline until the last of them closes
    trials = closed_at.sum(1) + closed_at.max(1)
    effects = np.asarray(EFFECTS)
    right = (codes == 1) & (np.sign(estimate) == np.sign(effects)[None, :])
    nulls = effects == 0
    return {
        "trials_ratio": round(float(trials.mean()) / ((len(EFFECTS) + 1) * LOOKS[-1]), 4),
        "power": {f"{e:g}": round(float(right[:, i].mean()), 4) for i, e in enumerate(EFFECTS) if e != 0},
        "familywise_false_resolved": round(float((codes[:, nulls] == 1).any(1).mean()), 4),
        "null_futile": round(float((codes[:, nulls] == 2).mean()), 4),
        "mean_seeds_per_comparison": {f"{e:g}#{i}": round(float(closed_at[:, i].mean()), 2)
                                      for i, e in enumerate(EFFECTS)},
    }


def fixed12_holm_power(baseline: np.ndarray, methods: np.ndarray) -> dict[str, float]:
    """A fixed 12-seed design under Holm's step-down at ALPHA, on the same draws: each non-null comparison's
    probability of being resolved with its effect's sign."""
    from scipy import stats

    diffs = methods - baseline[:, None, :]
    n = diffs.shape[-1]
    mean, sd = diffs.mean(-1), diffs.std(-1, ddof=1)
    p = 2 * stats.t.sf(np.abs(mean) * math.sqrt(n) / sd, n - 1)
    order = np.argsort(p, axis=1)
    ranked = np.take_along_axis(p, order, axis=1)
    passes = np.cumprod(ranked <= ALPHA / (len(EFFECTS) - np.arange(len(EFFECTS))), axis=1).astype(bool)
    rejected = np.zeros(p.shape, dtype=bool)
    np.put_along_axis(rejected, order, passes, axis=1)
    right = rejected & (np.sign(mean) == np.sign(EFFECTS))
    return {f"{e:g}": round(float(right[:, i].mean()), 4) for i, e in enumerate(EFFECTS) if e != 0}


def replay_single(x: np.ndarray, codes: np.ndarray, spending: str, present: np.ndarray | None = None) -> bool:
    """decide, one sequence and one look at a time (failed replicates left out), gives run_sequences' verdicts."""
    from search import sequential as sq

    present = np.ones(x.shape, dtype=bool) if present is None else present
    for row, kept, code in zip(x, present, codes):
        verdict = "continue"
        for size in LOOKS:
            verdict = sq.decide(row[:size][kept[:size]].tolist(), looks=LOOKS, alpha=ALPHA, spending=spending).verdict
            if verdict != "continue":
                break
        if verdict != sq.VERDICTS[code]:
            return False
    return True


def replay_family(baseline: np.ndarray, methods: np.ndarray, *, rule: str, margin: float | None, spending: str,
                  expected_trials: np.ndarray) -> bool:
    """decide_family + configurations_to_run, one sequence and one block at a time, as a study would."""
    from search import sequential as sq

    names = [f"m{i}" for i in range(len(EFFECTS))]
    needs = {name: ("baseline", name) for name in names}
    for b, m, expected in zip(baseline, methods, expected_trials):
        decisions: dict[str, sq.Decision] = {}
        trials, previous = 0, 0
        for size in LOOKS:
            run = sq.configurations_to_run(needs, decisions)
            trials += (size - previous) * len(run)
            previous = size
            still_open = [name for name in names if name not in decisions or decisions[name].verdict == "continue"]
            if not still_open:
                break
            resolved = sum(decision.verdict == "resolved" for decision in decisions.values())
            decided = sq.decide_family({name: (m[int(name[1:]), :size] - b[:size]).tolist() for name in still_open},
                                       looks=LOOKS, alpha=ALPHA, margins=margin, family_size=len(names),
                                       resolved_before=resolved, rule=rule, spending=spending)
            decisions.update(decided)
        if trials != expected:
            return False
    return True


def main() -> None:
    from search import sequential as sq
    from search.stats import min_detectable_effect, power

    args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
    sequences, family_sequences = int(args.get("sequences", 200_000)), int(args.get("family_sequences", 100_000))
    replay, compare_sequences = int(args.get("replay", 1000)), int(args.get("compare_sequences", 100_000))
    rng = np.random.default_rng(int(args.get("seed", 7)))
    spending = sq.DEFAULT_SPENDING
    started = time.perf_counter()
    result: dict = {"looks": list(LOOKS), "alpha": ALPHA, "spending": spending, "sequences": sequences,
                    "levels": [float(f"{sq.nominal_level(n, LOOKS, ALPHA, spending):.6g}") for n in LOOKS]}

    for kind in ("normal", "t3", "lognormal"):
        p, se = type1(kind, sequences, rng, spending)
        result[f"type1_{kind}"], result[f"type1_{kind}_se"] = round(p, 5), round(se, 5)
    p, se = type1("normal", sequences, rng, spending, failures=True)
    result["type1_normal_failures"], result["type1_normal_failures_se"] = round(p, 5), round(se, 5)
    result["failure_rate"] = FAILURE_RATE

    mde = min_detectable_effect(1.0, LOOKS[-1], paired=True)  # fixed 12 paired seeds, 5% two-sided, 80% power
    x = rng.standard_normal((sequences, LOOKS[-1])) + mde
    codes, closed_at, estimate = run_sequences(x, alpha=ALPHA, margin=None, spending=spending)
    result["fixed12_mde"] = round(mde, 4)
    result["power_at_fixed12_mde"] = round(float(((codes == 1) & (estimate > 0)).mean()), 4)
    result["fixed12_power_at_mde"] = round(power(mde, 1.0, LOOKS[-1], paired=True, alpha=ALPHA), 4)
    result["mean_seeds_at_mde"] = round(float(closed_at.mean()), 3)
    null = rng.standard_normal((replay, LOOKS[-1]))
    kept = rng.random(null.shape) >= FAILURE_RATE
    single_agree = (
        replay_single(null, run_sequences(null, alpha=ALPHA, margin=None, spending=spending)[0], spending)
        and replay_single(x[:replay], codes[:replay], spending)
        and replay_single(null, run_sequences(null, alpha=ALPHA, margin=None, spending=spending, present=kept)[0],
                          spending, present=kept))

    baseline, methods = family_arms(rng, family_sequences)
    scenarios = {}
    for margin in MARGINS:
        for rule in ("bonferroni", "holm", "unadjusted"):
            scenarios[f"{rule}_margin_{margin}"] = family(baseline, methods, rule=rule, margin=margin,
                                                           spending=spending)
    headline = scenarios[f"bonferroni_margin_{HEADLINE_MARGIN}"]
    result["trials_ratio"] = headline["trials_ratio"]
    result["trials_ratio_rule"] = (f"bonferroni alpha/{len(EFFECTS)} = {ALPHA / len(EFFECTS):.5f} each, "
                                   f"margin {HEADLINE_MARGIN} sd")
    result["family_power"] = headline["power"]
    result["fixed12_power_bonferroni"] = {f"{e:g}": round(power(e, 1.0, LOOKS[-1], True, ALPHA / len(EFFECTS)), 4)
                                          for e in EFFECTS if e != 0}
    result["fixed12_power_unadjusted"] = {f"{e:g}": round(power(e, 1.0, LOOKS[-1], True, ALPHA), 4)
                                          for e in EFFECTS if e != 0}
    holm = scenarios[f"holm_margin_{HEADLINE_MARGIN}"]
    result["trials_ratio_holm"], result["family_power_holm"] = holm["trials_ratio"], holm["power"]
    result["fixed12_power_holm"] = fixed12_holm_power(baseline, methods)
    result["family"] = scenarios
    # all six comparisons null (still correlated through the shared baseline): Bonferroni's family-wise error
    null_baseline, null_methods = family_arms(rng, family_sequences)
    null_diffs = null_methods - np.asarray(EFFECTS)[None, :, None] - null_baseline[:, None, :]  # effects taken out
    for rule, codes in (
            ("bonferroni", run_sequences(null_diffs, alpha=ALPHA / len(EFFECTS), margin=HEADLINE_MARGIN,
                                         spending=spending)[0]),
            ("holm", run_family_holm(null_diffs, alpha=ALPHA, margin=HEADLINE_MARGIN, spending=spending)[0])):
        fwer = float((codes == 1).any(1).mean())
        result[f"familywise_type1_all_null_{rule}"] = round(fwer, 5)
        result[f"familywise_type1_all_null_{rule}_se"] = round(math.sqrt(fwer * (1 - fwer) / family_sequences), 5)
    result["family_sequences"] = family_sequences
    family_agree = True
    for rule, run in (("bonferroni", lambda d: run_sequences(d, alpha=ALPHA / len(EFFECTS), margin=HEADLINE_MARGIN,
                                                              spending=spending)),
                      ("holm", lambda d: run_family_holm(d, alpha=ALPHA, margin=HEADLINE_MARGIN, spending=spending))):
        closed_at = run(methods[:replay] - baseline[:replay, None, :])[1]
        family_agree &= replay_family(baseline[:replay], methods[:replay], rule=rule, margin=HEADLINE_MARGIN,
                                      spending=spending, expected_trials=closed_at.sum(1) + closed_at.max(1))
    result["replayed"], result["replayed_agree"] = replay, bool(single_agree and family_agree)

    # the spending functions side by side: the choice of DEFAULT_SPENDING
    comparison = {}
    mde_x = rng.standard_normal((compare_sequences, LOOKS[-1])) + mde
    null_x = rng.standard_normal((compare_sequences, LOOKS[-1]))
    arms = family_arms(rng, compare_sequences // 4)
    for name in sq.SPENDING:
        c_null = run_sequences(null_x, alpha=ALPHA, margin=None, spending=name)[0]
        c_mde, at, est = run_sequences(mde_x, alpha=ALPHA, margin=None, spending=name)
        fam = family(*arms, rule="bonferroni", margin=HEADLINE_MARGIN, spending=name)
        comparison[name] = {
            "levels": [float(f"{sq.nominal_level(n, LOOKS, ALPHA, name):.4g}") for n in LOOKS],
            "type1_normal": round(float((c_null == 1).mean()), 4),
            "power_at_fixed12_mde": round(float(((c_mde == 1) & (est > 0)).mean()), 4),
            "mean_seeds_at_mde": round(float(at.mean()), 2),
            "family_trials_ratio": fam["trials_ratio"], "family_power": fam["power"]}
    result["spending_comparison"] = comparison
    result["compare_sequences"] = compare_sequences
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
