"""``crashdb partitions create|drop|list``: weekly partition maintenance, for cron."""

from __future__ import annotations

import argparse
import datetime

from crashdb.app.cli import UsageError, addDbArgument, runDeferred
from crashdb.connector import DBConnector
from crashdb.partitions import WEEK, weekStart

NAME = "partitions"
HELP = "create weeks ahead of time, drop old weeks, or list the partitions"


def addArguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="make the current week and the next N")
    create.add_argument("--ahead", type=int, default=2, metavar="N", help="weeks ahead (2)")
    drop = actions.add_parser("drop", help="drop every week older than the newest N")
    drop.add_argument("--keep-weeks", type=int, required=True, metavar="N",
                      help="weeks to keep, counting the current one (N >= 1)")
    drop.add_argument("--dry-run", action="store_true", help="list what would be dropped")
    listing = actions.add_parser("list", help="list the partitions with rows and size")
    for action in (create, drop, listing):
        addDbArgument(action)


async def _create(reactor, db: DBConnector, args) -> None:
    if args.ahead < 0:
        raise UsageError("--ahead must be 0 or more")
    created = await db.partitions.createAhead(args.ahead)
    for name in created:
        print(f"created {name}")
    print(f"{len(created)} partitions created; weeks up to {args.ahead} ahead exist")


async def _drop(reactor, db: DBConnector, args) -> None:
    if args.keep_weeks < 1:
        raise UsageError("--keep-weeks must be at least 1 (the current week is never dropped)")
    cutoff = weekStart(datetime.datetime.now(datetime.UTC)) - (args.keep_weeks - 1) * WEEK
    if args.dry_run:
        parts = await db.partitions.getPartitions()
        doomed = [p["name"] for p in parts if p["end"] <= cutoff]
        for name in doomed:
            print(f"would drop {name}")
        print(f"{len(doomed)} partitions would be dropped (weeks before {cutoff:%Y-%m-%d})")
        return
    dropped = await db.partitions.dropWeeksBefore(cutoff)
    for name in dropped:
        print(f"dropped {name}")
    print(f"{len(dropped)} partitions dropped (weeks before {cutoff:%Y-%m-%d})")


def _rows(rows: int | None) -> str:
    return "not analyzed" if rows is None else str(rows)


def _megabytes(size: int | None) -> str:
    return "-" if size is None else f"{size / 1048576:.1f} MB"


async def _list(reactor, db: DBConnector, args) -> None:
    parts = await db.partitions.getPartitions()
    sizes = await db.partitions.getPartitionSizes()
    print(f"{'partition':<32} {'start':<10} {'rows':>12} {'size':>10}")
    weeks: dict[datetime.datetime, list[tuple[int | None, int | None]]] = {}
    for part in parts:
        rows, size = sizes.get(part["name"], (None, None))
        weeks.setdefault(part["start"], []).append((rows, size))
        print(f"{part['name']:<32} {part['start']:%Y-%m-%d} {_rows(rows):>12} "
              f"{_megabytes(size):>10}")
    print(f"{len(parts)} partitions")
    if weeks:
        print(f"{'week total':<32} {'start':<10} {'rows':>12} {'size':>10}")
    for monday, children in sorted(weeks.items()):
        counts = [rows for rows, _ in children]
        known = sum(rows for rows in counts if rows is not None)
        shown = str(known) if None not in counts else f"{known} + ?"  # some not analyzed
        bytes_ = [size for _, size in children]
        total = None if None in bytes_ else sum(size or 0 for size in bytes_)
        print(f"{f'{len(children)} tables':<32} {monday:%Y-%m-%d} {shown:>12} "
              f"{_megabytes(total):>10}")


ACTIONS = {"create": _create, "drop": _drop, "list": _list}


async def _main(reactor, args) -> None:
    db = DBConnector(args.db, reactor=reactor)
    try:
        await db.setup()
        await ACTIONS[args.action](reactor, db, args)
    finally:
        await db.stop()


def run(args: argparse.Namespace) -> int:
    runDeferred(_main, args)
    return 0
