"""The trials ledger (SPEC §5): every distinct rule set whose IS backtest finished, counted once per universe.

Per trial the store keeps a row (rules hash, family, generation, per-bar Sharpe, skewness, kurtosis,
bars, time and the returns sketch) for the most recent `keep_rows`; beyond them only aggregates
remain: the count N and the running sums from which N_eff is computed, so an update costs the same
at 10^7 trials as at 10^3 (`docs/statistics.md`).

N_eff comes from the correlation of the trials' returns, seen through their sketches (block sums of
per-bar returns over the universe's IS range, aligned across trials): the number of independent trials
whose DSR gate sits at the 95% quantile of the best trial's null statistic, drawn by the Gaussian
multiplier bootstrap of the maximum (swimmy/school/stats.py, docs/statistics.md). Its aggregate, 512
running maxima, is updated per trial and never needs the rows, so N_eff covers every trial ever
counted, beyond the rows kept; the mean pairwise correlation is kept beside it for reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from swimmy.backtest.metrics import SKETCH_BLOCKS
from swimmy.school.stats import NullMaxima, deflated_sharpe_ratio, expected_max_sharpe, null_variance
from swimmy.store import Store, TrialRow

KEEP_ROWS = 1_000_000  # per-trial rows per universe; older ones live on in the aggregates
PRUNE_EVERY = 10_000  # trials between prunes of a universe's rows
FloatArray = npt.NDArray[np.float64]


@dataclass
class Aggregate:
    """The running sums of one universe's trials from which N_eff is computed (order-free, constant size).

    `maxima` is swimmy.school.stats.NullMaxima: for 512 fixed Gaussian multiplier draws, the largest
    projection of any trial's unit sketch so far (the best trial's null statistic, drawn with the trials'
    correlation); N_eff follows from its 95% quantile. `zsum` (the sum of the unit sketches) gives the mean
    pairwise correlation, reported beside it.
    """

    maxima: NullMaxima = field(default_factory=NullMaxima.empty)
    zsum: FloatArray = field(default_factory=lambda: np.zeros(SKETCH_BLOCKS))

    @property
    def n(self) -> int:
        return self.maxima.n

    def add(self, sums: FloatArray) -> None:
        """Add trials' sketches (rows = trials, columns = block sums)."""
        x = np.atleast_2d(np.asarray(sums, dtype=np.float64))
        if x.size == 0 or x.shape[1] != SKETCH_BLOCKS:
            return
        self.maxima = self.maxima.add(x)
        x = x[np.isfinite(x).all(axis=1)]
        z = x - x.mean(axis=1, keepdims=True)
        norms = np.sqrt(np.einsum("ij,ij->i", z, z))
        ok = norms > 0
        self.zsum += (z[ok] / norms[ok][:, None]).sum(axis=0)

    def n_eff(self, level: float) -> float:
        """N_eff for the DSR gate at `level` (stats.effective_trials_from_maxima)."""
        return self.maxima.n_eff(level)

    @property
    def rho_bar(self) -> float | None:
        """The mean pairwise correlation of the trials' sketches; None below two trials."""
        n = self.n
        if n < 2:
            return None
        return float((self.zsum @ self.zsum - n) / (n * (n - 1)))

    def to_bytes(self) -> bytes:
        m = self.maxima
        head = [float(m.n), float(m.skipped), float(m.blocks), float(m.seed), float(m.draws)]
        return np.concatenate((head, self.zsum, m.maxima)).astype(np.float64).tobytes()

    @classmethod
    def from_bytes(cls, blob: bytes | None) -> Aggregate:
        if not blob:
            return cls()
        a = np.frombuffer(blob, dtype=np.float64)
        if a.size < 5 + SKETCH_BLOCKS:
            return cls()
        n, skipped, blocks, seed, draws = (int(v) for v in a[:5])
        if blocks != SKETCH_BLOCKS or a.size != 5 + SKETCH_BLOCKS + draws:
            return cls()  # another layout (an older version): N stays counted, N_eff restarts
        maxima = NullMaxima(a[5 + SKETCH_BLOCKS:].copy(), n, skipped, blocks, seed)
        return cls(maxima, a[5:5 + SKETCH_BLOCKS].copy())


