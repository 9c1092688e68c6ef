"""Trainer configs from files and command-line overrides, checked before any model loads.

A config file (YAML or JSON) is a mapping. Top-level keys apply to every trainer
whose config has them; a section named after a trainer applies to that trainer
only and wins over the top level::

    max_steps: 200          # every trainer
    seed: 1
    sft:
      learning_rate: 1.0e-4
    grpo:
      preset: dc-sft        # the paper's settings, then the keys below on top
      beta: 0.04

Overrides (``--set`` on the command line) take the same two forms: ``max_steps=20``
(every trainer that has the key) and ``grpo.beta=0.04`` (one trainer). Precedence,
lowest first: dataclass defaults, the preset, the file's top level, the file's
section, unprefixed overrides, prefixed overrides, keyword values of
:func:`load_config` (e.g. ``output_dir`` set by an orchestrator).

A key no trainer knows, a value of the wrong type, or a section for an unknown
trainer is a ``UsageError`` naming the file (or override) and the key.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any, Iterable, Mapping

from harness.errors import UsageError

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a ``.yaml``/``.yml``/``.json`` file (a clear error otherwise)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read config file {p}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"config file {p} is not UTF-8 text (byte {exc.start})") from None
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # yaml.YAMLError / json.JSONDecodeError: the parser's message says where
        raise UsageError(f"{p}: not valid {'JSON' if p.suffix.lower() == '.json' else 'YAML'}: "
                         f"{' '.join(str(exc).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{p}: expected a mapping of option: value at the top level, got {type(data).__name__}")
    return data


def parse_overrides(items: Iterable[str], source: str = "--set") -> list[tuple[str | None, str, str]]:
    """``["max_steps=20", "grpo.beta=0.04"]`` -> [(None, "max_steps", "20"), ("grpo", "beta", "0.04")]."""
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"{source} {item!r}: expected key=value or trainer.key=value")
        section, dot, name = key.rpartition(".")
        out.append((section if dot else None, name, value.strip()))
    return out


def config_fields(config_class: type) -> dict[str, Any]:
    """Field name -> resolved type annotation."""
    hints = typing.get_type_hints(config_class)
    return {f.name: hints[f.name] for f in fields(config_class)}


def coerce(value: Any, annotation: Any, where: str) -> Any:
    """``value`` converted to ``annotation`` (strings from the command line parse), or a UsageError."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(value, arg, where)
            except UsageError as exc:
                errors.append(str(exc))
        raise UsageError(errors[0] if errors else f"{where}: unsupported value {value!r}")
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise UsageError(f"{where}: expected a list, got {value!r}")
        item_type = args[0] if args else str
        return tuple(coerce(v.strip() if isinstance(v, str) else v, item_type, where) for v in items if v != "")
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise UsageError(f"{where}: expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise UsageError(f"{where}: expected an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise UsageError(f"{where}: expected a number, got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise UsageError(f"{where}: expected a string, got {value!r}")
    raise UsageError(f"{where}: unsupported option type {annotation!r}")


def _all_trainer_fields() -> dict[str, set[str]]:
    from harness.registry import TRAINERS

    return {name: set(config_fields(TRAINERS.get(name).config_class)) for name in TRAINERS.names()}


def build_config(trainer: str, data: Mapping[str, Any] | None = None, overrides: Iterable[str] = (),
                 source: str = "config", ignore: Iterable[str] = (), **values: Any):
    """The config of ``trainer`` from a parsed mapping (see module docstring), overrides and values.

    ``ignore``: top-level keys the caller handles itself (an orchestrator's own
    options in a shared study file).
    """
    from harness.registry import TRAINERS

    trainer_class = TRAINERS.get(trainer)
    cls = trainer_class.config_class
    own = config_fields(cls)
    known = _all_trainer_fields()
    data = dict(data or {})
    ignored = set(ignore)

    shared: dict[str, tuple[Any, str]] = {}
    section: dict[str, tuple[Any, str]] = {}
    for key, value in data.items():
        if key in ignored:
            continue
        if key in known:  # a trainer section
            if not isinstance(value, dict):
                raise UsageError(f"{source}: section {key!r} must be a mapping of option: value")
            for sub_key, sub_value in value.items():
                if sub_key not in known[key]:
                    raise UsageError(_unknown(sub_key, f"{source}: {key}.{sub_key}", key, known))
                if key == trainer:
                    section[sub_key] = (sub_value, f"{source}: {key}.{sub_key}")
            continue
        if not any(key in names for names in known.values()):
            raise UsageError(_unknown(key, f"{source}: {key}", None, known))
        if key in own:
            shared[key] = (value, f"{source}: {key}")

    set_shared: dict[str, tuple[Any, str]] = {}
    set_section: dict[str, tuple[Any, str]] = {}
    for prefix, key, value in parse_overrides(overrides):
        where = f"--set {prefix + '.' if prefix else ''}{key}"
        if prefix is None:
            if not any(key in names for names in known.values()):
                raise UsageError(_unknown(key, where, None, known))
            if key in own:
                set_shared[key] = (value, where)
        else:
            if prefix not in known:
                raise UsageError(f"{where}: unknown trainer {prefix!r}; known trainers: {', '.join(sorted(known))}")
            if key not in known[prefix]:
                raise UsageError(_unknown(key, where, prefix, known))
            if prefix == trainer:
                set_section[key] = (value, where)

    explicit: dict[str, Any] = {}
    for layer in (shared, section, set_shared, set_section):
        for key, (value, where) in layer.items():
            explicit[key] = coerce(value, own[key], where)
    for key, value in values.items():
        if key not in own:
            raise UsageError(_unknown(key, f"{trainer} option", trainer, known))
        explicit[key] = coerce(value, own[key], f"{trainer} option {key}")

    preset_name = explicit.get("preset", cls().preset)
    presets = getattr(trainer_class, "presets", {})
    if preset_name not in presets:
        raise UsageError(f"{trainer}: unknown preset {preset_name!r}; choose one of {', '.join(sorted(presets))}")
    merged = {**presets[preset_name], **explicit, "preset": preset_name}
    config = cls(**{k: coerce(v, own[k], f"{trainer} preset {preset_name}: {k}") for k, v in merged.items()})
    return config


def load_config(trainer: str, path: str | Path | None = None, overrides: Iterable[str] = (),
                ignore: Iterable[str] = (), **values: Any):
    """``build_config`` from a YAML/JSON file (or none)."""
    data = read_config_file(path) if path else {}
    return build_config(trainer, data, overrides, source=str(path) if path else "config", ignore=ignore, **values)


def _unknown(key: str, where: str, trainer: str | None, known: dict[str, set[str]]) -> str:
    import difflib

    pool = known[trainer] if trainer else set().union(*known.values())
    close = difflib.get_close_matches(key, sorted(pool), n=1)
    owners = sorted(name for name, names in known.items() if key in names)
    hint = (f"; it is an option of {', '.join(owners)}" if owners else
            f"; did you mean {close[0]!r}?" if close else "")
    scope = f"trainer {trainer!r}" if trainer else "any trainer"
    return f"{where}: unknown option {key!r} for {scope}{hint}"
