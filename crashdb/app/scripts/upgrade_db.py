"""``crashdb upgrade-db``: bring the database's schema up to this crashdb's version."""

from __future__ import annotations

import argparse

from crashdb.app.cli import addDbArgument, runDeferred
from crashdb.connector import DBConnector

NAME = "upgrade-db"
HELP = "create or upgrade the database schema (idempotent; safe to run concurrently)"


def addArguments(parser: argparse.ArgumentParser) -> None:
    addDbArgument(parser)


async def upgrade(reactor, url: str | None) -> tuple[str | None, str | None]:
    db = DBConnector(url, reactor=reactor)
    try:
        await db.setup(check_version=False)
        return await db.model.upgrade()
    finally:
        await db.stop()


def run(args: argparse.Namespace) -> int:
    before, after = runDeferred(upgrade, args.db)
    print(f"schema version before: {before or 'none (empty database)'}")
    print(f"schema version after:  {after}")
    return 0
