"""Loading a space: the file (a guarded YAML read), its presets and the command line's overrides,
merged by OmegaConf, then validated (``search.space_validate``)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Mapping

import yaml

from search.space_model import PRESET_KEYS, Space, SpaceError
from search.space_validate import validate_space
from trainers.config import dotted, unflatten
from trainers.fields import ConfigError, did_you_mean, one_line

SPACES_DIR = Path(__file__).resolve().parent.parent / "spaces"
PRESETS_FILE = SPACES_DIR / "presets.yaml"


def available_spaces() -> list[str]:
    return sorted(p.stem for p in SPACES_DIR.glob("*.yaml") if p != PRESETS_FILE)


def resolve_space_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.is_dir() and name_or_path not in available_spaces():
        raise SpaceError(f"space={path} is a directory; give a .yaml file or a space name "
                         f"({', '.join(available_spaces())})")
    if path.exists() and name_or_path not in available_spaces():
        raise SpaceError(f"space={path} is not a regular file; give a .yaml file or a space name")
    if path.suffix in (".yaml", ".yml"):
        raise SpaceError(f"space file {path} does not exist; available spaces: {', '.join(available_spaces())}")
    if name_or_path not in available_spaces():
        hint = did_you_mean(name_or_path, available_spaces())
        raise SpaceError(f"unknown space '{name_or_path}'; {hint and hint + ' '}available: {', '.join(available_spaces())} "
                         f"(or pass a path to a YAML file)")
    return SPACES_DIR / f"{name_or_path}.yaml"


MAX_YAML_BYTES = 1024 ** 2  # a space is a page of YAML
MAX_YAML_NODES = 100_000  # scalars, lists and mappings once aliases are expanded (an alias bomb: billions)


class _SpaceLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise SpaceError(f"line {key_node.start_mark.line + 1}: key '{key}' is given twice in one "
                                 f"mapping; keep one")
            seen.add(key)
        return super().construct_mapping(node, deep)


def _check_expanded_size(value: Any, source: Path) -> None:
    """Count the nodes as OmegaConf would see them, each alias expanded, and stop past MAX_YAML_NODES
    (PyYAML shares an alias's object; OmegaConf copies it, so 9 levels of 9 aliases are 9**9 nodes)."""
    count, stack = 0, [value]
    while stack:
        item = stack.pop()
        count += 1
        if count > MAX_YAML_NODES:
            raise SpaceError(f"{source}: expands to more than {MAX_YAML_NODES:,} values (YAML aliases repeated "
                             f"inside each other?); a space is a page of keys")
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def read_yaml(path: Path) -> dict:
    try:
        if path.stat().st_size > MAX_YAML_BYTES:
            raise SpaceError(f"{path}: is {path.stat().st_size:,} bytes; a space is a page of YAML "
                             f"(at most {MAX_YAML_BYTES:,} bytes)")
        raw = yaml.load(path.read_bytes().decode("utf-8-sig"), Loader=_SpaceLoader)  # noqa: S506 - safe loader
    except UnicodeDecodeError as e:
        raise SpaceError(f"{path}: is not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}); "
                         f"save it as UTF-8") from None
    except OSError as e:
        raise SpaceError(f"{path}: cannot be read ({e.strerror or e}); check the path and its permissions") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = " ".join(str(getattr(e, "problem", None) or e).split())
        raise SpaceError(f"{path}{where}: malformed YAML ({problem}); fix the file's syntax") from None
    except RecursionError:
        raise SpaceError(f"{path}: nested too deeply; a space is a few levels of keys") from None
    except SpaceError as e:
        raise SpaceError(str(e) if str(e).startswith(str(path)) else f"{path} {e}") from None
    _check_expanded_size(raw, path)
    if not isinstance(raw, dict):
        raise SpaceError(f"{path}: must be a mapping of keys (a space: name, metric, params, ...)")
    return raw


def load_space(name_or_path: str, overrides: Mapping[str, Any] | None = None,
               preset: str | list[str] | None = None) -> Space:
    """Load, overlay ``preset`` and ``overrides`` (space-level keys, ``fixed.*`` included), validate."""
    path = resolve_space_path(name_or_path)
    raw = read_yaml(path)
    presets = preset_layers(path, raw.get("presets"), preset)
    layers = [raw, *(overlay for _, overlay in presets), dict(overrides or {})]
    merged = merge(layers, str(path))
    origins = {key: name for name, overlay in presets for key in dotted(unflatten(overlay.get("fixed") or {}))}
    return validate_space(merged, str(path), presets=tuple(name for name, _ in presets), origins=origins)


REPLACED = ("seeds", "primary")


def merge(layers: list[Mapping[str, Any]], source: str) -> dict:
    """OmegaConf's merge of the layers, later ones winning; ``fixed`` is nested first so that a dotted
    key (``eval.num_samples``) and its nested spelling (``eval: {num_samples}``) are one key."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    def nested(layer: Mapping[str, Any]) -> dict:
        layer = dict(layer)
        if isinstance(layer.get("fixed"), Mapping):
            layer["fixed"] = unflatten(layer["fixed"])
        return layer

    # a whole-value key: a later layer's seeds (a count, a list or a sequential spec) or primary replaces
    # the earlier one instead of merging into it (seeds=[0] over a sequential spec is a fixed list)
    whole = {key: layer[key] for layer in layers for key in REPLACED if key in layer}
    layers = [{k: v for k, v in layer.items() if k not in REPLACED} for layer in layers] + [whole]
    try:
        return OmegaConf.to_container(OmegaConf.merge(*(OmegaConf.create(nested(layer)) for layer in layers)))
    except (OmegaConfBaseException, ConfigError, TypeError) as e:  # TypeError: a mapping over a list, ...
        raise SpaceError(f"{source}: cannot merge its presets and overrides ({one_line(e)})") from None
    except RecursionError:  # a YAML alias that contains itself
        raise SpaceError(f"{source}: a value contains itself (a YAML alias to its own anchor); spell it out") from None


@functools.cache
def shared_presets() -> dict[str, Any]:
    return read_yaml(PRESETS_FILE) if PRESETS_FILE.is_file() else {}


def preset_layers(path: Path, own: Any, chosen: str | list[str] | None) -> list[tuple[str, dict]]:
    """The overlays of ``preset=`` (a name of the space's ``presets:`` section, a shared preset, or a
    list of them), expanded through the shared file: [(shared name, overlay), ...] in order. The
    space's section is checked even when no preset is chosen, so a bad name fails at once."""
    own = own or {}
    if not isinstance(own, dict):
        raise SpaceError(f"{path}: 'presets' must map a name to a shared preset or a list of them "
                         f"(the presets live in {PRESETS_FILE})")
    own = {name: [names] if isinstance(names, str) else names for name, names in own.items()}
    for name, names in own.items():
        if not isinstance(names, list) or not names:
            raise SpaceError(f"{path}: presets.{name} must name a shared preset or a list of them, got {names!r}")
        for shared in names:
            _shared_preset(shared, f"{path}: presets.{name}")
    if chosen is None:
        return []
    layers: list[tuple[str, dict]] = []
    for name in chosen if isinstance(chosen, list) else [chosen]:
        if not isinstance(name, str):
            raise SpaceError(f"preset={name!r} must be a preset's name or a list of names, e.g. preset=cifar10_gpu")
        if name in own:
            names = own[name]
        elif name in shared_presets():
            names = [name]
        else:
            raise SpaceError(f"{path}: no preset '{name}'; this space has: {', '.join(own) or 'none'} "
                             f"(shared presets: {', '.join(shared_presets())})")
        for shared in names:
            layers += _expand_preset(shared, f"{path}: preset '{name}'", ())
    return layers


def _shared_preset(name: Any, where: str) -> Any:
    if not isinstance(name, str) or name not in shared_presets():
        hint = did_you_mean(name, shared_presets())
        raise SpaceError(f"{where}: {name!r} is not a preset of {PRESETS_FILE}; {hint and hint + ' '}"
                         f"shared presets: {', '.join(shared_presets())}")
    return shared_presets()[name]


def _expand_preset(name: str, where: str, seen: tuple[str, ...]) -> list[tuple[str, dict]]:
    if name in seen:
        raise SpaceError(f"{PRESETS_FILE}: preset '{name}' includes itself ({' -> '.join([*seen, name])})")
    entry = _shared_preset(name, where)
    if isinstance(entry, list):
        return [layer for part in entry for layer in _expand_preset(part, f"{PRESETS_FILE}: {name}", (*seen, name))]
    if not isinstance(entry, dict):
        raise SpaceError(f"{PRESETS_FILE}: preset '{name}' must be an overlay (fixed, resources, ...) "
                         f"or a list of presets")
    for key in entry:
        if key not in PRESET_KEYS:
            raise SpaceError(f"{PRESETS_FILE}: preset '{name}' sets '{key}'; a preset may set {', '.join(PRESET_KEYS)}")
    return [(name, entry)]
