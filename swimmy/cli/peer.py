"""`swimmy peer`: a developer tool that subscribes to the daemon's PUB and acks every heartbeat.

It exercises the whole heartbeat loop without workers: each HEARTBEAT it sees is
answered with a HEARTBEAT of its own (`ack_of` = the daemon's id) on the
daemon's PULL endpoint, and a gap in `seq` (a PUB drop) is reported.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from typing import Any, TextIO

import orjson

from swimmy.config import Config
from swimmy.wire.messages import ack_body, encode
from swimmy.wire.security import uses_curve
from swimmy.wire.zmq import PUSH, SUB, Wire, load_curve_keys, subscribe, try_send

TOPIC = b"HEARTBEAT"


class Peer:
    """Subscribes, acks, and counts what it saw."""

    def __init__(self, cfg: Config, source: str, *, out: TextIO | None = None) -> None:
        self.cfg = cfg
        self.source = source
        self.out = out
        curve = uses_curve(cfg.zmq, cfg.zmq.pub_endpoint) or uses_curve(cfg.zmq, cfg.zmq.pull_endpoint)
        self.wire = Wire(cfg.zmq, load_curve_keys(cfg.zmq) if curve else None)
        self.sub = self.wire.connect(SUB, cfg.zmq.pub_endpoint, curve=uses_curve(cfg.zmq, cfg.zmq.pub_endpoint))
        subscribe(self.sub, TOPIC)
        self.push = self.wire.connect(PUSH, cfg.zmq.pull_endpoint, curve=uses_curve(cfg.zmq, cfg.zmq.pull_endpoint))
        self.seen = 0
        self.acked = 0
        self.gaps = 0
        self._last_seq: int | None = None

    async def run(self, count: int | None = None) -> None:
        """Ack heartbeats until `count` were seen (forever when None)."""
        while count is None or self.seen < count:
            frames = await self.sub.recv_multipart()
            self.handle(frames)

    def handle(self, frames: list[bytes]) -> None:
        """Answer one received HEARTBEAT."""
        if len(frames) != 2:
            return
        try:
            hb: dict[str, Any] = orjson.loads(frames[1])
        except orjson.JSONDecodeError:
            return
        self.seen += 1
        seq = hb.get("seq")
        gap = ""
        if isinstance(seq, int) and self._last_seq is not None and seq > self._last_seq + 1:
            self.gaps += 1
            gap = f" (gap: {seq - self._last_seq - 1} missed)"
        if isinstance(seq, int):
            self._last_seq = seq
        ack = ack_body(source=self.source, status="OK", hb_id=str(uuid.uuid4()), ack_of=hb.get("id"))
        if try_send(self.push, [encode(ack)]):
            self.acked += 1
        if self.out is not None:
            print(f"heartbeat seq={seq} from {hb.get('source')} status={hb.get('status')}{gap}: acked",
                  file=self.out, flush=True)

    def close(self) -> None:
        """Close the sockets."""
        self.wire.close()


async def run_peer(cfg: Config, source: str, count: int | None, out: TextIO = sys.stdout) -> int:
    """The CLI entry: ack until interrupted or `count` heartbeats were seen."""
    peer = Peer(cfg, source, out=out)
    print(f"swimmy peer {source}: listening on {cfg.zmq.pub_endpoint}, acking to {cfg.zmq.pull_endpoint}",
          file=out, flush=True)
    try:
        await peer.run(count)
    except asyncio.CancelledError:
        pass
    finally:
        peer.close()
    return 0
