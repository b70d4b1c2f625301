"""The walk-forward scheduler (SPEC §6) on a real store, the real backtest client and a fake clock.

A run is `wfv.folds` `wfv_fold` requests tiling the IS range's tail; the fake worker's answers are built
here as a real worker would send them (swimmy.backtest.walkforward.fold_result_fields), and what the
scheduler concludes is checked against the SPEC's formulas computed independently in this file.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from schoolkit import WORKER, Kit, make_kit, work_message
from scipy import stats

from swimmy.backtest.walkforward import FoldRange, FoldResult, fold_ranges, fold_result_fields, fold_windows
from swimmy.backtest.walkforward import neighbourhood as grid_of
from swimmy.config import WfvConfig
from swimmy.school.loop import DataWindow, School
from swimmy.school.oos import AlreadyPendingError, UnknownStrategyError
from swimmy.school.wfv import WfvScheduler, pending_stats, plan_tick, required_oos
from swimmy.store import WfvRow
from swimmy.wire.messages import result_body

HOUR = 3600
BARS_PER_YEAR_H1 = 6240
IS_BARS = 1000
IS_TS = [1_780_000_000 + i * HOUR for i in range(IS_BARS)]  # the IS range
HOLDOUT_START = IS_TS[-1] + HOUR  # the holdout starts with the next bar
SEED_KEYS = ("wfv_id", "strategy", "generation", "split_ratio", "required_oos", "degradation", "decision",
             "is_sharpe", "oos_sharpe")


# -- the kit ---------------------------------------------------------------------------------------


def kit_with(tmp_path: Path, **wfv: Any) -> Kit:
    kit = make_kit(tmp_path, {"wfv": {"interval_sec": 3600, "max_pending": 2, "max_per_run": 1, **wfv}})
    plain_add = kit.add

    def add(name: str, **kw: Any) -> Any:  # walk-forward candidates have passed the holdout (docs/school.md)
        return plain_add(name, **{"oos_decision": "pass", **kw})

    kit.add = add  # type: ignore[method-assign]
    return kit


def scheduler(kit: Kit, reranked: list[tuple[str, str]] | None = None,
              timestamps: list[int] | None = None) -> WfvScheduler:
    calls = reranked if reranked is not None else []
    return WfvScheduler(kit.cfg, kit.store, kit.client, kit.emit, kit.clock,
                        is_timestamps=lambda symbol, timeframe: timestamps or IS_TS,
                        rerank=lambda name, why: calls.append((name, why)))


def school(kit: Kit) -> School:
    """The real School (its rerank ranks by decide_rank) with the IS range and holdout of this file."""
    s = School(kit.cfg, kit.store, kit.client, kit.emit, kit.clock, rng=random.Random(1), workers_ready=lambda: False)
    s._windows[("EURUSD", "H1")] = DataWindow(HOLDOUT_START, np.array(IS_TS, dtype=np.int64))
    return s


def fold_requests(kit: Kit, strategy: str | None = None) -> list[dict[str, Any]]:
    return [r for r in kit.pipe.sent
            if r["purpose"] == "wfv_fold" and (strategy is None or r["strategy"]["name"] == strategy)]


# -- the fake worker's answers --------------------------------------------------------------------


def fold_returns(index: int, n: int, mean: float, sd: float = 0.001) -> np.ndarray:
    """n returns with exactly this mean and sample sd (standardised noise, seeded by the fold)."""
    z = np.random.default_rng(100 + index).standard_normal(n)
    return mean + sd * (z - z.mean()) / z.std(ddof=1)


@dataclasses.dataclass(frozen=True)
class Profile:
    """What a walk-forward's folds show: each fold's test mean, and a wfe target that sets the train Sharpes."""

    means: tuple[float, ...]
    wfe: float | None  # None: negative train Sharpes


VALIDATED = Profile((-0.0002, 0.0005, 0.0005, 0.0005, 0.0005), 0.8)
WEAK_PSR = Profile((0.00004,) * 5, 1.0)  # a positive record, but wf_psr well under 0.95
WEAK_WFE = Profile((0.0004,) * 5, 0.3)  # strong record, train Sharpes 3.3 times the walk-forward's
WEAK_FOLDS = Profile((-0.0001, -0.0001, -0.0001, 0.001, 0.001), 1.0)  # strong record, 2 of 5 folds profitable
OVERFIT_WFE = Profile((0.0004,) * 5, 0.1)  # wfe under 0.2
OVERFIT_LOSS = Profile((-0.0003,) * 5, None)  # the record loses; the train Sharpes are negative too


def expected_figures(requests: list[dict[str, Any]], profile: Profile) -> dict[str, Any]:
    """SPEC §6's figures of the answers `answer_all` gives, computed here from the formulas."""
    ordered = sorted(requests, key=lambda r: r["fold"]["test_start_ts"])
    returns = [fold_returns(r["fold"]["index"], window_bars(r), profile.means[r["fold"]["index"]]) for r in ordered]
    record = np.concatenate(returns)
    sr = float(record.mean() / record.std(ddof=1))
    skew, kurt = float(stats.skew(record)), float(stats.kurtosis(record, fisher=False))
    psr = float(stats.norm.cdf(sr * math.sqrt(len(record) - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)))
    wf_sharpe = sr * math.sqrt(BARS_PER_YEAR_H1)
    trains = [train_sharpe(wf_sharpe, profile, r["fold"]["index"]) for r in ordered]
    is_sharpe = sum(trains) / len(trains)
    return {"wf_sharpe": wf_sharpe, "oos_sharpe": wf_sharpe, "wf_psr": psr, "is_sharpe": is_sharpe,
            "wfe": wf_sharpe / is_sharpe if is_sharpe > 0 else None,
            "profitable_folds": sum(float(r.sum()) > 0 for r in returns) / len(returns),
            "degradation": (is_sharpe - wf_sharpe) / is_sharpe if is_sharpe > 0.1 else 0.0}


