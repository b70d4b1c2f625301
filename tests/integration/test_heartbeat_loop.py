"""Heartbeats, the dispatcher and the control channel over real ZeroMQ sockets on loopback."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
from pathlib import Path
from typing import Any

import orjson
import pytest
import zmq
import zmq.asyncio
from helpers import run_cli, wait_until, write_config
from integration.kit import StartDaemon, wait_until_async

from swimmy.cli.peer import Peer
from swimmy.config import Config, load_config
from swimmy.wire.messages import ack_body, encode
from swimmy.wire.zmq import try_send

pytestmark = pytest.mark.slow


class TestHeartbeatLoop:
    async def test_a_peer_ack_gives_recv_with_the_matching_correlation_id_and_rtt(
        self, tmp_path: Path, start_daemon: StartDaemon
    ) -> None:
        """heartbeat.recv's correlation id is the id of our heartbeat.sent, and rtt_ms is measured."""
        daemon = start_daemon(write_config(tmp_path, {"heartbeat": {"interval_sec": 0.2}}))
        await daemon.wait_for_async("daemon.started", timeout=20)
        peer = Peer(daemon.cfg, "test-peer")
        task = asyncio.create_task(peer.run())
        try:
            recv = await daemon.wait_for_async("heartbeat.recv", timeout=20, source="test-peer")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            peer.close()
        sent_ids = {e["correlation_id"] for e in daemon.events("heartbeat.sent")}
        first = recv[0]
        assert first["correlation_id"] in sent_ids
        assert first["correlation_id"] == first["data"]["ack_of"]
        assert 0 < first["data"]["rtt_ms"] < 5000
        assert first["service"] == "dispatcher"
        assert daemon.stop() == 0

    async def test_an_oversize_message_is_rejected_and_the_daemon_goes_on(
        self, tmp_path: Path, start_daemon: StartDaemon
    ) -> None:
        """A message over max_message_bytes is message.rejected (oversize); the next good one is handled."""
        daemon = start_daemon(write_config(tmp_path))
        await daemon.wait_for_async("daemon.started", timeout=20)
        ctx = zmq.asyncio.Context()
        push = ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 1000)
        push.connect(daemon.cfg.zmq.pull_endpoint)
        big = orjson.dumps({"v": 1, "type": "HEARTBEAT", "source": "big", "status": "OK", "pad": "x" * (2 << 20)})
        await push.send(big)
        await push.send(orjson.dumps({"v": 1, "type": "HEARTBEAT", "source": "after-oversize", "status": "OK"}))
        await push.send(b"\xff not json")
        await daemon.wait_for_async("heartbeat.recv", timeout=20, source="after-oversize")
        push.close()
        ctx.term()
        (oversize,) = await daemon.wait_for_async("message.rejected", timeout=10, reason="oversize")
        assert oversize["data"]["bytes"] == len(big)
        assert oversize["severity"] == "warning"
        assert not daemon.events("heartbeat.recv", source="big")
        await daemon.wait_for_async("message.rejected", timeout=10, reason="malformed_json")
        assert daemon.proc.poll() is None
        assert daemon.stop() == 0

    async def test_stop_with_a_peer_gone_and_its_queue_full_completes(
        self, tmp_path: Path, start_daemon: StartDaemon
    ) -> None:
        """A subscriber that never reads, then vanishes: SIGTERM still ends in exit 0 (a hang is a timeout)."""
        daemon = start_daemon(write_config(tmp_path, {"heartbeat": {"interval_sec": 0.001}, "zmq": {"sndhwm": 10}}))
        await daemon.wait_for_async("daemon.started", timeout=20)
        ctx = zmq.Context()
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.RCVHWM, 10)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(daemon.cfg.zmq.pub_endpoint)
        await daemon.wait_for_async("heartbeat.sent", count=501, timeout=30)  # heartbeats pile up
        sub.close(linger=0)
        ctx.term()
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(20) == 0, daemon.stderr


