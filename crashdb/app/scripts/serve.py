"""``crashdb serve``: crash-stats, the read-only web pages and JSON API (SPEC 16)."""

from __future__ import annotations

import argparse
import sys
from typing import cast

from twisted.internet import defer, endpoints
from twisted.logger import (
    FilteringLogObserver,
    ILogFilterPredicate,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)

from crashdb.app.cli import UsageError, addDbArgument, runDeferred
from crashdb.connector import DBConnector

NAME = "serve"
# how long the rollup-backed pages stay rendered: well under the rollups' hour, and enough to
# spare the core when many ask for the same page (docs/web.md, "Caching")
CACHE_SECONDS = 60.0
HELP = "serve the crash-stats pages and JSON API over HTTP (read-only; 127.0.0.1 by default)"


def addArguments(parser: argparse.ArgumentParser) -> None:
    addDbArgument(parser)
    parser.add_argument("--replica", action="append", metavar="URL",
                        help="a PostgreSQL streaming replica to read from (repeatable; default "
                             "$CRASHDB_REPLICA_URLS)")
    parser.add_argument("--port", type=int, default=8000, metavar="N",
                        help="TCP port (default 8000; 0 picks a free one)")
    parser.add_argument("--interface", default="127.0.0.1", metavar="ADDRESS",
                        help="address to listen on (default 127.0.0.1: this machine only; "
                             "put a TLS-terminating reverse proxy in front for others)")
    parser.add_argument("--cache-seconds", type=float, default=CACHE_SECONDS, metavar="S",
                        help="keep the rollup-backed pages (products, top crashers, explosive, "
                             f"crash rates) rendered for S seconds (default {CACHE_SECONDS:g}; "
                             "0: render every request)")
    parser.add_argument("--access-log", metavar="FILE",
                        help="append a line per request to FILE, in the combined log format "
                             "(default: none; the reverse proxy in front logs access)")


async def serve(reactor, args: argparse.Namespace) -> None:
    from crashdb.app.web import CrashStats

    if not 0 <= args.port <= 65535:
        raise UsageError("--port must be from 0 to 65535")
    if not 0 <= args.cache_seconds <= 86400:
        raise UsageError("--cache-seconds must be from 0 to 86400")
    logWarnings()
    db = DBConnector(args.db, reactor=reactor, replica_urls=args.replica)
    try:
        await db.setup()
        endpoint = endpoints.TCP4ServerEndpoint(reactor, args.port, interface=args.interface)
        site = CrashStats(db, cache_seconds=args.cache_seconds).site(access_log=args.access_log)
        port = await endpoint.listen(site)
        address = port.getHost()
        print(f"crash-stats serving {db.engine.url.render_as_string(hide_password=True)} on "
              f"http://{address.host}:{address.port}/ (Ctrl-C stops it)", flush=True)
        stopped: defer.Deferred = defer.Deferred()
        reactor.addSystemEventTrigger("before", "shutdown", stopped.callback, None)
        await stopped
    finally:
        await db.stop()


def logWarnings() -> None:
    """Write Twisted's log events of level warn and above (a request that failed, with its
    traceback) to stderr, time-stamped. Until logging begins, Twisted shows only critical
    events, without a time, and keeps the last 200 of the rest in a buffer nobody reads."""
    # (the classes provide their interfaces through zope.interface, which mypy cannot see)
    observer = FilteringLogObserver(
        cast(ILogObserver, textFileLogObserver(sys.stderr)),
        [cast(ILogFilterPredicate, LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn))])
    globalLogBeginner.beginLoggingTo([cast(ILogObserver, observer)], redirectStandardIO=False)


def run(args: argparse.Namespace) -> int:
    runDeferred(serve, args)
    print("crash-stats stopped", file=sys.stderr)
    return 0
