"""search/stats.py against independent computations: hand formulas with tabled t quantiles, scipy's tests,
and seeded Monte-Carlo simulations of the power claims."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sp

from search.stats import (describe, mean_ci, min_detectable_effect, paired_difference, power, seeds_needed,
                          welch_difference)


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


def test_describe_says_what_an_unresolved_comparison_could_resolve():
    d = paired_difference({0: 1.0, 1: 2.0, 2: 3.0}, {0: 1.5, 1: 1.0, 2: 3.2})
    assert not d.resolved
    text = describe(d)
    assert "not resolved" in text and "80% power" in text and "seeds" in text and "paired, n=3" in text
    assert mean_ci([1.0, 2.0, 3.0])[2] == 3