class TestControl:
    def test_heartbeat_now_sends_a_pub_and_a_discord_heartbeat(self, tmp_path: Path, start_daemon: StartDaemon) -> None:
        """`swimmy heartbeat now` exits 0; the PUB heartbeat, the Discord summary and the command are in the stream."""
        daemon = start_daemon(write_config(tmp_path))
        daemon.wait_started()
        result = daemon.cli("heartbeat", "now")
        assert result.returncode == 0, result.stderr
        hb_id = result.stdout.split("heartbeat_id: ")[1].split()[0]
        assert "discord: dry run: no webhook URL configured" in result.stdout
        wait_until(lambda: [e for e in daemon.events("heartbeat.sent") if e["correlation_id"] == hb_id], 10, "hb")
        (command,) = daemon.wait_for("control.command", timeout=10, command="heartbeat.now")
        assert command["data"]["accepted"] is True
        (queued,) = daemon.events("heartbeat.discord_sent")
        assert queued["data"]["status"] == "queued" and queued["service"] == "engine"
        dry = wait_until(lambda: [e for e in daemon.events("discord.dry_run") if e["correlation_id"] ==
                                  queued["correlation_id"]], 10, "the dry run of that summary")
        assert "swimmy heartbeat" in dry[0]["data"]["title"]
        assert daemon.stop() == 0

    def test_no_daemon_gives_exit_1_naming_the_endpoint(self, tmp_path: Path) -> None:
        """The CLI gives up after --timeout with exit 1 and a message naming the endpoint."""
        config = write_config(tmp_path)
        endpoint = load_config(config).control.endpoint
        result = run_cli("heartbeat", "now", "--config", str(config), "--timeout", "0.5")
        assert result.returncode == 1
        assert endpoint in result.stderr
        assert "within 0.5s" in result.stderr

    async def test_a_slow_command_does_not_block_the_others(self, tmp_path: Path, start_daemon: StartDaemon) -> None:
        """While one command sleeps, another is answered; unknown commands are refused with exit code 2."""
        daemon = start_daemon(write_config(tmp_path, {"debug": {"enabled": True}}))
        await daemon.wait_for_async("daemon.started", timeout=20)
        async with daemon.control() as control:
            slow = asyncio.create_task(control.request("debug.sleep", seconds=3, timeout_sec=10))
            await asyncio.sleep(0.2)
            pong = await control.request("ping", timeout_sec=2)
            assert pong["ok"] is True and pong["result"]["status"] == "OK"
            assert not slow.done()
            unknown = await control.request("no.such", timeout_sec=2)
            assert unknown["ok"] is False and unknown["exit_code"] == 2
            assert "unknown command 'no.such'" in unknown["error"]
            assert (await slow)["ok"] is True
        assert daemon.stop() == 0


