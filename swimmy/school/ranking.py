"""The school's ranking (SPEC §5): IS results become trials and ranks; re-ranking; progress and figures.

Every IS result is a trial of the ledger and carries its DSR against the ledger's N_eff; the pure rank
rules are swimmy/school/ranks.py, this module applies them to the store and emits `strategy.ranked`
and `school.progress`. `SchoolRanking` is the part of `School` (swimmy/school/loop.py) that does it;
School sets every attribute declared here in its constructor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from swimmy.backtest.client import Outcome
from swimmy.backtest.data import universe_name
from swimmy.backtest.strategies import BARS_PER_YEAR
from swimmy.school.ledger import sketch_blob
from swimmy.school.ranks import decide_rank
from swimmy.school.universes import SchoolData
from swimmy.store import StrategyRow, TrialRow


@dataclass
class Progress:
    """One universe's IS results since the last `school.progress` event, and in all."""

    trials: int = 0  # IS results with figures, in all (the ledger's N is the next issue's)
    since: int = 0
    by_family: dict[str, dict[str, int]] = field(default_factory=dict)
    best_sharpe: float | None = None
    best_strategy: str | None = None
    best_dsr: float | None = None
    sr0: float | None = None  # the annualised Sharpe the best of N_eff luck-only trials would show
    retired: int = 0  # B strategies retired to make room (population_max)

    def add(self, family: str, outcome: str, name: str, sharpe: float | None, dsr: float | None) -> None:
        counts = self.by_family.setdefault(family, {})
        counts[outcome] = counts.get(outcome, 0) + 1
        if outcome in ("error", "quarantined", "timeout"):
            return
        self.trials += 1
        self.since += 1
        if sharpe is not None and (self.best_sharpe is None or sharpe > self.best_sharpe):
            self.best_sharpe, self.best_strategy = sharpe, name
        if dsr is not None and (self.best_dsr is None or dsr > self.best_dsr):
            self.best_dsr = dsr


