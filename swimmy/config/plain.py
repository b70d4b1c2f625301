"""The config as plain values: TOML-able dicts, flat dotted keys, one value written as TOML.

Generic over the section dataclasses (it walks `dataclasses.fields`), so it imports none of them: the
sections use it for `Config.config_hash`, and loading, reload and views build on it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson


def to_plain(cfg: Any) -> dict[str, Any]:
    """The config as plain TOML-able values (paths as strings, tuples as lists, None dropped)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        if f.name in ("source", "warnings"):
            continue
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = to_plain(value)
        elif value is None:
            continue
        elif isinstance(value, Path):
            out[f.name] = str(value)
        elif isinstance(value, tuple):
            out[f.name] = list(value)
        elif isinstance(value, dict):
            out[f.name] = {k: to_plain(v) for k, v in value.items()}
        else:
            out[f.name] = value
    return out


def flatten(plain: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    flat: dict[str, Any] = {}
    for key, value in plain.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def toml_value(value: Any) -> str:
    """One plain value written as TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return orjson.dumps(value).decode()
    return repr(value)
