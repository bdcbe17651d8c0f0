"""``crashdb upgrade-db``: bring the database's schema up to this crashdb's version."""

from __future__ import annotations

import argparse

from crashdb.app.cli import addDbArgument, runDeferred
from crashdb.connector import DBConnector

NAME = "upgrade-db"
HELP = "create or upgrade the database schema (idempotent; safe to run concurrently)"


def addArguments(parser: argparse.ArgumentParser) -> None:
    addDbArgument(parser)


async def upgrade(reactor, url: str | None) -> tuple[str | None, str | None, str | None]:
    """(version before, version after, the column the crash data is distributed on or None)."""
    db = DBConnector(url, reactor=reactor)
    try:
        await db.setup(check_version=False)
        before, after = await db.model.upgrade()
        return before, after, db.backend.distributionColumn
    finally:
        await db.stop()


def run(args: argparse.Namespace) -> int:
    before, after, distribution = runDeferred(upgrade, args.db)
    print(f"schema version before: {before or 'none (empty database)'}")
    print(f"schema version after:  {after}")
    if distribution:
        print(f"Citus: crash data distributed on {distribution}; look-up and rollup tables are "
              "reference tables, jobs stays on the coordinator")
    return 0
