"""Nested plain data (as loaded from YAML) into frozen dataclasses, type by type, with errors that name the key."""
from __future__ import annotations

import dataclasses
import typing
from typing import Any, Mapping

from pggan.secret_keys import REDACTED, is_secret


class ConfigError(ValueError):
    """A configuration problem; the message names the key, the value and what to do."""


def coerce(key: str, value: Any, tp: Any) -> Any:
    """Convert a YAML value to the annotated type, or raise ConfigError naming the key."""
    origin = typing.get_origin(tp)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    elif origin is tuple:
        args = typing.get_args(tp)
        if isinstance(value, (list, tuple)) and len(value) == len(args):
            return tuple(coerce(f"{key}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args)))
        raise ConfigError(f"{key}: expected a list of {len(args)} values, got {value!r}")
    elif origin is dict:
        kt, vt = typing.get_args(tp)
        if isinstance(value, Mapping):
            # `--set schedule.batch_size.8=32` arrives with the key as the string "8".
            return {coerce(f"{key} (a key)", int(k) if kt is int and isinstance(k, str) and k.isdigit() else k, kt):
                    coerce(f"{key}.{k}", v, vt) for k, v in value.items()}
        raise ConfigError(f"{key}: expected a mapping like {{8: 1.0}}, got {value!r}")
    else:  # pragma: no cover - programming error
        raise TypeError(f"unsupported config type {tp} for {key}")
    shown = REDACTED if is_secret(key) else repr(value)
    raise ConfigError(f"{key}: expected {getattr(tp, '__name__', tp)}, got {shown}")


def build_dataclass(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(f"{where}: unknown key (valid keys{' in ' + prefix if prefix else ''}: "
                          f"{', '.join(sorted(names))})")
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            if value is None:
                value = {}
            if not isinstance(value, Mapping):
                raise ConfigError(f"{key}: expected a section (mapping), got {value!r}")
            kwargs[name] = build_dataclass(tp, value, key)
        else:
            kwargs[name] = coerce(key, value, tp)
    return cls(**kwargs)
