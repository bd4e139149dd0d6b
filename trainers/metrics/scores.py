"""The metrics of an evaluation, stylegan2-style: each a function registered with the names it reports
(``@metric``), computed from the ``Scored`` set by the ``Evaluator`` whose references and settings it reads;
``METRICS`` is the only list of the names and ``metric_names`` expands it for an evaluation's settings.

Reported keys: ``fid``, ``kid``, ``is`` (Inception only), ``fid_n`` (size of the overall set),
``per_class_n``, ``samples_drawn`` (images G was asked for), ``draws_cap``; per class ``fid_class/<k>``,
``kid_class/<k>``, ``precision_class/<k>``, ``recall_class/<k>`` (NaN when missing),
``scored_class/<k>`` (samples behind them: N, fewer = missing), ``count_class/<k>`` (class ``k`` in the
overall set, by the judge's label or, conditional, by the requested one), ``judged_class/<k>`` (the
judge's labels in the overall set: the generated histogram), ``prior/<k>`` (training prior); per
group ``{fid,kid,precision,recall}_{minority,majority}`` and ``{minority,majority}_missing``; the FID
floors ``fid_floor_class/<k>``, ``fid_floor_minority``, ``fid_floor_majority`` (real vs real at N); the
sd over the reference draws ``evalsd/{fid,kid}`` and ``evalsd/<figure>_<group>``; under
``eval.split=val_test`` the validation half's ``val/{fid,kid}``, ``val/<figure>_<group>`` and
``val/<group>_missing`` (every other figure is the test half's);
``class_kl_uniform``, ``class_kl_prior``, ``classes_dropped``, ``judge/confident_rate`` (share of
samples with max softmax >= 0.9), ``judge/confidence`` (mean max
softmax), ``judge/test_accuracy`` and, conditional, ``judge/conditional_accuracy`` (fraction of the
overall set the judge assigns to the requested class). Conventions: see ``perclass``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from trainers.metrics import fidelity, perclass
from trainers.settings import EvalConfig

CONFIDENT = 0.9  # max softmax of a "confidently classified" sample
EVALSD = "evalsd/"  # the sd of a figure over the reference draws


def _sd(values: list[float]) -> float:
    """Sample sd (ddof 1); NaN below two finite values."""
    finite = [v for v in values if math.isfinite(v)]
    return float(np.std(finite, ddof=1)) if len(finite) >= 2 else math.nan


def as_numpy(stats: dict) -> dict:
    """Cached statistics (tensors) as the numpy arrays torch-fidelity's FID takes."""
    return {name: value.numpy() for name, value in stats.items()}


@dataclass(frozen=True)
class Scope:
    """What decides the names an evaluation reports."""

    parts: tuple[str, ...]  # the reference parts' prefixes: "" (test) and, under eval.split=val_test, "val/"
    num_classes: int
    inception: bool  # eval.features=inception (the Inception score)
    conditional: bool  # the scored set has requested labels (a conditional G)

    @classmethod
    def of(cls, eval_config: EvalConfig, num_classes: int, conditional: bool) -> Scope:
        parts = ("", perclass.VAL_PREFIX) if eval_config.split == "val_test" else ("",)
        return cls(parts, num_classes, eval_config.features == "inception", conditional)

    def expand(self, template: str) -> list[str]:
        """``{part}``: once per reference part; ``{k}``: once per class."""
        parts = self.parts if "{part}" in template else ("",)
        classes = range(self.num_classes) if "{k}" in template else (0,)
        return [template.format(part=part, k=k) for part in parts for k in classes]


@dataclass(frozen=True)
class Metric:
    names: tuple[str, ...]  # templates of the names it returns (Scope.expand)
    when: Callable[[Scope], bool]  # the evaluations that compute it
    compute: Callable[..., dict[str, float]]  # (evaluator, scored set) -> {name: value}

    def expand(self, scope: Scope) -> list[str]:
        return [name for template in self.names for name in scope.expand(template)]


# name -> metric, in the order an evaluation computes them; the registry is the only list of the names
METRICS: dict[str, Metric] = {}


