"""Loading and validation: a TOML file or a parsed document becomes a Config, or a ConfigError.

Errors name the key path (`wfv.max_pending: must be >= 0, got -1`) and are all collected before raising.
Nothing here touches a file other than the config itself, so a bad config exits before anything is created.
"""

from __future__ import annotations

import dataclasses
import math
import os
import stat
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from swimmy.config.plain import toml_value
from swimmy.config.sections import Config, InstrumentConfig, SyntheticUniverse
from swimmy.errors import ConfigError


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a TOML file; relative paths resolve against its directory."""
    path = Path(path)
    try:
        # A FIFO or a device would block the read (or never end): only a regular file is a config.
        if not stat.S_ISREG(path.stat().st_mode):
            raise ConfigError([f"{path}: cannot read config: not a regular file"])
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config: {exc.strerror or exc}"]) from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
    return config_from_mapping(doc, base_dir=path.resolve().parent, source=path.resolve())


def config_from_mapping(doc: Mapping[str, Any], *, base_dir: Path, source: Path | None = None) -> Config:
    """Validate a parsed document; raise ConfigError listing every bad key path."""
    problems: list[str] = []
    values: Config = _build(Config(), doc, "", base_dir, problems)
    school = doc.get("school")
    if values.school.timeframe is not None and isinstance(school, Mapping):
        if "timeframes" in school:
            problems.append("school.timeframe: deprecated and contradicts school.timeframes; remove it")
        else:
            values = dataclasses.replace(values, school=dataclasses.replace(
                values.school, timeframes=(values.school.timeframe,), timeframe=None))
    if problems:
        raise ConfigError(problems)
    return dataclasses.replace(values, source=source, warnings=tuple(_deprecations(doc)))


def _deprecations(doc: Mapping[str, Any]) -> list[str]:
    """Keys that still load but no longer do anything, each with what to do instead."""
    out = []
    oos = doc.get("oos")
    if isinstance(oos, Mapping) and "window_days" in oos:
        out.append("oos.window_days is deprecated: it is read as oos.min_window_days (the holdout is the newest "
                   "oos.window_fraction of the bars, at least that many days); rename the key")
    school = doc.get("school")
    if isinstance(school, Mapping) and "timeframe" in school:
        out.append("school.timeframe is deprecated: it is read as school.timeframes = [its value]; rename the key")
    zmq = doc.get("zmq")
    if isinstance(zmq, Mapping) and "result_endpoint" in zmq:
        out.append("zmq.result_endpoint is deprecated and no longer used: workers return results on "
                   "zmq.backtest_endpoint (work protocol v2); remove the key")
    return out


def _build(base: Any, doc: Any, prefix: str, base_dir: Path, problems: list[str]) -> Any:
    """Overlay one TOML table on `base` (a section's defaults), collecting problems by key path."""
    if not isinstance(doc, Mapping):
        problems.append(f"{prefix.rstrip('.')}: must be a table, got {_describe(doc)}")
        return _resolve_paths(base, base_dir)
    hints = typing.get_type_hints(type(base))
    fields = {f.name: f for f in dataclasses.fields(base) if f.name not in ("source", "warnings")}
    for key in doc:
        if key not in fields:
            problems.append(f"{prefix}{key}: unknown key (known: {', '.join(sorted(fields))})")
    changes: dict[str, Any] = {}
    for name, f in fields.items():
        default = getattr(base, name)
        if name in TABLES_OF_TABLES:
            changes[name] = _build_tables(TABLES_OF_TABLES[name](), doc.get(name, {}), f"{prefix}{name}.", base_dir,
                                          problems)
            continue
        if dataclasses.is_dataclass(default):
            changes[name] = _build(default, doc.get(name, {}), f"{prefix}{name}.", base_dir, problems)
            continue
        if name not in doc:
            if hints[name] is float and type(default) is int:
                default = float(default)  # so a default and the same value written in the file hash alike
            changes[name] = _resolve(default, base_dir)
            continue
        value, error = _coerce(doc[name], hints[name], f.metadata)
        if error:
            problems.append(f"{prefix}{name}: {error}")
            value = default
        changes[name] = _resolve(value, base_dir)
    return dataclasses.replace(base, **changes)


TABLES_OF_TABLES: dict[str, Any] = {"synthetic": SyntheticUniverse, "instruments": InstrumentConfig}


def _build_tables(template: Any, doc: Any, prefix: str, base_dir: Path, problems: list[str]) -> dict[str, Any]:
    """A table of tables keyed by name (`[synthetic.SYNTH_RW]`), each built on `template`'s defaults."""
    if not isinstance(doc, Mapping):
        problems.append(f"{prefix.rstrip('.')}: must be a table of tables, got {_describe(doc)}")
        return {}
    out = {}
    for key, table in doc.items():
        if not isinstance(key, str) or not key.replace("_", "").isalnum() or len(key) > 32:
            problems.append(f"{prefix}{key}: a name of letters, digits and _ (at most 32)")
            continue
        out[key] = _build(template, table, f"{prefix}{key}.", base_dir, problems)
    return out


def _resolve(value: Any, base_dir: Path) -> Any:
    if isinstance(value, Path) and not value.is_absolute():
        return Path(os.path.normpath(base_dir / value))
    return value


def _resolve_paths(section: Any, base_dir: Path) -> Any:
    return _build(section, {}, "", base_dir, [])


def _describe(value: Any) -> str:
    kind = {bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "an array"}.get(
        type(value), "a table" if isinstance(value, Mapping) else type(value).__name__
    )
    return f"{kind} ({toml_value(value)})" if not isinstance(value, Mapping | list) else kind


def _coerce(value: Any, hint: Any, rules: Mapping[str, Any]) -> tuple[Any, str | None]:
    """Convert one TOML value to the field's type; return (value, error)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):  # `X | None`: TOML has no null, so a given value is an X
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        if value not in args:
            return None, f"must be one of {', '.join(repr(a) for a in args)}, got {_describe(value)}"
        return value, None
    if hint is bool:
        if not isinstance(value, bool):
            return None, f"must be true or false, got {_describe(value)}"
        return value, None
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            return None, f"must be an integer, got {_describe(value)}"
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None, f"must be a number, got {_describe(value)}"
        value = float(value)
        if not math.isfinite(value):
            return None, f"must be a finite number, got {_describe(value)}"
    elif hint is str:
        if not isinstance(value, str):
            return None, f"must be a string, got {_describe(value)}"
    elif hint is Path:
        if not isinstance(value, str) or not value:
            return None, f"must be a non-empty path string, got {_describe(value)}"
        value = Path(value)
    elif origin is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return None, f"must be an array of strings, got {_describe(value)}"
        value = tuple(value)
    else:  # pragma: no cover - a new field type without a rule is a programming error
        raise TypeError(f"no coercion rule for {hint!r}")
    return value, _check_rules(value, rules)


def _check_rules(value: Any, rules: Mapping[str, Any]) -> str | None:
    if "ge" in rules and value < rules["ge"]:
        return f"must be >= {rules['ge']}, got {value!r}"
    if "gt" in rules and value <= rules["gt"]:
        return f"must be > {rules['gt']}, got {value!r}"
    if "le" in rules and value > rules["le"]:
        return f"must be <= {rules['le']}, got {value!r}"
    if "lt" in rules and value >= rules["lt"]:
        return f"must be < {rules['lt']}, got {value!r}"
    check = rules.get("check")
    return check(value) if check else None
