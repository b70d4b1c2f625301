"""Peer liveness: exactly one peer.silent after the timeout, one peer.recovered on return."""

from __future__ import annotations

import pytest

from swimmy.peers.monitor import PeerMonitor, PeerTable, Transition
from swimmy.testing import CapturingEmitter, FakeClock


class TestTable:
    @pytest.mark.parametrize(
        ("heard_at", "check_at", "silent"),
        [([0.0], 60.0, False), ([0.0], 60.1, True), ([0.0, 30.0], 89.0, False), ([0.0, 30.0], 91.0, True)],
    )
    def test_silent_after_the_timeout_since_the_last_word(
        self, heard_at: list[float], check_at: float, silent: bool
    ) -> None:
        """A peer is silent once `timeout` has passed since it was last heard."""
        table = PeerTable(60.0)
        for t in heard_at:
            table.heard("w1", t)
        assert bool(table.check(check_at)) is silent

    def test_one_transition_per_change(self) -> None:
        """silent once (not on every check), recovered once, with the silence measured."""
        table = PeerTable(10.0)
        assert table.heard("w1", 0.0) is None
        assert table.check(11.0) == [Transition("silent", "w1", 11.0)]
        assert table.check(12.0) == []
        assert table.check(90.0) == []
        assert table.heard("w1", 95.0) == Transition("recovered", "w1", 95.0)
        assert table.heard("w1", 96.0) is None
        assert table.check(100.0) == []

    def test_a_peer_that_never_spoke_is_never_silent(self) -> None:
        """Only sources that have sent a heartbeat are tracked."""
        assert PeerTable(1.0).check(1e9) == []

    def test_the_table_is_bounded(self) -> None:
        """Sources come from the network: beyond max_peers a new one replaces the one heard least recently."""
        table = PeerTable(10.0, max_peers=2)
        for t, name in enumerate(("a", "b", "c")):
            table.heard(name, float(t))
        assert sorted(table.ages(3.0)) == ["b", "c"]

    def test_known_peers_and_workers_are_never_evicted_by_a_flood_of_unknown_sources(self) -> None:
        """3,000 made-up sources: the unknown ones stay bounded and counted; the known ones all stay."""
        workers = {"worker-w1"}
        table = PeerTable(10.0, max_peers=1024, known=["trader"], protected=workers.__contains__)
        for name in ("trader", "worker-w1", "other"):
            table.heard(name, 0.0)
        for i in range(3000):
            table.heard(f"forged-{i}", 1.0 + i / 1000)
        tracked = set(table.ages(5.0))
        assert {"trader", "worker-w1"} <= tracked
        assert "other" not in tracked  # an unknown real peer is still only an unknown source
        assert len(tracked) == 2 + 1024
        assert table.evicted == 3000 + 1 - 1024
        assert {f"forged-{i}" for i in range(3000 - 1024, 3000)} <= tracked  # the most recently heard ones

    def test_an_unknown_source_heard_again_is_kept_over_one_heard_once(self) -> None:
        """Eviction takes the unknown source heard least recently, not the first one ever heard."""
        table = PeerTable(10.0, max_peers=2)
        table.heard("a", 0.0)
        table.heard("b", 1.0)
        table.heard("a", 2.0)
        table.heard("c", 3.0)
        assert sorted(table.ages(3.0)) == ["a", "c"] and table.evicted == 1

    def test_a_worker_that_joins_the_broker_stops_counting_as_unknown(self) -> None:
        """A worker heard before its READY was unknown; once the broker holds it, it takes no unknown slot."""
        workers: set[str] = set()
        table = PeerTable(10.0, max_peers=1, protected=workers.__contains__)
        table.heard("worker-w1", 0.0)
        workers.add("worker-w1")
        table.heard("worker-w1", 1.0)
        table.heard("x", 2.0)
        table.heard("y", 3.0)
        assert sorted(table.ages(3.0)) == ["worker-w1", "y"] and table.evicted == 1

    def test_a_worker_heard_only_before_its_ready_is_not_evicted_by_a_flood(self) -> None:
        """Its one ack came before its READY (it was unknown then); the flood that follows evicts only strangers."""
        workers: set[str] = set()
        table = PeerTable(10.0, max_peers=3, protected=workers.__contains__)
        table.heard("worker-w1", 0.0)
        workers.add("worker-w1")  # READY: the broker holds it; no heartbeat of it since
        for i in range(5):
            table.heard(f"forged-{i}", 1.0 + i)
        assert sorted(table.ages(6.0)) == ["forged-2", "forged-3", "forged-4", "worker-w1"]
        assert table.evicted == 2

    def test_a_peer_gone_for_good_is_forgotten(self) -> None:
        """Silent for 10 x the timeout: forgotten (and no longer silent); it is new if it ever comes back."""
        table = PeerTable(10.0)
        table.heard("w1", 0.0)
        assert [t.kind for t in table.check(11.0)] == ["silent"]
        assert table.check(100.0) == []
        assert table.check(101.0) == [Transition("forgotten", "w1", 101.0)]
        assert table.silent() == [] and not table.known("w1")
        assert table.heard("w1", 200.0) is None


class TestMonitor:
    def test_silence_and_return_with_an_injected_clock(self) -> None:
        """Exactly one peer.silent, then one peer.recovered, each with silent_sec."""
        clock, emit = FakeClock(monotonic_start=0.0), CapturingEmitter()
        monitor = PeerMonitor(PeerTable(60.0), emit, clock)
        monitor.heard("worker-1")
        for _ in range(200):
            clock.advance(1.0)
            monitor.check()
        monitor.heard("worker-1")
        monitor.heard("worker-1")
        silent, recovered = emit.of_type("peer.silent"), emit.of_type("peer.recovered")
        assert len(silent) == 1 and len(recovered) == 1
        assert silent[0].severity == "warning" and silent[0].correlation_id == "worker-1"
        assert silent[0].data == {"source": "worker-1", "silent_sec": 61.0}
        assert recovered[0].data == {"source": "worker-1", "silent_sec": 200.0}
        assert recovered[0].severity == "info"
