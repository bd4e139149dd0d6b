"""Validation of a space's keys one by one: the value checks (numbers, words, mappings, effect sizes) and
the parsers of ``scheduler``, ``seeds``, ``params``, the grid, the report's keys and ``failure_value``;
``search.space_validate`` puts them together."""

from __future__ import annotations

import math
from typing import Any, Mapping

from search.space_model import (CHOICE_TYPES, DISTRIBUTIONS, MAX_GRID_CELLS, MAX_SEEDS, SCHEDULERS, SEED_RANGE,
                                Param, Scheduler, SequentialSeeds, Space, SpaceError)
from trainers.metrics.untrained import UNTRAINED

def _err(source: str, key: Any, message: str) -> SpaceError:
    return SpaceError(f"{source}: '{key}' {message}")


def _number(source, key, value, kind=float):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _err(source, key, f"must be a number, got {value!r}")
    if not math.isfinite(value):
        raise _err(source, key, f"must be a finite number, got {value!r}")
    if kind is int and not float(value).is_integer():
        raise _err(source, key, f"must be an integer, got {value!r}")
    return kind(value)


def _word(source: str, key: str, value: Any, valid) -> str:
    """``value`` must be one of the names ``valid``."""
    if not isinstance(value, str) or value not in valid:
        raise _err(source, key, f"= {value!r} is not one of {', '.join(valid)}")
    return value


def _mapping(source: str, key: str, value: Any, example: str) -> dict:
    if not isinstance(value, Mapping):
        raise _err(source, key, f"must be a mapping such as {example}, got {value!r}")
    return dict(value)


PRIMARY_KEYS = ("a", "b", "metric", "where")
PRIMARY_EXAMPLE = "{a: {method: contrad}, b: {method: damage}, metric: fid, where: {imbalance: 100}}"


def _report_keys(raw: dict, space: Space, source: str) -> dict:
    """The report's keys: ``primary:`` comparisons, ``effects:`` declared in advance, ``blocks:``."""
    settings = {p.name: p for p in space.params}

    def setting(key: str, name: Any, value: Any) -> None:
        if name not in settings and name not in space.fixed:
            raise _err(source, key, f"names '{name}', neither a parameter nor a fixed key of this space")
        p = settings.get(name)
        if p is not None and p.kind == "choice" and value not in p.values:
            raise _err(source, key, f"= {value!r} is not one of the choices of '{name}': {list(p.values)}")

    primary = raw.get("primary") or ()
    primary = [primary] if isinstance(primary, Mapping) else list(primary) if isinstance(primary, (list, tuple)) else primary
    if not isinstance(primary, list):
        raise _err(source, "primary", f"must be a comparison or a list of them, such as {PRIMARY_EXAMPLE}")
    checked = []
    for i, spec in enumerate(primary):
        where = f"primary[{i}]"
        spec = _mapping(source, where, spec, PRIMARY_EXAMPLE)
        for key in spec:
            if key not in PRIMARY_KEYS:
                raise _err(source, f"{where}.{key}", f"is not a key of a comparison; valid: {', '.join(PRIMARY_KEYS)}")
        for key in ("a", "b", "metric"):
            if key not in spec:
                raise _err(source, f"{where}.{key}", f"is missing; a primary comparison is {PRIMARY_EXAMPLE}")
        if not isinstance(spec["metric"], str) or not spec["metric"]:
            raise _err(source, f"{where}.metric", f"must be a metric name, got {spec['metric']!r}")
        for key in ("a", "b", "where"):
            arm = _mapping(source, f"{where}.{key}", spec.get(key) or {}, "{method: damage}")
            for name, value in arm.items():
                setting(f"{where}.{key}.{name}", name, value)
            spec[key] = arm
        if spec["a"] == spec["b"]:
            raise _err(source, where, "compares a configuration with itself: a and b must differ")
        checked.append(spec)
    effects = {metric: _effect_size(source, f"effects.{metric}", size) for metric, size in
               _mapping(source, "effects", raw.get("effects") or {}, "{fid: 5%, kid_minority: 0.5}").items()}
    blocks = raw.get("blocks")
    if blocks is not None:
        if not isinstance(blocks, list) or not all(isinstance(b, str) for b in blocks):
            raise _err(source, "blocks", f"must be a list of parameter names such as [imbalance], got {blocks!r}")
        for b in blocks:
            if b not in settings:
                raise _err(source, f"blocks.{b}", f"is not a parameter of this space; valid: {', '.join(settings)}")
        blocks = tuple(blocks)
    return {"primary": tuple(checked), "effects": effects, "blocks": blocks}