TRAIN_SPREAD = (0.8, 0.9, 1.0, 1.1, 1.2)  # the folds' train Sharpes differ; their mean is what counts


def train_sharpe(wf_sharpe: float, profile: Profile, fold: int) -> float:
    """Fold `fold`'s train Sharpe: the folds' mean is wf_sharpe / wfe (or -2 when the profile loses)."""
    mean = wf_sharpe / profile.wfe if profile.wfe is not None else -2.0
    return mean * TRAIN_SPREAD[fold]


def window_bars(request: dict[str, Any]) -> int:
    """How many IS bars a fold's test window holds."""
    fold = request["fold"]
    return sum(fold["test_start_ts"] <= t < fold["test_end_ts"] for t in IS_TS)


def chosen(request: dict[str, Any]) -> dict[str, float]:
    """The grid point the fake worker 'chose' for a fold: a different one per fold."""
    grid = request["grid"]
    return dict(grid[request["fold"]["index"] % len(grid)])


def fold_answer(request: dict[str, Any], *, mean: float, train: float | None, status: str = "ok",
                error: str | None = None) -> dict[str, Any]:
    """A wfv_fold BACKTEST_RESULT for `request`, as a worker builds it."""
    f = request["fold"]
    fold = FoldRange(f["index"], f["train_start_ts"], f["train_end_ts"], f["test_start_ts"], f["test_end_ts"])
    returns = fold_returns(f["index"], window_bars(request), mean) if status == "ok" else np.zeros(0)
    test_sharpe = float(returns.mean() / returns.std(ddof=1) * math.sqrt(BARS_PER_YEAR_H1)) if len(returns) else None
    result = FoldResult(fold, status, params=chosen(request) if status == "ok" else None, train_sharpe=train,
                        test_sharpe=test_sharpe, test_returns=returns, test_trades=12 if status == "ok" else 0,
                        test_pnl_pips=float(returns.sum()) * 10_000, error=error, candidates=len(request["grid"]))
    metrics = {"trades": 12, "sharpe": test_sharpe, "pnl_pips": float(returns.sum()) * 10_000}
    return result_body(request_id=request["request_id"], strategy_name=request["strategy"]["name"], status="ok",
                       metrics=metrics, bars=len(returns), start_ts=request["start_ts"], end_ts=request["end_ts"],
                       elapsed_ms=1.0, worker="fake", extra=fold_result_fields(result))


def deliver(kit: Kit, body: dict[str, Any]) -> None:
    assert kit.client.handle_result(WORKER, work_message(body)) is None


def answer_all(kit: Kit, requests: list[dict[str, Any]], profile: Profile) -> None:
    """Answer every fold (newest first: the order of arrival must not matter)."""
    wf_sharpe = expected_figures(requests, profile)["wf_sharpe"]
    for request in sorted(requests, key=lambda r: -r["fold"]["index"]):
        i = request["fold"]["index"]
        deliver(kit, fold_answer(request, mean=profile.means[i], train=train_sharpe(wf_sharpe, profile, i)))


# -- the SPEC's tiling, independently ------------------------------------------------------------


