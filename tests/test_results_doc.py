"""docs/build_results.py: the Welch interval and the mechanical verdict that RESULTS.md rests on."""

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


def test_welch_interval_matches_scipy():
    a, b = [9.1, 7.4, 12.0, 8.8], [6.9, 8.1, 7.7, 6.2, 9.0]
    diff, low, high = build_results.welch(a, b)
    ci = stats.ttest_ind(b, a, equal_var=False).confidence_interval(0.95)
    assert diff == pytest.approx(sum(b) / 5 - sum(a) / 4)
    assert (low, high) == pytest.approx((ci.low, ci.high))


def test_welch_ignores_nan_and_needs_two_values_a_side():
    assert build_results.welch([1.0, math.nan, 3.0], [2.0, 4.0])[0] == pytest.approx(1.0)
    diff, low, high = build_results.welch([1.0], [2.0, 3.0])
    assert diff == pytest.approx(1.5) and math.isnan(low) and math.isnan(high)


@pytest.mark.parametrize("diff, sign, word", [
    ((-2.0, -3.0, -1.0), -1, "holds here"),
    ((-2.0, -3.0, -1.0), +1, "opposite here"),
    ((1.0, 3.0, 5.0), +1, "holds here"),
    ((1.0, -0.5, 2.5), -1, "not resolved"),
    ((1.0, math.nan, math.nan), -1, "too few"),
])
def test_verdict_is_mechanical(diff, sign, word):
    assert word in build_results.verdict(diff, sign)