class TestControlAdmission:
    async def test_two_hundred_concurrent_pings_are_all_answered(
        self, tmp_path: Path, start_daemon: StartDaemon
    ) -> None:
        """Instant commands are answered inline: 200 clients at once, none told "busy"."""
        daemon = start_daemon(write_config(tmp_path))
        await daemon.wait_for_async("daemon.started", timeout=20)
        async with daemon.control() as control:
            replies = await asyncio.gather(*(control.request("ping", timeout_sec=20) for _ in range(200)))
        assert [r["ok"] for r in replies] == [True] * 200, [r.get("error") for r in replies if not r["ok"]][:3]
        assert daemon.stop() == 0

    async def test_a_flood_is_served_and_only_running_slow_commands_count_against_the_cap(
        self, tmp_path: Path, start_daemon: StartDaemon
    ) -> None:
        """5,000 pings in a flood all get "ok" while 40 slow commands get 32 slots and 8 honest "busy" replies."""
        daemon = start_daemon(write_config(tmp_path, {"debug": {"enabled": True}}))
        await daemon.wait_for_async("daemon.started", timeout=20)
        ctx = zmq.asyncio.Context()
        sockets = [ctx.socket(zmq.DEALER) for _ in range(6)]
        for sock in sockets:
            sock.setsockopt(zmq.SNDHWM, 0)
            sock.setsockopt(zmq.RCVHWM, 0)
            sock.connect(daemon.cfg.control.endpoint)

        def body(i: int, command: str, args: dict[str, Any]) -> bytes:
            return orjson.dumps({"v": 1, "type": "COMMAND", "id": f"{command}-{i}", "command": command,
                                 "args": args})

        async def collect(sock: Any, n: int) -> list[dict[str, Any]]:
            out = []
            while len(out) < n:
                out.append(orjson.loads((await asyncio.wait_for(sock.recv_multipart(), 30))[-1]))
            return out

        try:
            slow_sock, flood = sockets[0], sockets[1:]
            for i in range(40):
                await slow_sock.send(body(i, "debug.sleep", {"seconds": 2}))
            for k, sock in enumerate(flood):
                for i in range(1000):
                    await sock.send(body(k * 1000 + i, "ping", {}))
            pings = [r for group in await asyncio.gather(*(collect(s, 1000) for s in flood)) for r in group]
            assert len(pings) == 5000 and all(r["ok"] for r in pings), [r for r in pings if not r["ok"]][:3]
            sleeps = await collect(slow_sock, 40)
            busy = [r for r in sleeps if not r["ok"]]
            assert len(busy) == 8 and all(r["error"].startswith("busy: 32 slow commands are running") for r in busy)
            # The slots free as the slow commands end: a new one is admitted.
            await slow_sock.send(body(99, "debug.sleep", {"seconds": 0}))
            (again,) = await collect(slow_sock, 1)
            assert again["ok"] is True
        finally:
            for sock in sockets:
                sock.close(linger=0)
            ctx.term()
        assert daemon.stop() == 0


class TestPeerFlood:
    async def test_forged_heartbeats_neither_evict_real_peers_nor_flood_discord(
        self, tmp_path: Path, start_daemon: StartDaemon
    ) -> None:
        """3,000 made-up sources: the known peer and the worker stay, the rest is bounded and counted,
        their silence reaches Discord as one summary, and no alert is lost to a full queue."""
        daemon = start_daemon(write_config(tmp_path, {
            "workers": {"embedded": 1}, "heartbeat": {"interval_sec": 0.3, "peer_timeout_sec": 1.5,
                                                      "known_peers": ["trader"]},
            "snapshots": {"interval_sec": 0.2},
        }))
        await daemon.wait_for_async("worker.ready", timeout=30)  # the worker's READY
        await daemon.wait_for_async("heartbeat.recv", timeout=20, source="worker-embedded-1")  # a worker ack
        ctx = zmq.asyncio.Context()
        push = ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.SNDHWM, 0)
        push.connect(daemon.cfg.zmq.pull_endpoint)

        def heartbeat(source: str) -> bytes:
            return orjson.dumps({"v": 1, "type": "HEARTBEAT", "source": source, "status": "OK"})

        metrics = tmp_path / "var" / "snapshots" / "metrics.json"
        try:
            await push.send(heartbeat("trader"))
            for i in range(3000):
                await push.send(heartbeat(f"forged-{i}"))
            loop = asyncio.get_running_loop()
            until = loop.time() + 4.0  # the trader keeps talking while the forged sources go silent
            while loop.time() < until:
                await push.send(heartbeat("trader"))
                await asyncio.sleep(0.3)
            silent = await daemon.wait_for_async("peer.silent", count=1024, timeout=20)  # the forged sources' silence
            figures = await wait_until_async(lambda: metrics.exists() and orjson.loads(metrics.read_bytes()), 10,
                                             "snapshot")
            peers = figures["peers"]
        finally:
            push.close(linger=0)
            ctx.term()
        assert peers["evicted"] == 3000 - 1024, "only unknown sources are bounded, and every eviction counted"
        assert {"trader", "worker-embedded-1"} <= set(peers["last_seen_age_sec"])
        assert {e["data"]["source"] for e in silent} <= {f"forged-{i}" for i in range(3000)}
        alerts = daemon.events("discord.dry_run", kind="peer.silent")
        assert 1 <= len(alerts) <= 3, [a["data"]["title"] for a in alerts]
        assert "\N{MULTIPLICATION SIGN} Peer silent" in alerts[0]["data"]["title"]
        assert not [e for e in daemon.events("discord.failed") if e["severity"] == "error"]
        assert not daemon.events("worker.lost"), "the worker must not be pushed out"
        assert daemon.stop() == 0