def _effect_size(source: str, key: str, size: Any) -> tuple[str, float]:
    """``5%`` -> ("relative", 0.05); a number -> ("absolute", number); either > 0."""
    if isinstance(size, str) and size.strip().endswith("%"):
        try:
            effect = ("relative", float(size.strip()[:-1]) / 100)
        except ValueError:
            raise _err(source, key, f"= {size!r} must be a percentage such as 5% or a number") from None
    else:
        effect = ("absolute", _number(source, key, size))
    if not effect[1] > 0:
        raise _err(source, key, f"= {size!r} must be > 0 (the size of the effect, either sign)")
    return effect


def _failure_value(raw: Any, metric: tuple[str, ...], dataset: Any, source: str) -> dict[str, float]:
    """The penalty of each metric: the space's ``failure_value`` (a mapping metric -> number), else the
    untrained generator's score on the space's fixed dataset (``trainers.metrics.untrained.UNTRAINED``); a
    metric with neither has none (a configuration with a failed replicate is then told FAIL)."""
    own = _mapping(source, "failure_value", raw, "{kid_minority: 0.2}") if raw is not None else {}
    for key, value in own.items():
        if key not in metric:
            raise _err(source, f"failure_value.{key}", f"is not a metric of this space; valid: {', '.join(metric)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _err(source, f"failure_value.{key}", f"must be a finite number (the value a failed replicate "
                                                       f"enters its configuration's mean at), got {value!r}")
    table = UNTRAINED.get(dataset, {}) if isinstance(dataset, str) else {}
    merged = {m: float(table[m]) for m in metric if m in table}
    merged.update({m: float(v) for m, v in own.items()})
    return merged


def _grid(space: Space) -> list[dict[str, Any]]:
    """The grid's cells, refused when the grid cannot be enumerated (a range, or too many cells)."""
    size = 1
    for p in space.params:
        if p.kind not in ("choice", "int"):
            raise SpaceError(f"{space.source}: parameter '{p.name}' is {p.kind}: the grid sampler needs choice or int")
        size *= len(p.values) if p.kind == "choice" else (int(p.high) - int(p.low)) // p.step + 1
        if size > MAX_GRID_CELLS:
            raise SpaceError(f"{space.source}: the grid has more than {MAX_GRID_CELLS:,} cells; use fewer values "
                             f"or another sampler (tpe, random, qmc)")
    return space.grid()


def _scheduler(raw: Any, metric: tuple[str, ...], source: str) -> Scheduler:
    if not isinstance(raw, (str, Mapping)):
        raise _err(source, "scheduler", f"must be fifo, asha or a mapping such as {{type: asha, grace_period: 1}}, "
                                        f"got {raw!r}")
    scheduler = {"type": raw} if isinstance(raw, str) else dict(raw)
    stype = _word(source, "scheduler.type", scheduler.get("type", "fifo"), SCHEDULERS)
    allowed = {"fifo": {"type"}, "asha": {"type", "grace_period", "reduction_factor"}}[stype]
    for k in scheduler:
        if k not in allowed:
            raise _err(source, f"scheduler.{k}", f"is not a {stype} setting; valid: {', '.join(sorted(allowed))}")
    if stype == "asha":
        if len(metric) > 1:
            raise _err(source, "scheduler", "asha cannot stop trials on several metrics at once (it ranks trials "
                                            "by one number); use scheduler: fifo with a multi-objective metric, "
                                            "or a single metric with asha")
        scheduler["grace_period"] = _number(source, "scheduler.grace_period", scheduler.get("grace_period", 1), int)
        scheduler["reduction_factor"] = _number(source, "scheduler.reduction_factor",
                                                scheduler.get("reduction_factor", 2), float)
        if scheduler["grace_period"] < 1 or scheduler["reduction_factor"] <= 1:
            raise _err(source, "scheduler", "asha needs grace_period >= 1 (evaluations) and reduction_factor > 1")
    scheduler["type"] = stype
    return Scheduler(**scheduler)


SEQUENTIAL_EXAMPLE = "seeds: {sequential: {start: 3, step: 3, max: 12}}"


def _seeds(seeds: Any, source: str, metric: tuple[str, ...] = (),
           sampler: str = "grid") -> tuple[tuple[int, ...], SequentialSeeds | None]:
    """The seeds (a count, a list, or ``{sequential: {start, step, max, margin}}``: seeds 0..max-1 in blocks)
    and the sequential spec (None for a fixed set of seeds). The margins' metric names are checked once the
    report's keys are (``_margin_metrics``): a margin may name a primary comparison's metric."""
    if isinstance(seeds, Mapping):
        extra = [k for k in seeds if k != "sequential"]
        if extra or "sequential" not in seeds:
            raise _err(source, f"seeds.{extra[0]}" if extra else "seeds", f"is not a seeds setting; write a count, "
                       f"a list of seeds, or {SEQUENTIAL_EXAMPLE}")
        spec = _mapping(source, "seeds.sequential", seeds["sequential"], "{start: 3, step: 3, max: 12}")
        for key in spec:
            if key not in ("start", "step", "max", "margin"):
                raise _err(source, f"seeds.sequential.{key}", f"is not a sequential setting; valid: start, step, "
                                                              f"max, margin (e.g. {SEQUENTIAL_EXAMPLE})")
        sizes = {}
        for key, least in (("start", 2), ("step", 1), ("max", 2)):
            if key not in spec:
                raise _err(source, f"seeds.sequential.{key}", f"is missing; write {SEQUENTIAL_EXAMPLE}")
            value = spec[key]
            if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= MAX_SEEDS:
                raise _err(source, f"seeds.sequential.{key}", f"= {value!r} must be a whole number in {least}.."
                                                              f"{MAX_SEEDS} (e.g. {SEQUENTIAL_EXAMPLE})")
            sizes[key] = value
        if sizes["max"] <= sizes["start"]:
            raise _err(source, "seeds.sequential.max", f"= {sizes['max']} must exceed start = {sizes['start']} (one "
                                                       f"block is a fixed study: write seeds: {sizes['start']})")
        margin = None
        if spec.get("margin") is not None:
            margin = {name: _effect_size(source, f"seeds.sequential.margin.{name}", size) for name, size in
                      _mapping(source, "seeds.sequential.margin", spec["margin"], "{fid: 5%}").items()}
        if sampler != "grid" and len(metric) > 1:
            raise _err(source, "seeds.sequential", f"races configurations on one metric, but this space has "
                                                   f"{len(metric)}; use one metric, or a fixed count of seeds")
        return tuple(range(sizes["max"])), SequentialSeeds(margin=margin, **sizes)
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if not 1 <= seeds <= MAX_SEEDS:
            raise _err(source, "seeds", f"= {seeds} must be a count in 1..{MAX_SEEDS} (replicates per sampled "
                                        f"configuration)")
        return tuple(range(seeds)), None
    if isinstance(seeds, list) and seeds and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        if len(set(seeds)) != len(seeds):
            raise _err(source, "seeds", f"has duplicates: {seeds}")
        if len(seeds) > MAX_SEEDS or not all(0 <= s < SEED_RANGE for s in seeds):
            raise _err(source, "seeds", f"must list at most {MAX_SEEDS} seeds, each in [0, 2**32)")
        return tuple(seeds), None
    raise _err(source, "seeds", f"must be a count >= 1, a list of integer seeds, or {SEQUENTIAL_EXAMPLE}; "
                                f"got {seeds!r}")


def _margin_metrics(space: Space, source: str) -> None:
    """Each sequential margin names a metric the report compares: the space's own, a primary comparison's,
    or one of the family's (``COMPARED``)."""
    if space.sequential is None or not space.sequential.margin:
        return
    from search.report.comparisons import COMPARED  # the metrics a report's family compares

    compared = list(dict.fromkeys([*space.metric, *(spec["metric"] for spec in space.primary), *COMPARED]))
    for name in space.sequential.margin:
        if name not in compared:
            raise _err(source, f"seeds.sequential.margin.{name}", f"is not a metric the report compares; "
                                                                  f"valid: {', '.join(compared)}")


def _parse_params(raw_params: Any, source: str) -> tuple[Param, ...]:
    if not isinstance(raw_params, dict) or not raw_params:
        raise _err(source, "params", "must be a non-empty mapping of parameter -> distribution")
    params: list[Param] = []
    seen: dict[str, Param] = {}
    for name, spec in raw_params.items():
        key = f"params.{name}"
        if not isinstance(name, str):
            raise _err(source, key, "must be named by a trainer setting (a word such as prune_ratio)")
        if not isinstance(spec, dict):
            raise _err(source, key, f"must be a mapping such as {{choice: [a, b]}}, got {spec!r}")
        kinds = [k for k in spec if k in DISTRIBUTIONS]
        extra = [k for k in spec if k not in DISTRIBUTIONS and k not in ("when", "step")]
        if len(kinds) != 1 or extra:
            raise _err(source, key, f"needs exactly one distribution of {', '.join(DISTRIBUTIONS)} "
                                    f"(plus optional when/step), got keys {list(spec)}")
        kind = kinds[0]
        value = spec[kind]
        kwargs: dict[str, Any] = {}
        if kind == "choice":
            if not isinstance(value, list) or not value:
                raise _err(source, key, "choice needs a non-empty list of values")
            if not all(isinstance(v, CHOICE_TYPES) and v == v for v in value):  # v != v: NaN
                raise _err(source, key, f"choice values must be plain numbers, words, true/false or null, got {value}")
            # by value, as the trainer reads them: [1, 1.0] (or [1, true]) is one configuration twice
            if len({float(v) if isinstance(v, (int, float)) else v for v in value}) != len(value):
                raise _err(source, key, f"choice has duplicate values: {value}")
            kwargs["values"] = tuple(value)
        else:
            if not isinstance(value, list) or len(value) != 2:
                raise _err(source, key, f"{kind} needs [low, high], got {value!r}")
            low = _number(source, key, value[0], int if kind == "int" else float)
            high = _number(source, key, value[1], int if kind == "int" else float)
            if not low < high:
                raise _err(source, key, f"{kind} needs low < high, got [{low}, {high}]")
            if kind == "loguniform" and low <= 0:
                raise _err(source, key, f"loguniform needs low > 0, got {low}")
            kwargs.update(low=low, high=high)
        if "step" in spec:
            if kind != "int":
                raise _err(source, key, "step only applies to int")
            kwargs["step"] = _number(source, key + ".step", spec["step"], int)
            if kwargs["step"] < 1:
                raise _err(source, key + ".step", f"= {kwargs['step']} must be >= 1")
        when = spec.get("when") or {}
        if not isinstance(when, dict):
            raise _err(source, key + ".when", "must be a mapping such as {method: damage}")
        conds = []
        for other, allowed in when.items():
            if other not in seen:
                later = other in raw_params
                raise _err(source, key + ".when", f"refers to '{other}', which is "
                           + ("defined below it; move it above" if later else "not a parameter of this space"))
            allowed = tuple(allowed) if isinstance(allowed, list) else (allowed,)
            if seen[other].kind == "choice":
                bad = [a for a in allowed if a not in seen[other].values]
                if bad:
                    raise _err(source, key + ".when", f"{other} can never be {bad}; its choices are "
                                                      f"{list(seen[other].values)}")
            conds.append((other, allowed))
        kwargs["when"] = tuple(conds)
        param = Param(name=name, kind=kind, **kwargs)
        seen[name] = param
        params.append(param)
    return tuple(params)
