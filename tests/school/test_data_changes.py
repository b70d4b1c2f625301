"""A broken or changing universe: paused, never the strategies' fault, and re-evaluated on new data (SPEC §4)."""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

from schoolkit import A_METRICS, WORKER, work_message

from swimmy.backtest.client import BacktestClient
from swimmy.backtest.data import clear_cache, data_hash
from swimmy.config import config_from_mapping
from swimmy.school.loop import School
from swimmy.store import Store, StrategyRow, WfvRow
from swimmy.testing import CapturingEmitter, FakeClock, RecordingRouter
from swimmy.wire.messages import ready_body, result_body

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "eurusd-h1-2017" / "EURUSD_H1.csv"


class World:
    """A school on a real data file, the real broker, one fake worker that has whatever file is there now."""

    def __init__(self, tmp_path: Path, *, db: Path | None = None) -> None:
        clear_cache()
        self.data = tmp_path / "data"
        self.data.mkdir(exist_ok=True)
        self.file = self.data / "EURUSD_H1.csv"
        if not self.file.exists():
            shutil.copy(SAMPLE, self.file)
        self.cfg = config_from_mapping({"school": {"data_dir": str(self.data), "breed": False}}, base_dir=tmp_path)
        self.clock = FakeClock(start=1_800_000_000.0)
        self.emit = CapturingEmitter()
        self.router = RecordingRouter()
        self.store = Store.open(db or tmp_path / "school.db")
        school: School | None = None
        self.client = BacktestClient(self.router, self.emit, self.clock, timeout_sec=60, worker_timeout_sec=1e9,
                                     universe_hash=lambda u: school.universe_hash(u) if school else None)
        self.school = school = School(self.cfg, self.store, self.client, self.emit, self.clock,
                                      rng=random.Random(1))

    @property
    def sent(self) -> list[dict[str, Any]]:
        """The requests the broker sent, in order."""
        return self.router.bodies()

    def ready(self) -> None:
        """The worker's READY: the hash of the file it has now."""
        digest = data_hash(self.data, "EURUSD", "H1")
        data = {"EURUSD_H1": digest} if digest else {}
        self.client.handle_ready(WORKER, work_message(ready_body(worker="fake", credit=100, data=data)))

    def answer(self, request: dict[str, Any], **metrics: Any) -> None:
        body = result_body(request_id=request["request_id"], strategy_name=request["strategy"]["name"],
                           status="ok", metrics={**A_METRICS, **metrics}, bars=4000, start_ts=request["start_ts"],
                           end_ts=request["end_ts"], elapsed_ms=1.0, worker="fake")
        assert self.client.handle_result(WORKER, work_message(body)) is None

    def add(self, name: str, rank: str, **fields: Any) -> None:
        figures = {"is_sharpe": 1.2, "is_trades": 50, "is_dsr": 0.99, **fields}
        row = StrategyRow(name=name, rules_hash=f"hash-{name}", family="sma_cross", params={"fast": 10, "slow": 30},
                          symbol="EURUSD", timeframe="H1", rank=rank, created_at=self.clock.time(),
                          updated_at=self.clock.time(), **figures)
        assert self.store.add_strategy(row)

    def events(self, event_type: str) -> list[dict[str, Any]]:
        return [e.data for e in self.emit.of_type(event_type)]

    def break_file(self) -> None:
        lines = SAMPLE.read_text().splitlines()
        lines[3000] = lines[3000].replace(lines[3000].split(",")[2], "x", 1)  # a bad number in high, line 3001
        self.file.write_text("\n".join(lines) + "\n")

    def new_file(self) -> None:
        """Other, valid data: the sample without its last 24 bars."""
        lines = SAMPLE.read_text().splitlines()
        self.file.write_text("\n".join(lines[:-24]) + "\n")


