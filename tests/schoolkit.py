"""Test kit for the school: a real SQLite store, the real broker with one fake worker, a fake clock."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import orjson

from swimmy.backtest.client import BacktestClient
from swimmy.config import Config, config_from_mapping
from swimmy.store import Store, StrategyRow
from swimmy.testing import CapturingEmitter, FakeClock
from swimmy.wire.messages import WORK_VERSION, Message, encode_work, parse, ready_body, result_body

A_METRICS = {"trades": 50, "wins": 30, "losses": 20, "win_rate": 0.6, "pnl_pips": 300.0, "profit_factor": 1.8,
             "sharpe": 1.2, "sortino": 1.5, "max_drawdown": 0.05, "psr": 0.97}


WORKER = b"fake-worker"
DATA_HASH = "0123456789abcdef"


def work_message(body: dict[str, Any]) -> Message:
    """A work-protocol message as the dispatcher hands it to the broker."""
    msg = parse([encode_work(body)], 1 << 20, version=WORK_VERSION)
    assert isinstance(msg, Message), msg
    return msg


class Pipe:
    """The work ROUTER with one fake worker of ample credit: records what it is sent.

    `open = False` takes the worker away (the broker then refuses new work: no worker has the data);
    `open = True` brings it back with a READY.
    """

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self._open = True
        self.client: BacktestClient | None = None

    def __call__(self, identity: bytes, payload: bytes) -> bool:
        self.sent.append(orjson.loads(payload))
        return True

    @property
    def open(self) -> bool:
        return self._open

    @open.setter
    def open(self, value: bool) -> None:
        assert self.client is not None
        self._open = value
        if value:
            self.ready()
        else:
            self.client.worker_gone("fake", "taken away by the test")

    def ready(self, credit: int = 1000) -> None:
        assert self.client is not None
        self.client.handle_ready(WORKER, work_message(ready_body(worker="fake", credit=credit,
                                                                 data={"EURUSD_H1": DATA_HASH})))

    def last(self, purpose: str | None = None) -> dict[str, Any]:
        return [r for r in self.sent if purpose is None or r["purpose"] == purpose][-1]


@dataclasses.dataclass
class Kit:
    """Everything a school test needs, real where it can be."""

    cfg: Config
    store: Store
    client: BacktestClient
    pipe: Pipe
    emit: CapturingEmitter
    clock: FakeClock

    def answer(self, request: dict[str, Any], *, status: str = "ok", sharpe: float | None = 1.0,
               metrics: dict[str, Any] | None = None, error: str | None = None) -> None:
        """Deliver a worker's BACKTEST_RESULT for `request` through the client, routed by request_id."""
        m = dict(metrics or A_METRICS)
        m["sharpe"] = sharpe
        body = result_body(request_id=request["request_id"], strategy_name=request["strategy"]["name"],
                           status=status, metrics=m if status == "ok" else None, error=error, bars=100,
                           start_ts=request["start_ts"], end_ts=request["end_ts"], elapsed_ms=1.0, worker="fake")
        assert self.client.handle_result(WORKER, work_message(body)) is None

    def add(self, name: str, *, rank: str = "B", sharpe: float | None = 1.2, generation: int = 0,
            oos_sharpe: float | None = None, **metrics: Any) -> StrategyRow:
        figures = {"is_trades": 50, "is_profit_factor": 1.8, "is_win_rate": 0.6, "is_max_drawdown": 0.05,
                   "is_psr": 0.97, "is_sortino": 1.5, "is_pnl_pips": 300.0, "is_dsr": 0.99, "is_bars": 5000,
                   "is_skew": 0.0, "is_kurtosis": 3.0, "is_sharpe_per_bar": 0.05, **metrics}
        row = StrategyRow(name=name, rules_hash=f"hash-{name}", family="sma_cross", params={"fast": 10, "slow": 30},
                          symbol="EURUSD", timeframe="H1", rank=rank, is_sharpe=sharpe, generation=generation,
                          oos_sharpe=oos_sharpe, created_at=self.clock.time(), updated_at=self.clock.time(),
                          **figures)
        assert self.store.add_strategy(row)
        return row

    def events(self, event_type: str) -> list[Any]:
        return self.emit.of_type(event_type)


def make_kit(tmp_path: Path, sections: dict[str, dict[str, Any]] | None = None, *,
             db: Path | None = None, clock: FakeClock | None = None) -> Kit:
    cfg = config_from_mapping(sections or {}, base_dir=tmp_path)
    clock = clock or FakeClock(start=1_800_000_000.0)
    emit = CapturingEmitter()
    pipe = Pipe()
    client = BacktestClient(pipe, emit, clock, timeout_sec=cfg.backtest.timeout_sec,
                            worker_timeout_sec=cfg.backtest.worker_timeout_sec,
                            max_attempts=cfg.backtest.max_attempts,
                            universe_hash=lambda universe: DATA_HASH if universe == "EURUSD_H1" else None)
    pipe.client = client
    pipe.ready()
    store = Store.open(db or tmp_path / "school.db")
    return Kit(cfg, store, client, pipe, emit, clock)
