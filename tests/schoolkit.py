"""Test kit for the school: a real SQLite store, the real backtest client over a fake pipe, a fake clock."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import orjson

from swimmy.backtest.client import BacktestClient
from swimmy.config import Config, config_from_mapping
from swimmy.store import Store, StrategyRow
from swimmy.testing import CapturingEmitter, FakeClock
from swimmy.wire.messages import Message, encode, parse, result_body

A_METRICS = {"trades": 50, "wins": 30, "losses": 20, "win_rate": 0.6, "pnl_pips": 300.0, "profit_factor": 1.8,
             "sharpe": 1.2, "sortino": 1.5, "max_drawdown": 0.05, "psr": 0.97}


class Pipe:
    """The backtest PUSH: records the requests; `open` False refuses them like a PUSH without workers."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.open = True

    def __call__(self, frames: list[bytes]) -> bool:
        if self.open:
            self.sent.append(orjson.loads(frames[0]))
        return self.open

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
                           start_ts=request["start_ts"], end_ts=request["end_ts"], elapsed_ms=1.0, worker="w")
        msg = parse([encode(body)], 1 << 20)
        assert isinstance(msg, Message)
        assert self.client.handle_result(msg) is None

    def add(self, name: str, *, rank: str = "B", sharpe: float | None = 1.2, generation: int = 0,
            oos_sharpe: float | None = None, **metrics: Any) -> StrategyRow:
        figures = {"is_trades": 50, "is_profit_factor": 1.8, "is_win_rate": 0.6, "is_max_drawdown": 0.05,
                   "is_psr": 0.97, "is_sortino": 1.5, "is_pnl_pips": 300.0, **metrics}
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
    client = BacktestClient(pipe, emit, clock, timeout_sec=cfg.backtest.timeout_sec)
    store = Store.open(db or tmp_path / "school.db")
    return Kit(cfg, store, client, pipe, emit, clock)
