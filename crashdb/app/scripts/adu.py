"""``crashdb adu import FILE.csv``: load active daily users (ADU), the crash rates' usage."""

from __future__ import annotations

import argparse
import csv
import datetime
import re
from typing import Any

from crashdb.app.cli import UsageError, addDbArgument, runDeferred
from crashdb.connector import DBConnector
from crashdb.exceptions import InvalidInputError

NAME = "adu"
HELP = "import active daily users (ADU) per day, product and version from a CSV file"

HEADER = ["day", "product", "version", "adu"]
DAY_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}")
COUNT_PATTERN = re.compile(r"[+-]?\d+")


def addArguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    load = actions.add_parser(
        "import",
        help="load FILE.csv (header day,product,version,adu); a row for a day, product and "
             "version already stored replaces it; one bad line and nothing is written",
    )
    load.add_argument("file", metavar="FILE.csv")
    addDbArgument(load)


def _row(cells: list[str]) -> dict[str, Any]:
    """One CSV row as an ``addAdu`` row; InvalidInputError (with ``field``) if it cannot be."""
    if len(cells) != len(HEADER):
        raise InvalidInputError(f"expected {len(HEADER)} values ({','.join(HEADER)}), "
                                f"got {len(cells)}")
    day, product, version, adu = (cell.strip() for cell in cells)
    if not DAY_PATTERN.fullmatch(day):
        raise InvalidInputError(f"expected YYYY-MM-DD, got {day!r}", field="day")
    try:
        parsed = datetime.date.fromisoformat(day)
    except ValueError as error:
        raise InvalidInputError(f"{error} ({day!r})", field="day") from None
    if not COUNT_PATTERN.fullmatch(adu):
        raise InvalidInputError(f"expected a whole number, got {adu!r}", field="adu")
    return {"day": parsed, "product": product, "version": version, "adu": int(adu)}


def readAduFile(path: str) -> tuple[list[dict[str, Any]], list[int]]:
    """The rows of an ADU CSV file and the line number of each; UsageError naming the line of
    the first problem."""
    with open(path, newline="", encoding="utf-8") as stream:
        reader = csv.reader(stream)
        header = next(reader, None)
        if header is None or [cell.strip() for cell in header] != HEADER:
            raise UsageError(f"{path}, line 1: expected the header {','.join(HEADER)}")
        rows, lines = [], []
        for cells in reader:
            if not cells:
                continue  # a blank line
            try:
                rows.append(_row(cells))
            except InvalidInputError as error:
                raise UsageError(f"{path}, line {reader.line_num}: {_describe(error)}") from None
            lines.append(reader.line_num)
    return rows, lines


def _describe(error: InvalidInputError) -> str:
    return f"{error.field}: {error.message}" if error.field else error.message


async def load(reactor, args: argparse.Namespace) -> str:
    try:
        rows, lines = readAduFile(args.file)
    except UnicodeDecodeError as error:
        raise UsageError(f"{args.file}: not UTF-8 text ({error.reason})") from None
    db = DBConnector(args.db, reactor=reactor)
    try:
        await db.setup()
        try:
            stored = await db.crashrates.addAdu(rows)
        except InvalidInputError as error:
            line = lines[error.index] if error.index is not None else "?"
            raise UsageError(f"{args.file}, line {line}: {_describe(error)}") from None
    finally:
        await db.stop()
    if not rows:
        return f"{args.file}: no rows; nothing stored"
    first = min(row["day"] for row in rows)
    last = max(row["day"] for row in rows)
    products = sorted({row["product"] for row in rows})
    return (f"stored ADU for {stored} (day, product, version) from {len(rows)} rows of "
            f"{args.file}: {first:%Y-%m-%d} to {last:%Y-%m-%d}, {', '.join(products)}")


def run(args: argparse.Namespace) -> int:
    print(runDeferred(load, args))
    return 0
