"""Wire messages (SPEC §3): bytes -> a typed message or Rejected(reason). Pure: no sockets, no clock.

Every message is one JSON object with a `"v"` and a `"type"`: `v: 1` for heartbeats and peer
messages, `v: 2` for the work protocol (SPEC §4: READY, BUSY, BACKTEST, BACKTEST_RESULT). The
generic checks (size, JSON, object, version, type) are the same for every socket; each type then
has its own field checks. Nothing here raises on input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

PROTOCOL_VERSION = 1  # heartbeats and peer messages
WORK_VERSION = 2  # the work protocol on zmq.backtest_endpoint
MAX_TEXT = 256  # ids, sources and statuses longer than this are not ours

# Rejection reasons (the `reason` of message.rejected).
OVERSIZE = "oversize"
MULTIPART = "multipart"
MALFORMED_JSON = "malformed_json"
NOT_AN_OBJECT = "not_an_object"
BAD_VERSION = "bad_version"
MISSING_TYPE = "missing_type"
UNKNOWN_TYPE = "unknown_type"
MISSING_FIELD = "missing_field"
BAD_FIELD = "bad_field"


@dataclass(frozen=True)
class Rejected:
    """Why a message was refused, with what little could be read of it."""

    reason: str
    size: int
    type: str | None = None
    id: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class Message:
    """A message that passed the generic checks: its type and its object."""

    type: str
    body: dict[str, Any]
    size: int


@dataclass(frozen=True)
class Heartbeat:
    """A peer's HEARTBEAT; `ack_of` is the id of one of ours it answers."""

    source: str
    status: str
    id: str | None
    ack_of: str | None
    seq: int | None


def parse(frames: list[bytes], max_bytes: int, version: int = PROTOCOL_VERSION) -> Message | Rejected:
    """Apply the generic checks to one received message (its frames); `version` is the socket's protocol."""
    size = sum(len(f) for f in frames)
    if size > max_bytes:
        return Rejected(OVERSIZE, size, detail=f"{size} bytes > {max_bytes}")
    if len(frames) != 1:
        return Rejected(MULTIPART, size, detail=f"{len(frames)} frames, expected 1")
    try:
        body = orjson.loads(frames[0])
    except orjson.JSONDecodeError as exc:
        return Rejected(MALFORMED_JSON, size, detail=str(exc)[:200])
    if not isinstance(body, dict):
        return Rejected(NOT_AN_OBJECT, size, detail=type(body).__name__)
    kind = body.get("type")
    msg_id = _text(body.get("id"))
    if "v" not in body or body["v"] != version or isinstance(body["v"], bool):
        return Rejected(BAD_VERSION, size, _text(kind), msg_id, detail=f"v={body.get('v')!r:.40}")
    if not isinstance(kind, str) or not kind:
        return Rejected(MISSING_TYPE, size, None, msg_id)
    if len(kind) > MAX_TEXT:
        return Rejected(BAD_FIELD, size, None, msg_id, detail="type too long")
    return Message(kind, body, size)


def parse_heartbeat(msg: Message) -> Heartbeat | Rejected:
    """A peer HEARTBEAT: `source` and `status` required, `id`, `ack_of` and `seq` optional."""
    body = msg.body
    msg_id = _text(body.get("id"))
    for name in ("source", "status"):
        if name not in body:
            return Rejected(MISSING_FIELD, msg.size, msg.type, msg_id, detail=name)
        if not _is_text(body[name]):
            return Rejected(BAD_FIELD, msg.size, msg.type, msg_id, detail=name)
    for name in ("id", "ack_of"):
        if body.get(name) is not None and not _is_text(body[name]):
            return Rejected(BAD_FIELD, msg.size, msg.type, None, detail=name)
    seq = body.get("seq")
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int)):
        return Rejected(BAD_FIELD, msg.size, msg.type, msg_id, detail="seq")
    return Heartbeat(body["source"], body["status"], body.get("id"), body.get("ack_of"), seq)


def encode(body: dict[str, Any], version: int = PROTOCOL_VERSION) -> bytes:
    """A message as bytes, with the protocol version first."""
    return orjson.dumps({"v": version, **body})


def encode_work(body: dict[str, Any]) -> bytes:
    """A work-protocol message (`v: 2`) as bytes."""
    return orjson.dumps({"v": WORK_VERSION, **body})


def heartbeat_body(
    *, hb_id: str, seq: int, source: str, status: str, sent_at: str, version: str, config_hash: str
) -> dict[str, Any]:
    """Our HEARTBEAT's fields (SPEC §3)."""
    return {
        "type": "HEARTBEAT",
        "id": hb_id,
        "seq": seq,
        "source": source,
        "status": status,
        "sent_at": sent_at,
        "version": version,
        "config_hash": config_hash,
    }


def ack_body(*, source: str, status: str, hb_id: str, ack_of: str | None) -> dict[str, Any]:
    """A peer's HEARTBEAT answering one of ours."""
    body: dict[str, Any] = {"type": "HEARTBEAT", "source": source, "status": status, "id": hb_id}
    if ack_of is not None:
        body["ack_of"] = ack_of
    return body


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_TEXT


