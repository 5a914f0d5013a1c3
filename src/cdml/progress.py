"""Progress of long steps (embedding, mining, neighbours, k-means, index building) on
standard error: a bar on a terminal, a line with the time left in logs."""

from __future__ import annotations

import threading
import time
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as _RichProgress

# Between two progress lines where standard error is not a terminal (logs, schedulers).
REPORT_SECONDS = 30.0

_stderr = Console(stderr=True)


class Progress:
    """Context manager showing the progress of a step of ``total`` units (``None``: one
    blocking call, e.g. faiss's k-means), from rank 0 only.

    On a terminal: a rich bar with the time elapsed and left (a spinner when ``total`` is
    None), removed at the end. Elsewhere: every ``REPORT_SECONDS`` a line such as
    ``neighbours: 12,288 of 35,000 (31 s, about 57 s left)``, or for a blocking call
    ``k-means: 30 s so far (about 41 s in all)`` with ``estimate`` seconds; a step shorter
    than that prints nothing. A thread writes the lines, so they keep coming while a library
    call holds the main thread. ``advance(n)`` counts ``n`` finished units.

    Args:
        description: what runs, e.g. ``"k-means"``.
        total: units of work, or None.
        estimate: expected seconds of a step without ``total`` (shown in its lines).
        enabled: False shows nothing.
    """

    def __init__(
        self,
        description: str,
        total: int | None = None,
        estimate: float | None = None,
        enabled: bool = True,
    ) -> None:
        self.description = description
        self.total = total
        self.estimate = estimate
        self.enabled = enabled and _rank() == 0
        self.done = 0
        self._start = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bar: _RichProgress | None = None

    def __enter__(self) -> Progress:
        self._start = time.perf_counter()
        if not self.enabled:
            return self
        if _stderr.is_terminal:
            self._bar = _RichProgress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=_stderr,
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total)
        else:
            self._thread = threading.Thread(target=self._report, daemon=True)
            self._thread.start()
        return self

    def advance(self, amount: int = 1) -> None:
        self.done += amount
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._bar is not None:
            self._bar.stop()

    def line(self) -> str:
        """The progress line of now."""
        elapsed = time.perf_counter() - self._start
        if self.total is None:
            expected = f" (about {self.estimate:.0f} s in all)" if self.estimate else ""
            return f"{self.description}: {elapsed:.0f} s so far{expected}"
        left = (
            f", about {elapsed / self.done * (self.total - self.done):.0f} s left"
            if self.done
            else ""
        )
        return f"{self.description}: {self.done:,} of {self.total:,} ({elapsed:.0f} s{left})"

    def _report(self) -> None:
        while not self._stop.wait(REPORT_SECONDS):
            _stderr.print(self.line(), highlight=False, soft_wrap=True)


def _rank() -> int:
    from lightning.pytorch.utilities import rank_zero_only

    return rank_zero_only.rank
