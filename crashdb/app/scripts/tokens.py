"""``crashdb tokens create|list|revoke``: the API tokens that let `crashdb serve` show personal
data (SPEC 16). A token is printed once; only its SHA-256 is stored."""

from __future__ import annotations

import argparse

from crashdb.app.cli import UsageError, addDbArgument, runDeferred
from crashdb.connector import DBConnector

NAME = "tokens"
HELP = "create, list or revoke the API tokens of `crashdb serve`"


def addArguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="make a token and print it (once)")
    create.add_argument("name", help="who or what the token is for")
    listing = actions.add_parser("list", help="list the tokens' names and creation times")
    revoke = actions.add_parser("revoke", help="delete a token: it stops working at once")
    revoke.add_argument("name")
    for action in (create, listing, revoke):
        addDbArgument(action)


async def _create(db: DBConnector, args) -> None:
    token = await db.tokens.createToken(args.name)
    print(token)
    print(f"token {args.name!r} created: it is shown only now, keep it secret; send it as "
          "`Authorization: Bearer TOKEN`")


async def _list(db: DBConnector, args) -> None:
    tokens = await db.tokens.getTokens()
    for token in tokens:
        print(f"{token['name']:<40} created {token['created_at']:%Y-%m-%d %H:%M} UTC")
    print(f"{len(tokens)} tokens")


async def _revoke(db: DBConnector, args) -> None:
    if not await db.tokens.revokeToken(args.name):
        raise UsageError(f"no token named {args.name!r}")
    print(f"token {args.name!r} revoked")


ACTIONS = {"create": _create, "list": _list, "revoke": _revoke}


async def _main(reactor, args) -> None:
    db = DBConnector(args.db, reactor=reactor)
    try:
        await db.setup()
        await ACTIONS[args.action](db, args)
    finally:
        await db.stop()


def run(args: argparse.Namespace) -> int:
    runDeferred(_main, args)
    return 0
