"""Progress of long offline work (`data import`, `backtest`): a rich bar on stderr, only when stderr is a terminal.

Off a terminal (a pipe, a file, a test's captured stderr, systemd) nothing at all is drawn, so output stays
exactly as quiet as without a bar. The work talks to a `Steps` either way and never asks which.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)


class Steps:
    """What long work tells its progress display: what it is doing now, and how far it has got."""

    def __init__(self, bar: Progress | None = None, task: TaskID | None = None) -> None:
        self._bar = bar
        self._task = task

    @property
    def shown(self) -> bool:
        """True when a bar is being drawn."""
        return self._bar is not None

    def update(self, description: str) -> None:
        """Say what is being done now (nothing completes)."""
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, description=description, refresh=True)

    def advance(self, description: str | None = None, steps: float = 1) -> None:
        """`steps` more are done; optionally say what comes next."""
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, advance=steps, description=description, refresh=True)

    def echo(self, line: str, out: TextIO) -> None:
        """Print a line of results to `out`; above the bar when both share the terminal, so neither garbles."""
        if self._bar is not None and _isatty(out):
            self._bar.console.print(line, markup=False, highlight=False, emoji=False, soft_wrap=True)
        else:
            print(line, file=out, flush=True)


NO_STEPS = Steps()  # for callers that show no progress


@contextmanager
def progress(description: str, total: float | None, *, console: Console | None = None,
             transient: bool = False) -> Iterator[Steps]:
    """A bar of `total` steps (None: a spinner only) while the block runs, or a `Steps` that draws nothing.

    Without `console`, the bar goes to stderr and only when stderr is a terminal (rich's detection, and the
    stream's own isatty(), so FORCE_COLOR alone never puts escape codes into a log). A given `console` is
    trusted: `Console(file=StringIO(), force_terminal=True)` shows the bar, for tests.
    """
    if console is None:
        if not _isatty(sys.stderr):
            yield NO_STEPS
            return
        console = Console(stderr=True)
    if not console.is_terminal or console.is_dumb_terminal:
        yield NO_STEPS
        return
    bar = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}", style="progress.description", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=transient,
        redirect_stdout=False,  # stdout keeps its own destination: `> file` must not move results to stderr
        redirect_stderr=False,
    )
    with bar:
        yield Steps(bar, bar.add_task(description, total=total))


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False
