"""The capped exponential backoff every retrying part uses: base, 2 x base, 4 x base ... never above cap.

One rule for the Discord sender (by attempt), the worker supervisor (restarts), the telemetry writer (write
retries) and the school's OOS retries (by the previous wait). Imports nothing from swimmy.
"""

from __future__ import annotations


def capped_backoff(previous_sec: float | None, *, base_sec: float, cap_sec: float) -> float:
    """The wait after `previous_sec` (None or <= 0: the first wait): base, then doubling, capped."""
    if previous_sec is None or previous_sec <= 0:
        return min(base_sec, cap_sec)
    return min(previous_sec * 2, cap_sec)


def backoff_for_attempt(attempt: int, *, base_sec: float, cap_sec: float) -> float:
    """The wait after failed attempt `attempt` (1-based): the same sequence, by its index."""
    return float(min(base_sec * 2 ** min(max(attempt, 1) - 1, 62), cap_sec))
