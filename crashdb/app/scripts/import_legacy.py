"""``crashdb import-legacy``: bring a legacy crash database into crashdb (docs/importing.md)."""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys

from twisted.internet import threads

from crashdb.app.cli import UsageError, addDbArgument, runDeferred
from crashdb.app.importer import DEFAULT_BATCH_SIZE, LegacyImporter, LegacySource
from crashdb.app.progress import Progress
from crashdb.connector import DBConnector
from crashdb.exceptions import CrashDBError, InvalidInputError

NAME = "import-legacy"
HELP = "import a legacy crash database: consolidate duplicates, map versions, reconcile"


def addArguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="source", required=True, metavar="SOURCE_URL",
                        help="URL of the legacy database (any SQLAlchemy backend)")
    addDbArgument(parser)
    parser.add_argument("--version-map", metavar="FILE.csv",
                        help="product,alias,version rows loaded as aliases before importing")
    parser.add_argument("--rejects", metavar="FILE.csv", default="import-rejects.csv",
                        help="where rows that cannot be imported are listed "
                             "(default: import-rejects.csv)")
    parser.add_argument("--summary", metavar="FILE.json", default="import-summary.json",
                        help="where the reconciliation is written (default: import-summary.json)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, metavar="N",
                        help=f"legacy rows per batch (default: {DEFAULT_BATCH_SIZE})")


class RowsProgress(Progress):
    """The shared progress display, with its rate in rows per second."""

    def describe(self, now: float, final: bool = False) -> str:
        return re.sub(r"(\d+)/s\b", r"\1 rows/s", super().describe(now, final))


def _readVersionMap(path: str) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as stream:
        return list(csv.reader(stream))


async def _main(reactor, args: argparse.Namespace):
    """Nothing is written, in the database or in a file, before the version map is read, the
    target is found current and the source is open and checked."""
    versionMap = _readVersionMap(args.version_map) if args.version_map else None
    db = DBConnector(args.db, reactor=reactor)
    try:
        await db.setup()
        source = await threads.deferToThread(LegacySource, args.source)
        try:
            return await _import(reactor, db, source, versionMap, args)
        finally:
            source.close()
    finally:
        await db.stop()


async def _import(reactor, db: DBConnector, source: LegacySource, versionMap, args):
    if versionMap is not None:
        try:
            loaded = await db.versions.loadVersionMap(versionMap)
        except InvalidInputError as error:
            where = [f"{args.version_map}:"]
            if error.index is not None:
                where.append(f"line {error.index + 1}:")
            if error.field is not None:
                where.append(f"field {error.field!r}:")
            raise UsageError(" ".join([*where, error.message])) from error
        print(f"version map: {loaded} rows loaded from {args.version_map}")
    progress = RowsProgress("importing legacy reports")

    def show(done: int, total: int) -> None:
        progress.update(done, total)

    with open(args.rejects, "w", newline="", encoding="utf-8") as rejects:
        importer = LegacyImporter(db, source, batch_size=args.batch_size,
                                  rejects=rejects, progress=show, reactor=reactor)
        try:
            summary = await importer.run()
        except BaseException:
            if progress.done:
                progress.finish()
            raise
        progress.finish()
    return summary


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    summary = runDeferred(_main, args)
    for line in summary.lines():
        print(line)
    with open(args.summary, "w", encoding="utf-8") as stream:
        json.dump(summary.asDict(), stream, indent=2)
        stream.write("\n")
    print(f"rejects: {args.rejects}; summary: {args.summary}")
    if not summary.balanced:
        raise CrashDBError(
            f"the import does not reconcile: read {summary.read} != written {summary.written} "
            f"+ consolidated {summary.consolidated} + rejected {summary.rejected}"
        )
    sys.stdout.flush()
    return 0
