"""``crashdb rollup``: every daily rollup (top crashers, signatures...) of recent days, for cron."""

from __future__ import annotations

import argparse
import datetime
import sys
from typing import Any

from crashdb.app.cli import UsageError, addDbArgument, daysBefore, runDeferred
from crashdb.app.progress import Progress
from crashdb.connector import DBConnector
from crashdb.validation import dateProblem

NAME = "rollup"
HELP = ("run every daily rollup for one UTC day, or for the last N complete days and today "
        "(default: yesterday and today); idempotent, for cron (hourly)")

DAY = datetime.timedelta(days=1)


def addArguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--day", metavar="YYYY-MM-DD", help="only this UTC day")
    which.add_argument("--days", type=int, default=1, metavar="N",
                       help="the last N complete days and today (default 1)")
    addDbArgument(parser)


def rollupDays(args: argparse.Namespace, today: datetime.date) -> list[datetime.date]:
    """The days to roll up, oldest first."""
    if args.day is not None:
        try:
            day = datetime.date.fromisoformat(args.day)
        except ValueError:
            raise UsageError(f"--day: not a date of the form YYYY-MM-DD: {args.day!r}") from None
        problem = dateProblem(day)  # (before the progress line starts)
        if problem is not None:
            raise UsageError(f"--day: {problem}")
        return [day]
    first = daysBefore(today, args.days, minimum=0)
    return [first + n * DAY for n in range(args.days + 1)]


async def rollUp(reactor: Any, args: argparse.Namespace, progress_stream: Any = None) -> None:
    days = rollupDays(args, datetime.datetime.now(datetime.UTC).date())
    db = DBConnector(args.db, reactor=reactor)
    try:
        await db.setup()
        with Progress("rolling up", total=len(days), stream=progress_stream) as progress:
            for day in days:
                written = await db.rollups.runDay(day)
                rows = ", ".join(f"{name} {count}" for name, count in written.items())
                print(f"{day:%Y-%m-%d}: rows written: {rows}", flush=True)
                progress.advance()
    finally:
        await db.stop()


def run(args: argparse.Namespace) -> int:
    runDeferred(rollUp, args, sys.stderr)
    return 0
