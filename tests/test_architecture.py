"""The import direction of docs/architecture.md holds (import-linter's contracts in pyproject.toml), and no
module of swimmy/ grows past the size a reader takes in at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 400


def test_layers_contract_is_kept() -> None:
    """`lint-imports` (also run by `make lint`) passes: each layer imports only the layers below it."""
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=55, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_no_module_over_400_lines() -> None:
    sizes = {p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines()) for p in (ROOT / "swimmy").rglob("*.py")}
    assert {path: n for path, n in sizes.items() if n > MAX_LINES} == {}