def spec_folds(ts: list[int], k: int, r: float, mode: str) -> list[dict[str, int]]:
    """SPEC §6: W = floor(B r / (1 - r + K r)); fold i tests [B - (K - i) W, B - (K - i - 1) W)."""
    b, ratio = len(ts), Fraction(str(r))
    w = math.floor(b * ratio / (1 - ratio + k * ratio))
    train = (1 - ratio) / ratio * w
    assert train.denominator == 1  # the cases below keep (1 - r) / r x W whole

    def at(j: int) -> int:
        return ts[j] if j < b else ts[-1] + 1

    out = []
    for i in range(k):
        lo, hi = b - (k - i) * w, b - (k - i - 1) * w
        start = lo - int(train) if mode == "rolling" else 0
        out.append({"index": i, "train_start_ts": ts[start], "train_end_ts": ts[lo], "test_start_ts": ts[lo],
                    "test_end_ts": at(hi)})
    return out


# -- pure rules ----------------------------------------------------------------------------------


class TestRules:
    @pytest.mark.parametrize(
        ("started", "now", "expected"),
        [({}, 1000.0, (0, None)), ({"a": 900.0}, 1000.0, (1, 100.0)), ({"a": 900.0, "b": 950.0}, 1000.0, (2, 100.0))],
        ids=["none", "one", "two-oldest-counts"],
    )
    def test_pending_stats(self, started: dict[str, float], now: float, expected: tuple[int, float | None]) -> None:
        """(count, oldest_age_sec)."""
        assert pending_stats(started, now) == expected

    @pytest.mark.parametrize(
        ("kw", "last", "pending", "candidates", "start", "deferred"),
        [
            ({"enabled": False}, None, 0, 5, 0, "disabled"),
            ({"enabled": False}, 1000.0 - 3599, 2, 0, 0, "disabled"),
            ({}, 1000.0 - 3599, 0, 5, 0, "interval"),
            ({}, 1000.0 - 3599, 2, 0, 0, "interval"),
            ({}, 1000.0 - 3600, 0, 5, 1, None),
            ({}, None, 0, 5, 1, None),
            ({"max_pending": 0}, None, 0, 5, 0, "max_pending"),
            ({}, None, 2, 5, 0, "max_pending"),
            ({}, None, 3, 0, 0, "max_pending"),
            ({}, None, 0, 0, 0, "no_candidates"),
            ({"max_per_run": 3}, None, 0, 5, 2, None),
            ({"max_per_run": 3}, None, 1, 5, 1, None),
            ({"max_per_run": 3, "max_pending": 9}, None, 0, 2, 2, None),
        ],
        ids=["disabled", "disabled-first", "interval", "interval-before-pending", "interval-elapsed", "first-run",
             "max-pending-0", "at-max-pending", "over-max-pending", "no-candidates", "capped-by-max-pending",
             "capped-by-free-slots", "capped-by-candidates"],
    )
    def test_plan_tick(self, kw: dict[str, Any], last: float | None, pending: int, candidates: int, start: int,
                       deferred: str | None) -> None:
        """The guards in SPEC order: disabled, interval, max_pending, candidates; starts never exceed a bound."""
        cfg = WfvConfig(**{"interval_sec": 3600, "max_pending": 2, "max_per_run": 1, **kw})
        plan = plan_tick(cfg, now=1000.0, last_run_at=last, pending=pending, candidates=candidates)
        assert (plan.start, plan.deferred) == (start, deferred)

    @pytest.mark.parametrize(("generation", "required"), [(0, 0.0), (2, 0.1), (39, 1.95), (40, 2.0), (100, 2.0)])
    def test_required_oos(self, generation: int, required: float) -> None:
        """min(cap, base + step x generation)."""
        assert required_oos(generation, WfvConfig()) == pytest.approx(required)


# -- scheduling ----------------------------------------------------------------------------------