def metric(*names: str, when: Callable[[Scope], bool] = lambda scope: True):
    """Registers a metric (stylegan2's ``register_metric``): ``names`` are the keys it returns."""

    def register(compute: Callable[..., dict[str, float]]):
        METRICS[compute.__name__.lstrip("_")] = Metric(names, when, compute)
        return compute

    return register


def metric_names(eval_config: EvalConfig, num_classes: int, conditional: bool) -> list[str]:
    """Every name an evaluation with these ``eval.*`` settings reports."""
    scope = Scope.of(eval_config, num_classes, conditional)
    return [name for m in METRICS.values() if m.when(scope) for name in m.expand(scope)]


@dataclass(frozen=True)
class Scored:
    """A set being scored: what every metric reads."""

    feats: torch.Tensor  # FID/KID features of every row
    logits: np.ndarray  # the judge's logits of the overall set
    is_logits: torch.Tensor | None  # Inception's logits of the overall set (eval.features=inception)
    judged: np.ndarray  # the judge's label of every row
    classes: np.ndarray  # the class every row is scored as (requested, else judged)
    n: int  # rows of the overall set
    draws: int  # images G was asked for
    rows: list[np.ndarray]  # each class's scored rows: its first N (overall set first, then the top-up)


# -- the metrics, in the order an evaluation computes them (each ``ev``: the Evaluator) -----------------


# the overall set: fixed N, G's own class mix, against each part's whole reference
@metric("{part}fid", "{part}kid", f"{EVALSD}fid")
def overall(ev, s: Scored) -> dict[str, float]:
    out: dict[str, float] = {}
    feats = s.feats[:s.n]
    for prefix, part in ev.parts.items():
        whole = ev.ref_features[part["whole"]]
        stats = ev.ref_stats if len(part["whole"]) == len(ev.ref_features) else None
        out[prefix + "fid"] = fidelity.fid_between(feats, whole, stats)
        out[prefix + "kid"] = fidelity.kid(feats, whole, ev.ecfg.kid_subset_size)
    # (no evalsd/kid: five more overall KIDs of 100 subsets each were half of the scoring's cost, and no
    # space studies the overall KID)
    out[f"{EVALSD}fid"] = _sd([fidelity.fid_between(feats, ev.ref_features[i]) for i in ev.parts[""]["boots"]])
    return out


@metric("is", when=lambda scope: scope.inception)
def inception_score(ev, s: Scored) -> dict[str, float]:
    return {"is": fidelity.inception_score(s.is_logits)}


@metric("fid_n", "per_class_n", "samples_drawn", "draws_cap")
def sizes(ev, s: Scored) -> dict[str, float]:
    return {"fid_n": s.n, "per_class_n": ev.per_class_n, "samples_drawn": s.draws, "draws_cap": ev.max_draws}


@metric("count_class/{k}", "judged_class/{k}", "prior/{k}", "class_kl_uniform", "class_kl_prior",
        "classes_dropped")
def class_mix(ev, s: Scored) -> dict[str, float]:
    k = ev.data.num_classes
    counts = np.bincount(s.classes[:s.n], minlength=k)
    judged_counts = np.bincount(s.judged[:s.n], minlength=k)
    out: dict[str, float] = {}
    for c in range(k):
        out[f"count_class/{c}"] = int(counts[c])
        out[f"judged_class/{c}"] = int(judged_counts[c])
        out[f"prior/{c}"] = ev.prior[c]
    out.update(perclass.class_diagnostics(s.judged[:s.n], k, ev.data.train_counts))
    return out


@metric("judge/confidence", "judge/confident_rate", "judge/test_accuracy")
def judge(ev, s: Scored) -> dict[str, float]:
    logits = s.logits
    # max softmax = 1 / sum_j exp(l_j - l_max)
    top = 1.0 / np.exp(logits - logits.max(1, keepdims=True)).sum(1) if len(logits) else None
    # the share of samples the judge calls with at least 90% certainty: a quality figure to read next to
    # the class coverage (a collapsed G that repeats one clean digit scores high here)
    return {"judge/confidence": float(top.mean()) if top is not None else math.nan,
            "judge/confident_rate": float((top >= CONFIDENT).mean()) if top is not None else math.nan,
            "judge/test_accuracy": ev.judge_accuracy}


