"""The sequential rule for seeds: after each block of paired seeds, is a comparison resolved, futile, or
worth another block?

A study runs seeds in blocks (``looks`` are the planned cumulative numbers of paired seeds, e.g.
``[3, 6, 9, 12]``) and after each block tests every comparison on its paired per-seed differences. A
naive t-test at every look rejects a true null far more often than its level (with looks 3, 6, 9, 12 about
14% of the time at 5%). ``decide`` instead tests the paired t statistic against a group-sequential
boundary: a **Lan–DeMets alpha-spending function** says how much of ``alpha`` may have been spent by the
information fraction ``n / looks[-1]``, and each look's **nominal two-sided level** is calibrated by
Monte Carlo so that, for normal differences of true mean 0, the probability of crossing at this look or
an earlier one equals the spent alpha. The calibration simulates the t statistic itself (not the z
statistic of normal theory), because at 3 to 12 seeds the t's heavier tails and its looks' correlation
differ from the normal theory's: the nominal levels of normal theory, applied to t, exceed ``alpha``
(about 0.0515 at 0.05 for O'Brien–Fleming, the issue's simulation). The first look's level is exact
(one t-test), the later ones come from ``CALIBRATION_DRAWS`` sequences with a fixed seed, so ``decide`` is
a pure function. Heavy-tailed (t with 3 df) and symmetric skewed (lognormal minus lognormal) differences
make the t-test conservative, so the normal calibration holds them too: benchmarks/sequential_design.py
measures all three.

The spending function is Hwang–Shih–DeCani's with gamma = -3 (``DEFAULT_SPENDING``), chosen by that benchmark
(docs/methods.md, "Sequential seeds", gives the comparison with O'Brien–Fleming- and Pocock-type
spending). No maintained Python package computes group-sequential boundaries for t statistics: the one on
PyPI (``gsdesign`` 0.1.5, alpha) has only normal-theory integration primitives.

Each look's interval is the **repeated confidence interval** ``mean ± t_{1-level/2, n-1} · sd / √n`` at
that look's nominal level: it excludes 0 exactly when the verdict is "resolved", and the intervals of all
looks cover the true difference simultaneously with probability 1 - alpha for normal differences (more
for the heavy-tailed and skewed ones the benchmark measures).

A failed replicate leaves fewer differences than planned. ``decide`` takes ``len(diffs) = n`` as the
look whose planned size is the first one ≥ n; its nominal level is calibrated for the planned looks
before it and a look at n, spending alpha up to the information fraction n / looks[-1] (the Lan–DeMets
recipe); a look past the second-to-last planned size is the last look and spends all of alpha. The
looks before are assumed at their planned sizes: decide sees only the differences, not their history.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

VERDICTS = ("continue", "resolved", "futile", "inconclusive")
CALIBRATION_DRAWS = 1 << 20  # sequences per calibration: the cumulative level's Monte-Carlo sd is about 2e-4 at 0.05
CALIBRATION_SEED = 20251205


def obrien_fleming(fraction: float, alpha: float) -> float:
    """Lan–DeMets O'Brien–Fleming-type spending: 2 - 2 Φ(z_{1-alpha/2} / √t). Spends almost nothing early."""
    from scipy import stats

    return float(2 * stats.norm.sf(stats.norm.isf(alpha / 2) / math.sqrt(fraction)))


def pocock(fraction: float, alpha: float) -> float:
    """Lan–DeMets Pocock-type spending: alpha · ln(1 + (e - 1) t). Spends much early, costs power at the end."""
    return alpha * math.log1p((math.e - 1) * fraction)


def hwang_shih_decani(gamma: float) -> Callable[[float, float], float]:
    """Hwang–Shih–DeCani spending: alpha (1 - e^{-gamma t}) / (1 - e^{-gamma}); gamma = -4 is close to
    O'Brien–Fleming, gamma = 1 to Pocock, gamma = 0 spends linearly."""

    def spend(fraction: float, alpha: float) -> float:
        if gamma == 0:
            return alpha * fraction
        return alpha * math.expm1(-gamma * fraction) / math.expm1(-gamma)

    spend.__name__ = f"hsd({gamma:g})"
    return spend


SPENDING: dict[str, Callable[[float, float], float]] = {
    "obf": obrien_fleming, "pocock": pocock,
    **{f"hsd({g:g})": hwang_shih_decani(g) for g in (-4, -3, -2.5, -2, -1, 0, 1)},
}
DEFAULT_SPENDING = "hsd(-3)"

