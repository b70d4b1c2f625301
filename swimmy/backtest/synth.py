"""Synthetic universes on disk, whose answer is known, to prove the school's statistical gates (SPEC §5).

The series come from swimmy/backtest/synthseries.py (the processes, how bars are built, the calibration of the
planted trend) and are re-exported here, so callers import this one module. Here a series becomes engine Bars and
a `timestamp,open,high,low,close,volume` CSV whose prices read back as the same floats (`to_bars`, `write_csv`),
a universe is written with its answer key `SYMBOL_TF.csv.synthetic.json` (`generate`), and the config's
`[synthetic.SYMBOL]` universes are kept the same on every host (`ensure_synthetic`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

import numpy as np
import orjson

from swimmy.backtest.data import data_path, universe_dir
from swimmy.backtest.engine import Bars
from swimmy.backtest.synthseries import (
    DEFAULT_BARS,
    DEFAULT_START_PRICE,
    DEFAULT_VOL_PER_YEAR,
    PLANTED_TREND_HALF_LIFE,
    PLANTED_TREND_STRENGTH,
    TIMEFRAME_SECONDS,
    FloatArray,
    GenerateKind,
    IntArray,
    NoiseKind,
    SynthSeries,
    planted_trend,
    random_walk,
    timestamps,
    variance_ratio,
)
from swimmy.config import Config
from swimmy.errors import ConfigError, DataError, UsageError
from swimmy.files import atomic_write

__all__ = [  # this module's own names, and the generators' that callers import from here
    "DEFAULT_DECIMALS",
    "DEFAULT_START_PRICE",
    "DEFAULT_VOL_PER_YEAR",
    "GENERATOR_VERSION",
    "PLANTED_TREND_HALF_LIFE",
    "PLANTED_TREND_STRENGTH",
    "TIMEFRAME_SECONDS",
    "GenerateKind",
    "NoiseKind",
    "SynthSeries",
    "ensure_synthetic",
    "generate",
    "is_synthetic",
    "marker_path",
    "planted_trend",
    "random_walk",
    "synthetic_params",
    "timestamps",
    "to_bars",
    "variance_ratio",
    "write_csv",
]

DEFAULT_DECIMALS: Final = 6

#: The file name pattern of symbols (as swimmy.backtest.strategies validates them): nothing that leaves the data dir.
_SYMBOL: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._]{0,31}")


def to_bars(series: SynthSeries, *, decimals: int = DEFAULT_DECIMALS, source: str = "") -> Bars:
    """The series as engine Bars, prices rounded to `decimals` exactly as `write_csv` writes them.

    Rounding is monotone, so low <= open, close <= high still holds; the bars are re-clamped anyway, and
    open[t] == close[t-1] survives because both are the same number rounded. `read_csv` of the file that
    `write_csv` makes from these bars gives back the same floats.
    """
    o, h, lo, c = (_round(a, decimals) for a in (series.open, series.high, series.low, series.close))
    h = np.maximum(h, np.maximum(o, c))
    lo = np.minimum(lo, np.minimum(o, c))
    return Bars(timestamps=series.timestamps.copy(), open=o, high=h, low=lo, close=c, source=source)


def write_csv(
    path: Path,
    bars: Bars | SynthSeries,
    *,
    volume: IntArray | None = None,
    decimals: int = DEFAULT_DECIMALS,
) -> Path:
    """Write `timestamp,open,high,low,close,volume` (Unix seconds) atomically: a temp file, then os.replace.

    A SynthSeries is rounded by `to_bars` first and brings its own volume; plain Bars take `volume` or 0.
    Prices are written with `decimals` places after re-clamping, so `swimmy.backtest.data.read_csv` reads
    consistent OHLC back.
    """
    if isinstance(bars, SynthSeries):
        volume = bars.volume if volume is None else volume
        bars = to_bars(bars, decimals=decimals)
    n = len(bars)
    vol = np.zeros(n, dtype=np.int64) if volume is None else np.asarray(volume, dtype=np.int64)
    if len(vol) != n:
        raise ValueError(f"volume has {len(vol)} values for {n} bars")
    o, h, lo, c = (_round(a, decimals) for a in (bars.open, bars.high, bars.low, bars.close))
    h = np.maximum(h, np.maximum(o, c))
    lo = np.minimum(lo, np.minimum(o, c))
    if n and not (lo > 0).all():
        raise DataError(f"{path}: a price rounds to 0 at {decimals} decimals")
    d = decimals
    columns = (bars.timestamps.tolist(), o.tolist(), h.tolist(), lo.tolist(), c.tolist(), vol.tolist())
    lines = ["timestamp,open,high,low,close,volume"]
    lines.extend(f"{t},{a:.{d}f},{b:.{d}f},{x:.{d}f},{y:.{d}f},{v}" for t, a, b, x, y, v in zip(*columns, strict=True))
    _write_atomic(path, "\n".join(lines) + "\n")
    return path


def _write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` atomically (mode 0644: a data file like any other)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text.encode("utf-8"), mode=0o644)


def generate(
    kind: GenerateKind,
    symbol: str,
    timeframe: str,
    n_bars: int = DEFAULT_BARS,
    seed: int = 0,
    *,
    data_dir: Path,
    noise: NoiseKind = "gaussian",
    start_price: float = DEFAULT_START_PRICE,
    vol_per_year: float = DEFAULT_VOL_PER_YEAR,
    strength: float = PLANTED_TREND_STRENGTH,
    half_life: float = PLANTED_TREND_HALF_LIFE,
) -> Path:
    """Generate a synthetic universe and write it to `data_dir/SYMBOL_TF.csv` (what `swimmy data generate` does).

    `kind` is "random_walk" (nothing to find) or "planted_trend" (slow trend followers must be found);
    `strength` and `half_life` apply to planted_trend only. Name synthetic symbols plainly, e.g. `SYNTH_RW`
    or `SYNTH_TREND`, so that nobody takes them for a market. Returns the path written.

    Next to the file goes its answer key, `SYMBOL_TF.csv.synthetic.json` (`synthetic_params`): what generated
    it. A file that exists without one was not made here (real data, an import): UsageError, never overwritten.
    """
    if not isinstance(symbol, str) or not _SYMBOL.fullmatch(symbol):
        raise ValueError(f"bad symbol {symbol!r}: up to 32 letters, digits, '.' or '_', starting alphanumeric")
    if kind == "random_walk":
        series = random_walk(
            n_bars, seed, timeframe=timeframe, start_price=start_price, vol_per_year=vol_per_year, kind=noise
        )
    elif kind == "planted_trend":
        series = planted_trend(
            n_bars,
            seed,
            timeframe=timeframe,
            strength=strength,
            half_life=half_life,
            start_price=start_price,
            vol_per_year=vol_per_year,
            kind=noise,
        )
    else:
        raise ValueError(f"unknown kind {kind!r}: expected random_walk or planted_trend")
    path = data_path(data_dir, symbol, timeframe)
    marker = marker_path(path)
    params = synthetic_params(
        kind, timeframe, n_bars, seed, noise=noise, start_price=start_price, vol_per_year=vol_per_year,
        strength=strength, half_life=half_life,
    )
    text = orjson.dumps(params, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n"
    if path.exists() or path.is_symlink():
        if not marker.exists():
            raise UsageError(f"refusing to overwrite {path}: it exists and was not generated by swimmy "
                             f"(no {marker.name} next to it); move it away or choose another symbol or directory")
        # Bars first, then the answer key: a crash in between leaves a key that does not match the
        # bars' parameters, which ensure_synthetic regenerates.
        write_csv(path, series)
        _write_atomic(marker, text)
    else:
        # The key first: a crash in between leaves a key without bars (regenerated), never bars that look real.
        _write_atomic(marker, text)
        write_csv(path, series)
    return path


# --- synthetic universes of a config ---------------------------------------------------------------------------------

#: Bump when the generators write other bytes for the same parameters: ensure_synthetic then regenerates the
#: files an older version wrote, so that every host holds the same data (and data_hash) for a universe.
GENERATOR_VERSION: Final = 2  # 2: exact Brownian-bridge extremes between sub-steps (stops had an edge on noise)


def marker_path(path: Path) -> Path:
    """The answer key next to a generated file: `SYMBOL_TF.csv.synthetic.json`."""
    return path.with_name(path.name + ".synthetic.json")


def synthetic_params(
    kind: str,
    timeframe: str,
    n_bars: int,
    seed: int,
    *,
    noise: str = "gaussian",
    start_price: float = DEFAULT_START_PRICE,
    vol_per_year: float = DEFAULT_VOL_PER_YEAR,
    strength: float = PLANTED_TREND_STRENGTH,
    half_life: float = PLANTED_TREND_HALF_LIFE,
) -> dict[str, object]:
    """Everything that decides a generated file's bytes (what its `.synthetic.json` holds)."""
    out: dict[str, object] = {
        "synthetic": True,
        "generator_version": GENERATOR_VERSION,
        "kind": kind,
        "timeframe": timeframe,
        "bars": int(n_bars),
        "seed": int(seed),
        "noise": noise,
        "start_price": float(start_price),
        "vol_per_year": float(vol_per_year),
        "decimals": DEFAULT_DECIMALS,
    }
    if kind == "planted_trend":
        out["strength"] = float(strength)
        out["half_life"] = float(half_life)
    return out


