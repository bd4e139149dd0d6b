"""``validate_space``: a merged space dict -> a validated ``Space``, each key checked
(``search.space_checks``), then the whole: registered methods, knobs some method reads, a valid trainer
config at every corner, and the metric names every trial reports (with a diagnosis of a name none does)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any, Mapping

from search.space_checks import (_err, _failure_value, _grid, _margin_metrics, _mapping, _number, _parse_params,
                                 _report_keys, _scheduler, _seeds, _word)
from search.space_model import (DEFAULT_NUM_SAMPLES, MAX_CHECKED_CONFIGS, NAME_PATTERN, SAMPLERS, SEED_RANGE,
                                TOP_KEYS, Param, Resources, Space, SpaceError, expand, knob_readers)
from trainers.config import all_keys, dotted, make_config
from trainers.fields import ConfigError, did_you_mean, one_line
from trainers.methods import METHODS, get_method
from trainers.metrics.names import reported_metrics
from trainers.settings import TrainConfig

def validate_space(raw: dict, source: str = "<space>", presets: tuple[str, ...] = (),
                   origins: Mapping[str, str] | None = None) -> Space:
    """A validated Space from a merged space dict; ``origins`` names the preset that set a fixed key."""
    for key in raw:
        if key not in TOP_KEYS:
            hint = did_you_mean(key, TOP_KEYS, f"valid keys: {', '.join(TOP_KEYS)}")
            raise _err(source, key, f"is not a space key; {hint}")
    for key in ("name", "metric", "params"):
        if key not in raw:
            raise _err(source, key, "is missing; every space needs name, metric and params")
    name = raw["name"]
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise _err(source, "name", f"must be a plain word (letters, digits, _ or -; at most 100), got {name!r}")

    metric = raw["metric"]
    metric = (metric,) if isinstance(metric, str) else tuple(metric) if isinstance(metric, list) else None
    if not metric or not all(isinstance(m, str) and m for m in metric):
        raise _err(source, "metric", "must be a metric name or a list of them, e.g. fid or [fid, fid_minority]")
    if len(set(metric)) != len(metric):
        raise _err(source, "metric", f"names a metric twice: {list(metric)}")
    mode = raw.get("mode", "min")
    mode = (mode,) * len(metric) if isinstance(mode, str) else tuple(mode) if isinstance(mode, list) else ()
    if len(mode) != len(metric) or any(m not in ("min", "max") for m in mode):
        raise _err(source, "mode", f"must be min or max (one per metric: {len(metric)}), got {raw.get('mode')!r}")

    sampler = _word(source, "sampler", raw.get("sampler", "tpe"), list(SAMPLERS))
    scheduler = _scheduler(raw.get("scheduler", "fifo"), metric, source)
    seeds, sequential = _seeds(raw.get("seeds", 1), source, metric, sampler)
    sampler_seed = _number(source, "sampler_seed", raw.get("sampler_seed", 0), int)
    if not 0 <= sampler_seed < SEED_RANGE:
        raise _err(source, "sampler_seed", f"= {sampler_seed} must be in [0, 2**32)")
    resources = _mapping(source, "resources", raw.get("resources") or {"cpu": 1}, "{cpu: 1, gpu: 0.25}")
    for k in resources:
        if k not in ("cpu", "gpu"):
            raise _err(source, f"resources.{k}", "is not a resource; valid: cpu, gpu")
    resources["cpu"] = _number(source, "resources.cpu", resources.get("cpu", 1))
    resources["gpu"] = _number(source, "resources.gpu", resources.get("gpu", 0))
    if resources["cpu"] <= 0 or resources["gpu"] < 0:
        raise _err(source, "resources", f"needs cpu > 0 and gpu >= 0, got {resources}")
    resources = Resources(**resources)

    fixed = dotted(_mapping(source, "fixed", raw.get("fixed") or {}, "{dataset: digits, steps: 200}"))
    if sampler != "grid":  # a space that selects: chosen on the validation half, reported on the test half
        fixed.setdefault("eval.split", "val_test")
    params = _parse_params(raw["params"], source)
    for p in params:
        if p.name not in all_keys():
            hint = did_you_mean(p.name, all_keys(), "see trainers/settings.py and trainers/methods/ for the keys")
            raise _err(source, f"params.{p.name}", f"is not a trainer setting; {hint}")
        if p.name in fixed:
            raise _err(source, f"fixed.{p.name}", "is also a parameter of this space (params would override it); "
                                                  "keep one of the two")
    if "seed" in {p.name for p in params} or "seed" in fixed:
        raise _err(source, "seed", "is set by the space's 'seeds' (replicates), not by params or fixed")

    searched = {p.name for p in params}  # a searched dataset has no one untrained score
    failure_value = _failure_value(raw.get("failure_value"), metric,
                                   None if "dataset" in searched else fixed.get("dataset", TrainConfig.dataset), source)
    space = Space(name=name, description=str(raw.get("description", "")), metric=metric, mode=mode,
                  sampler=sampler, scheduler=scheduler, num_samples=1, max_concurrent=1, resources=resources,
                  seeds=seeds, fixed=fixed, params=params, source=source, sampler_seed=sampler_seed, presets=presets,
                  failure_value=failure_value, sequential=sequential)
    cells = None
    if sampler == "grid":
        cells = _grid(space)
    _check_methods_and_knobs(space, origins or {})
    num_samples = _number(source, "num_samples", raw.get("num_samples", len(cells) if cells else DEFAULT_NUM_SAMPLES),
                          int)
    if num_samples < 1:
        raise _err(source, "num_samples", f"= {num_samples} must be >= 1")
    if cells is not None and num_samples > len(cells):
        raise _err(source, "num_samples", f"= {num_samples} exceeds the {len(cells)} cells of the grid; "
                                          f"use at most {len(cells)} or another sampler")
    max_concurrent = _number(source, "max_concurrent", raw.get("max_concurrent", 1), int)
    if max_concurrent < 1:
        raise _err(source, "max_concurrent", f"= {max_concurrent} must be >= 1")
    space = replace(space, num_samples=num_samples, max_concurrent=max_concurrent,
                    **_report_keys(raw, space, source))
    _margin_metrics(space, source)  # a margin may name a primary comparison's metric: checked after them
    _check_trainer_configs(space)
    return space


def _check_methods_and_knobs(space: Space, origins: Mapping[str, str]) -> None:
    """The space's methods are registered ones, and each of its knobs (fixed, searched or from a
    preset) is read by at least one of them."""
    methods = space.methods()
    for method in methods:
        if not isinstance(method, str):
            raise SpaceError(f"{space.source}: method {method!r} is not a method's name; valid: "
                             f"{', '.join(sorted(METHODS))}")
        try:
            get_method(method)
        except ConfigError as e:
            raise SpaceError(f"{space.source}: {e}") from None
    readers = knob_readers()
    for key in [*space.fixed, *(p.name for p in space.params)]:
        if key in readers and not readers[key] & set(methods):
            origin = f" (set by preset '{origins[key]}')" if key in origins else ""
            raise SpaceError(f"{space.source}: {key}{origin} is read by none of this space's methods "
                             f"({', '.join(methods)}); drop it")


def _check_trainer_configs(space: Space) -> None:
    """Every corner of the space must make a valid trainer config (bad keys/values fail here, early),
    and every trial must report the space's metric(s): a name no trial reports would end the study at
    the first evaluation, after the stores were written."""
    lacking: dict[str, tuple[dict, str]] = {}  # metric -> a corner whose trials do not report it, its dataset
    reported: dict[str, None] = {}  # every name some corner reports, in order
    for cell in expand(space.params, Param.extremes, limit=MAX_CHECKED_CONFIGS):
        try:
            cfg = make_config(space.trial_config(cell, space.seeds[0]))
        except ConfigError as e:
            raise SpaceError(f"{space.source}: {one_line(e)} (in fixed/params)") from None
        names = reported_metrics(cfg)
        reported.update(dict.fromkeys(names))
        for metric in dict.fromkeys([*space.metric, *space.objective]):
            if metric not in names:
                lacking.setdefault(metric, (cell, cfg.dataset))
    for metric, (cell, dataset) in lacking.items():
        raise SpaceError(f"{space.source}: metric '{metric}' {_unreported(metric, cell, dataset, list(reported))}")


def _per_class(name: str) -> str | None:
    """The family of a per-class name (``fid_class`` of ``fid_class/3``), else None."""
    family, _, index = name.rpartition("/")
    return family if family and index.isdigit() else None


def _unreported(metric: str, cell: Mapping[str, Any], dataset: str, reported: list[str]) -> str:
    """Why no trial (or not every trial) of a space reports ``metric``, and what it could be instead."""
    if metric in reported:
        where = ", ".join(f"{k}={v}" for k, v in cell.items()) or "its fixed settings"
        return (f"is not reported by every trial of this space (not with {where}); choose one every trial "
                f"reports, such as fid")
    classes = Counter(family for family in map(_per_class, reported) if family)
    family = _per_class(metric)
    if family in classes:
        return f"does not exist: {dataset} has {classes[family]} classes, {family}/0 .. {family}/{classes[family] - 1}"
    hint = did_you_mean(metric, reported)
    summary = dict.fromkeys(f"{_per_class(n)}/0..{classes[_per_class(n)] - 1}" if _per_class(n) else n
                            for n in reported)
    return f"is not reported by this space's trials; {hint and hint + ' '}they report {', '.join(summary)}"