# decide's nominal two-sided levels for looks (3, 6, 9, 12) and alpha 0.05 with DEFAULT_SPENDING, as
# `python -m search.sequential looks=3,6,9,12 alpha=0.05` prints them (tests/test_sequential.py checks
# them against a fresh calibration). docs/methods.md quotes them.
DEFAULT_DESIGN_LEVELS = (0.0029263, 0.00647358, 0.0152565, 0.0371785)


@dataclass(frozen=True)
class Decision:
    """One comparison at one look: the verdict, the repeated confidence interval [low, high] at this look's
    nominal two-sided ``level`` (NaN below 2 differences), the mean difference, n and the look (1-based)."""

    verdict: str
    low: float
    high: float
    estimate: float
    n: int
    look: int
    level: float


def look_of(n: int, looks: Sequence[int]) -> int:
    """The 0-based index of the look that n differences belong to: the first planned size ≥ n (a look
    short of its planned size lost replicates; more than the last look is refused)."""
    for index, size in enumerate(looks):
        if n <= size:
            return index
    raise ValueError(f"len(diffs)={n} is past the last look {looks[-1]}: a sequential comparison stops there")


def nominal_level(n: int, looks: Sequence[int], alpha: float = 0.05, spending: str = DEFAULT_SPENDING) -> float:
    """The nominal two-sided level of the t-test (and of the repeated interval) at a look with n differences."""
    looks = _checked_looks(looks)
    _check_alpha(alpha)
    if spending not in SPENDING:
        raise ValueError(f"unknown spending={spending!r}: use one of {', '.join(SPENDING)}")
    if n < 2:
        raise ValueError(f"n={n}: a t-test needs at least 2 differences")
    index = look_of(n, looks)
    if n == looks[index]:  # a planned look: one calibration of the whole design serves all of them
        return _calibrate(looks, looks[-1], alpha, spending, True)[index]
    return _calibrate(looks[:index] + (n,), looks[-1], alpha, spending, index == len(looks) - 1)[-1]


@functools.lru_cache(maxsize=256)
def _calibrate(schedule: tuple[int, ...], maximum: int, alpha: float, spending: str, final: bool,
               draws: int = CALIBRATION_DRAWS, seed: int = CALIBRATION_SEED) -> tuple[float, ...]:
    """Nominal levels for looks at the cumulative sizes ``schedule`` such that normal differences of mean 0
    cross one of the first k looks with probability spend(schedule[k-1] / maximum) (alpha at a final look).

    The t statistics are simulated from each block's sufficient statistics (its sum, normal, and its
    within-block sum of squares, chi-square), which have exactly the distribution of the normal
    differences' at two draws per block; blocks are drawn in order, so a schedule's levels do not depend on
    the looks after it."""
    from scipy import stats

    spend = SPENDING[spending]
    rng = np.random.default_rng(seed)
    total = np.zeros(draws)
    squares = np.zeros(draws)
    crossed = np.zeros(draws, dtype=bool)
    levels: list[float] = []
    previous = 0
    for index, n in enumerate(schedule):
        size = n - previous
        block = rng.standard_normal(draws) * math.sqrt(size)
        within = rng.chisquare(size - 1, draws) if size > 1 else np.zeros(draws)
        total += block
        squares += within + block ** 2 / size
        previous = n
        spent = alpha if final and index == len(schedule) - 1 else min(alpha, spend(n / maximum, alpha))
        sd = np.sqrt(np.maximum(squares - total ** 2 / n, 0.0) / (n - 1))
        t = np.abs(total) / (np.sqrt(n) * sd)
        if index == 0:  # one t-test: its level is exact
            level = spent
        else:
            alive = np.sort(t[~crossed])[::-1]
            need = int(round(spent * draws)) - int(crossed.sum())
            if need <= 0:
                level = 0.0
            else:
                need = min(need, alive.size - 1)
                critical = 0.5 * (alive[need - 1] + alive[need])
                level = float(2 * stats.t.sf(critical, n - 1))
        critical = stats.t.isf(level / 2, n - 1) if level > 0 else math.inf
        crossed |= t > critical
        levels.append(float(level))
    return tuple(levels)


def _checked_looks(looks: Sequence[int]) -> tuple[int, ...]:
    try:
        sizes = tuple(int(size) for size in looks)
    except (TypeError, ValueError):
        raise ValueError(f"looks={looks!r} must be a sequence of whole numbers, e.g. [3, 6, 9, 12]") from None
    if not sizes or any(size != value for size, value in zip(sizes, looks)):
        raise ValueError(f"looks={list(looks)!r} must be a non-empty sequence of whole numbers, e.g. [3, 6, 9, 12]")
    if sizes[0] < 2:
        raise ValueError(f"looks={list(sizes)}: the first look needs at least 2 differences for a t interval")
    if any(b <= a for a, b in zip(sizes, sizes[1:])):
        raise ValueError(f"looks={list(sizes)} must be strictly increasing cumulative sizes, e.g. [3, 6, 9, 12]")
    return sizes


