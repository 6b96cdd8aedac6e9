"""The config keys that hold a secret, and the one redaction for everything printed, stored or logged."""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Iterable, Mapping

# The config keys that hold a secret: never printed, stored or logged (redact_secrets), never part of a config
# comparison (runs.HARMLESS_KEYS), and not YAML-parsed from --set (a key like "0123e4" must stay a string).
SECRET_KEYS = ("storage.access_key_id", "storage.secret_access_key")
REDACTED = "***"
_SECRET_FIELDS = frozenset(k.rsplit(".", 1)[1] for k in SECRET_KEYS)
# `secret_access_key=V`, `storage.secret_access_key: V`, `'secret_access_key': 'V'` inside any text.
_SECRET_SETTING_RE = re.compile(r"((?<![\w])(?:\w+\.)?(?:" + "|".join(sorted(_SECRET_FIELDS)) +
                                r")['\"]?\s*[=:]\s*['\"]?)([^\s'\",}]+)")


def is_secret(key: str) -> bool:
    """Whether a config key (`storage.secret_access_key`, or the bare field name) holds a secret."""
    return key in SECRET_KEYS or key in _SECRET_FIELDS


def redact_secrets(obj: Any, values: Iterable[str] = ()) -> Any:
    """A copy of `obj` that may be printed, stored or logged: in mappings (config dicts, manifests, flat params)
    the value of every secret key is REDACTED (an empty one stays empty: "not set"); in strings (argv items,
    command lines, messages) `secret_access_key=VALUE` and the like become `secret_access_key=***`, and any of
    `values` (secrets known by value, e.g. from the environment) becomes ***. Tuples come back as lists."""
    known = sorted({v for v in values if v}, key=len, reverse=True)

    def walk(o: Any) -> Any:
        if isinstance(o, Mapping):
            return {k: (REDACTED if isinstance(k, str) and is_secret(k) and v else walk(v)) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [walk(v) for v in o]
        if isinstance(o, str):
            o = _SECRET_SETTING_RE.sub(lambda m: m.group(1) + REDACTED, o)
            for v in known:
                o = o.replace(v, REDACTED)
            return o
        return o

    return walk(obj)


def secret_override_values(overrides: Iterable[str]) -> list[str]:
    """The values that `--set` overrides give secret keys (to blank them wherever else they might show up)."""
    pairs = (item.split("=", 1) for item in overrides if "=" in item)
    return [value for key, value in pairs if is_secret(key.strip()) and value]


def is_secret_override(item: str) -> bool:
    """Whether a `--set` argument (`section.key=value`) sets a secret key."""
    return "=" in item and is_secret(item.split("=", 1)[0].strip())


def without_secrets(cfg: Any) -> Any:
    """A config (PipelineConfig) with every secret key empty: what a config file may hold (the keys then come from
    the environment, or --set, when it is loaded)."""
    for key in SECRET_KEYS:
        section, name = key.split(".")
        cfg = dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section), **{name: ""})})
    return cfg