def _text(value: Any) -> str | None:
    return value if _is_text(value) else None


# -- backtests (SPEC §4) -----------------------------------------------------------------------

PURPOSES = ("is", "oos", "wfv_fold", "manual", "wfv_is", "wfv_oos")
MAX_CREDIT = 1000
METRIC_KEYS = ("trades", "wins", "losses", "win_rate", "pnl_pips", "profit_factor", "sharpe", "sortino",
               "max_drawdown", "psr", "skew", "kurtosis", "sharpe_per_bar")


@dataclass(frozen=True)
class BacktestRequest:
    """A BACKTEST as a worker reads it; the strategy object is checked by the worker (error result, not silence)."""

    request_id: str
    purpose: str
    strategy: Any
    start_ts: int | None
    end_ts: int | None
    include_trades: bool
    debug: dict[str, Any]
    data_hash: str | None = None
    costs: dict[str, Any] | None = None
    body: dict[str, Any] | None = None  # the whole message: a wfv_fold's fold and grid are read from it


@dataclass(frozen=True)
class Ready:
    """A worker's READY: who it is, how many requests it may hold, and the hash of each universe's data."""

    worker: str
    credit: int
    data: dict[str, str]


@dataclass(frozen=True)
class Busy:
    """A worker's BUSY beat, sent from the thread that runs the backtest."""

    worker: str
    request_id: str | None
    progress: float | None


@dataclass(frozen=True)
class BacktestResultMsg:
    """A BACKTEST_RESULT as the daemon reads it."""

    request_id: str
    strategy_name: str
    status: str
    error: str | None
    metrics: dict[str, float | int | None] | None
    bars: int | None
    start_ts: int | None
    end_ts: int | None
    elapsed_ms: float | None
    worker: str | None
    body: dict[str, Any]


def backtest_body(*, request_id: str, purpose: str, strategy: dict[str, Any], start_ts: int | None,
                  end_ts: int | None, include_trades: bool = False, data_hash: str | None = None,
                  costs: dict[str, float] | None = None) -> dict[str, Any]:
    """A BACKTEST request (SPEC §4): the data it must run on (`data_hash`) and the costs to charge."""
    return {"type": "BACKTEST", "request_id": request_id, "purpose": purpose, "strategy": strategy,
            "start_ts": start_ts, "end_ts": end_ts, "include_trades": include_trades, "data_hash": data_hash,
            "costs": costs}


def ready_body(*, worker: str, credit: int, data: dict[str, str]) -> dict[str, Any]:
    """A worker's READY (SPEC §4)."""
    return {"type": "READY", "worker": worker, "credit": credit, "data": data}


def busy_body(*, worker: str, request_id: str | None, progress: float | None) -> dict[str, Any]:
    """A worker's BUSY beat (SPEC §4)."""
    return {"type": "BUSY", "worker": worker, "request_id": request_id, "progress": progress}


def _worker(msg: Message) -> str | Rejected:
    """The `worker` id every READY and BUSY names."""
    worker = msg.body.get("worker")
    if not isinstance(worker, str) or not _is_text(worker):
        return Rejected(MISSING_FIELD if worker is None else BAD_FIELD, msg.size, msg.type, None, detail="worker")
    return worker


def parse_ready(msg: Message) -> Ready | Rejected:
    """READY: `worker` text, `credit` an integer 1..MAX_CREDIT, `data` an object of universe -> hash."""
    body = msg.body
    worker = _worker(msg)
    if isinstance(worker, Rejected):
        return worker
    credit = body.get("credit")
    if isinstance(credit, bool) or not isinstance(credit, int) or not 1 <= credit <= MAX_CREDIT:
        return Rejected(BAD_FIELD, msg.size, msg.type, None, detail=f"credit must be 1..{MAX_CREDIT}")
    data = body.get("data")
    if not isinstance(data, dict) or len(data) > MAX_CREDIT or not all(
            _is_text(k) and _is_text(v) for k, v in data.items()):
        return Rejected(BAD_FIELD, msg.size, msg.type, None, detail="data must map universe names to hashes")
    return Ready(worker, credit, dict(data))


def parse_busy(msg: Message) -> Busy | Rejected:
    """BUSY: `worker` text, `request_id` text or null, `progress` a number or null."""
    body = msg.body
    worker = _worker(msg)
    if isinstance(worker, Rejected):
        return worker
    request_id = body.get("request_id")
    if request_id is not None and not _is_text(request_id):
        return Rejected(BAD_FIELD, msg.size, msg.type, None, detail="request_id")
    progress = body.get("progress")
    if progress is not None and (isinstance(progress, bool) or not isinstance(progress, int | float)):
        return Rejected(BAD_FIELD, msg.size, msg.type, request_id, detail="progress")
    return Busy(worker, request_id, float(progress) if progress is not None else None)


