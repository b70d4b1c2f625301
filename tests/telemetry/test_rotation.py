"""Rotation plans (pure) and their application to real files."""

from __future__ import annotations

from pathlib import Path

import pytest

from swimmy.telemetry.rotation import (
    RotationPlan,
    apply_rotation,
    backup_suffixes,
    plan_prune,
    plan_rotation,
    prune_backups,
)


class TestPlans:
    @pytest.mark.parametrize(
        ("existing", "backups", "plan"),
        [
            (set(), 3, RotationPlan(delete=(), renames=((0, 1),))),
            ({1}, 3, RotationPlan(delete=(), renames=((1, 2), (0, 1)))),
            ({1, 2, 3}, 3, RotationPlan(delete=(3,), renames=((2, 3), (1, 2), (0, 1)))),
            ({1, 2, 3, 7}, 3, RotationPlan(delete=(3, 7), renames=((2, 3), (1, 2), (0, 1)))),
            ({2}, 3, RotationPlan(delete=(), renames=((2, 3), (0, 1)))),
            ({1, 2}, 0, RotationPlan(delete=(1, 2, 0), renames=())),
        ],
    )
    def test_rotation_plan(self, existing: set[int], backups: int, plan: RotationPlan) -> None:
        """Shift .N to .N+1 from the top, delete what would pass `backups`, the live file becomes .1."""
        assert plan_rotation(existing, backups) == plan

    @pytest.mark.parametrize(
        ("existing", "backups", "stale"),
        [(set(), 8, ()), ({1, 2, 3}, 8, ()), ({1, 2, 9, 10}, 8, (9, 10)), ({1, 2}, 0, (1, 2))],
    )
    def test_prune_plan(self, existing: set[int], backups: int, stale: tuple[int, ...]) -> None:
        """At start-up, backups beyond `backups` left by earlier runs are deleted."""
        assert plan_prune(existing, backups) == stale


class TestOnDisk:
    def test_apply_keeps_exactly_backups(self, tmp_path: Path) -> None:
        """Rotating five times with backups = 3 leaves the live file and .1 .. .3 with the newest contents."""
        path = tmp_path / "t.jsonl"
        for i in range(5):
            path.write_text(f"{i}\n")
            apply_rotation(path, 3)
        assert not path.exists()
        assert backup_suffixes(path) == {1, 2, 3}
        assert [(tmp_path / f"t.jsonl.{n}").read_text() for n in (1, 2, 3)] == ["4\n", "3\n", "2\n"]

    def test_prune_deletes_only_stale_backups_of_this_file(self, tmp_path: Path) -> None:
        """Other files that share a prefix are not touched."""
        path = tmp_path / "t.jsonl"
        for name in ("t.jsonl.1", "t.jsonl.2", "t.jsonl.5", "t.jsonl.lock", "t.jsonl.x", "other.jsonl.9"):
            (tmp_path / name).write_text("x")
        assert prune_backups(path, 2) == (5,)
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            "other.jsonl.9", "t.jsonl.1", "t.jsonl.2", "t.jsonl.lock", "t.jsonl.x"]