@metric("judge/conditional_accuracy", when=lambda scope: scope.conditional)
def conditional_accuracy(ev, s: Scored) -> dict[str, float]:
    n = s.n
    return {"judge/conditional_accuracy": float(np.mean(s.judged[:n] == s.classes[:n])) if n else math.nan}


@metric("scored_class/{k}", "fid_floor_class/{k}", "fid_floor_minority", "fid_floor_majority")
def floors(ev, s: Scored) -> dict[str, float]:
    out: dict[str, float] = {}
    for c in range(ev.data.num_classes):
        out[f"scored_class/{c}"] = len(s.rows[c])
        out[f"fid_floor_class/{c}"] = ev.fid_floor[c]
    for group, members in (("minority", ev.data.minority), ("majority", ev.data.majority)):
        out[f"fid_floor_{group}"] = float(np.mean([ev.fid_floor[c] for c in members])) if members else math.nan
    return out


# every class at the same N: its scored rows, against each reference draw of each part
@metric(*(f"{name}_class/{{k}}" for name in perclass.CLASS_FIGURES),
        *(f"{{part}}{group}_missing" for group in perclass.GROUPS),
        *(f"{{part}}{name}" for name in perclass.GROUP_FIGURES),
        *(f"{EVALSD}{name}" for name in perclass.GROUP_FIGURES))
def per_class(ev, s: Scored) -> dict[str, float]:
    out: dict[str, float] = {}
    for prefix, part in ev.parts.items():
        out.update(class_scores(ev, s.feats, s.rows, part, prefix))
    return out


def class_scores(ev, feats: torch.Tensor, rows: list[np.ndarray], part: dict, prefix: str) -> dict[str, float]:
    """Per-class figures (the test part only) and group figures of one part; the group figures' sd
    over the reference draws (test part: ``evalsd/<figure>_<group>``)."""
    k, n, kid_size = ev.data.num_classes, ev.per_class_n, ev.ecfg.kid_subset_size
    value: dict[int, dict[str, float] | None] = {}
    spread: dict[int, list[dict[str, float]] | None] = {}
    for c in range(k):
        if len(rows[c]) < n:
            value[c] = spread[c] = None
            continue
        mine = feats[torch.from_numpy(rows[c])]
        ref = part["classes"][c]

        def score(draws: list[torch.Tensor], stats: list[dict]) -> list[dict[str, float]]:
            return [perclass.class_figures(mine, ev.ref_features[i], as_numpy(st), kid_size)
                    for i, st in zip(draws, stats)]

        values = score(ref["value"], ref["value_stats"])
        value[c] = {name: float(np.mean([v[name] for v in values])) for name in perclass.CLASS_FIGURES}
        same = len(ref["spread"]) == len(ref["value"]) and all(
            torch.equal(a, b) for a, b in zip(ref["spread"], ref["value"]))
        spread[c] = values if same else score(ref["spread"], ref["spread_stats"])
    wrong = {c: ref["wrong"] for c, ref in enumerate(part["classes"])}
    out: dict[str, float] = {}
    if not prefix:
        for c in range(k):
            for name in perclass.CLASS_FIGURES:
                out[f"{name}_class/{c}"] = value[c][name] if value[c] is not None else math.nan
    groups = perclass.group_figures(value, perclass.penalties(value, wrong, k), ev.data.minority,
                                    ev.data.majority)
    out.update({prefix + name: v for name, v in groups.items()})
    if not prefix:  # the sd over draws: each draw's group figures, missing classes at that draw's penalty
        count = min((len(s) for s in spread.values() if s is not None), default=0)
        per_draw = []
        for d in range(count):
            drawn = {c: (s[d] if s is not None else None) for c, s in spread.items()}
            per_draw.append(perclass.group_figures(drawn, perclass.penalties(drawn, wrong, k),
                                                   ev.data.minority, ev.data.majority))
        for name in perclass.GROUP_FIGURES:
            out[f"{EVALSD}{name}"] = _sd([g[name] for g in per_draw])
    return out
