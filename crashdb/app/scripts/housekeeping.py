"""``crashdb housekeeping``: expire dead processors and prune old completed jobs, for cron.

A processor that stops heartbeating (killed, host lost) keeps its claims until someone expires
it; a queue claimed with row locks bloats with dead rows unless completed jobs are deleted. Run
this every few minutes; both halves are cheap when there is nothing to do.
"""

from __future__ import annotations

import argparse
import datetime

from crashdb.app.cli import UsageError, addDbArgument, runDeferred
from crashdb.connector import DBConnector

NAME = "housekeeping"
HELP = "expire processors that stopped heartbeating and prune old completed jobs (for cron)"

DEFAULT_EXPIRE_AFTER = 300  # seconds: 30 heartbeats of ProcessorService's default 10 s
DEFAULT_KEEP_DAYS = 7.0


def addArguments(parser: argparse.ArgumentParser) -> None:
    addDbArgument(parser)
    parser.add_argument(
        "--expire-after", type=float, default=DEFAULT_EXPIRE_AFTER, metavar="SECONDS",
        help="mark inactive, and release the claims of, processors silent for longer than "
             f"this ({DEFAULT_EXPIRE_AFTER}); keep it well above their heartbeat interval",
    )
    parser.add_argument(
        "--keep-days", type=float, default=DEFAULT_KEEP_DAYS, metavar="DAYS",
        help=f"delete jobs completed more than this many days ago ({DEFAULT_KEEP_DAYS:g})",
    )
    parser.add_argument("--no-expire", action="store_true", help="do not expire processors")
    parser.add_argument("--no-prune", action="store_true", help="do not delete completed jobs")


async def housekeep(reactor, args: argparse.Namespace) -> None:
    if args.expire_after <= 0 or args.expire_after != args.expire_after:
        raise UsageError("--expire-after must be a positive number of seconds")
    if args.keep_days < 0 or args.keep_days != args.keep_days:
        raise UsageError("--keep-days must be 0 or more")
    db = DBConnector(args.db, reactor=reactor)
    try:
        await db.setup()
        if not args.no_expire:
            expired = await db.processors.expireProcessors(args.expire_after)
            if expired:
                print(f"expired processors {', '.join(map(str, expired))} "
                      f"(silent for over {args.expire_after:g}s); their claims were released")
            else:
                print("no processor to expire")
        if not args.no_prune:
            now = datetime.datetime.now(datetime.UTC)
            try:
                cutoff = now - datetime.timedelta(days=args.keep_days)
            except OverflowError:
                raise UsageError("--keep-days reaches before year 1") from None
            pruned = await db.jobs.pruneJobs(cutoff)
            print(f"pruned {pruned} jobs completed before {cutoff:%Y-%m-%d %H:%M:%S} UTC")
    finally:
        await db.stop()


def run(args: argparse.Namespace) -> int:
    runDeferred(housekeep, args)
    return 0
