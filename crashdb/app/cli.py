"""The ``crashdb`` command line.

Each subcommand is a module in :mod:`crashdb.app.scripts` defining ``NAME``, ``HELP``,
``addArguments(parser)`` and ``run(args) -> int``. Errors a user can cause are one line on stderr
and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import logging
import pkgutil
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import alembic.util
import sqlalchemy as sa
from twisted.internet import defer, task

import crashdb.app.scripts
from crashdb.exceptions import CrashDBError
from crashdb.validation import STORED_DAYS


class UsageError(CrashDBError):
    """A mistake on the command line or in a file it names."""


def daysBefore(end: datetime.date, days: int, minimum: int = 1) -> datetime.date:
    """The day ``days`` days before ``end`` (a ``--days N`` period's first day); a UsageError
    unless ``days`` is at least ``minimum`` and that day is one a report can be on."""
    most = (end - STORED_DAYS[0]).days
    if not minimum <= days <= most:
        raise UsageError(f"--days must be from {minimum} to {most}")
    return end - datetime.timedelta(days=days)


def commands() -> list[Any]:
    """The subcommand modules, by name."""
    modules = [
        importlib.import_module(f"crashdb.app.scripts.{info.name}")
        for info in pkgutil.iter_modules(crashdb.app.scripts.__path__)
        if not info.name.startswith("_")
    ]
    return sorted(modules, key=lambda module: module.NAME)


def addDbArgument(parser: argparse.ArgumentParser) -> None:
    """``--db URL``, and ``--verbose`` (also accepted before the subcommand)."""
    parser.add_argument(
        "--db",
        metavar="URL",
        help="database URL (default: $CRASHDB_URL, else sqlite:///crashdb.sqlite)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help=VERBOSE_HELP)


VERBOSE_HELP = "log each retry of a database call (by default one line says crashdb is waiting)"


class RetryNotice(logging.Filter):
    """The pool's retries as a person at a terminal wants them: while the database does not
    answer, one line saying what is wrong and how long crashdb will keep trying, instead of a
    line per retry (a service keeps those, and so does ``--verbose``)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.clock = clock
        self.quietUntil = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        remaining = getattr(record, "retryRemaining", None)
        if remaining is None:
            return True
        now = self.clock()
        if now < self.quietUntil:
            return False
        self.quietUntil = now + remaining
        record.msg = "waiting for the database for up to %.0fs: %s"
        record.args = (remaining, getattr(record, "retryReason", ""))
        return True


def configureLogging(verbose: bool) -> None:
    """Warnings on stderr as ``crashdb: …``; retries quietened unless ``verbose``."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="crashdb: %(message)s")
    if not verbose:
        logging.getLogger("crashdb.pool").addFilter(RetryNotice())


def runDeferred(function: Callable[..., Any], *args: Any) -> Any:
    """Run ``function(reactor, *args)`` (returning a Deferred or coroutine) under the reactor
    and return its result, re-raising its failure."""
    outcome: dict[str, Any] = {}

    def main(reactor):
        d = defer.ensureDeferred(function(reactor, *args))

        def keep(result):
            outcome["result"] = result

        def keepError(failure):
            outcome["failure"] = failure

        d.addCallbacks(keep, keepError)
        return d

    try:
        task.react(main)
    except SystemExit as stop:
        if stop.code not in (0, None) and "failure" not in outcome:
            raise
    if "failure" in outcome:
        outcome["failure"].raiseException()
    return outcome.get("result")


def describe(error: BaseException) -> str:
    """One line for an error a user can cause."""
    if isinstance(error, sa.exc.DBAPIError):
        text = str(error.orig).strip().splitlines()
        return f"database error: {text[0] if text else type(error.orig).__name__}"
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crashdb", description="crashdb's operator tools")
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in commands():
        subparser = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.addArguments(subparser)
        subparser.set_defaults(run=module.run)
    args = parser.parse_args(argv)
    configureLogging(args.verbose)
    try:
        return int(args.run(args) or 0)
    except BrokenPipeError:  # `crashdb ... | head`: the reader is gone, which is no error
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("crashdb: interrupted", file=sys.stderr)
        return 130
    except (CrashDBError, sa.exc.SQLAlchemyError, OSError, alembic.util.CommandError) as error:
        print(f"crashdb: error: {describe(error)}", file=sys.stderr)
        return 1