class TestScheduling:
    @pytest.mark.parametrize(
        ("wfv", "strategies", "reason"),
        [
            ({"enabled": False}, ["a"], "disabled"),
            ({"max_pending": 0}, ["a"], "max_pending"),
            ({}, [], "no_candidates"),
        ],
        ids=["disabled", "max-pending", "no-candidates"],
    )
    def test_a_deferred_tick_sends_nothing(self, tmp_path: Path, wfv: dict[str, Any], strategies: list[str],
                                           reason: str) -> None:
        """A guard that holds: no request, no run, one wfv.deferred with the reason and the pending figures."""
        kit = kit_with(tmp_path, **wfv)
        for name in strategies:
            kit.add(name)
        w = scheduler(kit)
        w.tick()
        assert kit.pipe.sent == [] and w.pending == {} and kit.store.list_wfv_runs() == []
        (deferred,) = kit.events("wfv.deferred")
        assert deferred.data == {"reason": reason, "pending": 0, "oldest_age_sec": None}
        assert w.last_run_at is None

    def test_deferral_is_one_event_per_change_of_reason(self, tmp_path: Path) -> None:
        """Repeated ticks for the same reason are one event; a new reason, or a start in between, emits again."""
        kit = kit_with(tmp_path, max_pending=1, pending_timeout_sec=100_000)
        w = scheduler(kit)
        for _ in range(3):
            w.tick()
        kit.add("a")
        w.tick()  # starts a
        for _ in range(3):
            w.tick()
            kit.clock.advance(10)
        kit.clock.advance(3600)
        for _ in range(3):
            w.tick()
        assert [e.data["reason"] for e in kit.events("wfv.deferred")] == ["no_candidates", "interval", "max_pending"]
        assert kit.events("wfv.deferred")[-1].data == {"reason": "max_pending", "pending": 1, "oldest_age_sec": 3630.0}
        assert len(kit.events("wfv.started")) == 1

    def test_interval_guard_and_last_run_time(self, tmp_path: Path) -> None:
        """Within the interval nothing starts; the last-run time moves only when something started."""
        kit = kit_with(tmp_path, max_pending=5, pending_timeout_sec=100_000)
        kit.add("a", is_dsr=0.99)
        w = scheduler(kit)
        w.tick()
        first = w.last_run_at
        assert first == kit.clock.time()
        kit.add("b", is_dsr=0.98)
        kit.clock.advance(3599)
        w.tick()
        assert [e.data["strategy"] for e in kit.events("wfv.started")] == ["a"]
        kit.clock.advance(1)
        w.tick()
        assert [e.data["strategy"] for e in kit.events("wfv.started")] == ["a", "b"]
        kit.clock.advance(3600)
        w.tick()  # no candidate left
        assert kit.events("wfv.deferred")[-1].data["reason"] == "no_candidates"
        assert w.last_run_at == first + 3600  # type: ignore[operator]

    def test_pending_stats_of_stored_runs(self, tmp_path: Path) -> None:
        """wfv_pending_stats(now=1000) with pending runs started at 900 and 950 -> (2, 100)."""
        kit = kit_with(tmp_path)
        kit.add("a")
        kit.add("b")
        kit.store.add_wfv_run(WfvRow("A", "a", 900.0, "scheduled", 0.2))
        kit.store.add_wfv_run(WfvRow("B", "b", 950.0, "scheduled", 0.2))
        w = scheduler(kit)
        w.startup()
        assert w.wfv_pending_stats(1000.0) == (2, 100.0)

    def test_only_strategies_that_passed_the_holdout_are_walked_forward(self, tmp_path: Path) -> None:
        """Inside the range it was selected on a walk-forward can't tell luck from an edge: it waits for the holdout."""
        kit = kit_with(tmp_path, max_per_run=10, max_pending=10)
        kit.add("lucky-on-is", rank="B", is_dsr=0.999, oos_decision=None)
        kit.add("failed-holdout", rank="B", is_dsr=0.999, oos_decision="fail")
        kit.add("passed", rank="A", is_dsr=0.96)
        scheduler(kit).tick()
        assert [e.data["strategy"] for e in kit.events("wfv.started")] == ["passed"]

    def test_candidates_best_dsr_first(self, tmp_path: Path) -> None:
        """B/A/S without a WFV result, by DSR (then IS Sharpe), never graveyard, incubator or pending ones."""
        kit = kit_with(tmp_path, max_per_run=10, max_pending=10, pending_timeout_sec=100_000)
        kit.add("dead", rank="graveyard", sharpe=3.0, is_dsr=0.999)
        kit.add("new", rank="incubator", sharpe=None, is_dsr=None)
        kit.add("done", rank="A", sharpe=2.5, is_dsr=0.999)
        kit.store.set_wfv_decision("done", "weak", 0)
        kit.add("low-dsr-high-sharpe", rank="B", sharpe=3.0, is_dsr=0.955)
        kit.add("high-dsr", rank="S", sharpe=0.5, is_dsr=0.995)
        kit.add("mid-dsr", rank="A", sharpe=1.0, is_dsr=0.97)
        kit.add("tie-better-sharpe", rank="B", sharpe=2.0, is_dsr=0.97)
        w = scheduler(kit)
        w.tick()
        order = ["high-dsr", "tie-better-sharpe", "mid-dsr", "low-dsr-high-sharpe"]
        assert [e.data["strategy"] for e in kit.events("wfv.started")] == order
        kit.clock.advance(3600)
        w.tick()  # every candidate is pending now
        assert len(kit.events("wfv.started")) == len(order)


