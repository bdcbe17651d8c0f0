"""``crashdb demo``: play a small crash pipeline (collector, processors, rollup) for real."""

from __future__ import annotations

import argparse
import sys

from crashdb.app.cli import UsageError, addDbArgument, runDeferred
from crashdb.app.demo import DEFAULT_CRASHES, DEFAULT_PROCESSORS, runDemo

NAME = "demo"
HELP = ("store three weeks of made-up crashes, process them with several processors, roll up "
        "and print the top crashers (default database: crashdb.sqlite here)")


def addArguments(parser: argparse.ArgumentParser) -> None:
    addDbArgument(parser)
    parser.add_argument("--crashes", type=int, default=DEFAULT_CRASHES, metavar="N",
                        help=f"crashes to generate (default {DEFAULT_CRASHES})")
    parser.add_argument("--processors", type=int, default=DEFAULT_PROCESSORS, metavar="N",
                        help=f"processor services to run (default {DEFAULT_PROCESSORS})")
    parser.add_argument("--seed", type=int, metavar="N",
                        help="random seed, for the same crashes every run")


def run(args: argparse.Namespace) -> int:
    if args.crashes < 1:
        raise UsageError("--crashes must be at least 1")
    if args.processors < 1:
        raise UsageError("--processors must be at least 1")
    result = runDeferred(
        lambda reactor: runDemo(reactor, args.db, args.crashes, args.processors, args.seed)
    )
    if result.failed:
        print(f"crashdb: error: {result.failed} crashes of this run failed to process",
              file=sys.stderr)
        return 1
    return 0 if result.collected else 1
