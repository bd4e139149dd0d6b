"""Config fields and their validation: the one home of ``setting``, coercion, ``ConfigError`` and ``one_line``.

``setting(default, doc, ...)`` declares a field; its checks (a numeric range, a positive integer, a
fixed set of choices) live in the field's metadata and ``build`` applies them, so a rule is written
once, next to the field it guards. The declarations themselves live elsewhere: the shared knobs in
``trainers.settings``, each method's beside its code (``trainers/methods/<name>.py``), the fault
suite's in ``trainers.faults``; ``trainers.config`` puts them together into one trial's config.
Names that come from a registry (methods, datasets, imbalance profiles) are checked against that
registry by ``trainers.config``, never listed in a field.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import types
import typing
from dataclasses import field
from typing import Any, Callable, Mapping

INF = math.inf


def one_line(text: object) -> str:
    """``text`` (an exception's message, which may span lines) on one line."""
    return " ".join(str(text).split())


class ConfigError(ValueError):
    """A configuration a person wrote is wrong; the message names the key and the fix."""


def setting(default: Any = dataclasses.MISSING, doc: str = "", *, between: tuple | None = None,
            positive: bool = False, choices: tuple[str, ...] | None = None, factory: Any = None):
    """A config field. ``between=(low, high, "[)")`` is a range with its closed/open ends;
    ``positive`` an integer > 0 (None allowed where the default is None); ``choices`` a fixed set."""
    metadata = {"doc": doc, "between": between, "positive": positive, "choices": choices}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def fields_of(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


@functools.cache
def type_hints(cls) -> dict[str, Any]:
    """``typing.get_type_hints(cls)``, evaluated once per class (it compiles every string annotation:
    ~30 ms of each ``make_config`` before)."""
    return typing.get_type_hints(cls)


def nested_dataclass(cls, name: str):
    """The dataclass type of field ``name`` of ``cls`` (eval, fault), or None."""
    hint = type_hints(cls)[name]
    return hint if dataclasses.is_dataclass(hint) else None


def closest(key: Any, valid, cutoff: float = 0.6) -> str | None:
    """The name of ``valid`` nearest ``key`` (difflib's similarity at least ``cutoff``), or None."""
    close = difflib.get_close_matches(str(key), list(valid), n=1, cutoff=cutoff)
    return close[0] if close else None


def did_you_mean(key: Any, valid, otherwise: str = "", cutoff: float = 0.6) -> str:
    """``did you mean 'x'?`` for the name of ``valid`` nearest ``key``, else ``otherwise``: the one
    spelling of the hint in every message about a misspelt name (config keys, spaces, presets, metrics)."""
    close = closest(key, valid, cutoff)
    return f"did you mean '{close}'?" if close else otherwise


def suggest(key: str, valid: list[str]) -> str:
    return did_you_mean(key, valid, f"valid keys: {', '.join(sorted(valid))}", cutoff=0.5)


def coerce(key: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against the type ``hint``; allow the harmless int->float widening."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(key, value, arg)
            except ConfigError as e:
                errors.append(e)
        raise errors[0]
    if origin is tuple:  # tuple[int, ...]: a YAML or command-line list
        if isinstance(value, (list, tuple)):
            return tuple(coerce(key, v, typing.get_args(hint)[0]) for v in value)
    elif hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    else:
        return value
    name = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"config key '{key}' must be {name}, got {value!r} ({type(value).__name__}); "
                      f"set it as {key}=<{name}>")


def check(key: str, value: Any, metadata: Mapping[str, Any]) -> None:
    """The field's own rules (range, positive integer, choices)."""
    if value is None:
        return
    between = metadata.get("between")
    if between is not None:
        low, high, kind = between
        ok_low = value >= low if kind[0] == "[" else value > low
        ok_high = value <= high if kind[1] == "]" else value < high
        if not (ok_low and ok_high):
            hi = "inf" if math.isinf(high) else high
            raise ConfigError(f"config key '{key}' = {value} is out of range {kind[0]}{low}, {hi}{kind[1]}; "
                              f"choose a value inside it")
    if metadata.get("positive") and value <= 0:
        raise ConfigError(f"config key '{key}' = {value} must be a positive integer")
    choices = metadata.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"config key '{key}' = {value!r} is not one of {', '.join(choices)}")


def build(cls, data: Mapping[str, Any], prefix: str = "", valid_keys: Callable[[], list[str]] | None = None):
    """``cls(**data)`` with every value coerced to its field's type and checked by its field's rules;
    nested dataclass fields (eval, fault) are built from nested mappings. ``valid_keys`` gives the keys
    an unknown key's suggestion is chosen from (asked only when a key is unknown)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"config key '{prefix.rstrip('.')}' must be a mapping of keys, got {data!r}")
    fields = fields_of(cls)
    hints = type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            valid = valid_keys() if valid_keys is not None else [prefix + k for k in fields]
            raise ConfigError(f"unknown config key '{prefix}{key}'; {suggest(prefix + key, valid)}")
        sub = nested_dataclass(cls, key)
        if sub is not None:
            kwargs[key] = value if isinstance(value, sub) else build(sub, value, f"{prefix}{key}.", valid_keys)
        else:
            kwargs[key] = coerce(prefix + key, value, hints[key])
            check(prefix + key, kwargs[key], fields[key].metadata)
    return cls(**kwargs)
