"""Graphs drawn on the server as SVG: sparklines, line charts and bar lists.

No JavaScript and no style attributes (the Content-Security-Policy allows neither): shapes
carry classes that the static style sheet colours. Every piece of text is escaped here, since
labels are crash data (a signature may read ``std::vector<int>::operator[]`` or worse).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from markupsafe import Markup, escape


def _number(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _points(values: Sequence[float | None], width: float, height: float, top: float,
            left: float = 0.0) -> list[list[tuple[float, float]]]:
    """Runs of (x, y) for ``values`` scaled into the box; None breaks a run (an unknown day)."""
    known = [v for v in values if v is not None]
    highest = max(known, default=0) or 1
    step = width / max(len(values) - 1, 1)
    runs: list[list[tuple[float, float]]] = [[]]
    for index, value in enumerate(values):
        if value is None:
            if runs[-1]:
                runs.append([])
            continue
        runs[-1].append((left + index * step, top + height - height * value / highest))
    return [run for run in runs if run]


def _polyline(run: list[tuple[float, float]], css: str) -> str:
    points = " ".join([f"{x:.1f},{y:.1f}" for x, y in run])
    return f'<polyline class="{css}" points="{points}"/>'


def sparkline(values: Sequence[int], label: str, width: int = 120, height: int = 24) -> Markup:
    """A small line of daily counts, oldest first, with the counts in its title."""
    title = f"{label}: " + ", ".join(str(v) for v in values)
    parts = [
        f'<svg class="spark" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img">',
        f"<title>{escape(title)}</title>",
        f'<line class="base" x1="0" y1="{height - 1}" x2="{width}" y2="{height - 1}"/>',
    ]
    for run in _points(list(values), width - 2, height - 4, 2, 1):
        parts.append(_polyline(run, "line"))
    parts.append("</svg>")
    return Markup("".join(parts))


def series(rows: Sequence[dict[str, Any]], x: str, y: str) -> list[tuple[str, Any]]:
    """``[(str(row[x]), row[y])]``: the points of :func:`lineChart` from a list of dicts."""
    return [(str(row[x]), row[y]) for row in rows]


def lineChart(points: Sequence[tuple[Any, float | None]], label: str, width: int = 720,
              height: int = 220, unit: str = "") -> Markup:
    """A line of ``(x label, value)`` points (None: no value that day) with its axes, the
    highest value on the y axis, a few x labels, and each point's value in its title."""
    left, right, top, bottom = 48, 36, 14, 28
    inner_w, inner_h = width - left - right, height - top - bottom
    values = [value for _, value in points]
    highest = max((v for v in values if v is not None), default=0)
    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img">',
        f"<title>{escape(label)}</title>",
        f'<line class="axis" x1="{left}" y1="{top + inner_h}" x2="{left + inner_w}" '
        f'y2="{top + inner_h}"/>',
        f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{top + inner_h}"/>',
        f'<text class="tick" x="{left - 4}" y="{top + 4}" text-anchor="end">'
        f"{escape(_number(highest))}{escape(unit)}</text>",
        f'<text class="tick" x="{left - 4}" y="{top + inner_h}" text-anchor="end">0</text>',
    ]
    for run in _points(values, inner_w, inner_h, top, left):
        parts.append(_polyline(run, "line"))
    step = inner_w / max(len(points) - 1, 1)
    every = max(1, len(points) // 7)
    for index, (x_label, value) in enumerate(points):
        x = left + index * step
        if value is not None:
            y = top + inner_h - inner_h * value / (highest or 1)
            parts.append(
                f'<circle class="dot" cx="{_number(x)}" cy="{_number(y)}" r="2.5">'
                f"<title>{escape(f'{x_label}: {_number(value)}{unit}')}</title></circle>"
            )
        if (len(points) - 1 - index) % every == 0:  # the last day always, evenly before it
            parts.append(f'<text class="tick" x="{_number(x)}" y="{height - 8}" '
                         f'text-anchor="middle">{escape(str(x_label))}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def bars(terms: Sequence[dict[str, Any]], label: str, width: int = 440,
         row: int = 18) -> Markup:
    """Horizontal bars of ``[{term, count}]`` (a facet), longest first as given, each with its
    term and count; a term of None reads ``(none)``."""
    label_w, count_w = 190, 56
    bar_w = width - label_w - count_w
    highest = max((t["count"] for t in terms), default=0) or 1
    height = max(row * len(terms), row)
    parts = [
        f'<svg class="bars" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img">',
        f"<title>{escape(label)}</title>",
        f'<line class="axis" x1="{label_w}" y1="0" x2="{label_w}" y2="{height}"/>',
    ]
    for index, term in enumerate(terms):
        y = index * row
        text = "(none)" if term["term"] is None else str(term["term"])
        shown = text if len(text) <= 24 else text[:23] + "…"
        length = max(1.0, bar_w * term["count"] / highest)
        parts.append(
            f'<g><title>{escape(text)}: {term["count"]}</title>'
            f'<text class="term" x="{label_w - 4}" y="{y + row - 5}" text-anchor="end">'
            f"{escape(shown)}</text>"
            f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{_number(length)}" '
            f'height="{row - 6}"/>'
            f'<text class="count" x="{_number(label_w + length)}" y="{y + row - 5}" '
            f'dx="4">{term["count"]}</text></g>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