# -- a run's requests ----------------------------------------------------------------------------


class TestFolds:
    @pytest.mark.parametrize(
        ("folds", "split_ratio", "mode", "bars"),
        [(5, 0.2, "rolling", 1000), (5, 0.2, "anchored", 1000), (3, 0.25, "rolling", 777), (8, 0.1, "rolling", 1000),
         (4, 0.2, "anchored", 333)],
        ids=["default", "anchored", "3-folds-quarter", "8-folds-tenth", "anchored-odd-bars"],
    )
    def test_a_run_sends_one_request_per_fold_tiling_the_is_tail(self, tmp_path: Path, folds: int,
                                                                 split_ratio: float, mode: str, bars: int) -> None:
        """`folds` wfv_fold requests tiling the IS tail as SPEC §6 says: contiguous, never past the IS range."""
        kit = kit_with(tmp_path, folds=folds, split_ratio=split_ratio, mode=mode)
        kit.add("x")
        ts = IS_TS[-bars:]
        w = scheduler(kit, timestamps=ts)
        w.tick()
        sent = fold_requests(kit)
        assert len(sent) == folds == len(kit.pipe.sent)
        expected = spec_folds(ts, folds, split_ratio, mode)
        assert [r["fold"] for r in sent] == expected
        by_library = fold_ranges(fold_windows(len(ts), folds, split_ratio, mode), ts)  # type: ignore[arg-type]
        assert [dataclasses.asdict(f) for f in by_library] == expected
        grid = [dict(sorted(p.items())) for p in grid_of("sma_cross", {"fast": 10, "slow": 30})]
        assert len({r["request_id"] for r in sent}) == folds
        for r in sent:
            assert (r["v"], r["purpose"], r["strategy"]["name"]) == (2, "wfv_fold", "x")
            assert (r["start_ts"], r["end_ts"]) == (r["fold"]["train_start_ts"], r["fold"]["test_end_ts"])
            assert r["end_ts"] <= HOLDOUT_START
            assert r["grid"] == grid and r["grid"][0] == {"fast": 10, "slow": 30}
        tests = [(r["fold"]["test_start_ts"], r["fold"]["test_end_ts"]) for r in sent]
        assert all(a[1] == b[0] for a, b in itertools.pairwise(tests))  # contiguous, in time order
        assert tests[-1][1] == ts[-1] + 1  # the last test window ends with the IS range
        (started,) = kit.events("wfv.started")
        assert started.data["test_windows"] == [list(t) for t in tests]
        assert (started.data["folds"], started.data["mode"], started.data["is_bars"]) == (folds, mode, bars)
        stored = kit.store.wfv_folds(started.correlation_id)
        assert [(f, rid) for f, rid, *_ in stored] == [(r["fold"]["index"], r["request_id"]) for r in sent]
        assert kit.store.get_wfv_run(started.correlation_id).status == "pending"  # type: ignore[union-attr]

    def test_too_short_an_is_range_starts_nothing(self, tmp_path: Path) -> None:
        """Ten bars cannot hold five test windows of two bars: no request, no run, the interval not spent."""
        kit = kit_with(tmp_path)
        kit.add("x")
        w = scheduler(kit, timestamps=IS_TS[:10])
        w.tick()
        assert kit.pipe.sent == [] and w.pending == {} and w.last_run_at is None


# -- results -------------------------------------------------------------------------------------


def start_one(kit: Kit, name: str = "x", **columns: Any) -> tuple[WfvScheduler, list[tuple[str, str]], str]:
    kit.add(name, **columns)
    calls: list[tuple[str, str]] = []
    w = scheduler(kit, calls)
    wfv_id = w.start_manual(name)
    return w, calls, wfv_id