class TestCurve:
    def _keys(self, tmp_path: Path, name: str) -> Path:
        out = tmp_path / name
        result = run_cli("keys", "generate", "--out", str(out))
        assert result.returncode == 0, result.stderr
        return out

    def _peer_config(self, cfg: Config, keys: Path, server: Path) -> Config:
        zmq_cfg = dataclasses.replace(
            cfg.zmq,
            curve_secret_key_file=keys / "client.key_secret",
            curve_public_key_file=keys / "client.key",
            curve_server_public_key_file=server / "server.key",
            curve_authorized_keys_dir=None,
        )
        return dataclasses.replace(cfg, zmq=zmq_cfg)

    async def test_always_on_loopback_lets_the_authorised_peer_in_and_nobody_else(
        self, tmp_path: Path, start_daemon: StartDaemon
    ) -> None:
        """zmq.curve = "always": the authorised peer exchanges heartbeats; a wrong key gets nothing through."""
        keys = self._keys(tmp_path, "keys")
        rogue_keys = self._keys(tmp_path, "rogue")
        daemon = start_daemon(write_config(tmp_path, {
            "heartbeat": {"interval_sec": 0.2},
            "zmq": {"curve": "always", "curve_secret_key_file": str(keys / "server.key_secret"),
                    "curve_public_key_file": str(keys / "server.key"),
                    "curve_authorized_keys_dir": str(keys / "authorized")},
        }))
        await daemon.wait_for_async("daemon.started", timeout=20)
        cfg = daemon.cfg
        good = Peer(self._peer_config(cfg, keys, keys), "good-peer")
        rogue = Peer(self._peer_config(cfg, rogue_keys, keys), "rogue-peer")
        tasks = [asyncio.create_task(good.run()), asyncio.create_task(rogue.run())]
        try:
            await daemon.wait_for_async("heartbeat.recv", timeout=20, source="good-peer")
            for i in range(5):  # the rogue also talks first, not only in answer
                try_send(rogue.push, [encode(ack_body(source="rogue-peer", status="OK", hb_id=f"r{i}", ack_of=None))])
            await asyncio.sleep(1.0)  # five more heartbeats: time for the rogue to get one, if it could
            assert rogue.seen == 0
            assert good.seen >= 3
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            good.close()
            rogue.close()
        assert not daemon.events("heartbeat.recv", source="rogue-peer")
        result = daemon.cli("heartbeat", "now")
        assert result.returncode == 0, result.stderr
        assert daemon.stop() == 0

    def test_a_reachable_endpoint_without_keys_is_refused_at_start(self, tmp_path: Path) -> None:
        """A non-loopback endpoint with no keys: exit 2 naming it, before anything is created."""
        config = write_config(tmp_path, {"zmq": {"pub_endpoint": "tcp://0.0.0.0:45999"}})
        result = run_cli("run", "--config", str(config), "--exit-after", "5")
        assert result.returncode == 2
        assert "zmq.pub_endpoint: tcp://0.0.0.0:45999 needs CurveZMQ" in result.stderr
        assert not (tmp_path / "var").exists()
