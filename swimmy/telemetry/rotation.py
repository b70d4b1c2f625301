"""Numbered-backup rotation: pure plans, and the one function that renames.

`path` -> `path.1` -> ... -> `path.<backups>`; the oldest is deleted. The plan
is computed from the suffixes that exist, so it is tested without a disk.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RotationPlan:
    """Deletions first, then renames in order (highest suffix first), each a pair of suffixes (0 = the live file)."""

    delete: tuple[int, ...]
    renames: tuple[tuple[int, int], ...]


def plan_rotation(existing: set[int], backups: int) -> RotationPlan:
    """What to do to rotate the live file (suffix 0) when these backup suffixes exist."""
    delete = tuple(sorted(n for n in existing if n >= backups))
    if backups == 0:
        return RotationPlan(delete=(*delete, 0), renames=())
    renames = tuple((n, n + 1) for n in sorted((n for n in existing if 0 < n < backups), reverse=True))
    return RotationPlan(delete=delete, renames=(*renames, (0, 1)))


def plan_prune(existing: set[int], backups: int) -> tuple[int, ...]:
    """Backup suffixes left by earlier runs beyond `backups`, to delete at start-up."""
    return tuple(sorted(n for n in existing if n > backups))


def backup_suffixes(path: Path) -> set[int]:
    """The numeric suffixes of `path.N` files that exist next to `path`."""
    pattern = re.compile(re.escape(path.name) + r"\.([1-9][0-9]*)$")
    try:
        names = os.listdir(path.parent)
    except FileNotFoundError:
        return set()
    return {int(m.group(1)) for name in names if (m := pattern.match(name))}


def suffixed(path: Path, n: int) -> Path:
    """`path` for 0, `path.n` otherwise."""
    return path if n == 0 else path.with_name(f"{path.name}.{n}")


def apply_rotation(path: Path, backups: int) -> None:
    """Rename the live file away per plan_rotation. Raises OSError; a missing source is skipped."""
    plan = plan_rotation(backup_suffixes(path), backups)
    for n in plan.delete:
        _unlink(suffixed(path, n))
    for src, dst in plan.renames:
        try:
            os.replace(suffixed(path, src), suffixed(path, dst))
        except FileNotFoundError:
            continue


def prune_backups(path: Path, backups: int) -> tuple[int, ...]:
    """Delete stale backups beyond `backups`; return the suffixes deleted."""
    stale = plan_prune(backup_suffixes(path), backups)
    for n in stale:
        _unlink(suffixed(path, n))
    return stale


def _unlink(p: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(p)
