"""Progress for long command-line work, on stderr so that stdout stays the command's output.

On a terminal a bar redraws in place; elsewhere (cron, CI, a pipe) a plain line is written every
few seconds and when the work ends, so logs show progress without a flood of carriage returns::

    with Progress("storing crashes", total=len(crashes)) as progress:
        for crash in crashes:
            store(crash)
            progress.advance()
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from typing import IO, Any


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Progress:
    """Counts work done towards ``total`` (None when unknown) and shows it on ``stream``.

    ``interactive`` defaults to whether ``stream`` is a terminal; ``interval`` is the seconds
    between lines when it is not. ``clock`` is injectable for tests.
    """

    WIDTH = 30
    REDRAW_SECONDS = 0.1

    def __init__(
        self,
        label: str,
        total: int | None = None,
        stream: IO[str] | None = None,
        interactive: bool | None = None,
        interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        if interactive is None:
            isatty = getattr(self.stream, "isatty", None)
            interactive = bool(isatty and isatty())
        self.interactive = interactive
        # a line longer than the terminal wraps, and "\r" then redraws only its last part
        self.columns = shutil.get_terminal_size((80, 24)).columns - 1 if interactive else 0
        self.interval = interval
        self.clock = clock
        self.started = clock()
        self._lastShown = float("-inf")
        self._finished = False
        self._lineWidth = 0

    def advance(self, count: int = 1) -> None:
        """Record ``count`` more units of work done."""
        self.update(self.done + count)

    def update(self, done: int, total: int | None = None) -> None:
        """Record that ``done`` units are done (and, if given, a new ``total``)."""
        self.done = done
        if total is not None:
            self.total = total
        now = self.clock()
        if now - self._lastShown >= (self.REDRAW_SECONDS if self.interactive else self.interval):
            self._show(now)

    def finish(self, message: str | None = None) -> None:
        """Show the final state (or ``message``) on a line of its own; idempotent."""
        if self._finished:
            return
        self._finished = True
        now = self.clock()
        text = message if message is not None else self.describe(now, final=True)
        if self.interactive:
            text = text[: self.columns]
            self._write("\r" + text.ljust(self._lineWidth) + "\n")
        else:
            self._write(text + "\n")

    def describe(self, now: float, final: bool = False) -> str:
        """The status text: label, bar or count, rate and what is left."""
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        parts = [self.label]
        if self.total:
            fraction = min(max(self.done / self.total, 0.0), 1.0)
            if self.interactive:
                filled = int(fraction * self.WIDTH)
                parts.append("[" + "#" * filled + "." * (self.WIDTH - filled) + "]")
            parts.append(f"{fraction:4.0%} {self.done}/{self.total}")
        else:
            parts.append(str(self.done))
        if final:
            parts.append(f"in {_duration(elapsed)}")
        elif self.done and elapsed >= 0.5:
            parts.append(f"{rate:.0f}/s")
            if self.total and self.total > self.done:
                parts.append(f"{_duration((self.total - self.done) / rate)} left")
        return " ".join(parts)

    def _show(self, now: float) -> None:
        self._lastShown = now
        text = self.describe(now)
        if self.interactive:
            text = text[: self.columns]
            self._write("\r" + text.ljust(self._lineWidth))
            self._lineWidth = max(self._lineWidth, len(text))
        else:
            self._write(text + "\n")

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.finish()