def parse_backtest_request(msg: Message) -> BacktestRequest | Rejected:
    """What a worker needs to answer: a request_id; anything else wrong is answered with an error result."""
    body = msg.body
    request_id = _request_id(msg)
    if isinstance(request_id, Rejected):
        return request_id
    debug = body.get("debug")
    data_hash = body.get("data_hash")
    costs = body.get("costs")
    return BacktestRequest(
        request_id=request_id,
        purpose=str(body.get("purpose") or ""),
        strategy=body.get("strategy"),
        start_ts=_ts(body.get("start_ts")),
        end_ts=_ts(body.get("end_ts")),
        include_trades=body.get("include_trades") is True,
        debug=debug if isinstance(debug, dict) else {},
        data_hash=data_hash if _is_text(data_hash) else None,
        costs=costs if isinstance(costs, dict) else None,
        body=body,
    )


def request_problem(body: dict[str, Any]) -> str | None:
    """Why a BACKTEST's envelope fields are unusable (the strategy is checked separately), or None."""
    if body.get("purpose") not in PURPOSES:
        return f"purpose must be one of {', '.join(PURPOSES)}, got {body.get('purpose')!r:.60}"
    for key in ("start_ts", "end_ts"):
        value = body.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            return f"{key} must be Unix seconds (an integer) or null, got {value!r:.60}"
    start, end = body.get("start_ts"), body.get("end_ts")
    if isinstance(start, int) and isinstance(end, int) and start >= end:
        return f"start_ts {start} must be before end_ts {end}"
    if not _is_text(body.get("data_hash")):
        return "data_hash: the hash of the data the request must run on is required"
    costs = body.get("costs")
    if not isinstance(costs, dict):
        return "costs: an object {spread_pips, slippage_pips, pip} is required"
    for key in ("spread_pips", "slippage_pips", "pip"):
        value = costs.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0 or value != value \
                or value == float("inf"):
            return f"costs.{key} must be a finite number >= 0, got {value!r:.60}"
    if not costs["pip"] > 0:
        return f"costs.pip must be > 0, got {costs['pip']!r}"
    return None


def result_body(*, request_id: str, strategy_name: str, status: str, error: str | None = None,
                metrics: dict[str, Any] | None = None, bars: int | None = None, start_ts: int | None = None,
                end_ts: int | None = None, elapsed_ms: float, worker: str,
                trades: list[dict[str, Any]] | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A BACKTEST_RESULT (SPEC §4): an error result carries no metrics at all, never a Sharpe of 0."""
    body: dict[str, Any] = {"type": "BACKTEST_RESULT", "request_id": request_id, "strategy_name": strategy_name,
                            "status": status}
    if error is not None:
        body["error"] = error
    body.update({"metrics": metrics if status == "ok" else None, "bars": bars, "start_ts": start_ts,
                 "end_ts": end_ts, "elapsed_ms": elapsed_ms, "worker": worker})
    if trades is not None:
        body["trades"] = trades
    if extra:
        body.update(extra)  # an IS result's returns sketch, a wfv_fold's fold
    return body


def parse_backtest_result(msg: Message) -> BacktestResultMsg | Rejected:
    """A BACKTEST_RESULT with its request_id, status and (for ok) the metrics as numbers or null."""
    body = msg.body
    request_id = _request_id(msg)
    if isinstance(request_id, Rejected):
        return request_id
    status = body.get("status")
    if status not in ("ok", "error"):
        return Rejected(BAD_FIELD, msg.size, msg.type, request_id, detail="status")
    metrics = body.get("metrics")
    if status == "ok":
        if not isinstance(metrics, dict):
            return Rejected(MISSING_FIELD, msg.size, msg.type, request_id, detail="metrics")
        for key in METRIC_KEYS:
            value = metrics.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                return Rejected(BAD_FIELD, msg.size, msg.type, request_id, detail=f"metrics.{key}")
    error = body.get("error")
    elapsed = body.get("elapsed_ms")
    return BacktestResultMsg(
        request_id=request_id,
        strategy_name=str(body.get("strategy_name") or ""),
        status=status,
        error=str(error) if error is not None else (None if status == "ok" else "unspecified error"),
        metrics=metrics if status == "ok" else None,
        bars=body.get("bars") if isinstance(body.get("bars"), int) else None,
        start_ts=_ts(body.get("start_ts")),
        end_ts=_ts(body.get("end_ts")),
        elapsed_ms=float(elapsed) if isinstance(elapsed, int | float) and not isinstance(elapsed, bool) else None,
        worker=str(body["worker"]) if _is_text(body.get("worker")) else None,
        body=body,
    )


def _request_id(msg: Message) -> str | Rejected:
    """The request_id every backtest message must carry (results are routed by it alone)."""
    request_id = msg.body.get("request_id")
    if not isinstance(request_id, str) or not _is_text(request_id):
        return Rejected(MISSING_FIELD if request_id is None else BAD_FIELD, msg.size, msg.type, None,
                        detail="request_id")
    return request_id


def _ts(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
