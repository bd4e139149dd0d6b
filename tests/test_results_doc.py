"""docs/build_results.py: the paired-by-seed claims and the mechanical verdict that RESULTS.md rests on."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
from scipy import stats

SPEC = importlib.util.spec_from_file_location("build_results",
                                              Path(__file__).resolve().parent.parent / "docs" / "build_results.py")
build_results = importlib.util.module_from_spec(SPEC)
sys.modules["build_results"] = build_results  # its dataclass looks itself up there
SPEC.loader.exec_module(build_results)


def diff(estimate, low, high, mde=1.5):
    return build_results.Difference(estimate, low, high, 6, 6, True, mde, sd=1.0, mde_low=1.0, mde_high=3.0)


@pytest.mark.parametrize("d, sign, word", [
    (diff(-2.0, -3.0, -1.0), -1, "holds here"),
    (diff(-2.0, -3.0, -1.0), +1, "opposite here"),
    (diff(1.0, 3.0, 5.0), +1, "holds here"),
    (diff(1.0, 3.0, 5.0), 0, "resolved"),
    (diff(1.0, -0.5, 2.5), -1, "not resolved: these seeds detect \\|Δ\\| ≥ 1.5 (1–3)"),
    (diff(1.0, math.nan, math.nan), -1, "too few"),
])
def test_verdict_is_mechanical(d, sign, word):
    assert word in build_results.verdict(d, sign)


class Run:
    """The two fields ``claim`` reads from a TrialRun."""

    def __init__(self, seed, fid):
        self.seed, self.metrics = seed, {"fid": fid}


def test_claims_pair_by_seed_and_drop_unmatched_or_nan_seeds():
    a = [Run(0, 10.0), Run(1, 12.0), Run(2, 11.0), Run(3, 9.0)]
    b = [Run(0, 8.0), Run(1, 11.0), Run(2, math.nan), Run(3, 7.5), Run(4, 1.0)]
    c = build_results.claim("text", "cond", "FID", "fid", "A", a, "B", b, -1)
    assert c.diff.paired and c.diff.n == 3
    assert c.diff.estimate == pytest.approx(((8 - 10) + (11 - 12) + (7.5 - 9)) / 3)
    ci = stats.ttest_rel([8.0, 11.0, 7.5], [10.0, 12.0, 9.0]).confidence_interval(0.95)
    assert (c.diff.low, c.diff.high) == pytest.approx((ci.low, ci.high))
    assert c.a[2] == 4 and c.b[2] == 4  # each arm's own mean uses all its finite seeds
    two = build_results.claim("text", "cond", "FID", "fid", "A", a[:2], "B", b[:2], -1)
    assert two.diff.n == 2 and not two.diff.resolved  # two pairs never resolve


def test_claims_are_adjusted_by_holm_as_one_family():
    from statsmodels.stats.multitest import multipletests

    def claim_with_p(p, n=6):
        se = 1 / stats.t.isf(p / 2, n - 1)
        half = stats.t.ppf(0.975, n - 1) * se
        d = build_results.Difference(1.0, 1 - half, 1 + half, n, n, True, 0.5, sd=se * math.sqrt(n), p=p, se=se,
                                     df=n - 1)
        return build_results.Claim("c", "cond", "fid", "A", (0, 0, n), "B", (1, 0, n), d, +1)

    ps = [0.001, 0.03, 0.04, 0.2]
    rows = [claim_with_p(p) for p in ps]
    assert build_results.adjust_claims(rows) == 4
    reject, adjusted, _, _ = multipletests(ps, alpha=0.05, method="holm")
    assert [c.p_adjusted for c in rows] == pytest.approx(list(adjusted))
    assert [c.adjusted for c in rows] == list(reject) == [True, False, False, False]
    assert "holds here" in build_results.verdict(rows[0].diff, +1, rows[0].adjusted)
    # resolved before the adjustment, not after: the verdict says both
    assert "not resolved (resolved before adjustment)" in build_results.verdict(rows[1].diff, +1, rows[1].adjusted)


def test_study_minutes_count_the_time_trials_ran_not_the_pauses_between_sessions():
    """A study stopped and resumed hours later (a resumed trial keeps its MLflow run, so its start and end
    span the pause): its minutes sum the gaps between its trials' events, pauses over 5 minutes left out."""
    from search.report import TrialRun

    minute = 60_000
    events = [0, 1 * minute, 2 * minute, 3 * minute, 3 * minute, 200 * minute, 201 * minute, 204 * minute]
    assert build_results.study_minutes(events) == pytest.approx(3 + 1 + 3)
    assert build_results.study_minutes(list(reversed(events))) == pytest.approx(7)
    assert math.isnan(build_results.study_minutes([])) and math.isnan(build_results.study_minutes([5]))

    def run(seed=0, **sampled):
        return TrialRun("r", "FINISHED", {}, sampled, {}, tags={"seed": str(seed)})

    runs = [run(0), run(1), run(2), run(0, method="x")]
    runs[0].start_ms, runs[0].evaluated_ms = 10, [20, 30]
    runs[1].start_ms, runs[1].evaluated_ms = 15, [25]
    failed = TrialRun("f", "FAILED", {}, {}, {}, tags={"seed": "3"}, start_ms=99, evaluated_ms=[100])
    assert sorted(build_results.study_events(runs[:2] + [failed])) == [10, 15, 20, 25, 30]
    assert build_results.seeds_per_configuration(runs) == "1–3"
    assert build_results.seeds_per_configuration(runs[:2]) == "2"
