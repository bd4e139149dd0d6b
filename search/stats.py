"""The statistics a reviewer asks of a comparison over seeds: intervals, and what n can resolve.

Replicates with the same seed share the data subset, its order and G's initialisation, so two
configurations at the same imbalance are compared **paired by seed** (a paired t interval of the
per-seed differences); configurations at different imbalances see different data and are compared
**unpaired** (Welch's interval). For a comparison whose interval includes 0 we say what these seeds
*could* have resolved — the smallest true difference a two-sided 5% t-test on them detects with 80%
power (from the noncentral t distribution, with the observed spread) — and how many seeds would
resolve the observed difference with that power. scipy does the distributions; nothing is hand-rolled
beyond the formulas of the tests themselves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

LEVEL = 0.95
POWER = 0.80
MAX_SEEDS = 10_000


def finite(values: Sequence[float]) -> list[float]:
    return [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def mean_ci(values: Sequence[float], level: float = LEVEL) -> tuple[float, float, int]:
    """(mean, half-width of the two-sided t confidence interval, n) of the finite values; the half-width
    is NaN below two values."""
    from scipy import stats

    values = finite(values)
    n = len(values)
    if n == 0:
        return math.nan, math.nan, 0
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan, 1
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n), n


@dataclass(frozen=True)
class Difference:
    """``b - a``: its estimate and 95% interval, how it was computed, and what n could resolve."""

    estimate: float
    low: float
    high: float
    n_a: int
    n_b: int
    paired: bool
    min_detectable: float = math.nan  # smallest |difference| these seeds detect with 80% power
    seeds_needed: int | None = None  # seeds (per arm) that would resolve the observed one, None if > MAX_SEEDS
    sd: float = math.nan  # the spread behind them: sd of the paired differences, or the pooled sd (Welch)

    @property
    def resolved(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high) and (self.low > 0 or self.high < 0)

    @property
    def n(self) -> int:
        return min(self.n_a, self.n_b)


def paired_difference(a: Mapping[int, float], b: Mapping[int, float], level: float = LEVEL) -> Difference:
    """``b - a`` over the seeds both have a finite value for: the paired t interval (scipy's
    ``ttest_rel``), the minimum detectable difference and the seeds needed."""
    from scipy import stats

    seeds = sorted(s for s in a if s in b and math.isfinite(a[s]) and math.isfinite(b[s]))
    diffs = [b[s] - a[s] for s in seeds]
    n = len(diffs)
    if n == 0:
        return Difference(math.nan, math.nan, math.nan, 0, 0, True)
    estimate = sum(diffs) / n
    if n < 2:
        return Difference(estimate, math.nan, math.nan, n, n, True)
    sd = math.sqrt(sum((d - estimate) ** 2 for d in diffs) / (n - 1))
    if sd == 0:
        return Difference(estimate, estimate, estimate, n, n, True, 0.0, n, sd=0.0)
    ci = stats.ttest_rel([b[s] for s in seeds], [a[s] for s in seeds]).confidence_interval(level)
    return Difference(estimate, float(ci.low), float(ci.high), n, n, True,
                      min_detectable_effect(sd, n, paired=True), seeds_needed(estimate, sd, paired=True), sd=sd)


def welch_difference(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> Difference:
    """``mean(b) - mean(a)`` of independent groups: Welch's interval (scipy's ``ttest_ind``), the minimum
    detectable difference and the seeds needed per arm (at the pooled spread)."""
    from scipy import stats

    a, b = finite(a), finite(b)
    if not a or not b:
        return Difference(math.nan, math.nan, math.nan, len(a), len(b), False)
    estimate = sum(b) / len(b) - sum(a) / len(a)
    if len(a) < 2 or len(b) < 2:
        return Difference(estimate, math.nan, math.nan, len(a), len(b), False)
    var_a, var_b = stats.tvar(a), stats.tvar(b)
    if var_a == 0 and var_b == 0:
        return Difference(estimate, estimate, estimate, len(a), len(b), False, 0.0, min(len(a), len(b)), sd=0.0)
    ci = stats.ttest_ind(b, a, equal_var=False).confidence_interval(level)
    pooled_sd = math.sqrt((var_a + var_b) / 2)
    n = min(len(a), len(b))
    return Difference(estimate, float(ci.low), float(ci.high), len(a), len(b), False,
                      min_detectable_effect(pooled_sd, n, paired=False), seeds_needed(estimate, pooled_sd, paired=False),
                      sd=pooled_sd)


def power(effect: float, sd: float, n: int, paired: bool, alpha: float = 1 - LEVEL) -> float:
    """Power of the two-sided t-test at level ``alpha`` to detect a true difference ``effect``: ``n``
    pairs (paired, sd of the differences) or ``n`` seeds per arm (unpaired, common sd)."""
    from scipy import stats

    if paired:
        df, noncentrality = n - 1, abs(effect) / sd * math.sqrt(n)
    else:
        df, noncentrality = 2 * n - 2, abs(effect) / sd * math.sqrt(n / 2)
    critical = stats.t.ppf(1 - alpha / 2, df)
    value = float(stats.nct.sf(critical, df, noncentrality) + stats.nct.cdf(-critical, df, noncentrality))
    if not math.isfinite(value):  # scipy's noncentral t gives up far in the tail: the normal limit holds there
        value = float(stats.norm.sf(critical - noncentrality) + stats.norm.cdf(-critical - noncentrality))
    return value


def min_detectable_effect(sd: float, n: int, paired: bool, target: float = POWER) -> float:
    """The smallest true difference detected with probability ``target`` (NaN when n is too small)."""
    from scipy.optimize import brentq

    if n < 2 or not math.isfinite(sd):
        return math.nan
    if sd == 0:
        return 0.0
    high = sd
    while power(high, sd, n, paired) < target:
        high *= 2
    return float(brentq(lambda e: power(e, sd, n, paired) - target, 0.0, high, xtol=1e-10 * sd))


def seeds_needed(effect: float, sd: float, paired: bool, target: float = POWER) -> int | None:
    """The fewest seeds (pairs, or per arm) that detect ``effect`` with probability ``target``; None when
    it would take more than MAX_SEEDS (an effect of about zero)."""
    if not math.isfinite(effect) or not math.isfinite(sd):
        return None
    if sd == 0:
        return 2
    if effect == 0:
        return None
    low, high = 2, 2
    while power(effect, sd, high, paired) < target:  # power grows with n: double, then bisect
        if high >= MAX_SEEDS:
            return None
        low, high = high + 1, min(2 * high, MAX_SEEDS)
    while low < high:
        mid = (low + high) // 2
        if power(effect, sd, mid, paired) >= target:
            high = mid
        else:
            low = mid + 1
    return low


def describe(diff: Difference, digits: int = 3) -> str:
    """One table cell: the difference, its interval, n, and for an unresolved one what n could resolve."""
    if not math.isfinite(diff.estimate):
        return "— (no finished pair)" if diff.paired else "— (no finished run)"
    kind = "paired" if diff.paired else "Welch"
    n = f"n={diff.n}" if diff.paired else f"n={diff.n_a}/{diff.n_b}"
    if not (math.isfinite(diff.low) and math.isfinite(diff.high)):
        return f"{diff.estimate:+.{digits}g} ({n}: too few for an interval)"
    text = f"{diff.estimate:+.{digits}g} [{diff.low:+.{digits}g}, {diff.high:+.{digits}g}] ({kind}, {n})"
    if diff.resolved:
        return text
    needed = f"{diff.seeds_needed} seeds" if diff.seeds_needed else f"more than {MAX_SEEDS} seeds"
    return (f"{text}; not resolved: these seeds detect |Δ| ≥ {diff.min_detectable:.{digits}g} (80% power), "
            f"the observed Δ needs {needed}")
