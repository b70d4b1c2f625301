"""The school end to end: real embedded workers on a generated planted-trend universe and on EURUSD, short intervals."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
from helpers import TREND_UNIVERSE, wait_until, write_config
from integration.kit import StartDaemon

from swimmy.errors import StoreError
from swimmy.store import Store

pytestmark = pytest.mark.slow


def test_oos_and_wfv_results_appear_and_each_request_shares_one_correlation_id(
    tmp_path: Path, start_daemon: StartDaemon
) -> None:
    """Bred, backtested, ranked; oos.result and wfv.result appear; all oos.*/wfv.* of one request share its id."""
    daemon = start_daemon(write_config(tmp_path, {
        "workers": {"embedded": 2},
        "synthetic": TREND_UNIVERSE["synthetic"],
        "school": {**TREND_UNIVERSE["school"], "cycle_sec": 1, "progress_interval_sec": 1},
        "oos": {"request_interval_sec": 30},
        "wfv": {"interval_sec": 1, "max_pending": 2},
        "heartbeat": {"interval_sec": 1},
    }))
    wait_until(lambda: daemon.events("oos.result") and daemon.events("wfv.result"), 90, "oos.result and wfv.result")
    assert daemon.stop() == 0
    events = daemon.events()
    # IS results are counted per universe in school.progress, not one event each (SPEC §5).
    progress = [e for e in events if e["event_type"] == "school.progress"]
    assert progress and progress[-1]["data"]["trials"] > 0 and progress[-1]["correlation_id"] == "SYNTH_TREND_H1"
    assert progress[-1]["data"]["n_eff"] >= 1 and progress[-1]["data"]["best_dsr"] is not None

    by_request: dict[str, set[str]] = defaultdict(set)
    for e in events:
        if e["event_type"].startswith("oos."):
            by_request[e["data"]["request_id"]].add(e["correlation_id"])
    assert by_request and all(ids == {rid} for rid, ids in by_request.items())

    by_wfv: dict[str, set[str]] = defaultdict(set)
    for e in events:
        if e["event_type"].startswith("wfv.") and e["event_type"] != "wfv.deferred":
            by_wfv[e["data"]["wfv_id"]].add(e["correlation_id"])
    assert by_wfv and all(ids == {wid} for wid, ids in by_wfv.items())

    # The OOS request and its backtest share the id end to end.
    result = daemon.events("oos.result")[0]
    completed = [e for e in events if e["event_type"] == "backtest.completed"
                 and e["correlation_id"] == result["correlation_id"]]
    assert completed and completed[0]["data"]["purpose"] == "oos"

    with Store.open_readonly(tmp_path / "var" / "school.db") as store:
        counts = store.count_by_rank()
    assert sum(counts.values()) >= 10
    listing = daemon.cli("strategies", "list", "--limit", "5")
    assert listing.returncode == 0 and "strategies)" in listing.stdout


def test_manual_wfv_and_oos_commands(tmp_path: Path, start_daemon: StartDaemon) -> None:
    """`wfv start` and `oos request`: manual trigger, exit 1 when already pending, exit 2 for an unknown name."""
    daemon = start_daemon(write_config(tmp_path, {
        "workers": {"embedded": 1},
        "school": {"cycle_sec": 1, "breed": True, "breed_per_cycle": 4},
        "wfv": {"enabled": False},
        "backtest": {"timeout_sec": 30},
    }))

    def ranked() -> list[str]:
        try:
            with Store.open_readonly(tmp_path / "var" / "school.db") as store:
                return [r.name for r in store.list_strategies(rank="B", limit=1)]
        except StoreError:
            return []  # not created, or not migrated yet

    name = wait_until(ranked, 60, "a ranked strategy")[0]
    first = daemon.cli("wfv", "start", name)
    assert first.returncode == 0, first.stderr
    assert "trigger: manual" in first.stdout
    again = daemon.cli("wfv", "start", name)
    if not daemon.events("wfv.result"):
        assert again.returncode == 1 and "already has a WFV run pending" in again.stderr
    unknown = daemon.cli("wfv", "start", "no-such-strategy")
    assert unknown.returncode == 2 and "unknown strategy" in unknown.stderr
    assert daemon.cli("oos", "request", "no-such-strategy").returncode == 2
    oos = daemon.cli("oos", "request", name)
    assert oos.returncode == 0, oos.stderr
    started = daemon.wait_for("wfv.started", timeout=10)
    assert started[0]["data"]["trigger"] == "manual"
    assert daemon.stop() == 0
