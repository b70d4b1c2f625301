"""A school for the view tests: one A strategy on the shipped EURUSD sample, breeding off, the metrics listener on.

The one milestone of such a daemon is the OOS verdict a test asks for (`swimmy oos request`), so the view tests
wait on that, never on the school's luck.
"""

from __future__ import annotations

import time
from pathlib import Path

from helpers import free_port, write_config

from swimmy.backtest.strategies import StrategySpec
from swimmy.config import load_config
from swimmy.school.catalog import row_for
from swimmy.store import Store

SPEC = StrategySpec("ema_cross", {"fast": 12, "slow": 48}, "EURUSD", "H1", 40.0, 80.0)
NAME = SPEC.name()


def seeded(tmp_path: Path, **sections: dict[str, object]) -> Path:
    """A config with one worker and the metrics listener, its store holding SPEC as an A candidate."""
    path = write_config(tmp_path, {"workers": {"embedded": 1}, "metrics": {"listen": f"127.0.0.1:{free_port()}"},
                                   **sections})
    cfg = load_config(path)
    cfg.school.db_path.parent.mkdir(parents=True, exist_ok=True)
    with Store.open(cfg.school.db_path) as store:
        store.add_strategy(row_for(SPEC, time.time()))
        store.record_is_result(NAME, {"sharpe": 1.9, "trades": 80, "psr": 0.99, "profit_factor": 1.6,
                                      "win_rate": 0.55, "max_drawdown": 0.05}, "A", time.time())
        store.set_is_dsr(NAME, 0.97, time.time())
    return path
