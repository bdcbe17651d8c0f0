"""``crashdb top-crashers``: the most frequent crash signatures of a product, from the rollup."""

from __future__ import annotations

import argparse
import datetime
from collections.abc import Sequence
from typing import Any

from crashdb.app.cli import UsageError, addDbArgument, daysBefore, runDeferred
from crashdb.connector import DBConnector

NAME = "top-crashers"
HELP = "show the top crash signatures of a product (from the daily rollup)"

SIGNATURE_WIDTH = 56


def addArguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--product", required=True, metavar="P", help="product, e.g. Firefox")
    parser.add_argument("--version", metavar="V", help="only this version (default: all)")
    parser.add_argument("--days", type=int, default=7, metavar="N",
                        help="the last N days up to today, UTC (default 7)")
    parser.add_argument("--limit", type=int, default=20, metavar="N",
                        help="signatures to show (default 20)")
    addDbArgument(parser)


def _move(crasher: dict[str, Any]) -> str:
    previous = crasher["previous_rank"]
    if previous is None:
        return "new"
    moved = previous - crasher["rank"]
    return "=" if moved == 0 else f"{moved:+d}"


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def formatTable(crashers: Sequence[dict[str, Any]], title: str) -> str:
    """A plain-text table of ``getTopCrashers`` rows under ``title``.

    ``move`` is the change of rank since the period before (+2 = up two places; ``new`` = unranked).
    """
    header = (f"{'rank':>4} {'move':>4} {'count':>6} {'%':>5} {'win':>5} {'mac':>5} {'lin':>5}"
              f" {'hang':>5} {'start':>5}  signature")
    rows = []
    for c in crashers:
        signature = _shorten(c["signature"] or "(no signature)", SIGNATURE_WIDTH)
        rows.append(
            f"{c['rank']:>4} {_move(c):>4} {c['count']:>6} {c['percent']:>5.1f}"
            f" {c['win_count']:>5} {c['mac_count']:>5} {c['lin_count']:>5}"
            f" {c['hang_count']:>5} {c['startup_count']:>5}  {signature}"
        )
    widest = max((len(row) for row in rows), default=len(header))
    lines = [title, header, "-" * max(widest, len(header)), *rows]
    if not crashers:
        lines.append("(no crashes in this period: has `updateTcbs` rolled these days up?)")
    return "\n".join(lines)


def periodTitle(product: str, version: str | None, start: datetime.date,
                end: datetime.date) -> str:
    """``Top crashers: Firefox 16.0, 2012-10-10 to 2012-10-16 (UTC)``: the end is inclusive."""
    name = f"{product} {version}" if version else f"{product} (all versions)"
    last = end - datetime.timedelta(days=1)
    return f"Top crashers: {name}, {start:%Y-%m-%d} to {last:%Y-%m-%d} (UTC)"


async def show(reactor, args: argparse.Namespace) -> str:
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    end = datetime.datetime.now(datetime.UTC).date() + datetime.timedelta(days=1)
    start = daysBefore(end, args.days)
    db = DBConnector(args.db, reactor=reactor)
    try:
        await db.setup()
        crashers = await db.tcbs.getTopCrashers(
            args.product, version=args.version, start_day=start, end_day=end, limit=args.limit
        )
    finally:
        await db.stop()
    return formatTable(crashers, periodTitle(args.product, args.version, start, end))


def run(args: argparse.Namespace) -> int:
    print(runDeferred(show, args))
    return 0
