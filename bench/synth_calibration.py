"""Calibration of swimmy.backtest.synth: the best annualised Sharpe that simple rules reach on its synthetic universes.

Run:  .venv/bin/python bench/synth_calibration.py [--bars N] [--seeds N] [--strength X] [--half-life H]

For each seed: a planted trend (Gaussian noise, and GARCH-t noise as information) and two random walks
(Gaussian, GARCH-t), H1, --bars bars (30,000), all other parameters at swimmy.backtest.synth's defaults. On each, every
rule of a small grid runs through the repo's own engine (`swimmy.backtest.engine.run_backtest`, costs spread 0.8 +
slippage 0.2 pips, pip 0.0001, the config's defaults) and the best annualised Sharpe per family is printed:

  sma_cross / ema_cross   fast in {5, 10, 20, 30} x slow in {50, 100, 150, 200}
  donchian_breakout       period in {50, 100, 200, 400}
  bollinger_breakout      period in {50, 100, 200} x k in {1.5, 2.0, 2.5}
  rsi_reversion           period in {7, 14} x (lower, upper) in {(20, 80), (30, 70)}

The header gives the planted trend's variance ratios (swimmy.backtest.synth.variance_ratio: how much more a week, a
month, a year moves than the bar volatility says; 1 for a random walk). The last lines give the mean and range
over the seeds. The module docstring of
swimmy.backtest.synthseries quotes this report's sma_cross columns for seeds 0-4. A report, not a test: exit 0.
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import sys
import time
from collections.abc import Callable

from swimmy.backtest import synth
from swimmy.backtest.engine import Bars, Costs, run_backtest
from swimmy.backtest.strategies import BARS_PER_YEAR, StrategySpec

COSTS = Costs(spread_pips=0.8, slippage_pips=0.2, pip=0.0001)
GRIDS: dict[str, list[dict[str, float]]] = {
    "sma_cross": [{"fast": f, "slow": s} for f, s in itertools.product((5, 10, 20, 30), (50, 100, 150, 200))],
    "ema_cross": [{"fast": f, "slow": s} for f, s in itertools.product((5, 10, 20, 30), (50, 100, 150, 200))],
    "donchian_breakout": [{"period": p} for p in (50, 100, 200, 400)],
    "bollinger_breakout": [{"period": p, "k": k} for p, k in itertools.product((50, 100, 200), (1.5, 2.0, 2.5))],
    "rsi_reversion": [
        {"period": p, "lower": lo, "upper": up} for p in (7, 14) for lo, up in ((20.0, 80.0), (30.0, 70.0))
    ],
}
SHORT = {
    "sma_cross": "sma",
    "ema_cross": "ema",
    "donchian_breakout": "donch",
    "bollinger_breakout": "boll",
    "rsi_reversion": "rsi",
}


def best_sharpe(bars: Bars, family: str) -> tuple[float, dict[str, float]]:
    """The best annualised Sharpe over the family's grid (None counts as -inf) and its params."""
    best: tuple[float, dict[str, float]] = (-math.inf, {})
    for params in GRIDS[family]:
        m = run_backtest(StrategySpec(family, params, "SYNTH", "H1"), bars, costs=COSTS).metrics
        sharpe = m["sharpe"]
        value = float(sharpe) if sharpe is not None else -math.inf
        if value > best[0]:
            best = (value, params)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=30_000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--strength", type=float, default=synth.PLANTED_TREND_STRENGTH)
    parser.add_argument("--half-life", type=float, default=synth.PLANTED_TREND_HALF_LIFE)
    args = parser.parse_args()
    makers: dict[str, Callable[[int], synth.SynthSeries]] = {
        "trend": lambda seed: synth.planted_trend(args.bars, seed, strength=args.strength, half_life=args.half_life),
        "trend_garch": lambda seed: synth.planted_trend(
            args.bars, seed, strength=args.strength, half_life=args.half_life, kind="garch"
        ),
        "rw": lambda seed: synth.random_walk(args.bars, seed),
        "rw_garch": lambda seed: synth.random_walk(args.bars, seed, kind="garch"),
    }
    print(f"bars {args.bars}, strength {args.strength}, half-life {args.half_life} bars, costs {COSTS}")
    for label, horizon in (("week", 120), ("month", 520), ("year", BARS_PER_YEAR["H1"])):
        vr = synth.variance_ratio(horizon, strength=args.strength, half_life=args.half_life)
        print(
            f"variance ratio over a {label}: {vr:.2f} (volatility {synth.DEFAULT_VOL_PER_YEAR * math.sqrt(vr):.1%}/yr)"
        )
    columns = [f"{k}:{SHORT[f]}" for k in makers for f in GRIDS]
    print("seed  " + " ".join(f"{c:>14}" for c in columns))
    table: dict[str, list[float]] = {c: [] for c in columns}
    started = time.perf_counter()
    for seed in range(args.seeds):
        for kind, make in makers.items():
            series = make(seed)
            bars = synth.to_bars(series)
            for family in GRIDS:
                value, _ = best_sharpe(bars, family)
                table[f"{kind}:{SHORT[family]}"].append(value)
        row = [table[c][-1] for c in columns]
        print(f"{seed:>4}  " + " ".join(f"{v:>14.2f}" for v in row), flush=True)
    print("mean  " + " ".join(f"{statistics.fmean(table[c]):>14.2f}" for c in columns))
    print("sd    " + " ".join(f"{statistics.stdev(table[c]) if len(table[c]) > 1 else 0.0:>14.2f}" for c in columns))
    print("min   " + " ".join(f"{min(table[c]):>14.2f}" for c in columns))
    print("max   " + " ".join(f"{max(table[c]):>14.2f}" for c in columns))
    print(f"({time.perf_counter() - started:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
