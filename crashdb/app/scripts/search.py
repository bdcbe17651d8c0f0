"""``crashdb search``: filter the reports of a date range, print the hits and facets (SPEC §15)."""

from __future__ import annotations

import argparse
import datetime
import re
from collections.abc import Sequence
from typing import Any

from crashdb import search
from crashdb.app.cli import UsageError, addDbArgument, runDeferred
from crashdb.connector import DBConnector
from crashdb.exceptions import InvalidInputError

NAME = "search"
HELP = "search the reports of a date range, with facets"

# field, operator, value: "signature ~ js::", "uptime<60", "hangid exists", "raw.K exists false"
FILTER = re.compile(r"\s*(?P<field>[^\s=!~^<>]+)\s*"
                    r"(?P<op>!=|>=|<=|=|~|\^|>|<|\s(?:exists)(?:\s|$))\s*(?P<value>.*)", re.S)
TRUE = ("true", "yes", "1")
FALSE = ("false", "no", "0")
EXPECTED = {"integer": "an integer", "datetime": "a date or ISO 8601 time",
            "boolean": "true or false"}
WIDTH = 48  # the widest a hit's cell or a facet's term is shown


def addArguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--start", required=True, metavar="D",
                        help="first day or moment, inclusive (2012-10-15 or ISO 8601; UTC "
                             "unless it names a zone)")
    parser.add_argument("--end", required=True, metavar="D", help="end, exclusive (likewise)")
    parser.add_argument("--filter", action="append", default=[], metavar="'FIELD OP VALUE'",
                        help="e.g. 'signature ~ js::', 'uptime < 60', 'raw.Adapter ^ 0x10de', "
                             "'hangid exists'; repeat to AND (ops: = != ~ ^ > >= < <= exists)")
    parser.add_argument("--facet", action="append", default=[], metavar="F",
                        help="count terms of a field, or uptime, _histogram.day, "
                             "_cardinality.installations; repeatable")
    parser.add_argument("--facet-size", type=int, default=10, metavar="N",
                        help="terms per facet (10)")
    parser.add_argument("--columns", metavar="A,B", help="report columns of each hit "
                        f"(default {','.join(search.DEFAULT_COLUMNS)})")
    parser.add_argument("--sort", metavar="A,-B", default="-date_processed",
                        help="hit order, '-' for descending: --sort=-uptime,uuid "
                             "(default -date_processed)")
    parser.add_argument("--limit", type=int, default=20, metavar="N", help="hits shown (20)")
    parser.add_argument("--offset", type=int, default=0, metavar="N", help="hits skipped (0)")
    addDbArgument(parser)


def parseMoment(text: str, option: str) -> datetime.datetime:
    """A date (midnight UTC) or ISO 8601 datetime (UTC if it names no zone)."""
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"{option}: expected a date or ISO 8601 time, got {text!r}") from None
    return moment.replace(tzinfo=datetime.UTC) if moment.tzinfo is None else moment


def parseFilter(text: str) -> tuple[str, str, Any]:
    """``'field op value'`` as a filter triple, the value typed for its field."""
    match = FILTER.fullmatch(text)
    if match is None:
        raise UsageError(f"--filter {text!r}: expected 'FIELD OP VALUE'")
    name, op, value = match["field"], match["op"].strip(), match["value"]
    try:
        kind = search.fieldFor(name, "filter").kind
    except InvalidInputError as error:
        raise UsageError(f"--filter {text!r}: {error}") from None
    if op == "exists":
        if value.strip().lower() not in ("", *TRUE, *FALSE):
            raise UsageError(f"--filter {text!r}: exists takes nothing, true or false")
        return name, op, value.strip().lower() not in FALSE
    try:
        if kind == "integer":
            return name, op, int(value)
        if kind == "datetime":
            return name, op, parseMoment(value, f"--filter {text!r}")
        if kind == "boolean":
            if value.strip().lower() not in (*TRUE, *FALSE):
                raise ValueError(value)
            return name, op, value.strip().lower() in TRUE
    except ValueError:
        raise UsageError(f"--filter {text!r}: expected {EXPECTED[kind]}, got {value!r}") from None
    return name, op, value


def shown(value: Any, width: int = WIDTH) -> str:
    """A value for a terminal: control characters escaped (crash data is untrusted), long text
    cut short."""
    if value is None:
        return "-"
    if isinstance(value, datetime.datetime):
        text = f"{value:%Y-%m-%d %H:%M:%S}"
    else:
        text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(value))
    return text if len(text) <= width else text[: width - 3] + "..."


def formatHits(hits: Sequence[dict[str, Any]], columns: Sequence[str]) -> list[str]:
    cells = [[shown(hit[column]) for column in columns] for hit in hits]
    widths = [max([len(column), *(len(row[n]) for row in cells)])
              for n, column in enumerate(columns)]
    lines = ["  ".join(column.ljust(width) for column, width in zip(columns, widths)).rstrip()]
    lines.extend("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                 for row in cells)
    return lines


def formatFacet(name: str, facet: Any) -> list[str]:
    if isinstance(facet, int):
        return [f"{name}: {facet:,}"]
    lines = [f"{name}:"]
    lines.extend(f"  {term['count']:>9,}  {shown(term['term'])}" for term in facet)
    if not facet:
        lines.append("  (no reports)")
    return lines


def formatResult(result: dict[str, Any], columns: Sequence[str], offset: int,
                 start: datetime.datetime, end: datetime.datetime) -> str:
    """The total, the page of hits as a table and each facet, for a terminal."""
    hits = result["hits"]
    first = f"{offset + 1}-{offset + len(hits)}" if hits else "none"
    lines = [f"{result['total']:,} reports from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M}"
             f" (UTC, end excluded); hits shown: {first}"]
    if hits:
        lines += ["", *formatHits(hits, columns)]
    for name, facet in result["facets"].items():
        lines += ["", *formatFacet(name, facet)]
    return "\n".join(lines)


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


async def show(reactor, args: argparse.Namespace) -> str:
    start = parseMoment(args.start, "--start").astimezone(datetime.UTC)
    end = parseMoment(args.end, "--end").astimezone(datetime.UTC)
    filters = [parseFilter(text) for text in args.filter]
    columns = _names(args.columns) if args.columns else list(search.DEFAULT_COLUMNS)
    db = DBConnector(args.db, reactor=reactor)
    try:
        await db.setup()
        result = await db.search.search(
            start, end, filters, facets=args.facet, facet_size=args.facet_size,
            columns=columns, sort=_names(args.sort), limit=args.limit, offset=args.offset)
    finally:
        await db.stop()
    return formatResult(result, columns, args.offset, start, end)


def run(args: argparse.Namespace) -> int:
    print(runDeferred(show, args))
    return 0
