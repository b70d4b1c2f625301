"""The worker fleet (SPEC §4, work protocol v2) with real sockets and real worker processes.

Kills, hangs, poison requests, a daemon killed mid walk-forward, data that differs, old and junk
peers on the work socket, CurveZMQ for remote workers, and a bounded chaos run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
import zmq
from helpers import REPO, run_cli, wait_until, write_config
from integration.kit import StartDaemon, StartFleet, WorkerProcess

from swimmy.backtest.data import load_bars
from swimmy.backtest.engine import Costs, run_backtest
from swimmy.backtest.strategies import StrategySpec, pip_size
from swimmy.store import Store

pytestmark = pytest.mark.slow

DATA = REPO / "data" / "eurusd-h1-2017"


def wire_strategy(family: str, params: dict[str, float], sl: float = 0.0, tp: float = 0.0) -> dict[str, Any]:
    spec = StrategySpec(family, params, "EURUSD", "H1", sl, tp)
    return {**spec.to_wire(spec.name())}


SMA = wire_strategy("sma_cross", {"fast": 10, "slow": 30})
HEARTBEAT = {"interval_sec": 0.5}


class TestKillsAndHangs:
    def test_kill_9_of_a_worker_holding_requests_loses_none_and_answers_none_twice(
        self, start_fleet: StartFleet
    ) -> None:
        """Each request the dead worker held is answered by the other within worker_timeout + one backtest."""
        daemon = start_fleet(2, heartbeat=HEARTBEAT, backtest={"worker_timeout_sec": 2})
        rids = asyncio.run(daemon.submit_many([{"strategy": wire_strategy("sma_cross", {"fast": f, "slow": 40}),
                                                "debug": {"sleep_sec": 1.0}} for f in range(5, 13)]))
        time.sleep(0.3)  # both workers hold two requests each
        victim = daemon.events("worker.started", worker="embedded-1")[0]["data"]["pid"]
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        daemon.wait_for("backtest.completed", count=len(rids), timeout=30)
        answered_in = time.monotonic() - killed_at
        requeued = daemon.events("backtest.requeued", worker="embedded-1")
        assert requeued and all(e["data"]["request_id"] in rids for e in requeued)
        done = Counter(e["data"]["request_id"] for e in daemon.events("backtest.completed"))
        assert set(done) == set(rids) and set(done.values()) == {1}
        assert all(e["data"]["status"] == "ok" for e in daemon.events("backtest.completed"))
        # 8 requests of ~1 s each on what is left of the fleet: bounded, not two 120 s timeouts.
        assert answered_in < 2 + 8 * 1.0 + 5
        assert daemon.stop() == 0

    def test_a_hung_backtest_thread_is_declared_dead_while_its_process_lives(self, start_fleet: StartFleet) -> None:
        """No BUSY from the backtest thread: worker.lost and backtest.requeued, though the pid is alive."""
        hung = wire_strategy("ema_cross", {"fast": 7, "slow": 31})
        daemon = start_fleet(1, heartbeat=HEARTBEAT, backtest={"worker_timeout_sec": 1.5},
                             debug={"worker_hang_on": [hung["name"]]})
        pid = daemon.events("worker.started")[0]["data"]["pid"]
        rid = daemon.submit(hung)
        (lost,) = daemon.wait_for("worker.lost", timeout=15)
        assert "no BUSY" in lost["data"]["reason"] and lost["data"]["worker"] == "embedded-1"
        os.kill(pid, 0)  # the process is alive: only its backtest thread is stuck
        (requeued,) = daemon.wait_for("backtest.requeued", timeout=5, request_id=rid)
        assert requeued["data"]["attempts"] == 1
        assert daemon.stop() == 0

    def test_a_poison_request_is_quarantined_and_the_school_carries_on(
        self, tmp_path: Path, start_daemon: StartDaemon
    ) -> None:
        """A strategy that kills every worker it reaches: quarantined after max_attempts, graveyard, never again."""
        poison = StrategySpec("donchian_breakout", {"period": 77}, "EURUSD", "H1", 0, 0)
        strategies = tmp_path / "poison.toml"
        strategies.write_text('[p]\nfamily = "donchian_breakout"\nparams = { period = 77 }\nsymbol = "EURUSD"\n'
                              'timeframe = "H1"\n')
        config = write_config(tmp_path, {
            "workers": {"embedded": 2}, "debug": {"enabled": True, "worker_exit_on": [poison.name()]},
            "heartbeat": HEARTBEAT, "backtest": {"max_attempts": 3},
            "school": {"cycle_sec": 1, "progress_interval_sec": 1, "population_max": 200, "breed": True},
        })
        assert run_cli("strategies", "import", str(strategies), "--config", str(config)).returncode == 0
        daemon = start_daemon(config)
        (q,) = daemon.wait_for("backtest.quarantined", timeout=50)
        assert q["data"]["strategy"] == poison.name() and q["data"]["attempts"] == 3 and q["severity"] == "error"
        # Every exit is the poison's doing, and each but the last requeued it. A death is charged to the request
        # the worker was running, taken to be the oldest it held: when the result of an earlier request is still
        # in flight as the worker dies, that death is charged to the earlier one and the poison needs one more
        # (docs/protocol.md, "Which request killed it").
        exits = daemon.events("worker.exited")
        assert len(exits) >= 3
        assert len(daemon.events("backtest.requeued", strategy=poison.name())) == len(exits) - 1
        progress = daemon.events("school.progress")
        trials_then = progress[-1]["data"]["trials"] if progress else 0
        wait_until(lambda: (p := daemon.events("school.progress")) and p[-1]["data"]["trials"] > trials_then + 50,
                   30, "the school to carry on")
        assert daemon.stop() == 0
        with Store.open_readonly(tmp_path / "var" / "school.db") as store:
            row = store.get_strategy(poison.name())
        assert row is not None and row.rank == "graveyard" and row.is_sharpe is None
        (ranked,) = daemon.events("strategy.ranked", strategy=poison.name())
        assert "quarantined" in ranked["data"]["reason"]
        # never sent again: no worker died after the quarantine
        assert daemon.events("worker.exited") == exits


class TestRestart:
    def test_a_daemon_killed_during_a_walk_forward_finishes_it_after_a_restart(
        self, tmp_path: Path, start_daemon: StartDaemon
    ) -> None:
        """SIGKILL mid-WFV, start again: the pending parts are re-sent and wfv.result is a verdict, not error."""
        strategies = tmp_path / "s.toml"
        strategies.write_text('[s]\nfamily = "sma_cross"\nparams = { fast = 10, slow = 30 }\nsymbol = "EURUSD"\n'
                              'timeframe = "H1"\n')
        config = write_config(tmp_path, {
            "workers": {"embedded": 1}, "debug": {"enabled": True, "worker_sleep_sec": 1.5},
            "heartbeat": HEARTBEAT, "wfv": {"enabled": False},
        })
        assert run_cli("strategies", "import", str(strategies), "--config", str(config)).returncode == 0
        name = StrategySpec("sma_cross", {"fast": 10, "slow": 30}, "EURUSD", "H1", 0, 0).name()
        first = start_daemon(config)
        first.wait_workers_ready(1)
        started = first.cli("wfv", "start", name)
        assert started.returncode == 0, started.stderr
        (wfv,) = first.wait_for("wfv.started", timeout=10)
        first.kill_all()
        assert not first.events("wfv.result")
        second = start_daemon(config)
        (result,) = second.wait_for("wfv.result", timeout=45)  # after the restart
        assert result["data"]["wfv_id"] == wfv["data"]["wfv_id"]
        assert result["data"]["decision"] in ("validated", "weak", "overfit")
        assert second.stop() == 0


class TestData:
    def test_a_worker_with_other_data_gets_no_work_and_a_changed_file_is_answered_data_mismatch(
        self, tmp_path: Path, start_fleet: StartFleet
    ) -> None:
        """Results from different data are never mixed: mismatch warned, requeued, answered by the right worker."""
        theirs = tmp_path / "theirs"
        theirs.mkdir()
        shutil.copy(DATA / "EURUSD_H1.csv", theirs / "EURUSD_H1.csv")
        # No liveness timeout is under test here: a generous one keeps a loaded CI machine from losing the
        # remote worker between its READY and the submit (which would refuse it: no worker has the data).
        daemon = start_fleet(0, heartbeat=HEARTBEAT, backtest={"worker_timeout_sec": 10})
        worker_config = tmp_path / "worker.toml"
        worker_config.write_text(daemon.config.read_text().replace(str(DATA), str(theirs)))
        remote = WorkerProcess(worker_config, "remote")
        try:
            daemon.wait_workers_ready(1)
            rid = daemon.submit(SMA, debug={"sleep_sec": 1.0})
            time.sleep(0.3)  # the remote worker holds it; now its file changes under it
            text = (theirs / "EURUSD_H1.csv").read_text().splitlines()
            (theirs / "EURUSD_H1.csv").write_text("\n".join(text[:-1]) + "\n")  # one bar fewer: another hash
            (requeued,) = daemon.wait_for("backtest.requeued", timeout=15, request_id=rid)
            assert requeued["data"]["reason"].startswith("data mismatch")
            (mismatch,) = daemon.wait_for("worker.data_mismatch", timeout=10)
            data = mismatch["data"]
            assert data["worker"] == "remote" and data["theirs"] != data["data_hash"]
            time.sleep(1.5)
            assert not daemon.events("backtest.completed", request_id=rid)  # their figures are not ours
            good = WorkerProcess(daemon.config, "good")
            try:
                (done,) = daemon.wait_for("backtest.completed", timeout=20, request_id=rid)
                assert done["data"]["worker"] == "good" and done["data"]["status"] == "ok"
            finally:
                good.stop()
        finally:
            remote.stop()
        assert daemon.stop() == 0


class TestWorkSocketInput:
    def test_v1_junk_and_old_workers_are_rejected_and_the_daemon_lives(self, start_fleet: StartFleet) -> None:
        """v1 on the work socket is bad_version; junk is rejected; a v1 worker is worker.incompatible."""
        daemon = start_fleet(0, heartbeat=HEARTBEAT)
        ctx = zmq.Context()
        dealer = ctx.socket(zmq.DEALER)
        dealer.connect(daemon.cfg.zmq.backtest_endpoint)
        push = ctx.socket(zmq.PUSH)
        push.connect(daemon.cfg.zmq.pull_endpoint)
        try:
            dealer.send(orjson.dumps({"v": 1, "type": "READY", "worker": "old", "credit": 1, "data": {}}))
            dealer.send(b"\x00\xffnot json")
            dealer.send_multipart([b"a", b"b", b"c"])
            dealer.send(orjson.dumps({"v": 2, "type": "READY", "worker": "x", "credit": -5, "data": {}}))
            for _ in range(3):  # an old worker: heartbeats as a peer, never a READY
                push.send(orjson.dumps({"v": 1, "type": "HEARTBEAT", "source": "worker-old", "status": "OK"}))
                time.sleep(0.2)
            reasons = lambda: {e["data"]["reason"] for e in daemon.events("message.rejected")}  # noqa: E731
            wait_until(lambda: {"bad_version", "malformed_json", "multipart", "bad_field"} <= reasons(), 10,
                       "the rejections")
            (old,) = daemon.wait_for("worker.incompatible", timeout=20)
            assert old["data"]["source"] == "worker-old"
        finally:
            dealer.close(0)
            push.close(0)
            ctx.term()
        ping = daemon.cli("heartbeat", "now")
        assert ping.returncode == 0, ping.stderr
        assert daemon.stop() == 0


class TestRemoteCurve:
    def test_a_remote_worker_under_curve_always_serves_requests(
        self, tmp_path: Path, start_daemon: StartDaemon
    ) -> None:
        """zmq.curve = "always": a separate `swimmy worker` with its client keys gets work and answers it."""
        keys = tmp_path / "keys"
        assert run_cli("keys", "generate", "--out", str(keys)).returncode == 0
        server = {"curve": "always", "curve_secret_key_file": str(keys / "server.key_secret"),
                  "curve_public_key_file": str(keys / "server.key"),
                  "curve_authorized_keys_dir": str(keys / "authorized")}
        config = write_config(tmp_path, {"workers": {"embedded": 0}, "debug": {"enabled": True}})
        text = config.read_text().replace("[zmq]\n", "[zmq]\n" + "".join(f'{k} = "{v}"\n' for k, v in server.items()))
        config.write_text(text)
        daemon = start_daemon(config)
        worker_config = tmp_path / "worker.toml"
        client = {"curve": "always", "curve_secret_key_file": str(keys / "client.key_secret"),
                  "curve_public_key_file": str(keys / "client.key"),
                  "curve_server_public_key_file": str(keys / "server.key")}
        worker_config.write_text(config.read_text().split("[zmq]\n")[0] + "[zmq]\n" + "".join(
            f'{k} = "{v}"\n' for k, v in client.items()) + "\n".join(
            line for line in config.read_text().split("[zmq]\n")[1].splitlines() if "curve" not in line) + "\n")
        remote = WorkerProcess(worker_config, "far")
        try:
            daemon.wait_workers_ready(1)
            reply = daemon.command("backtest.submit", strategy=SMA)  # over CURVE, as the CLI would
            assert reply["ok"], (reply, daemon.events("worker.lost"))
            rid = reply["result"]["request_id"]
            (done,) = daemon.wait_for("backtest.completed", timeout=20, request_id=rid)
            assert done["data"]["worker"] == "far" and done["data"]["status"] == "ok"
        finally:
            remote.stop()
        assert daemon.stop() == 0


class TestChaos:
    def test_four_workers_one_killed_every_few_seconds_2000_requests_each_answered_once_and_right(
        self, start_fleet: StartFleet
    ) -> None:
        """Bounded chaos: every request answered exactly once, with the figures an in-process run gives."""
        daemon = start_fleet(4, heartbeat=HEARTBEAT, backtest={"worker_timeout_sec": 2})
        bars = load_bars(DATA, "EURUSD", "H1")
        ts = bars.timestamps
        cfg = daemon.cfg
        bodies, specs = [], []
        families = [("sma_cross", lambda i: {"fast": 3 + i % 40, "slow": 50 + i % 7}),
                    ("ema_cross", lambda i: {"fast": 3 + i % 40, "slow": 60 + i % 9}),
                    ("donchian_breakout", lambda i: {"period": 10 + i % 80})]
        for i in range(2000):
            family, params = families[i % 3]
            spec = StrategySpec(family, params(i), "EURUSD", "H1", 0, 0)
            start_ts = int(ts[(i * 7) % 2000])
            bodies.append({"strategy": spec.to_wire(spec.name()), "start_ts": start_ts, "end_ts": None,
                           "debug": {"sleep_sec": 0.01}})  # ~6 s of work in all: time for several kills
            specs.append((spec, start_ts))
        kills = 0
        deadline = time.monotonic() + 35

        async def run() -> list[str]:
            submitting = asyncio.ensure_future(daemon.submit_many(bodies, parallel=24))
            nonlocal kills
            slot = 0
            while not submitting.done() or len(daemon.events("backtest.completed")) < len(bodies):
                await asyncio.sleep(1.5)
                if time.monotonic() > deadline:
                    break
                # The next worker (in turn) that is serving: started, then READY (a worker still loading
                # its compiled loops has not joined yet; killing those only would starve the fleet).
                for _ in range(4):
                    name = f"embedded-{slot % 4 + 1}"
                    slot += 1
                    started = daemon.events("worker.started", worker=name)
                    ready = daemon.events("worker.ready", worker=name)
                    if started and ready and ready[-1]["seq"] > started[-1]["seq"]:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(started[-1]["data"]["pid"], signal.SIGKILL)
                            kills += 1
                        break
            return await submitting

        rids = asyncio.run(run())
        daemon.wait_for("backtest.completed", count=len(bodies), timeout=30)
        completed = daemon.events("backtest.completed")
        count = Counter(e["data"]["request_id"] for e in completed)
        assert set(count) == set(rids) and set(count.values()) == {1}, "a request lost or answered twice"
        assert kills >= 3
        by_rid = {e["data"]["request_id"]: e["data"] for e in completed}
        costs = Costs(cfg.backtest.spread_pips, cfg.backtest.slippage_pips, pip_size("EURUSD"))
        for rid, (spec, start_ts) in zip(rids, specs, strict=True):
            local = run_backtest(spec, bars, start_ts=start_ts, costs=costs).metrics
            got = by_rid[rid]
            assert got["status"] == "ok" and got["trades"] == local["trades"] and got["sharpe"] == local["sharpe"]
        assert daemon.stop() == 0