class TestResults:
    @pytest.mark.parametrize(
        ("profile", "decision"),
        [(VALIDATED, "validated"), (WEAK_PSR, "weak"), (WEAK_WFE, "weak"), (WEAK_FOLDS, "weak"),
         (OVERFIT_WFE, "overfit"), (OVERFIT_LOSS, "overfit")],
        ids=["validated", "weak-psr", "weak-wfe", "weak-folds", "overfit-wfe", "overfit-loss"],
    )
    def test_all_folds_in_make_one_result(self, tmp_path: Path, profile: Profile, decision: str) -> None:
        """Each fold -> wfv.part_received (IS and OOS); all folds -> one wfv.result with SPEC §6's figures."""
        kit = kit_with(tmp_path)
        w, calls, wfv_id = start_one(kit, "gen2", generation=2)
        sent = fold_requests(kit)
        answer_all(kit, sent, profile)
        want = expected_figures(sent, profile)

        parts = kit.events("wfv.part_received")
        assert sorted((p.data["fold"], p.data["part"]) for p in parts) == [(i, part) for i in range(5)
                                                                           for part in ("IS", "OOS")]
        assert all(p.correlation_id == wfv_id == p.data["wfv_id"] and p.data["status"] == "ok" for p in parts)
        for p in parts:
            request = sent[p.data["fold"]]
            assert p.data["params"] == chosen(request)
            if p.data["part"] == "IS":
                assert p.data["sharpe"] == pytest.approx(train_sharpe(want["wf_sharpe"], profile, p.data["fold"]))

        (result,) = kit.events("wfv.result")
        data = result.data
        assert result.correlation_id == wfv_id
        assert set(SEED_KEYS) | {"folds", "wf_sharpe", "wf_psr", "wfe", "profitable_folds"} <= set(data)
        assert (data["wfv_id"], data["strategy"], data["generation"], data["split_ratio"]) == (wfv_id, "gen2", 2, 0.2)
        assert data["required_oos"] == pytest.approx(0.1)
        assert data["decision"] == decision
        for key in ("wf_sharpe", "oos_sharpe", "wf_psr", "is_sharpe", "wfe", "profitable_folds", "degradation"):
            assert data[key] == (pytest.approx(want[key], rel=1e-6, abs=1e-9) if want[key] is not None else None), key
        assert [f["index"] for f in data["folds"]] == list(range(5))  # in time order, whatever the arrival
        for f, request in zip(data["folds"], sent, strict=True):
            assert {k: f[k] for k in request["fold"]} == request["fold"]
            assert f["params"] == chosen(request)
            assert f["is_sharpe"] == pytest.approx(train_sharpe(want["wf_sharpe"], profile, f["index"]))
            assert f["oos_sharpe"] is not None

        assert w.pending == {}
        run = kit.store.get_wfv_run(wfv_id)
        assert run is not None and (run.status, run.decision) == ("done", decision)
        assert kit.store.get_strategy("gen2").wfv_decision == decision  # type: ignore[union-attr]
        assert calls == [("gen2", f"walk-forward {decision}")]  # affects_rank (the default) re-ranks

    def test_the_record_is_judged_against_required_oos(self, tmp_path: Path) -> None:
        """required_oos = min(cap, base + step x generation): above wf_sharpe, a strong record is only weak."""
        kit = kit_with(tmp_path, required_oos_step=10.0, required_oos_cap=1000.0)
        start_one(kit, "gen9", generation=9)
        sent = fold_requests(kit)
        answer_all(kit, sent, VALIDATED)
        assert expected_figures(sent, VALIDATED)["wf_sharpe"] < 90.0
        (result,) = kit.events("wfv.result")
        assert result.data["required_oos"] == pytest.approx(90.0) and result.data["decision"] == "weak"

    @pytest.mark.parametrize(
        ("how", "error"),
        [("worker-error", "no bars"), ("fold-error", "grid failed"), ("malformed", "fold")],
        ids=["worker-error", "fold-error", "malformed-answer"],
    )
    def test_a_failed_fold_makes_the_decision_error(self, tmp_path: Path, how: str, error: str) -> None:
        """One fold fails (the worker errs, the fold says error, or the answer can't be read): decision error."""
        kit = kit_with(tmp_path, interval_sec=0)
        w, calls, wfv_id = start_one(kit)
        sent = fold_requests(kit)
        bad = sent[2]
        if how == "worker-error":
            kit.answer(bad, status="error", error=error)
        elif how == "fold-error":
            deliver(kit, fold_answer(bad, mean=0.0, train=None, status="error", error=error))
        else:
            kit.answer(bad)  # an ok BACKTEST_RESULT without its `fold`
        wf = expected_figures(sent, VALIDATED)["wf_sharpe"]
        for r in sent:
            if r is not bad:
                deliver(kit, fold_answer(r, mean=VALIDATED.means[r["fold"]["index"]], train=wf))
        failed = [p for p in kit.events("wfv.part_received") if p.data["fold"] == 2]
        assert {p.data["status"] for p in failed} == {"error"} and all(error in p.data["error"] for p in failed)
        (result,) = kit.events("wfv.result")
        assert result.data["decision"] == "error" and error in result.data["error"]
        assert kit.store.get_strategy("x").wfv_decision == "error"  # type: ignore[union-attr]
        assert kit.store.get_wfv_run(wfv_id).status == "error"  # type: ignore[union-attr]
        assert calls == [] and w.pending == {}

    @pytest.mark.parametrize("affects", [True, False])
    def test_no_result_before_the_last_fold(self, tmp_path: Path, affects: bool) -> None:
        """Four folds of five: parts, but no result, no re-rank, the run still pending."""
        kit = kit_with(tmp_path, affects_rank=affects)
        w, calls, wfv_id = start_one(kit)
        sent = fold_requests(kit)
        wf = expected_figures(sent, VALIDATED)["wf_sharpe"]
        for r in sent[:4]:
            deliver(kit, fold_answer(r, mean=0.0005, train=wf))
        assert len(kit.events("wfv.part_received")) == 8
        assert kit.events("wfv.result") == [] and calls == [] and list(w.pending) == [wfv_id]

    def test_analysis_only_without_affects_rank(self, tmp_path: Path) -> None:
        """wfv.affects_rank false: the verdict is stored and reported, nothing is re-ranked."""
        kit = kit_with(tmp_path, affects_rank=False)
        _, calls, _ = start_one(kit)
        answer_all(kit, fold_requests(kit), OVERFIT_LOSS)
        assert kit.events("wfv.result")[0].data["decision"] == "overfit"
        assert calls == []


