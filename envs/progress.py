"""The one progress display of hrm-spawn (build, collect, training, live eval).

On a terminal: a rich bar (description, bar, done/total, elapsed, the latest figures). Anywhere else
(a log file, CI, a pipe): a plain line at the start, at every tenth of the way and at the end, so a
log file gets about a dozen readable lines instead of hundreds of ``\\r`` frames. Disabled: nothing.

    with progress("collect (spawn)", total=len(jobs)) as bar:
        for job in jobs:
            ...
            bar.update(1, loss=0.12)

No torch or trainers import: the envs layer uses it too.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

PLAIN_STEPS = 10  # plain lines per run besides the first: one per tenth of the total


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class Progress:
    def __init__(
        self,
        title: str,
        total: int | None,
        initial: int = 0,
        enabled: bool = True,
        stream: IO[str] | None = None,
        unit: str = "",
    ) -> None:
        self.title, self.total, self.done, self.enabled = title, total, initial, enabled
        self.stream = stream or sys.stderr
        self.unit = f" {unit}" if unit else ""
        self.figures: dict[str, Any] = {}
        self._bar: Any = None
        self._task: Any = None
        self._next_line = 0
        self._start = 0.0

    # -- context ---------------------------------------------------------------------------------
    def __enter__(self) -> Progress:
        self._start = time.monotonic()
        if not self.enabled:
            return self
        if self.stream.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[figures]}"),
                console=Console(file=self.stream),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.title, total=self.total, completed=self.done, figures="")
        else:
            self._line()
            self._advance_threshold()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif self._next_line is not None:
            if self.done != self._last_done:
                self._line()
            self._next_line = None  # closed: no more lines

    # -- updates ---------------------------------------------------------------------------------
    def update(self, n: int = 1, **figures: Any) -> None:
        """``n`` more done; ``figures`` (loss=..., reward=...) shown beside the count."""
        self.done += n
        self.figures.update(figures)
        if not self.enabled:
            return
        if self._bar is not None:
            shown = "  ".join(f"{k}={_fmt(v)}" for k, v in self.figures.items())
            self._bar.update(self._task, advance=n, figures=shown)
        elif self._next_line is not None and self.done >= self._next_line:
            self._line()
            self._advance_threshold()

    def set_figures(self, **figures: Any) -> None:
        self.update(0, **figures)

    set_postfix = set_figures  # tqdm's name, so a tqdm call site switches by changing its constructor

    # -- plain lines -----------------------------------------------------------------------------
    _last_done = -1

    def _advance_threshold(self) -> None:
        if not self.total:
            self._next_line = self.done + 1_000_000_000  # unknown total: start and end lines only
            return
        step = max(1, -(-self.total // PLAIN_STEPS))
        self._next_line = (self.done // step + 1) * step

    def _line(self) -> None:
        count = f"{self.done}/{self.total}" if self.total else f"{self.done}"
        elapsed = time.monotonic() - self._start
        figures = "".join(f"  {k}={_fmt(v)}" for k, v in self.figures.items())
        print(f"{self.title}: {count}{self.unit} ({elapsed:.0f} s){figures}", file=self.stream, flush=True)
        self._last_done = self.done


def progress(
    title: str,
    total: int | None,
    initial: int = 0,
    enabled: bool = True,
    stream: IO[str] | None = None,
    unit: str = "",
) -> Progress:
    """A progress display for ``total`` items (None: unknown); use as a context manager."""
    return Progress(title, total, initial, enabled, stream, unit)
