"""The school cycle: it waits for a worker before sending work, and it bounds the population."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from schoolkit import make_kit

from swimmy.school.loop import DataWindow, School, data_window, holdout_start

HOUR = 3600


def school(tmp_path: Path, ready: list[bool], **school_cfg: object) -> tuple[School, object]:
    kit = make_kit(tmp_path, {"school": {"breed_per_cycle": 5, "population_max": 12, **school_cfg}})
    s = School(kit.cfg, kit.store, kit.client, kit.emit, kit.clock, rng=random.Random(1),
               workers_ready=lambda: ready[0])
    ts = np.arange(1_700_000_000, 1_700_000_000 + 3000 * HOUR, HOUR, dtype=np.int64)
    s._windows[("EURUSD", "H1")] = DataWindow(int(ts[2000]), ts[:2000])
    return s, kit


class TestCycle:
    def test_no_work_is_bred_or_sent_before_a_worker_is_ready(self, tmp_path: Path) -> None:
        """Breeding is paced by free credit: without a worker nothing is bred, sent or refused."""
        ready = [False]
        s, kit = school(tmp_path, ready)
        kit.pipe.open = False  # type: ignore[attr-defined]
        s.cycle()
        assert kit.pipe.sent == []  # type: ignore[attr-defined]
        assert kit.events("oos.dispatch_failed") == []  # type: ignore[attr-defined]
        assert kit.store.awaiting_is(100) == []  # type: ignore[attr-defined]
        ready[0] = True
        kit.pipe.open = True  # type: ignore[attr-defined]
        s.cycle()
        sent = kit.pipe.sent  # type: ignore[attr-defined]
        assert {r["purpose"] for r in sent} == {"is"}
        assert all(r["end_ts"] == 1_700_000_000 + 2000 * HOUR for r in sent)  # the IS range ends at the OOS window

    def test_breeding_is_paced_by_free_credit(self, tmp_path: Path) -> None:
        """As many IS requests as the workers may hold, then one more per result: the fleet never waits."""
        s, kit = school(tmp_path, [True], breed_per_cycle=0, population_max=1000)
        kit.pipe.open = False  # type: ignore[attr-defined]
        kit.pipe.ready(credit=3)  # type: ignore[attr-defined]
        s.cycle()
        sent = kit.pipe.sent  # type: ignore[attr-defined]
        assert len(sent) == 3
        for _ in range(5):
            kit.answer(sent[-1], sharpe=-1.0)  # type: ignore[attr-defined]
            s._scheduled_feed()
        assert len(sent) == 8 and len({r["request_id"] for r in sent}) == 8

    def test_breed_per_cycle_is_an_upper_bound(self, tmp_path: Path) -> None:
        s, kit = school(tmp_path, [True], breed_per_cycle=2, population_max=1000)
        s.cycle()
        assert len(kit.pipe.sent) == 2  # type: ignore[attr-defined]

    def test_the_population_never_passes_population_max(self, tmp_path: Path) -> None:
        """Incubator rows are never retired, so breeding stops at the bound instead of passing it."""
        s, kit = school(tmp_path, [True])
        for _ in range(5):
            s.cycle()
        assert len(kit.store.live_strategies()) == 12  # type: ignore[attr-defined]

    def test_imported_strategies_are_sent_first_though_the_store_had_none_a_moment_ago(self, tmp_path: Path) -> None:
        """The store is asked for waiting rows once a second at most, and at once after an import (incubator_grew)."""
        from swimmy.backtest.strategies import StrategySpec
        from swimmy.school.catalog import import_specs
        from swimmy.school.feeding import STORE_RECHECK_SEC

        s, kit = school(tmp_path, [True], breed_per_cycle=0, population_max=1000)
        kit.pipe.open = False  # type: ignore[attr-defined]
        kit.pipe.ready(credit=1)  # type: ignore[attr-defined]
        s.cycle()  # the store has nothing waiting: a child is bred and sent
        sent = kit.pipe.sent  # type: ignore[attr-defined]

        def next_sent() -> str:
            kit.answer(sent[-1], sharpe=-1.0)  # type: ignore[attr-defined]
            s._scheduled_feed()
            return str(sent[-1]["strategy"]["name"])

        def drop_buffer() -> None:  # the bred batch aside (and out of the store's incubator): only imports wait
            for row in s._ready_rows.pop(("EURUSD", "H1"), []):
                kit.store.set_rank(row.name, "graveyard", kit.clock.time())  # type: ignore[attr-defined]

        def imported(fast: int) -> str:
            spec = StrategySpec("sma_cross", {"fast": fast, "slow": 40}, "EURUSD", "H1")
            older = kit.clock.time() - 3600  # type: ignore[attr-defined]  # so it is the store's oldest waiting row
            return import_specs(kit.store, [spec], older)["added"][0]  # type: ignore[attr-defined]

        first = imported(3)
        drop_buffer()
        assert next_sent() != first  # within the quiet second the store is not read: a new child goes
        kit.clock.advance(STORE_RECHECK_SEC)  # type: ignore[attr-defined]
        drop_buffer()
        assert next_sent() == first  # a second on, the store is read again
        second = imported(4)
        drop_buffer()
        s.incubator_grew()
        assert next_sent() == second  # an import is looked at once

    def test_incubator_rows_without_data_are_retired_with_the_reason(self, tmp_path: Path) -> None:
        """A symbol the config does not trade can't block the incubator: it leaves, saying why."""
        s, kit = school(tmp_path, [False])
        from swimmy.store import StrategyRow
        kit.store.add_strategy(StrategyRow(name="stray", rules_hash="h-stray", family="sma_cross",  # type: ignore
                                           params={"fast": 5, "slow": 20}, symbol="GBPUSD", timeframe="H1"))
        s.cycle()
        (event,) = [e for e in kit.events("strategy.ranked") if e.data["strategy"] == "stray"]  # type: ignore
        assert event.data["to_rank"] == "graveyard" and "GBPUSD_H1: not traded" in event.data["reason"]

    def test_housekeeping_runs_with_no_worker(self, tmp_path: Path) -> None:
        """A pending WFV run expires (wfv.timeout) although no worker is connected."""
        from swimmy.store import WfvRow
        ready = [False]
        s, kit = school(tmp_path, ready)
        kit.add("w1")  # type: ignore[attr-defined]
        row = WfvRow("wfv-1", "w1", kit.clock.time(), "scheduled", 0.2, "r1", "r2")  # type: ignore[attr-defined]
        kit.store.add_wfv_run(row)  # type: ignore[attr-defined]
        s.wfv.pending["wfv-1"] = row
        kit.clock.advance(kit.cfg.wfv.pending_timeout_sec + 1)  # type: ignore[attr-defined]
        s.cycle()
        assert [e.data["wfv_id"] for e in kit.events("wfv.timeout")] == ["wfv-1"]  # type: ignore[attr-defined]

    def test_the_holdout_is_the_newest_quarter_and_at_least_the_minimum_days(self) -> None:
        """SPEC §5: the newest window_fraction of the bars, at least min_window_days; the IS range is before it."""
        ts = np.arange(0, 1000 * HOUR, HOUR, dtype=np.int64)
        assert holdout_start(ts, 0.25, 1) == int(ts[750])  # the quarter is longer than a day
        assert holdout_start(ts, 0.25, 30) == int(ts[-1]) - 30 * 86_400  # 30 days is more than a quarter here
        window = data_window(ts, holdout_start(ts, 0.25, 1))
        assert window is not None and window.oos_start == int(ts[750]) and int(window.is_timestamps[-1]) == ts[749]
        assert data_window(ts[:1], 0) is None and data_window(ts, None) is None