def _num(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def trial_row(row: StrategyRow, outcome: Outcome, now: float) -> TrialRow:
    """The ledger's row for a finished IS backtest."""
    metrics = outcome.metrics or {}
    result = outcome.result
    bars = result.bars if result is not None and result.bars is not None else 0
    sketch = result.body.get("sketch") if result is not None else None
    return TrialRow(universe_name(row.symbol, row.timeframe), row.rules_hash, row.family, row.generation,
                    _num(metrics.get("sharpe_per_bar")), _num(metrics.get("skew")), _num(metrics.get("kurtosis")),
                    int(bars), now, sketch_blob(sketch if isinstance(sketch, dict) else None))


class SchoolRanking(SchoolData):
    """School's ranks: IS results recorded as trials and ranked, verdicts re-ranked, progress reported."""

    _progress: dict[str, Progress]
    _progress_at: float
    _live: int
    _is_done: list[tuple[Outcome, StrategyRow]]
    _unflushed: set[str]

    def flush_results(self) -> None:
        """Record the collected IS results as trials, deflate their Sharpes, rank them, store them in one go.

        One transaction: the ledger's trials and N_eff and the strategies' figures and ranks are written together
        or not at all. The `strategy.ranked` events follow the commit: they tell what was stored.
        """
        done, self._is_done = self._is_done, []
        if not done:
            return
        self._unflushed.difference_update(row.name for _, row in done)
        now = self._clock.time()
        with self._store.transaction(f"record {len(done)} IS results"):
            ranked = self._record(done, now)
        for row, rank, reason, metrics in ranked:
            self._set_rank(row, rank, reason, now, metrics)

    def _record(self, done: list[tuple[Outcome, StrategyRow]], now: float
                ) -> list[tuple[StrategyRow, str, str, dict[str, float | int | None]]]:
        """The writes of flush_results; the rank changes that are events, for after the commit."""
        trials = [trial_row(row, outcome, now) for outcome, row in done
                  if outcome.status == "ok" and outcome.metrics is not None]
        self.ledger.record(trials, now)
        records: list[tuple[str, dict[str, float | int | None], str]] = []
        ranked: list[tuple[StrategyRow, str, str, dict[str, float | int | None]]] = []
        totals: dict[str, tuple[int, float]] = {}  # (N, N_eff) per universe after this batch: read once
        for outcome, row in done:
            universe = universe_name(row.symbol, row.timeframe)
            progress = self._progress.setdefault(universe, Progress())
            if outcome.status in ("timeout", "stale"):
                progress.add(row.family, outcome.status, row.name, None, None)
                continue  # transient, or asked on data that is gone: it stays in the incubator and is sent again
            if outcome.status != "ok" or outcome.metrics is None:
                # An error is never a Sharpe of 0: no metrics are stored, and a strategy that can't be
                # backtested (or that kills the workers: quarantined) leaves the population.
                outcome_kind = "quarantined" if outcome.status == "quarantined" else "error"
                progress.add(row.family, outcome_kind, row.name, None, None)
                ranked.append((row, "graveyard", f"IS backtest failed: {outcome.error}", {}))
                continue
            metrics = dict(outcome.metrics)
            bars = outcome.result.bars if outcome.result is not None else None
            if universe not in totals:
                totals[universe] = self.ledger.counts(universe)
            deflation = self.ledger.deflate(universe, sharpe_per_bar=_num(metrics.get("sharpe_per_bar")), bars=bars,
                                            skew=_num(metrics.get("skew")), kurtosis=_num(metrics.get("kurtosis")),
                                            bars_per_year=BARS_PER_YEAR.get(row.timeframe, 6240),
                                            counts=totals[universe])
            metrics["dsr"] = deflation.dsr
            metrics["bars"] = bars
            progress.sr0 = deflation.sr0
            decision = decide_rank(metrics, oos_decision=None, wfv_decision=None, ranks=self.cfg.ranks,
                                   wfv_affects_rank=self.cfg.wfv.affects_rank)
            progress.add(row.family, decision.rank, row.name, _num(metrics.get("sharpe")), deflation.dsr)
            records.append((row.name, metrics, decision.rank))
            if decision.rank == "graveyard":
                self._live -= 1
            elif decision.rank != "B":  # B straight from IS is counted in school.progress, not an event each
                ranked.append((row, decision.rank, decision.reason, metrics))
        self._store.record_is_results(records, now)
        return ranked

    def report_progress(self, *, force: bool = False) -> None:
        """`school.progress` per universe every `school.progress_interval_sec`: the IS results in counts."""
        now = self._clock.monotonic()
        elapsed = now - self._progress_at
        if not force and elapsed < self.cfg.school.progress_interval_sec:
            return
        self.flush_results()
        self._progress_at = now
        for universe, p in self._progress.items():
            if p.since == 0 and not force:
                continue
            trials, n_eff = self.ledger.counts(universe)
            self._emit("school.progress", service="school", correlation_id=universe,
                       data={"universe": universe, "trials": trials, "n_eff": round(n_eff, 3),
                             "trials_per_sec": round(p.since / elapsed, 3) if elapsed > 0 else None,
                             "evaluated": p.trials, "by_family": p.by_family, "best_sharpe": p.best_sharpe,
                             "best_strategy": p.best_strategy, "best_dsr": p.best_dsr,
                             "sr0": round(p.sr0, 6) if p.sr0 is not None else None, "retired": p.retired})
            p.since = 0
            p.retired = 0
            p.by_family = {}

    # -- ranks -------------------------------------------------------------------------------

    def rerank(self, name: str, why: str) -> None:
        """Rank a strategy again after its holdout or walk-forward verdict changed."""
        row = self._store.get_strategy(name)
        if row is None or row.rank in ("incubator", "graveyard"):
            return
        decision = decide_rank(row.is_metrics, oos_decision=row.oos_decision, wfv_decision=row.wfv_decision,
                               ranks=self.cfg.ranks, wfv_affects_rank=self.cfg.wfv.affects_rank)
        self._set_rank(row, decision.rank, f"{why}: {decision.reason}", self._clock.time(), row.is_metrics)

    def dsr_now(self, row: StrategyRow) -> float | None:
        """A strategy's DSR against its universe's ledger as it is now (stored when it moved)."""
        deflation = self.ledger.deflate(universe_name(row.symbol, row.timeframe), sharpe_per_bar=row.is_sharpe_per_bar,
                                        bars=row.is_bars, skew=row.is_skew, kurtosis=row.is_kurtosis,
                                        bars_per_year=BARS_PER_YEAR.get(row.timeframe, 6240))
        if deflation.dsr != row.is_dsr:
            self._store.set_is_dsr(row.name, deflation.dsr, self._clock.time())
        return deflation.dsr

    def count_look(self, row: StrategyRow) -> None:
        """One more look at a universe's holdout; past oos.max_looks, school.holdout_worn (once per data)."""
        universe = universe_name(row.symbol, row.timeframe)
        digest = self._data_hashes.get(universe)
        if digest is None:
            return
        looks = self._store.add_holdout_look(universe, digest)
        self._store.set_oos_data_hash(row.name, digest)
        split = self._store.holdout_split(universe, digest)
        if looks > self.cfg.oos.max_looks and split is not None and not split[2]:
            self._store.mark_holdout_worn(universe, digest)
            self._emit("school.holdout_worn", service="school", severity="warning", correlation_id=universe,
                       data={"universe": universe, "oos_looks": looks, "max_looks": self.cfg.oos.max_looks,
                             "data_hash": digest,
                             "meaning": "every OOS verdict is a look at the holdout; past this many it proves little"
                                        " until new data extends it"})

    def universe_figures(self) -> dict[str, dict[str, object]]:
        """Per universe: trials N and N_eff, holdout looks, the last audit (status, /metrics, snapshots)."""
        audits = self._store.last_audits()
        out: dict[str, dict[str, object]] = {}
        for key in self.universes():
            universe = universe_name(*key)
            n, n_eff = self.ledger.counts(universe)
            digest = self._data_hashes.get(universe)
            split = self._store.holdout_split(universe, digest) if digest else None
            audit = audits.get(universe, {})
            out[universe] = {"trials": n, "n_eff": round(n_eff, 3), "data_hash": digest, "usable": digest is not None,
                             "oos_looks": split[1] if split else 0, "holdout_start_ts": split[0] if split else None,
                             "pbo": audit.get("pbo"), "audited_at": audit.get("at"),
                             "sr0": audit.get("sr0")}
        return out

    def rerank_all(self) -> None:
        """Start-up: every A and S is judged again by the gates as configured now; what no longer holds is demoted."""
        for rank in ("S", "A"):
            for row in self._store.list_strategies(rank=rank):
                self.rerank(row.name, "re-ranked at start-up")

    def retire(self, name: str, reason: str) -> None:
        """Send a strategy to the graveyard (a quarantined OOS or WFV request: it kills workers)."""
        row = self._store.get_strategy(name)
        if row is not None and row.rank != "graveyard":
            self._set_rank(row, "graveyard", reason, self._clock.time())

    def _set_rank(self, row: StrategyRow, rank: str, reason: str, now: float,
                  metrics: dict[str, float | int | None] | None = None) -> None:
        if rank == row.rank:
            return
        self._store.set_rank(row.name, rank, now)
        universe = universe_name(row.symbol, row.timeframe)
        trials, n_eff = self.ledger.counts(universe)
        figures = metrics or row.is_metrics
        self._emit("strategy.ranked", service="school", correlation_id=row.name,
                   data={"strategy": row.name, "from_rank": row.rank, "to_rank": rank, "reason": reason,
                         "generation": row.generation, "sharpe": figures.get("sharpe"), "dsr": figures.get("dsr"),
                         "trials": trials, "n_eff": round(n_eff, 3), "universe": universe})
        self._on_ranked(row.name, row.rank, rank, reason)

    def by_rank(self) -> dict[str, int]:
        """How many strategies hold each rank."""
        return self._store.count_by_rank()
