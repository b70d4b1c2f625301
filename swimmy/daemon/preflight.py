"""What a valid config needs of the file system, checked before anything starts (exit 2).

`swimmy/config/` is pure: it reads only the config file. The paths it names can still be
wrong in ways that would let the daemon start and then do nothing, or fail for ever:
a directory where the telemetry file should be, a data directory that does not exist.
`swimmy run` and `swimmy config check` refuse those here, naming the key, before a
lock, a socket or a file is touched. Nothing here creates or writes anything.
"""

from __future__ import annotations

import stat
from collections.abc import Mapping
from pathlib import Path

from swimmy.backtest.data import load_bars, universe_dir
from swimmy.config import Config, metrics_token
from swimmy.errors import ConfigError, DataError
from swimmy.wire.security import is_loopback


def check_paths(cfg: Config) -> None:
    """Raise ConfigError listing every path problem of `cfg` (each naming its key)."""
    problems = [
        *_file("telemetry.path", cfg.telemetry.path),
        *_file("school.db_path", cfg.school.db_path),
        *_directory("snapshots.dir", cfg.snapshots.dir, must_exist=False),
        *_data(cfg),
        *metrics_exposure(cfg),
    ]
    if problems:
        raise ConfigError(problems)


def metrics_exposure(cfg: Config, env: Mapping[str, str] | None = None) -> list[str]:
    """A metrics listener reachable from other hosts serves the dashboard and reports only behind a token (SPEC §7)."""
    listen = cfg.metrics.listen
    if not listen or is_loopback(f"tcp://{listen}") or metrics_token(cfg.metrics, env) is not None:
        return []
    return [f"metrics.listen: {listen} is reachable from other hosts, but ${cfg.metrics.token_env} "
            "(metrics.token_env) holds no bearer token; set it, or listen on 127.0.0.1"]


def _file(key: str, path: Path) -> list[str]:
    """A file we create or append to: absent (its directory is made) or a regular file."""
    mode = _mode(path)
    if mode is not None and stat.S_ISDIR(mode):
        return [f"{key}: {path} is a directory; name a file in it"]
    if mode is not None and not stat.S_ISREG(mode):
        return [f"{key}: {path} is not a regular file"]
    return _parent(key, path)


def _directory(key: str, path: Path, *, must_exist: bool) -> list[str]:
    mode = _mode(path)
    if mode is None:
        return [f"{key}: {path} does not exist"] if must_exist else _parent(key, path)
    if not stat.S_ISDIR(mode):
        return [f"{key}: {path} is not a directory"]
    return []


def _parent(key: str, path: Path) -> list[str]:
    """The nearest existing ancestor must be a directory, or nothing can be created under it."""
    for ancestor in path.parents:
        mode = _mode(ancestor)
        if mode is None:
            continue
        return [] if stat.S_ISDIR(mode) else [f"{key}: {ancestor} (in {path}) is not a directory"]
    return []


def _data(cfg: Config) -> list[str]:
    """`school.data_dir` must exist when a symbol is read from it, and some universe must have data."""
    school = cfg.school
    from_data_dir = [s for s in school.symbols if universe_dir(cfg, s) == school.data_dir]
    if from_data_dir:
        problems = _directory("school.data_dir", school.data_dir, must_exist=True)
        if problems:
            return [f"{problems[0]} (it holds the data of {', '.join(from_data_dir)})"]
    if len(from_data_dir) < len(school.symbols):
        return []  # a [synthetic.SYMBOL] universe is generated at start-up when missing
    errors = []
    for symbol, timeframe in school.universes():
        try:
            load_bars(school.data_dir, symbol, timeframe)  # cached: the daemon's school reads it from here
        except DataError as exc:
            errors.append(str(exc))
        else:
            return []  # one usable universe is enough: the school pauses the others (data.invalid)
    return ["school.symbols: no configured universe is usable (docs/data.md):", *(f"  {e}" for e in errors)]


def _mode(path: Path) -> int | None:
    try:
        return path.stat().st_mode
    except OSError:
        return None