class TestRanking:
    @pytest.mark.parametrize(
        ("rank", "profile", "affects", "expected"),
        [
            ("A", VALIDATED, True, "S"),
            ("A", OVERFIT_LOSS, True, "B"),
            ("S", OVERFIT_WFE, True, "B"),
            ("A", WEAK_WFE, True, "A"),
            ("S", WEAK_PSR, True, "A"),
            ("A", VALIDATED, False, "A"),
            ("S", OVERFIT_LOSS, False, "S"),
        ],
        ids=["validated-promotes-A", "overfit-demotes-A", "overfit-demotes-S", "weak-keeps-A", "weak-S-is-A",
             "analysis-only-no-promotion", "analysis-only-no-demotion"],
    )
    def test_the_verdict_reranks_through_the_school(self, tmp_path: Path, rank: str, profile: Profile, affects: bool,
                                                    expected: str) -> None:
        """A holdout-passed strategy meeting S's figures: validated -> S, overfit -> B (SPEC §5, §6)."""
        kit = kit_with(tmp_path, affects_rank=affects)
        kit.add("x", rank=rank, is_max_drawdown=0.05, is_dsr=0.99)
        kit.store.set_oos_verdict("x", sharpe=0.9, psr=0.97, trades=40, decision="pass", now=kit.clock.time())
        s = school(kit)
        s.wfv.start_manual("x")
        answer_all(kit, fold_requests(kit), profile)
        assert kit.store.get_strategy("x").rank == expected  # type: ignore[union-attr]
        moves = [e.data for e in kit.events("strategy.ranked") if e.data["strategy"] == "x"]
        if expected == rank:
            assert moves == []
        else:
            (move,) = moves
            decision = kit.events("wfv.result")[0].data["decision"]
            assert (move["from_rank"], move["to_rank"]) == (rank, expected)
            assert move["reason"].startswith(f"walk-forward {decision}")


# -- expiry and restarts -------------------------------------------------------------------------


