"""The school on data whose answer is known, in one process: the proof behind the ranks (SPEC §5).

`run_school` generates one synthetic universe (swimmy/backtest/synth.py: a random walk, or a walk with a
planted trend), then runs the real School, OOS requester, walk-forward scheduler, trials ledger and
broker on it, with every BACKTEST served in this process by the worker's own `serve_request` (the
sockets are the only thing left out) and a fake clock, until `trials` rule sets have been tried and
the qualification work they caused is done. It returns what the school concluded. The tests assert
on it (random walks promote nothing; a planted trend is found, by trend followers only), and
`bench/validity_bench.py` prints the same figures from the real daemon with real workers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swimmy.backtest.client import BacktestClient
from swimmy.backtest.data import data_hash, universe_name
from swimmy.backtest.synth import PLANTED_TREND_STRENGTH, generate
from swimmy.backtest.worker import serve_request
from swimmy.config import Config, config_from_mapping, instrument_costs
from swimmy.school.loop import School
from swimmy.store import Store
from swimmy.testing import CapturingEmitter, FakeClock
from swimmy.wire.messages import (
    WORK_VERSION,
    BacktestRequest,
    Message,
    encode_work,
    parse,
    parse_backtest_request,
    ready_body,
)

TREND_FOLLOWERS = frozenset({"sma_cross", "ema_cross", "donchian_breakout", "bollinger_breakout"})
WORKER = b"in-process"


@dataclass
class Verdicts:
    """What the school concluded on one synthetic universe."""

    kind: str
    seed: int
    trials: int = 0
    n_eff: float = 0.0
    a: int = 0  # strategies that reached A (passed the holdout) at any time
    s: int = 0
    families: Counter[str] = field(default_factory=Counter)  # of every A/S
    wfv: Counter[str] = field(default_factory=Counter)  # walk-forward decisions
    oos: Counter[str] = field(default_factory=Counter)  # holdout verdicts
    trials_to_first_a: int | None = None
    pbo: float | None = None
    best_dsr: float | None = None

    def row(self) -> dict[str, Any]:
        """One line of the validity table."""
        validated = self.wfv.get("validated", 0)
        total = sum(self.wfv.values())
        return {"data": self.kind, "seed": self.seed, "evaluated": self.trials, "n_eff": round(self.n_eff, 1),
                "A": self.a, "S": self.s, "wfv_validated": f"{validated}/{total}", "pbo": self.pbo,
                "first_A_after": self.trials_to_first_a, "families": dict(self.families),
                "best_dsr": None if self.best_dsr is None else round(self.best_dsr, 4)}


class _InProcessWorker:
    """The work ROUTER's peer, in this process: requests are served by the worker's own code, in order."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.queue: list[bytes] = []

    def __call__(self, identity: bytes, payload: bytes) -> bool:
        self.queue.append(payload)
        return True

    def serve(self, client: BacktestClient, limit: int = 256) -> int:
        """Answer the requests waiting (and those their answers cause), at most `limit`; how many were answered."""
        served = 0
        while self.queue and served < limit:
            payload = self.queue.pop(0)
            msg = parse([payload], 1 << 24, version=WORK_VERSION)
            assert isinstance(msg, Message)
            req = parse_backtest_request(msg)
            assert isinstance(req, BacktestRequest), req
            body = serve_request(req, self.cfg, "in-process")
            answer = parse([encode_work(body)], 1 << 24, version=WORK_VERSION)
            assert isinstance(answer, Message)
            client.handle_result(WORKER, answer)
            served += 1
        return served


def school_config(data_dir: Path, symbol: str, **overrides: dict[str, Any]) -> Config:
    """The embedded default's school keys, on one synthetic universe, with walk-forwards started at once."""
    doc: dict[str, dict[str, Any]] = {
        "school": {"data_dir": str(data_dir), "db_path": str(data_dir / "school.db"), "symbols": [symbol],
                   "cycle_sec": 5, "population_max": 500, "progress_interval_sec": 1e9,
                   "audit_interval_sec": 1e9},
        "wfv": {"interval_sec": 0, "max_pending": 4, "max_per_run": 4},
        "workers": {"queue_depth": 64},
    }
    for section, values in overrides.items():
        doc.setdefault(section, {}).update(values)
    return config_from_mapping(doc, base_dir=data_dir)


