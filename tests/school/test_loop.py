"""The school cycle: it waits for a worker before sending work, and it bounds the population."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from schoolkit import make_kit

from swimmy.school.loop import DataWindow, School, data_window

HOUR = 3600


def school(tmp_path: Path, ready: list[bool], **school_cfg: object) -> tuple[School, object]:
    kit = make_kit(tmp_path, {"school": {"breed_per_cycle": 5, "population_max": 12, **school_cfg}})
    s = School(kit.cfg, kit.store, kit.client, kit.emit, kit.clock, rng=random.Random(1),
               workers_ready=lambda: ready[0])
    ts = np.arange(1_700_000_000, 1_700_000_000 + 3000 * HOUR, HOUR, dtype=np.int64)
    s._windows[("EURUSD", "H1")] = DataWindow(int(ts[2000]), ts[:2000])
    return s, kit


class TestCycle:
    def test_no_work_is_sent_before_a_worker_answers(self, tmp_path: Path) -> None:
        """Without a worker, breeding goes on but nothing is sent (no refusals, no error verdicts)."""
        ready = [False]
        s, kit = school(tmp_path, ready)
        s.cycle()
        assert kit.pipe.sent == []  # type: ignore[attr-defined]
        assert kit.events("oos.dispatch_failed") == []  # type: ignore[attr-defined]
        assert len(kit.store.awaiting_is(100)) == 5  # type: ignore[attr-defined]
        ready[0] = True
        s.cycle()
        sent = kit.pipe.sent  # type: ignore[attr-defined]
        assert {r["purpose"] for r in sent} == {"is"}
        assert all(r["end_ts"] == 1_700_000_000 + 2000 * HOUR for r in sent)  # the IS range ends at the OOS window

    def test_the_population_never_passes_population_max(self, tmp_path: Path) -> None:
        """Incubator rows are never retired, so breeding stops at the bound instead of passing it."""
        s, kit = school(tmp_path, [False])
        for _ in range(5):
            s.cycle()
        assert len(kit.store.live_strategies()) == 12  # type: ignore[attr-defined]

    def test_data_window_takes_the_newest_days_for_oos(self) -> None:
        """The OOS window is the newest window_days; the IS range is every bar before it."""
        ts = np.arange(0, 100 * 86_400, 86_400, dtype=np.int64)
        window = data_window(ts, 10)
        assert window is not None and window.oos_start == 89 * 86_400
        assert int(window.is_timestamps[-1]) == 88 * 86_400
        assert data_window(ts[:1], 10) is None