def _check_alpha(alpha: float) -> None:
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise ValueError(f"alpha={alpha!r} must lie strictly between 0 and 1, e.g. 0.05")


def assess(mean: np.ndarray, sd: np.ndarray, n: int, level: float, *, margin: float | None = None,
           last: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The verdicts (indices into VERDICTS) and repeated intervals of many comparisons at one look with n
    differences each: the vectorised core of ``decide``, which benchmarks call on whole simulations.

    Resolved: the interval excludes 0. Futile: not resolved and the interval lies strictly inside
    (-margin, margin). Inconclusive: neither, at the last look. Continue: otherwise."""
    from scipy import stats

    mean, sd = np.asarray(mean, dtype=float), np.asarray(sd, dtype=float)
    critical = stats.t.isf(level / 2, n - 1) if level > 0 else math.inf
    half = np.full(mean.shape, math.inf) if math.isinf(critical) else critical * sd / math.sqrt(n)
    low, high = mean - half, mean + half
    resolved = (low > 0) | (high < 0)
    inside = (low > -margin) & (high < margin) if margin is not None else np.zeros(mean.shape, dtype=bool)
    codes = np.where(resolved, 1, np.where(inside, 2, 3 if last else 0))
    return codes, low, high


def decide(diffs: Sequence[float], *, looks: Sequence[int], alpha: float = 0.05, margin: float | None = None,
           spending: str = DEFAULT_SPENDING) -> Decision:
    """The verdict on one comparison from its paired per-seed differences so far.

    ``looks`` are the planned cumulative numbers of differences (e.g. [3, 6, 9, 12]); ``len(diffs)`` may fall
    short of its look's planned size when replicates failed (the module's docstring says how that is
    handled). ``alpha`` is this comparison's share of the family's error (``decide_family`` passes
    alpha / m). ``margin`` (> 0, in the differences' units) allows "futile": the repeated interval lies
    inside ±margin, so whatever the difference is, it is smaller than the margin; resolved takes
    precedence. Below 2 differences there is no interval and the verdict is "continue" — a caller that
    has run its last block reads that as inconclusive."""
    looks = _checked_looks(looks)
    _check_alpha(alpha)
    if margin is not None and not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin > 0):
        raise ValueError(f"margin={margin!r} must be a positive number in the differences' units, or None")
    if spending not in SPENDING:
        raise ValueError(f"unknown spending={spending!r}: use one of {', '.join(SPENDING)}")
    values = np.asarray(_checked_diffs(diffs), dtype=float)
    n = values.size
    index = look_of(n, looks)
    if n < 2:
        return Decision("continue", math.nan, math.nan, float(values.mean()) if n else math.nan, n, index + 1,
                        math.nan)
    level = nominal_level(n, looks, alpha, spending)
    mean, sd = values.mean(), values.std(ddof=1)
    codes, low, high = assess(np.array([mean]), np.array([sd]), n, level, margin=margin,
                              last=index == len(looks) - 1)
    return Decision(VERDICTS[int(codes[0])], float(low[0]), float(high[0]), float(mean), n, index + 1, level)


FAMILY_RULES = ("bonferroni", "holm")


def decide_family(diffs_by_comparison: Mapping[str, Sequence[float]], *, looks: Sequence[int], alpha: float = 0.05,
                  margins: float | Mapping[str, float | None] | None = None, family_size: int | None = None,
                  resolved_before: int = 0, rule: str = "bonferroni",
                  spending: str = DEFAULT_SPENDING) -> dict[str, Decision]:
    """The comparisons of a family still open, decided at one look so that the family-wise probability of
    any false "resolved" is ≤ alpha whatever the comparisons' correlation (a shared baseline correlates them).

    ``family_size`` is the whole family's m (default: the comparisons passed), so a caller passes only the
    comparisons still open. ``margins``: one margin for all, or a margin (or None) per comparison.

    - "bonferroni": each comparison at alpha / m, whatever happened before.
    - "holm": the sequentially rejective (Holm) version for group-sequential tests of Maurer & Bretz
      (2013): with r comparisons of the family resolved at earlier looks (``resolved_before``) each open
      one is tested at alpha / (m - r); when some resolve, the rest are tested again at this look at
      alpha / (m - r - those), until none resolves. A comparison closed as futile or inconclusive keeps
      its share (it was not rejected). It is a shortcut of closed testing with Bonferroni intersection
      tests, valid because a boundary at a higher level is never stricter (tests/test_sequential.py
      checks the nominal levels rise with alpha); past looks are not re-tested at the raised level,
      which only forgoes rejections."""
    size = len(diffs_by_comparison) if family_size is None else family_size
    if not isinstance(size, int) or size < max(1, len(diffs_by_comparison)):
        raise ValueError(f"family_size={family_size!r} must be a whole number ≥ the {len(diffs_by_comparison)} "
                         "comparisons passed")
    if rule not in FAMILY_RULES:
        raise ValueError(f"unknown family rule={rule!r}: use one of {', '.join(FAMILY_RULES)}")
    remaining = size - resolved_before if rule == "holm" else size
    if not isinstance(resolved_before, int) or resolved_before < 0 or remaining < len(diffs_by_comparison):
        raise ValueError(f"resolved_before={resolved_before!r} must be a whole number ≥ 0 that leaves the "
                         f"{len(diffs_by_comparison)} open comparisons in a family of {size}")
    _check_alpha(alpha)
    if isinstance(margins, Mapping):
        unknown = sorted(set(margins) - set(diffs_by_comparison))
        if unknown:
            raise ValueError(f"margins name comparisons not in the family: {', '.join(map(str, unknown))}")
    decisions: dict[str, Decision] = {}
    pending = dict(diffs_by_comparison)
    while pending:
        decided = {name: decide(diffs, looks=looks, alpha=alpha / remaining, spending=spending,
                                margin=margins.get(name) if isinstance(margins, Mapping) else margins)
                   for name, diffs in pending.items()}
        decisions.update(decided)
        newly = [name for name, decision in decided.items() if decision.verdict == "resolved"]
        if rule == "bonferroni" or not newly:
            break
        remaining -= len(newly)
        for name in newly:
            del pending[name]
    return {name: decisions[name] for name in diffs_by_comparison}


def configurations_to_run(needs: Mapping[str, Iterable[str]], decisions: Mapping[str, Decision | str]) -> list[str]:
    """The configurations the next block must run: those of every comparison still open (no decision yet,
    or "continue"), in the order ``needs`` first names them. ``needs`` maps each comparison to the
    configurations it compares, so a shared baseline runs while any of its comparisons is open."""
    unknown = sorted(set(decisions) - set(needs))
    if unknown:
        raise ValueError(f"decisions name comparisons not in needs: {', '.join(map(str, unknown))}")
    wanted: dict[str, None] = {}
    for name, configurations in needs.items():
        decision = decisions.get(name)
        verdict = decision.verdict if isinstance(decision, Decision) else decision
        if verdict is None or verdict == "continue":
            wanted.update(dict.fromkeys(configurations))
        elif verdict not in VERDICTS:
            raise ValueError(f"comparison {name!r} has verdict {verdict!r}: use one of {', '.join(VERDICTS)}")
    return list(wanted)


def _checked_diffs(diffs: Sequence[float]) -> list[float]:
    if isinstance(diffs, (str, bytes)) or not isinstance(diffs, Iterable):
        raise ValueError(f"diffs={diffs!r} must be a sequence of paired per-seed differences (floats)")
    values = []
    for position, value in enumerate(diffs):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(f"diffs[{position}]={value!r} is not a number")
        if not math.isfinite(value):
            raise ValueError(f"diffs[{position}] is {value}: leave a failed replicate's difference out instead")
        values.append(float(value))
    return values


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m search.sequential looks=3,6,9,12 alpha=0.05 [spending=hsd(-3)]`: the nominal levels,
    critical t values and spent alpha at each planned look, one JSON line."""
    import json
    import sys

    args = dict(a.split("=", 1) for a in (sys.argv[1:] if argv is None else argv) if "=" in a)
    try:
        looks = _checked_looks([int(size) for size in args.get("looks", "3,6,9,12").split(",")])
        alpha, spending = float(args.get("alpha", 0.05)), args.get("spending", DEFAULT_SPENDING)
        levels = [nominal_level(n, looks, alpha, spending) for n in looks]
    except ValueError as error:
        print(f"search.sequential: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    from scipy import stats

    print(json.dumps({"looks": list(looks), "alpha": alpha, "spending": spending,
                      "levels": [float(f"{level:.6g}") for level in levels],
                      "critical_t": [round(float(stats.t.isf(level / 2, n - 1)), 4) for level, n in zip(levels, looks)],
                      "spent": [round(SPENDING[spending](n / looks[-1], alpha), 6) for n in looks[:-1]] + [alpha]}))


if __name__ == "__main__":
    main()