def n_eff_from(trials: int, rho_bar: float | None) -> float:
    """The average-correlation estimate rho + (1 - rho) N (Bailey and López de Prado 2014), clamped to [1, N].

    Not the school's N_eff (see docs/statistics.md: it shuts the gate); kept for comparison in reports.
    """
    if trials < 1:
        return 1.0
    if rho_bar is None:
        return float(trials)
    rho = min(max(rho_bar, 0.0), 1.0)  # negative mean correlation (mirror rules) counts as independence
    return min(max(rho + (1.0 - rho) * trials, 1.0), float(trials))


def sketch_blob(sketch: dict[str, list[float]] | None) -> bytes | None:
    """A result's sketch as stored (256 bytes): float32 block sums, then float32 block sums of squares."""
    if not sketch:
        return None
    sums, sumsqs = sketch.get("sums"), sketch.get("sumsqs")
    if not isinstance(sums, list) or not isinstance(sumsqs, list):
        return None
    if len(sums) != SKETCH_BLOCKS or len(sumsqs) != SKETCH_BLOCKS:
        return None
    return np.asarray([*sums, *sumsqs], dtype=np.float32).tobytes()


def blob_sketch(blob: bytes | None) -> tuple[FloatArray, FloatArray] | None:
    """(sums, sumsqs) of a stored sketch."""
    if not blob or len(blob) != SKETCH_BLOCKS * 8:
        return None
    a = np.frombuffer(blob, dtype=np.float32).astype(np.float64)
    return a[:SKETCH_BLOCKS], a[SKETCH_BLOCKS:]


@dataclass(frozen=True)
class Deflation:
    """A strategy's DSR and what it was judged against (SR0 in annualised units)."""

    dsr: float | None
    sr0: float
    trials: int
    n_eff: float


class Ledger:
    """The trials of every universe: counted, sketched, deflating every IS Sharpe against N_eff."""

    def __init__(self, store: Store, *, keep_rows: int = KEEP_ROWS, level: float = 0.95) -> None:
        self._store = store
        self.keep_rows = keep_rows
        self.level = level  # the DSR gate N_eff is calibrated for: [ranks.A].dsr
        self._aggregates: dict[str, Aggregate] = {}
        self._since_prune: dict[str, int] = {}

    def aggregate(self, universe: str) -> Aggregate:
        if universe not in self._aggregates:
            self._aggregates[universe] = Aggregate.from_bytes(self._store.trial_aggregate(universe))
        return self._aggregates[universe]

    def record(self, rows: list[TrialRow], now: float) -> None:
        """Add IS results as trials (new rule sets only) and update each universe's aggregates."""
        if not rows:
            return
        new = self._store.add_trials(rows)
        if new == 0:
            return
        by_universe: dict[str, list[TrialRow]] = {}
        for r in rows:
            by_universe.setdefault(r.universe, []).append(r)
        for universe, trials in by_universe.items():
            sketches = [s[0] for s in (blob_sketch(t.sketch) for t in trials) if s is not None]
            aggregate = self.aggregate(universe)
            if sketches:
                aggregate.add(np.vstack(sketches))
            self._store.set_n_eff(universe, aggregate.n_eff(self.level), aggregate.rho_bar, now,
                                  aggregate.to_bytes())
            self._since_prune[universe] = self._since_prune.get(universe, 0) + len(trials)
            if self._since_prune[universe] >= PRUNE_EVERY:
                self._since_prune[universe] = 0
                self._store.prune_trials(universe, self.keep_rows)

    def counts(self, universe: str) -> tuple[int, float]:
        """(N, N_eff) of a universe now."""
        n, n_eff, _ = self._store.trial_totals(universe)
        return n, n_eff if n_eff is not None else 1.0

    def deflate(self, universe: str, *, sharpe_per_bar: float | None, bars: int | None, skew: float | None,
                kurtosis: float | None, bars_per_year: float, counts: tuple[int, float] | None = None) -> Deflation:
        """The DSR of an IS result against the universe's ledger as it is now (V = 1/(T-1), SPEC §5).

        `counts`: the universe's (N, N_eff) when the caller has just read them (a batch of results).
        """
        n, n_eff = counts if counts is not None else self.counts(universe)
        if sharpe_per_bar is None or bars is None or bars < 3 or skew is None or kurtosis is None:
            return Deflation(None, 0.0, n, n_eff)
        variance = null_variance(bars)
        sr0 = expected_max_sharpe(n_eff, variance) * math.sqrt(bars_per_year)
        try:
            dsr = deflated_sharpe_ratio(sharpe_per_bar, bars, skew, kurtosis, n_eff, variance)
        except ValueError:
            dsr = None
        return Deflation(dsr, sr0, n, n_eff)