class TestStartUpAndAudit:
    def test_ranks_granted_under_older_gates_are_judged_again_at_start_up(self, tmp_path: Path) -> None:
        """An S without a DSR or a holdout verdict (an older school's) is demoted, saying why."""
        s, kit = school(tmp_path, [True])
        kit.add("old-s", rank="S", is_dsr=None)  # type: ignore[attr-defined]
        kit.add("fine-a", rank="A", is_dsr=0.99)  # type: ignore[attr-defined]
        kit.store.set_oos_verdict("fine-a", sharpe=1.0, psr=0.99, trades=40, decision="pass", now=0)  # type: ignore
        s.rerank_all()
        events = {e.data["strategy"]: e.data for e in kit.events("strategy.ranked")}  # type: ignore[attr-defined]
        assert events["old-s"]["to_rank"] == "B"
        assert "re-ranked at start-up" in events["old-s"]["reason"] and "dsr null" in events["old-s"]["reason"]
        assert "fine-a" not in events  # its figures still hold: A (holdout passed; S waits for a walk-forward)

    async def test_the_audit_reports_pbo_from_trials_drawn_from_the_ledger(self, tmp_path: Path) -> None:
        """school.audit: PBO by CSCV over trials drawn at random, with trials, N_eff and SR0; a warning past 0.5."""
        import itertools

        import numpy as np

        from swimmy.school.ledger import sketch_blob
        from swimmy.store import TrialRow

        s, kit = school(tmp_path, [True])
        s._data_hashes["EURUSD_H1"] = "h"
        rng = np.random.default_rng(9)
        rows = []
        for i in range(80):
            r = rng.normal(0, 0.001, size=3200)
            edges = np.linspace(0, 3200, 33).astype(int)
            sums = [float(r[a:b].sum()) for a, b in itertools.pairwise(edges)]
            sqs = [float((r[a:b] ** 2).sum()) for a, b in itertools.pairwise(edges)]
            rows.append(TrialRow("EURUSD_H1", f"h{i}", "sma_cross", 0, 0.0, 0.0, 3.0, 3200, float(i),
                                 sketch_blob({"sums": sums, "sumsqs": sqs})))
        s.ledger.record(rows, 1.0)
        for i in range(16):
            kit.add(f"ranked-{i}")  # type: ignore[attr-defined]
        reports = await s.maybe_audit(force=True)
        (event,) = kit.events("school.audit")  # type: ignore[attr-defined]
        assert event.correlation_id == "EURUSD_H1" and event.data == reports[0]
        assert event.data["strategies"] == 50 and event.data["trials"] == 80 and event.data["sr0"] > 0
        assert 0.2 < event.data["pbo"] < 0.8  # noise: the in-sample best is a coin toss out of sample
        assert event.severity == ("warning" if event.data["pbo"] > 0.5 else "info")
        assert s.universe_figures()["EURUSD_H1"]["pbo"] == event.data["pbo"]

    def test_looks_at_the_holdout_are_counted_and_a_worn_holdout_is_said_once(self, tmp_path: Path) -> None:
        """Every OOS verdict is a look; past oos.max_looks, school.holdout_worn (once for that data)."""
        kit = make_kit(tmp_path, {"oos": {"max_looks": 3}})
        s = School(kit.cfg, kit.store, kit.client, kit.emit, kit.clock, rng=random.Random(1))
        s._data_hashes["EURUSD_H1"] = "hash-1"
        kit.store.record_holdout_split("EURUSD_H1", "hash-1", 1_700_000_000, 0.25, 90, 0.0)
        row = kit.add("x")
        for _ in range(6):
            s.count_look(row)
        (worn,) = kit.events("school.holdout_worn")
        assert worn.severity == "warning" and worn.data["oos_looks"] == 4 and worn.data["max_looks"] == 3
        assert s.universe_figures()["EURUSD_H1"]["oos_looks"] == 6
        stored = kit.store.get_strategy(row.name)
        assert stored is not None and stored.oos_data_hash == "hash-1"  # the look was on this data's holdout
        s._data_hashes["EURUSD_H1"] = "hash-2"  # new data: a new holdout, looks start again
        kit.store.record_holdout_split("EURUSD_H1", "hash-2", 1_710_000_000, 0.25, 90, 0.0)
        assert s.universe_figures()["EURUSD_H1"]["oos_looks"] == 0
