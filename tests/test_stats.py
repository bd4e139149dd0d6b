"""search/stats.py against independent computations: hand formulas with tabled t quantiles, scipy's tests,
and seeded Monte-Carlo simulations of the power claims."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sp

from search.stats import (Difference, describe, mean_ci, min_detectable_effect, paired_difference, power,
                          sd_interval, seeds_needed, sign_flip_p, welch_difference)


def test_paired_interval_by_hand():
    a = {0: 10.0, 1: 12.0, 2: 9.5, 3: 11.0}
    b = {0: 8.0, 1: 11.5, 2: 7.0, 3: 10.0, 7: 3.0}  # seed 7 has no partner: left out
    diffs = [-2.0, -0.5, -2.5, -1.0]
    mean, sd = sum(diffs) / 4, float(np.std(diffs, ddof=1))
    t_975_df3 = 3.182446305284263  # tabled
    d = paired_difference(a, b)
    assert d.paired and d.n == 4 and d.estimate == pytest.approx(mean)
    assert (d.low, d.high) == pytest.approx((mean - t_975_df3 * sd / 2, mean + t_975_df3 * sd / 2))
    assert d.resolved  # the interval lies below 0
    nan = paired_difference({0: 1.0, 1: math.nan}, {0: 2.0, 1: 5.0})  # a failed replicate drops its pair
    assert nan.n == 1 and math.isnan(nan.low)


def test_welch_interval_matches_the_formula():
    a, b = [9.1, 7.4, 12.0, 8.8], [6.9, 8.1, 7.7, 6.2, 9.0]
    va, vb = np.var(a, ddof=1) / 4, np.var(b, ddof=1) / 5
    df = (va + vb) ** 2 / (va ** 2 / 3 + vb ** 2 / 4)  # Welch-Satterthwaite
    half = sp.t.ppf(0.975, df) * math.sqrt(va + vb)
    d = welch_difference(a, b)
    diff = np.mean(b) - np.mean(a)
    assert not d.paired and d.estimate == pytest.approx(diff)
    assert (d.low, d.high) == pytest.approx((diff - half, diff + half))


def rejection_rate(effect, sd, n, paired, sims=20000, seed=0):
    rng = np.random.default_rng(seed)
    if paired:
        x = rng.normal(effect, sd, size=(sims, n))
        p = sp.ttest_1samp(x, 0.0, axis=1).pvalue
    else:
        x, y = rng.normal(0, sd, size=(sims, n)), rng.normal(effect, sd, size=(sims, n))
        p = sp.ttest_ind(y, x, axis=1).pvalue
    return float(np.mean(p < 0.05))


@pytest.mark.parametrize("paired", [True, False])
@pytest.mark.parametrize("n", [3, 6])
def test_minimum_detectable_effect_has_80_percent_power_by_simulation(paired, n):
    sd = 2.0
    mde = min_detectable_effect(sd, n, paired)
    assert power(mde, sd, n, paired) == pytest.approx(0.80, abs=1e-6)
    assert rejection_rate(mde, sd, n, paired) == pytest.approx(0.80, abs=0.015)
    assert min_detectable_effect(sd, 2 * n, paired) < mde  # more seeds resolve smaller effects


def test_seeds_needed_is_the_first_n_with_80_percent_power():
    effect, sd = 1.0, 2.0
    n = seeds_needed(effect, sd, paired=True)
    assert power(effect, sd, n, True) >= 0.8 > power(effect, sd, n - 1, True)
    assert rejection_rate(effect, sd, n, True) >= 0.785
    assert seeds_needed(0.0, sd, paired=True) is None and seeds_needed(1e-9, sd, paired=True) is None
    assert seeds_needed(effect, sd, paired=False) > n  # unpaired needs more


def test_describe_gives_the_detectable_effect_with_its_range_and_no_post_hoc_power():
    d = paired_difference({0: 1.0, 1: 2.0, 2: 3.0}, {0: 1.5, 1: 1.0, 2: 3.2})
    assert not d.resolved
    text = describe(d)
    assert "80% power" in text and "paired, n=3" in text and "needs" not in text
    low, high = sd_interval(d.sd, 3)
    chi = (math.sqrt(2 / sp.chi2.ppf(0.975, 2)), math.sqrt(2 / sp.chi2.ppf(0.025, 2)))
    assert (low, high) == pytest.approx((d.sd * chi[0], d.sd * chi[1]))
    assert (d.mde_low, d.mde_high) == pytest.approx((d.min_detectable * chi[0], d.min_detectable * chi[1]))
    assert mean_ci([1.0, 2.0, 3.0])[2] == 3


def test_sd_zero_or_fewer_than_three_pairs_never_resolve():
    same = paired_difference({0: 1.0, 1: 2.0, 2: 3.0, 3: 4.0}, {0: 2.0, 1: 3.0, 2: 4.0, 3: 5.0})  # all +1
    assert same.sd == 0 and not same.testable and not same.resolved and "sd 0" in describe(same)
    two = paired_difference({0: 1.0, 1: 2.0}, {0: 11.0, 1: 12.5})  # huge, but two pairs
    assert not two.resolved and "untestable" in describe(two)
    assert not welch_difference([1.0, 1.0, 1.0], [2.0, 2.0, 2.0]).resolved


@pytest.mark.parametrize("diffs", [[0.3, -1.2, 2.0], [1.0, 2.0, 3.0, 4.0, 5.0], [0.5, -0.1, 0.7, 1.9, -0.4, 0.8, 0.2]])
def test_sign_flip_p_matches_brute_force_enumeration(diffs):
    import itertools

    observed = abs(np.mean(diffs))
    flips = [abs(np.mean([s * d for s, d in zip(signs, diffs)])) for signs in itertools.product((1, -1), repeat=len(diffs))]
    brute = sum(f >= observed - 1e-12 for f in flips) / len(flips)
    assert sign_flip_p(diffs) == pytest.approx(brute)
    d = paired_difference({i: 0.0 for i in range(len(diffs))}, dict(enumerate(diffs)))
    assert d.perm_p == pytest.approx(brute) and d.min_p == pytest.approx(2 / 2 ** len(diffs))
    assert sign_flip_p([1.0, 2.0, 3.0]) == pytest.approx(0.25)  # the smallest possible at n = 3


def test_holm_and_gatekeeping_against_statsmodels_and_a_hand_example():
    from statsmodels.stats.multitest import multipletests

    from search.report.comparisons import Comparison, adjust

    def comparison(p, primary=False, n=6):
        # a Difference whose p is p: estimate 1, se chosen so that 2*sf(1/se) = p at n - 1 df
        se = 1 / sp.t.isf(p / 2, n - 1)
        d = Difference(1.0, 1 - 2.571 * se, 1 + 2.571 * se, n, n, True, sd=se * math.sqrt(n), p=p, se=se, df=n - 1)
        return Comparison("methods", "c", "w", "m", d, primary=primary)

    ps = [0.01, 0.04, 0.03, 0.005]
    fam = adjust([comparison(p) for p in ps])
    reject, adjusted, _, _ = multipletests(ps, alpha=0.05, method="holm")
    assert [c.p_adjusted for c in fam.comparisons] == pytest.approx(list(adjusted))
    assert [c.resolved for c in fam.comparisons] == list(reject)
    # by hand: sorted 0.005, 0.01, 0.03, 0.04 against 0.05/4, 0.05/3, 0.05/2, 0.05/1 -> the first two resolve
    assert [c.resolved for c in fam.comparisons] == [True, False, False, True]
    assert fam.size == 4 and fam.expected_by_chance == pytest.approx(0.2)
    # the simultaneous interval is the Bonferroni one, at 1 - 0.05/4
    c = fam.comparisons[0]
    half = sp.t.ppf(1 - 0.05 / 8, 5) * c.diff.se
    assert (c.sim_low, c.sim_high) == pytest.approx((1 - half, 1 + half))
    # gatekeeping: a resolved primary opens the gate for the rest, an unresolved one closes it
    opened = adjust([comparison(0.01, primary=True), comparison(0.02), comparison(0.001)])
    assert opened.gate_open and [c.resolved for c in opened.comparisons] == [True, True, True]
    closed = adjust([comparison(0.2, primary=True), comparison(0.02), comparison(0.001)])
    assert not closed.gate_open and not any(c.resolved for c in closed.comparisons)
    assert all("not tested" in c.verdict for c in closed.comparisons[1:])
    # untestable comparisons (sd 0, n < 3) never resolve and count in the family at p = 1
    flat = Difference(1.0, math.nan, math.nan, 6, 6, True, sd=0.0)
    fam = adjust([comparison(0.001), Comparison("methods", "c", "w", "m", flat)])
    assert fam.size == 2 and fam.comparisons[0].p_adjusted == pytest.approx(0.002)
    assert fam.comparisons[1].verdict.startswith("untestable") and not fam.comparisons[1].resolved