async def test_a_broken_file_pauses_its_universe_and_the_work_waits_until_it_is_back(tmp_path: Path) -> None:
    """data.invalid once, naming file and line; nothing sent, timed out or judged; then data.recovered."""
    w = World(tmp_path)
    await w.school.refresh_windows()
    good = w.school.universe_hash("EURUSD_H1")
    assert good is not None and w.events("data.imported")[0]["reevaluated"] == 0
    w.ready()
    w.add("in-the-incubator", "incubator", is_dsr=None)
    w.school.feed()
    (request,) = w.sent
    w.add("pending-wfv", "B")
    run = WfvRow("wfv-1", "pending-wfv", w.clock.time(), "scheduled", 0.2, None, None)
    w.store.add_wfv_run(run)
    w.school.wfv.pending["wfv-1"] = run

    w.break_file()
    await w.school.refresh_windows()
    await w.school.refresh_windows()  # still broken: said once
    (invalid,) = w.events("data.invalid")
    assert invalid["universe"] == "EURUSD_H1" and f"{w.file}:3001: bad number in high" in invalid["error"]
    assert w.school.paused("EURUSD_H1") and w.school.universe_hash("EURUSD_H1") is None
    w.ready()  # the worker's file is broken too: its READY has another hash
    w.client.handle_result(WORKER, work_message(result_body(
        request_id=request["request_id"], strategy_name=request["strategy"]["name"], status="error",
        error=f"data mismatch: worker fake has EURUSD_H1 with hash {data_hash(w.data, 'EURUSD', 'H1')}",
        elapsed_ms=1.0, worker="fake")))
    for _ in range(5):  # ten minutes: far past the request timeout and the WFV pending timeout
        w.clock.advance(2 * w.cfg.wfv.pending_timeout_sec)
        w.client.check()
        w.school.wfv.check_timeouts(w.clock.time())
        w.school.feed()
    assert len(w.sent) == 1, "nothing may be sent on a broken file"
    assert w.events("backtest.timeout") == [] and w.events("wfv.timeout") == []
    assert w.store.get_strategy("in-the-incubator").rank == "incubator"  # type: ignore[union-attr]

    shutil.copy(SAMPLE, w.file)  # the same file as before: the same hash
    await w.school.refresh_windows()
    (recovered,) = w.events("data.recovered")
    assert recovered["data_hash"] == good and not w.school.paused("EURUSD_H1")
    w.ready()
    assert [r["request_id"] for r in w.sent] == [request["request_id"]] * 2, "the waiting request is sent again"
    w.answer(w.sent[-1], sharpe=-0.5)
    w.school.flush_results()
    assert w.store.get_strategy("in-the-incubator").rank == "graveyard"  # type: ignore[union-attr]
    assert len(w.events("data.imported")) == 1, "the same data is not new data"


async def test_new_data_ends_old_requests_as_stale_and_re_evaluates_the_ranked(tmp_path: Path) -> None:
    """Another valid file: data.imported; requests on the old data end without a verdict; A/S/B run again."""
    w = World(tmp_path)
    await w.school.refresh_windows()
    old = w.school.universe_hash("EURUSD_H1")
    w.ready()
    w.add("waiting", "incubator", is_dsr=None)
    w.school.feed()
    (is_request,) = w.sent
    w.add("an-a", "A")
    w.store.set_oos_verdict("an-a", sharpe=1.0, psr=0.99, trades=40, decision="pass", now=w.clock.time())
    w.add("a-b", "B")
    w.add("pending-wfv", "B")
    wfv_id = w.school.wfv.start_manual("pending-wfv")
    assert any(r["purpose"] == "wfv_fold" for r in w.sent)

    w.new_file()
    await w.school.refresh_windows()
    new = w.school.universe_hash("EURUSD_H1")
    assert new not in (None, old)
    imported = w.events("data.imported")[-1]
    assert imported["data_hash"] == new and imported["reevaluated"] == 3 and imported["bars"] == 6225 - 24
    for name in ("an-a", "a-b", "pending-wfv"):
        row = w.store.get_strategy(name)
        assert row is not None and row.rank == "incubator" and row.oos_decision is None
    (ranked,) = [e for e in w.events("strategy.ranked") if e["strategy"] == "an-a"]
    assert ranked["from_rank"] == "A" and ranked["to_rank"] == "incubator" and "new data" in ranked["reason"]
    w.school.flush_results()
    assert w.store.get_strategy("waiting").rank == "incubator", "a stale IS request is not the strategy's fault"
    (cancelled,) = w.events("wfv.cancelled")
    assert cancelled["wfv_id"] == wfv_id and "data changed" in cancelled["reason"]
    assert w.events("wfv.result") == []
    assert w.client.is_inflight(is_request["request_id"]) is False


async def test_data_changed_while_the_daemon_was_down_is_taken_in_at_start_up(tmp_path: Path) -> None:
    """A restart on another file: the ranked strategies of that universe are evaluated again."""
    w = World(tmp_path)
    await w.school.refresh_windows()
    w.add("an-s", "S")
    w.add("walked", "incubator", is_dsr=None)  # a manual walk-forward may run on any strategy
    w.ready()
    wfv_id = w.school.wfv.start_manual("walked")
    w.store.close()
    w.new_file()
    again = World(tmp_path, db=tmp_path / "school.db")
    again.clock.advance(3600)  # the daemon comes back an hour later
    await again.school.refresh_windows()
    imported = again.events("data.imported")
    assert len(imported) == 1 and imported[0]["reevaluated"] == 1
    assert again.store.get_strategy("an-s").rank == "incubator"  # type: ignore[union-attr]
    again.ready()
    again.school.wfv.startup()  # after the first refresh, as School.run does
    (cancelled,) = again.events("wfv.cancelled")
    assert cancelled["wfv_id"] == wfv_id and "has new data since the run started" in cancelled["reason"]
    assert not [r for r in again.sent if r["purpose"] == "wfv_fold"], "no fold is sent again on the new data"
