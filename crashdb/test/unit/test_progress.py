"""The progress helper: a redrawn bar on a terminal, periodic plain lines elsewhere."""

from __future__ import annotations

import io

from crashdb.app.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_non_terminal_writes_a_line_per_interval_and_a_final_line():
    stream, clock = io.StringIO(), Clock()
    progress = Progress("storing", total=100, stream=stream, interval=5, clock=clock)
    assert not progress.interactive  # a StringIO is no terminal
    for second in range(10):
        clock.now = float(second)
        progress.advance(10)
    progress.finish()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    # shown at 0 s and 5 s, then the final line
    assert lines[0].startswith("storing  10% 10/100")
    assert lines[1].startswith("storing  60% 60/100")
    assert lines[2] == "storing 100% 100/100 in 9s"
    assert len(lines) == 3


def test_terminal_redraws_one_line_with_a_bar():
    stream, clock = io.StringIO(), Clock()
    with Progress("jobs", total=4, stream=stream, interactive=True, clock=clock) as progress:
        for step in range(4):
            clock.now = step * 1.0
            progress.advance()
    output = stream.getvalue()
    assert output.count("\n") == 1 and output.endswith("\n")
    assert "[" + "#" * 15 + "." * 15 + "]" in output  # 2 of 4 done
    assert output.rstrip().rsplit("\r", 1)[1].startswith("jobs [" + "#" * 30 + "] 100% 4/4 in 3s")


def test_unknown_total_counts_and_finish_is_idempotent():
    stream, clock = io.StringIO(), Clock()
    progress = Progress("rows", stream=stream, clock=clock)
    clock.now = 2.0
    progress.update(500)
    progress.finish("rows: 500 done")
    progress.finish()
    assert stream.getvalue().splitlines() == ["rows 500 250/s", "rows: 500 done"]


def test_terminal_lines_never_wrap(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    stream, clock = io.StringIO(), Clock()
    progress = Progress("a rather long label for the work", total=1000, stream=stream,
                        interactive=True, clock=clock)
    for step in range(1, 11):
        clock.now = float(step)
        progress.advance(100)
    progress.finish()
    assert all(len(line) <= 39 for line in stream.getvalue().replace("\r", "\n").splitlines())