def run_school(directory: Path, kind: str, seed: int, *, trials: int = 1000, bars: int = 30_000,
               strength: float = PLANTED_TREND_STRENGTH, max_cycles: int = 400, noise: str = "gaussian",
               stop_at_first_s: bool = False) -> Verdicts:
    """Run the school in this process on a generated universe until `trials` rule sets were tried and judged.

    `stop_at_first_s`: stop as soon as a strategy reaches S (the tests' budget); the figures are then partial.
    """
    directory.mkdir(parents=True, exist_ok=True)
    symbol = "SYNTH_TREND" if kind == "planted_trend" else "SYNTH_RW"
    generate(kind, symbol, "H1", bars, seed, data_dir=directory, strength=strength, noise=noise)  # type: ignore[arg-type]
    cfg = school_config(directory, symbol)
    universe = universe_name(symbol, "H1")
    digest = data_hash(directory, symbol, "H1")
    clock = FakeClock()
    emit = CapturingEmitter()
    worker = _InProcessWorker(cfg)
    store = Store.open(cfg.school.db_path)
    school: School | None = None
    client = BacktestClient(worker, emit, clock, timeout_sec=1e9, worker_timeout_sec=1e9,
                            universe_hash=lambda u: school.universe_hash(u) if school is not None else None,
                            costs_for=lambda symbol: instrument_costs(cfg, symbol))
    school = School(cfg, store, client, emit, clock, rng=random.Random(seed))
    verdicts = Verdicts(kind, seed)
    try:
        asyncio.run(school.refresh_windows())
        client.handle_ready(WORKER, _ready(cfg, {universe: digest or ""}))
        for _ in range(max_cycles):
            n, _ = school.ledger.counts(universe)
            if n >= trials and school.cfg.school.breed:
                school.cfg = dataclasses.replace(school.cfg, school=dataclasses.replace(school.cfg.school, breed=False))
            school.cycle()
            worker.serve(client)
            school.flush_results()
            clock.advance(cfg.school.cycle_sec)
            _record_firsts(verdicts, emit, school, universe)
            if stop_at_first_s and any(e.data["to_rank"] == "S" for e in emit.of_type("strategy.ranked")):
                break
            if n >= trials and not worker.queue and not school.wfv.pending and not client.inflight \
                    and not store.oos_candidates(min_trades=cfg.ranks.A.min_trades, sharpe=cfg.ranks.A.sharpe,
                                                 profit_factor=cfg.ranks.A.profit_factor, win_rate=0.0,
                                                 max_drawdown=cfg.ranks.A.max_drawdown, limit=1,
                                                 dsr=cfg.ranks.A.dsr):
                break
        reports = asyncio.run(school.maybe_audit(force=True)) if store.count_ranked(symbol, "H1") >= 16 else []
        verdicts.pbo = float(reports[0]["pbo"]) if reports and reports[0].get("pbo") is not None else None  # type: ignore[arg-type]
        verdicts.trials, verdicts.n_eff = school.ledger.counts(universe)
        for event in emit.of_type("wfv.result"):
            verdicts.wfv[event.data["decision"]] += 1
        for event in emit.of_type("oos.result"):
            verdicts.oos[event.data.get("decision", "error")] += 1
        promoted = {e.data["strategy"] for e in emit.of_type("strategy.ranked") if e.data["to_rank"] in ("A", "S")}
        verdicts.s = len({e.data["strategy"] for e in emit.of_type("strategy.ranked") if e.data["to_rank"] == "S"})
        verdicts.a = len(promoted)
        verdicts.families = Counter(name.split("-", 1)[0] for name in promoted)
        dsrs = [e.data["best_dsr"] for e in emit.of_type("school.progress") if e.data.get("best_dsr") is not None]
        best = store.list_strategies(limit=1)
        verdicts.best_dsr = max([*dsrs, *(r.is_dsr for r in best if r.is_dsr is not None)], default=None)
    finally:
        store.close()
    return verdicts


def _ready(cfg: Config, data: dict[str, str]) -> Message:
    msg = parse([encode_work(ready_body(worker="in-process", credit=cfg.workers.queue_depth, data=data))], 1 << 20,
                version=WORK_VERSION)
    assert isinstance(msg, Message)
    return msg


def _record_firsts(verdicts: Verdicts, emit: CapturingEmitter, school: School, universe: str) -> None:
    promoted = any(e.data["to_rank"] in ("A", "S") for e in emit.of_type("strategy.ranked"))
    if verdicts.trials_to_first_a is None and promoted:
        verdicts.trials_to_first_a = school.ledger.counts(universe)[0]
