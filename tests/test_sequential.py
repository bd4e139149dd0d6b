"""search/sequential.py against independent computations: the spending functions' formulas, t statistics
built by hand on either side of each look's boundary, scipy's t quantiles for the intervals, and a seeded
simulation of raw differences (not the calibration's sufficient statistics) for the type I error."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from search import sequential as sq

LOOKS = [3, 6, 9, 12]


def with_t(t: float, n: int, sd: float = 2.0) -> list[float]:
    """n differences whose paired t statistic is exactly t (sd of the differences = sd)."""
    base = np.arange(n, dtype=float)
    base = (base - base.mean()) / base.std(ddof=1)
    return list(t * sd / math.sqrt(n) + sd * base)


def test_spending_functions_by_hand():
    assert sq.SPENDING["hsd(-3)"](0.25, 0.05) == pytest.approx(0.05 * (math.exp(0.75) - 1) / (math.exp(3) - 1))
    assert sq.SPENDING["hsd(0)"](0.5, 0.05) == pytest.approx(0.025)
    assert sq.SPENDING["obf"](0.25, 0.05) == pytest.approx(2 * (1 - stats.norm.cdf(1.959963985 / 0.5)))
    assert sq.SPENDING["pocock"](1.0, 0.05) == pytest.approx(0.05)
    for spend in sq.SPENDING.values():  # every one spends all of alpha at the end, and never more on the way
        assert spend(1.0, 0.01) == pytest.approx(0.01)
        assert all(spend(a, 0.05) < spend(b, 0.05) for a, b in [(0.2, 0.4), (0.4, 0.8)])


def test_first_look_is_exact_and_levels_match_the_stored_constants():
    levels = [sq.nominal_level(n, LOOKS) for n in LOOKS]
    assert levels[0] == pytest.approx(sq.SPENDING[sq.DEFAULT_SPENDING](0.25, 0.05), rel=1e-12)
    assert levels == pytest.approx(list(sq.DEFAULT_DESIGN_LEVELS), rel=1e-5)
    assert all(0 < level < 0.05 for level in levels)


def test_a_fresh_calibration_at_lower_precision_rederives_the_constants():
    fresh = sq._calibrate(tuple(LOOKS), 12, 0.05, sq.DEFAULT_SPENDING, True, draws=1 << 17, seed=11)
    assert fresh[0] == pytest.approx(sq.DEFAULT_DESIGN_LEVELS[0], rel=1e-5)  # exact at any precision
    assert fresh[1:] == pytest.approx(sq.DEFAULT_DESIGN_LEVELS[1:], rel=0.1)


@pytest.mark.parametrize("look", range(4))
def test_the_verdict_flips_exactly_at_the_boundary(look):
    n = LOOKS[look]
    critical = stats.t.isf(sq.DEFAULT_DESIGN_LEVELS[look] / 2, n - 1)  # by hand from the stored level
    closed = "inconclusive" if look == 3 else "continue"
    for sign in (1, -1):
        above = sq.decide(with_t(sign * critical * (1 + 1e-4), n), looks=LOOKS)
        below = sq.decide(with_t(sign * critical * (1 - 1e-4), n), looks=LOOKS)
        assert (above.verdict, below.verdict) == ("resolved", closed)
        assert above.look == below.look == look + 1 and above.n == n
        assert (above.low > 0) if sign > 0 else (above.high < 0)


def test_interval_is_the_repeated_t_interval_and_excludes_zero_iff_resolved():
    rng = np.random.default_rng(3)
    seen = set()
    for _ in range(300):
        n = int(rng.integers(2, 13))
        diffs = rng.normal(rng.choice([0.0, 1.0, 3.0]), 1.0, n)
        d = sq.decide(diffs.tolist(), looks=LOOKS)
        half = stats.t.isf(d.level / 2, n - 1) * diffs.std(ddof=1) / math.sqrt(n)
        assert (d.low, d.high) == pytest.approx((diffs.mean() - half, diffs.mean() + half))
        assert (d.verdict == "resolved") == (d.low > 0 or d.high < 0)
        seen.add(d.verdict)
    assert {"resolved", "continue", "inconclusive"} <= seen


def test_futility_needs_a_margin_and_the_last_look_is_inconclusive():
    tight = [0.01, -0.01, 0.02, -0.02, 0.0, 0.005]
    assert sq.decide(tight, looks=LOOKS).verdict == "continue"
    futile = sq.decide(tight, looks=LOOKS, margin=0.5)
    assert futile.verdict == "futile" and -0.5 < futile.low < 0 < futile.high < 0.5
    half = stats.t.isf(sq.DEFAULT_DESIGN_LEVELS[1] / 2, 5) * np.std(tight, ddof=1) / math.sqrt(6)  # by hand
    edge = abs(np.mean(tight)) + half  # the interval reaches this far from 0
    assert sq.decide(tight, looks=LOOKS, margin=edge * 1.001).verdict == "futile"
    assert sq.decide(tight, looks=LOOKS, margin=edge * 0.999).verdict == "continue"
    wide = with_t(1.0, 12)
    assert sq.decide(wide, looks=LOOKS).verdict == "inconclusive"
    assert sq.decide(wide, looks=LOOKS, margin=100.0).verdict == "futile"
    # resolved wins over futile: a clear difference smaller than the margin is still a difference
    assert sq.decide(with_t(50.0, 6), looks=LOOKS, margin=1e6).verdict == "resolved"


def test_a_look_short_of_its_size_spends_alpha_by_information_fraction():
    five = sq.decide(with_t(0.5, 5), looks=LOOKS)  # look 2 lost a replicate
    assert (five.look, five.n) == (2, 5)
    assert sq.DEFAULT_DESIGN_LEVELS[0] < five.level < sq.DEFAULT_DESIGN_LEVELS[1]
    assert five.level == sq._calibrate((3, 5), 12, 0.05, sq.DEFAULT_SPENDING, False)[-1]
    ten = sq.decide(with_t(0.5, 10), looks=LOOKS)  # past look 3: the last look, all of alpha spent
    assert (ten.look, ten.verdict) == (4, "inconclusive")
    assert ten.level == sq._calibrate((3, 6, 9, 10), 12, 0.05, sq.DEFAULT_SPENDING, True)[-1]
    few = sq.decide([0.4], looks=LOOKS)
    assert few.verdict == "continue" and math.isnan(few.low) and few.estimate == 0.4
    assert sq.decide([], looks=LOOKS).verdict == "continue"


@pytest.mark.parametrize("kwargs, message", [
    (dict(looks=[3, 3, 6]), "strictly increasing"),
    (dict(looks=[6, 3]), "strictly increasing"),
    (dict(looks=[]), "non-empty"),
    (dict(looks=[1, 4]), "at least 2"),
    (dict(looks=[3.5, 6]), "whole numbers"),
    (dict(looks=LOOKS, alpha=0.0), "alpha"),
    (dict(looks=LOOKS, alpha=1.0), "alpha"),
    (dict(looks=LOOKS, alpha=-0.1), "alpha"),
    (dict(looks=LOOKS, margin=0.0), "margin"),
    (dict(looks=LOOKS, margin=math.inf), "margin"),
    (dict(looks=LOOKS, spending="lan"), "unknown spending"),
])
def test_bad_design_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sq.decide([0.1, 0.2, 0.3], **kwargs)


@pytest.mark.parametrize("diffs, message", [
    ([0.1, math.nan, 0.3], r"diffs\[1\] is nan"),
    ([0.1, math.inf], r"diffs\[1\] is inf"),
    ([0.1, "x"], "not a number"),
    ("0.1", "sequence"),
    ([0.0] * 13, "past the last look 12"),
])
def test_bad_diffs_refused(diffs, message):
    with pytest.raises(ValueError, match=message):
        sq.decide(diffs, looks=LOOKS)


def test_type1_by_simulation_of_raw_differences():
    """40,000 normal sequences (drawn seed by seed, not from the calibration's sufficient statistics): the
    rule holds 5%; a naive t-test at every look, on the same draws, does not."""
    rng = np.random.default_rng(2024)
    x = rng.standard_normal((40_000, 12))
    rule = np.zeros(len(x), dtype=bool)
    naive = np.zeros(len(x), dtype=bool)
    for look, n in enumerate(LOOKS):
        mean, sd = x[:, :n].mean(1), x[:, :n].std(1, ddof=1)
        codes, _, _ = sq.assess(mean, sd, n, sq.nominal_level(n, LOOKS), last=look == 3)
        rule |= codes == 1
        naive |= np.abs(mean) * math.sqrt(n) / sd > stats.t.isf(0.025, n - 1)
    se = math.sqrt(0.05 * 0.95 / len(x))
    assert abs(rule.mean() - 0.05) < 3 * se
    assert naive.mean() > 0.12  # the 14%: the simulation can see an inflated rule


def test_family_is_bonferroni():
    diffs = {"a": with_t(5.0, 6), "b": with_t(0.2, 6), "c": with_t(-9.0, 6)}
    family = sq.decide_family(diffs, looks=LOOKS, alpha=0.06, margins={"b": 50.0})
    for name, d in diffs.items():
        assert family[name] == sq.decide(d, looks=LOOKS, alpha=0.02, margin=50.0 if name == "b" else None)
    assert family["b"].verdict == "futile"
    alone = sq.decide_family({"a": diffs["a"]}, looks=LOOKS, alpha=0.06, family_size=3)
    assert alone["a"] == family["a"]  # only the open ones passed, the family's size given
    with pytest.raises(ValueError, match="family_size"):
        sq.decide_family(diffs, looks=LOOKS, family_size=2)
    with pytest.raises(ValueError, match="not in the family"):
        sq.decide_family(diffs, looks=LOOKS, margins={"z": 1.0})


def test_the_baseline_runs_while_any_of_its_comparisons_is_open():
    needs = {"sdclr": ("base", "sdclr"), "gsr": ("base", "gsr"), "lecam": ("gsr", "lecam")}
    assert sq.configurations_to_run(needs, {}) == ["base", "sdclr", "gsr", "lecam"]
    closed = sq.Decision("resolved", 1.0, 2.0, 1.5, 6, 2, 0.01)
    assert sq.configurations_to_run(needs, {"sdclr": closed}) == ["base", "gsr", "lecam"]
    assert sq.configurations_to_run(needs, {"sdclr": closed, "gsr": "futile"}) == ["gsr", "lecam"]
    assert sq.configurations_to_run(needs, {"sdclr": closed, "gsr": "futile", "lecam": "inconclusive"}) == []
    with pytest.raises(ValueError, match="not in needs"):
        sq.configurations_to_run(needs, {"dcgan": closed})
    with pytest.raises(ValueError, match="verdict"):
        sq.configurations_to_run(needs, {"gsr": "done"})


def test_levels_never_get_stricter_as_alpha_rises():
    """Holm's shortcut needs it: crossing at alpha / k implies crossing at alpha / (k - 1)."""
    for n in (6, 10, 12):  # the level at 3 is the spending function's, exact
        levels = [sq.nominal_level(n, LOOKS, 0.05 / m) for m in range(6, 0, -1)]
        assert all(a < b for a, b in zip(levels, levels[1:])), (n, levels)


def test_holm_tests_again_at_the_raised_level_after_a_resolution():
    n = 6
    crit = {m: stats.t.isf(sq.nominal_level(n, LOOKS, 0.05 / m) / 2, n - 1) for m in (1, 2, 3)}
    diffs = {"clear": with_t(2 * crit[3], n), "between": with_t((crit[3] + crit[2]) / 2, n),
             "none": with_t(0.1, n)}
    bonferroni = sq.decide_family(diffs, looks=LOOKS, alpha=0.05)
    holm = sq.decide_family(diffs, looks=LOOKS, alpha=0.05, rule="holm")
    assert [bonferroni[k].verdict for k in diffs] == ["resolved", "continue", "continue"]
    assert [holm[k].verdict for k in diffs] == ["resolved", "resolved", "continue"]
    assert holm["between"] == sq.decide(diffs["between"], looks=LOOKS, alpha=0.05 / 2)
    assert holm["none"] == sq.decide(diffs["none"], looks=LOOKS, alpha=0.05 / 1)  # the last one left gets all
    # two resolved at earlier looks: the open one starts at alpha / (3 - 2)
    later = sq.decide_family({"none": diffs["none"]}, looks=LOOKS, family_size=3, resolved_before=2, rule="holm")
    assert later["none"].level == sq.nominal_level(n, LOOKS, 0.05)
    with pytest.raises(ValueError, match="resolved_before"):
        sq.decide_family(diffs, looks=LOOKS, resolved_before=1, rule="holm")
    with pytest.raises(ValueError, match="unknown family rule"):
        sq.decide_family(diffs, looks=LOOKS, rule="hochberg")