class TestTimeoutAndRestart:
    def test_timeout_frees_the_slot(self, tmp_path: Path) -> None:
        """A run older than pending_timeout_sec: wfv.timeout naming the missing folds; the next run starts."""
        kit = kit_with(tmp_path, max_pending=1, interval_sec=0, pending_timeout_sec=1800)
        kit.add("a", is_dsr=0.99)
        kit.add("b", is_dsr=0.98)
        calls: list[tuple[str, str]] = []
        w = scheduler(kit, calls)
        w.tick()
        sent = fold_requests(kit, "a")
        wf = expected_figures(sent, VALIDATED)["wf_sharpe"]
        for r in sent[:2]:
            deliver(kit, fold_answer(r, mean=0.0005, train=wf))
        kit.clock.advance(1800)
        w.tick()
        assert kit.events("wfv.timeout") == []  # not older than the timeout yet
        kit.clock.advance(1)
        w.tick()
        (timeout,) = kit.events("wfv.timeout")
        assert timeout.data["missing"] == ["fold 2", "fold 3", "fold 4"] and timeout.data["age_sec"] == 1801
        assert timeout.data["strategy"] == "a" and timeout.severity == "warning"
        assert kit.store.get_wfv_run(timeout.correlation_id).status == "timeout"  # type: ignore[union-attr]
        assert [e.data["strategy"] for e in kit.events("wfv.started")] == ["a", "b"]  # the slot went to the next
        for r in sent[2:]:  # late folds of the expired run change nothing
            deliver(kit, fold_answer(r, mean=0.0005, train=wf))
        assert kit.events("wfv.result") == [] and calls == []
        assert [r.strategy for r in w.pending.values()] == ["b"]

    def test_a_run_survives_a_restart(self, tmp_path: Path) -> None:
        """A new scheduler on the same store re-sends the unanswered folds under their ids; answering them finishes."""
        kit = kit_with(tmp_path)
        kit.add("x", generation=1)
        w = scheduler(kit)
        wfv_id = w.start_manual("x")
        sent = fold_requests(kit)
        wf = expected_figures(sent, VALIDATED)["wf_sharpe"]
        for r in sent[:2]:
            deliver(kit, fold_answer(r, mean=VALIDATED.means[r["fold"]["index"]], train=wf))
        kit.clock.advance(60)
        kit.store.close()

        again = make_kit(tmp_path, {"wfv": {"interval_sec": 3600}}, clock=kit.clock)
        calls: list[tuple[str, str]] = []
        w2 = scheduler(again, calls)
        w2.startup()
        assert w2.wfv_pending_stats(again.clock.time()) == (1, 60.0)
        resent = fold_requests(again)
        assert [(r["request_id"], r["fold"], r["grid"], r["start_ts"], r["end_ts"]) for r in resent] == [
            (r["request_id"], r["fold"], r["grid"], r["start_ts"], r["end_ts"]) for r in sent[2:]]
        for r in resent:
            deliver(again, fold_answer(r, mean=VALIDATED.means[r["fold"]["index"]], train=wf))
        (result,) = again.events("wfv.result")
        assert result.correlation_id == wfv_id and result.data["decision"] == "validated"
        assert [f["params"] for f in result.data["folds"]] == [chosen(r) for r in sent]
        assert result.data["wf_sharpe"] == pytest.approx(wf, rel=1e-6)
        assert {p.data["fold"] for p in again.events("wfv.part_received")} == {2, 3, 4}  # only the re-sent folds
        assert calls == [("x", "walk-forward validated")] and w2.pending == {}

    def test_a_failed_fold_survives_a_restart(self, tmp_path: Path) -> None:
        """A fold the worker failed before the restart still makes the run's decision `error` after it."""
        kit = kit_with(tmp_path)
        kit.add("x")
        w = scheduler(kit)
        w.start_manual("x")
        sent = fold_requests(kit)
        kit.answer(sent[0], status="error", error="no bars")
        kit.store.close()
        again = make_kit(tmp_path, {"wfv": {"interval_sec": 3600}}, clock=kit.clock)
        w2 = scheduler(again)
        w2.startup()
        wf = expected_figures(sent, VALIDATED)["wf_sharpe"]
        for r in fold_requests(again):
            deliver(again, fold_answer(r, mean=0.0005, train=wf))
        (result,) = again.events("wfv.result")
        assert result.data["decision"] == "error"


# -- manual --------------------------------------------------------------------------------------


class TestManual:
    def test_manual_start_bypasses_every_guard(self, tmp_path: Path) -> None:
        """Disabled, at max_pending, within the interval: `wfv start` still starts all folds, trigger manual."""
        kit = kit_with(tmp_path, enabled=False, max_pending=0)
        kit.add("x", rank="graveyard")
        w = scheduler(kit)
        w.last_run_at = kit.clock.time()
        wfv_id = w.start_manual("x")
        (started,) = kit.events("wfv.started")
        assert started.correlation_id == wfv_id and started.data["trigger"] == "manual"
        assert len(fold_requests(kit, "x")) == 5
        answer_all(kit, fold_requests(kit, "x"), VALIDATED)
        assert kit.events("wfv.result")[0].data["trigger"] == "manual"

    @pytest.mark.parametrize(
        ("name", "error"), [("x", AlreadyPendingError), ("nope", UnknownStrategyError)], ids=["pending", "unknown"]
    )
    def test_manual_refusals(self, tmp_path: Path, name: str, error: type[Exception]) -> None:
        """A strategy already pending (exit 1) or unknown (exit 2) is refused and sends nothing more."""
        kit = kit_with(tmp_path)
        kit.add("x")
        w = scheduler(kit)
        w.start_manual("x")
        with pytest.raises(error):
            w.start_manual(name)
        assert len(fold_requests(kit)) == 5 and len(w.pending) == 1
