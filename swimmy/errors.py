"""The few exceptions swimmy raises on purpose. Imports nothing from swimmy."""

from __future__ import annotations


class SwimmyError(Exception):
    """Base of the errors the CLI maps to an exit code."""

    exit_code = 1


class ConfigError(SwimmyError):
    """The config is unusable; the message names every offending key path."""

    exit_code = 2

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class LockHeldError(SwimmyError):
    """Another process holds a lock this one needs (same telemetry path or database)."""

    exit_code = 2


class UsageError(SwimmyError):
    """The command line asks for something that cannot be done as asked."""

    exit_code = 2


class DataError(SwimmyError):
    """Market data that can't be used; the message names the file and, for a bad row, the line."""

    exit_code = 1


class BacktestError(SwimmyError):
    """A backtest request that can't be served (unknown family, bad params, no bars in range)."""

    exit_code = 1


class StoreError(SwimmyError):
    """The strategy store can't do what was asked (bad schema version, a read-only write, ...)."""

    exit_code = 1
