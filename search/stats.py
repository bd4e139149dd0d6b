"""The statistics a reviewer asks of a comparison over seeds: intervals, p-values, what n can resolve.

Replicates with the same seed share the data subset, its order and G's initialisation, so two
configurations are compared **paired by seed**: a paired t interval of the per-seed differences. That
holds across imbalance levels too: for one seed the ρ=100 subset is nested in the ρ=10 one (trainers.data
``make_longtail`` draws each class's full permutation from a generator seeded by the seed and keeps its
first n, whatever n is) and G's initialisation comes from the same ``seed_everything(seed)``.

An sd of 0 or fewer than ``MIN_N`` pairs is *untestable*: no interval, never resolved (a zero-width
interval from identical values says nothing about the next seed). Beside the t interval, an exact
sign-flip permutation p-value (scipy's ``permutation_test``, every one of the 2^n flips for n <= 16); its
smallest possible value is 2/2^n. For an unresolved comparison we say what these seeds *could* detect —
the minimum detectable effect (80% power, two-sided 5% t-test, noncentral t), with a range from the 95%
chi-square interval of the sd behind it, since an sd from a handful of seeds is itself uncertain. Seeds
needed are computed only for effects declared before the study (a space's ``effects:``), never for the
observed difference (that is post-hoc power, a function of the observed t alone).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

LEVEL = 0.95
POWER = 0.80
MAX_SEEDS = 10_000
MIN_N = 3  # fewer pairs never resolve: a 1-df interval is too wide to mean anything and too easy to misread
EXACT_PERMUTATION_N = 16  # up to 2^16 sign flips: enumerate them all


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
    """``b - a``: its estimate, 95% interval and p-values, how it was computed, and what n could resolve."""

    estimate: float
    low: float
    high: float
    n_a: int
    n_b: int
    paired: bool
    min_detectable: float = math.nan  # smallest |difference| these seeds detect with 80% power
    sd: float = math.nan  # the spread behind it: sd of the paired differences, or the pooled sd (Welch)
    p: float = math.nan  # two-sided t-test p-value, unadjusted
    perm_p: float = math.nan  # exact sign-flip permutation p-value (paired only)
    mde_low: float = math.nan  # the minimum detectable effect at the ends of the sd's 95% chi-square interval
    mde_high: float = math.nan
    se: float = math.nan  # standard error and degrees of freedom: any other level's interval is estimate ± t*se
    df: float = math.nan

    @property
    def n(self) -> int:
        return min(self.n_a, self.n_b)

    @property
    def testable(self) -> bool:
        """Enough pairs and a nonzero spread for a t interval to mean something."""
        return self.n >= MIN_N and math.isfinite(self.sd) and self.sd > 0 and math.isfinite(self.low)

    @property
    def resolved(self) -> bool:
        """The *unadjusted* 95% interval excludes 0 (a report's verdicts adjust for its family)."""
        return self.testable and (self.low > 0 or self.high < 0)

    def interval(self, level: float) -> tuple[float, float]:
        """The t interval at another level (e.g. 1 - 0.05/m for a Bonferroni simultaneous interval)."""
        from scipy import stats

        if not self.testable:
            return math.nan, math.nan
        half = stats.t.ppf(0.5 + level / 2, self.df) * self.se
        return self.estimate - half, self.estimate + half

    @property
    def min_p(self) -> float:
        """The smallest p-value the sign-flip permutation test can give at this n: 2 / 2^n."""
        return min(1.0, 2.0 / 2 ** self.n) if self.n else math.nan


def sd_interval(sd: float, n: int, level: float = LEVEL) -> tuple[float, float]:
    """The chi-square confidence interval of a normal sd estimated from n values (n - 1 df)."""
    from scipy import stats

    if n < 2 or not math.isfinite(sd):
        return math.nan, math.nan
    df = n - 1
    return (sd * math.sqrt(df / stats.chi2.ppf(0.5 + level / 2, df)),
            sd * math.sqrt(df / stats.chi2.ppf(0.5 - level / 2, df)))


def sign_flip_p(diffs: Sequence[float]) -> float:
    """Two-sided exact sign-flip permutation p-value of the mean of paired differences (scipy's
    ``permutation_test``; all 2^n flips for n <= 16, 100,000 random ones above)."""
    import numpy as np
    from scipy import stats

    diffs = np.asarray(finite(diffs), dtype=float)
    if len(diffs) == 0:
        return math.nan
    if not np.any(diffs):
        return 1.0
    exact = len(diffs) <= EXACT_PERMUTATION_N
    result = stats.permutation_test((diffs,), lambda x, axis: np.mean(x, axis=axis), vectorized=True,
                                    permutation_type="samples", alternative="two-sided",
                                    n_resamples=np.inf if exact else 100_000, rng=0)
    return float(result.pvalue)


def paired_difference(a: Mapping[int, float], b: Mapping[int, float], level: float = LEVEL,
                      detail: bool = True) -> Difference:
    """``b - a`` over the seeds both have a finite value for: the paired t interval and p (scipy's
    ``ttest_rel``), the sign-flip permutation p and the minimum detectable difference with its range
    (``detail=False`` leaves those two out: they never change a verdict, and a simulation of thousands of
    studies skips them). Below ``MIN_N`` pairs or at an sd of 0 it carries the estimate only (untestable)."""
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
    perm_p = sign_flip_p(diffs) if detail else math.nan
    if sd == 0 or n < MIN_N:
        return Difference(estimate, math.nan, math.nan, n, n, True, sd=sd, perm_p=perm_p)
    se = sd / math.sqrt(n)
    if not detail:  # the t interval and p from the formula: what ttest_rel computes, without its overhead
        half = stats.t.ppf(0.5 + level / 2, n - 1) * se
        p = float(2 * stats.t.sf(abs(estimate) / se, n - 1))
        return Difference(estimate, estimate - half, estimate + half, n, n, True, sd=sd, p=p, se=se, df=n - 1)
    test = stats.ttest_rel([b[s] for s in seeds], [a[s] for s in seeds])
    ci = test.confidence_interval(level)
    mde = min_detectable_effect(sd, n, paired=True)
    sd_low, sd_high = sd_interval(sd, n)
    return Difference(estimate, float(ci.low), float(ci.high), n, n, True, mde, sd=sd, p=float(test.pvalue),
                      perm_p=perm_p, mde_low=mde * sd_low / sd, mde_high=mde * sd_high / sd,
                      se=se, df=n - 1)


def one_sample(values: Mapping[int, float], level: float = LEVEL, detail: bool = True) -> Difference:
    """A per-seed quantity (e.g. the mean of several paired differences) against 0, as a paired difference."""
    return paired_difference({s: 0.0 for s in values}, values, level, detail)


def welch_difference(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> Difference:
    """``mean(b) - mean(a)`` of independent groups: Welch's interval (scipy's ``ttest_ind``) and the minimum
    detectable difference (for groups that share no seed; the report pairs what it can)."""
    from scipy import stats

    a, b = finite(a), finite(b)
    if not a or not b:
        return Difference(math.nan, math.nan, math.nan, len(a), len(b), False)
    estimate = sum(b) / len(b) - sum(a) / len(a)
    if len(a) < 2 or len(b) < 2:
        return Difference(estimate, math.nan, math.nan, len(a), len(b), False)
    var_a, var_b = stats.tvar(a), stats.tvar(b)
    pooled_sd = math.sqrt((var_a + var_b) / 2)
    if pooled_sd == 0 or min(len(a), len(b)) < MIN_N:
        return Difference(estimate, math.nan, math.nan, len(a), len(b), False, sd=pooled_sd)
    test = stats.ttest_ind(b, a, equal_var=False)
    ci = test.confidence_interval(level)
    n = min(len(a), len(b))
    se = math.sqrt(var_a / len(a) + var_b / len(b))
    df = se ** 4 / ((var_a / len(a)) ** 2 / (len(a) - 1) + (var_b / len(b)) ** 2 / (len(b) - 1))
    mde = min_detectable_effect(pooled_sd, n, paired=False)
    return Difference(estimate, float(ci.low), float(ci.high), len(a), len(b), False, mde, sd=pooled_sd,
                      p=float(test.pvalue), se=se, df=df)


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
    """The fewest seeds (pairs, or per arm) that detect a true ``effect`` with probability ``target``;
    None when it would take more than MAX_SEEDS. ``effect`` must be declared in advance (a space's
    ``effects:``, a paper's claim), never the observed difference: that is post-hoc power."""
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


def fmt_p(p: float) -> str:
    if not math.isfinite(p):
        return "—"
    return f"{p:.2g}" if p >= 0.001 else "<0.001"


def describe(diff: Difference, digits: int = 3) -> str:
    """One table cell: the difference, its (unadjusted) interval, n, and for an unresolved one the minimum
    detectable effect with its range."""
    if not math.isfinite(diff.estimate):
        return "— (no finished pair)" if diff.paired else "— (no finished run)"
    kind = "paired" if diff.paired else "Welch"
    n = f"n={diff.n}" if diff.paired else f"n={diff.n_a}/{diff.n_b}"
    if diff.n < MIN_N:
        return f"{diff.estimate:+.{digits}g} ({n}: fewer than {MIN_N} pairs, untestable)"
    if not diff.testable:
        return f"{diff.estimate:+.{digits}g} ({n}: sd 0, untestable)"
    text = f"{diff.estimate:+.{digits}g} [{diff.low:+.{digits}g}, {diff.high:+.{digits}g}] ({kind}, {n})"
    if diff.resolved:
        return text
    return (f"{text}; these seeds detect |Δ| ≥ {diff.min_detectable:.{digits}g} "
            f"(80% power; {diff.mde_low:.{digits}g}–{diff.mde_high:.{digits}g} over the sd's 95% range)")