def is_synthetic(path: Path) -> bool:
    """Whether `path` was written by `generate` (its answer key is next to it)."""
    return marker_path(path).exists()


def ensure_synthetic(cfg: Config) -> list[Path]:
    """Generate the config's `[synthetic.SYMBOL]` universes that are traded and missing or stale; the paths written.

    A universe is traded when its symbol is in `school.symbols`; it is written at the school's timeframe into
    `universe_dir` (`school.synthetic_dir`, else `school.data_dir`). A file whose answer key says the same
    parameters is left alone, so a second call writes nothing; a key with other parameters (the config's seed,
    kind, bars or noise changed, or a newer generator) is regenerated, so that the daemon and every worker, on
    any host, hold the same bytes and the same data_hash. A file without a key is not ours: left alone.
    ConfigError (exit 2) naming the file when it cannot be written.
    """
    written: list[Path] = []
    for symbol, universe in cfg.synthetic.items():
        if symbol not in cfg.school.symbols:
            continue
        for timeframe in _timeframes(cfg):
            directory = universe_dir(cfg, symbol)
            path = data_path(directory, symbol, timeframe)
            wanted = synthetic_params(universe.kind, timeframe, universe.bars, universe.seed, noise=universe.noise)
            if path.exists() and _read_marker(marker_path(path)) in (wanted, None):
                continue  # up to date, or not ours
            try:
                generate(
                    universe.kind, symbol, timeframe, universe.bars, universe.seed, data_dir=directory,
                    noise=universe.noise,
                )
            except OSError as exc:
                raise ConfigError([f"synthetic.{symbol}: cannot write the synthetic universe {symbol} {timeframe} "
                                   f"to {path}: {exc.strerror or exc}"]) from exc
            written.append(path)
    return written


def _timeframes(cfg: Config) -> tuple[str, ...]:
    """The timeframes the school trades (`school.timeframes` where the config has it, else `school.timeframe`)."""
    return cfg.school.timeframes


def _read_marker(marker: Path) -> dict[str, object] | None:
    """The answer key's parameters; {} when it is unreadable (then regenerate); None when there is none."""
    try:
        raw = marker.read_bytes()
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _round(a: FloatArray, decimals: int) -> FloatArray:
    """Round to `decimals` places as rint(a * 10^d) / 10^d: the double nearest the decimal that `%.{d}f` prints."""
    scale = 10.0**decimals
    out: FloatArray = np.rint(np.asarray(a, dtype=np.float64) * scale) / scale
    return out
