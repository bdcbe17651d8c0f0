"""``crashdb explosive``: the signatures whose crashes exploded on a day, for a terminal."""

from __future__ import annotations

import argparse
import datetime
from collections.abc import Sequence
from typing import Any

from crashdb.app.cli import UsageError, addDbArgument, runDeferred
from crashdb.connector import DBConnector

NAME = "explosive"
HELP = ("show the signatures of a product whose crash rate jumped on a day against their own "
        "previous nine days (from the daily rollup and the ADU)")

SIGNATURE_WIDTH = 56
DAY = datetime.timedelta(days=1)


def addArguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--product", required=True, metavar="P", help="product, e.g. Firefox")
    parser.add_argument("--day", metavar="D", help="the day scored, YYYY-MM-DD (default: today, "
                                                   "UTC)")
    parser.add_argument("--version", metavar="V", help="only this version (default: all)")
    parser.add_argument("--limit", type=int, default=20, metavar="N",
                        help="signatures to show (default 20)")
    addDbArgument(parser)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def formatTable(rows: Sequence[dict[str, Any]], title: str) -> str:
    """A plain-text table of ``getExplosive`` rows under ``title``: both scores, the crashes of
    the ten days (oldest first) and the signature."""
    histories = [" ".join(str(count) for count in row["counts"]) for row in rows]
    width = max([len("crashes, day-9 ... day"), *map(len, histories)])
    header = f"{'1-day':>9} {'3-day':>9}  {'crashes, day-9 ... day':<{width}}  signature"
    lines = [title, header, "-" * (len(header) + SIGNATURE_WIDTH - len("signature"))]
    for row, history in zip(rows, histories, strict=True):
        signature = _shorten(row["signature"] or "(no signature)", SIGNATURE_WIDTH)
        lines.append(f"{row['one_day']:>9.4f} {row['three_day']:>9.4f}  {history:<{width}}  "
                     f"{signature}")
    if not rows:
        lines.append("(no signature scored above 0: has the rollup run for these days?)")
    return "\n".join(lines)


def title(product: str, version: str | None, day: datetime.date, per_adu: bool) -> str:
    """``Explosive crashes: Firefox (all versions) on 2012-10-22 (UTC), per million ADU``."""
    name = f"{product} {version}" if version else f"{product} (all versions)"
    measure = "rates per million ADU" if per_adu else "crash counts (ADU not known all ten days)"
    return f"Explosive crashes: {name} on {day:%Y-%m-%d} (UTC), {measure}"


def parseDay(text: str | None) -> datetime.date:
    if text is None:
        return datetime.datetime.now(datetime.UTC).date()
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--day must be a date as YYYY-MM-DD, got {text!r}") from None


async def show(reactor, args: argparse.Namespace) -> str:
    day = parseDay(args.day)
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    db = DBConnector(args.db, reactor=reactor)
    try:
        await db.setup()
        rows = await db.crashrates.getExplosive(args.product, day, version=args.version,
                                                limit=args.limit)
        usage = await db.crashrates.getCrashRates(args.product, args.version,
                                                  day - 9 * DAY, day + DAY)
    finally:
        await db.stop()
    perAdu = all(entry["adu"] for entry in usage)
    return formatTable(rows, title(args.product, args.version, day, perAdu))


def run(args: argparse.Namespace) -> int:
    print(runDeferred(show, args))
    return 0
