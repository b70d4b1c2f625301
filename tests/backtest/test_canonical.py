"""The canonical universe file: written atomically, mapped read-only, shared, hashed by its bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from swimmy.backtest.canonical import canonical_path, open_canonical, read_sidecar, read_volume, write_canonical
from swimmy.backtest.data import clear_cache, data_hash, data_path, load_bars
from swimmy.errors import DataError


def bars(n: int = 500, start: int = 1_483_308_000) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    close = 1.1 + np.cumsum(rng.normal(0, 1e-3, n))
    open_ = np.concatenate([[close[0]], close[:-1]])
    high = np.maximum(open_, close) + 2e-4
    low = np.minimum(open_, close) - 2e-4
    return {"ts": start + 3600 * np.arange(n, dtype=np.int64), "open_": open_, "high": high, "low": low,
            "close": close, "volume": rng.integers(1, 100, n).astype(np.float64)}


def test_written_bars_map_back_exactly_as_read_only_views(tmp_path: Path) -> None:
    """Every column round-trips bit for bit (the int64 timestamps too); the arrays are views of the file."""
    b = bars()
    path = canonical_path(tmp_path, "EURUSD", "H1")
    sidecar = write_canonical(path, b["ts"], b["open_"], b["high"], b["low"], b["close"], b["volume"],
                              meta={"source": "/x/EURUSD.csv", "format": "mt4", "tz": "Europe/Athens"})
    got = open_canonical(path)
    assert np.array_equal(got.timestamps, b["ts"]) and got.timestamps.dtype == np.int64
    for name in ("open", "high", "low", "close"):
        assert np.array_equal(getattr(got, name), b[name if name != "open" else "open_"])
    assert np.array_equal(read_volume(path), b["volume"])
    assert not got.close.flags.writeable
    assert isinstance(got.close.base, np.memmap) or isinstance(got.close.base.base, np.memmap)
    assert sidecar["bars"] == 500 and sidecar["first_ts"] == int(b["ts"][0]) and sidecar["format"] == "mt4"
    assert read_sidecar(path) == sidecar
    assert sidecar["data_hash"] == data_hash(tmp_path, "EURUSD", "H1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["EURUSD_H1.json", "EURUSD_H1.npy"], "no temp file left"


def test_the_canonical_file_wins_over_a_csv_and_load_bars_maps_it(tmp_path: Path) -> None:
    """With both a .npy and a .csv, the universe is the .npy; a rewrite gives a new hash and new bars."""
    clear_cache()
    (tmp_path / "EURUSD_H1.csv").write_text("timestamp,open,high,low,close\n1483308000,1.1,1.2,1.0,1.1\n")
    assert data_path(tmp_path, "EURUSD", "H1").suffix == ".csv"
    b = bars()
    path = canonical_path(tmp_path, "EURUSD", "H1")
    write_canonical(path, b["ts"], b["open_"], b["high"], b["low"], b["close"], b["volume"], meta={})
    assert data_path(tmp_path, "EURUSD", "H1") == path
    first_hash = data_hash(tmp_path, "EURUSD", "H1")
    assert len(load_bars(tmp_path, "EURUSD", "H1")) == 500
    b = bars(300)
    write_canonical(path, b["ts"], b["open_"], b["high"], b["low"], b["close"], b["volume"], meta={})
    assert len(load_bars(tmp_path, "EURUSD", "H1")) == 300
    assert data_hash(tmp_path, "EURUSD", "H1") != first_hash


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (lambda p: p.write_bytes(b"not numpy"), r"not a canonical universe file \(numpy \.npy\)"),
        (lambda p: np.save(p, np.zeros((5, 3))), r"expected a C-ordered float64 array of shape \(6, n\)"),
        (lambda p: np.save(p, np.zeros((6, 3), dtype=np.float32)), "got float32"),
        (lambda p: np.save(p, np.zeros((6, 0))), "no bars"),
    ],
)
def test_a_file_that_is_not_canonical_is_a_data_error_naming_it(tmp_path: Path, content: object,
                                                                message: str) -> None:
    path = tmp_path / "EURUSD_H1.npy"
    content(path)  # type: ignore[operator]
    with pytest.raises(DataError, match=message) as info:
        open_canonical(path)
    assert str(path) in str(info.value)


def test_unordered_timestamps_in_a_canonical_file_are_refused(tmp_path: Path) -> None:
    b = bars(10)
    b["ts"][5] = b["ts"][4]
    path = canonical_path(tmp_path, "EURUSD", "H1")
    write_canonical(path, b["ts"], b["open_"], b["high"], b["low"], b["close"], b["volume"], meta={})
    with pytest.raises(DataError, match="not strictly increasing at bar 5"):
        open_canonical(path)
