"""PostgreSQL's COPY text format, written from rows of Python values.

Used by the PostgreSQL backend's ``copyRows``, the bulk path of ``reports.addReports``. A row
is a sequence of values in the order of the COPY's column list; what each value becomes depends
on its column's type in the model:

- None is ``\\N``; booleans are ``t``/``f``; integers their decimal digits;
- datetimes are ISO 8601 in UTC (``2012-10-16T10:30:00.123456+00:00``), dates ISO 8601;
- text has backslash, tab, newline and carriage return escaped (``\\\\``, ``\\t``, ``\\n``,
  ``\\r``); NUL characters never get here (validation rejects them, as PostgreSQL would);
- JSON is ``json.dumps`` of the value, escaped as text.

Speed matters here (it is on the profile of every bulk insert), so a line is first built without
escaping and then checked as a whole: it needs no escaping when it holds exactly the tabs between
its fields, exactly the backslashes of its ``\\N`` markers, and no newline or carriage return.
Only a line that fails the check is rebuilt escaping each field.

:class:`crashdb.bulk.encoder.CheckingEncoder` goes one step further for input dicts: it checks
each value (a strict subset of what :mod:`crashdb.validation` accepts) in the same pass that
formats it, so that a bulk insert touches each value once.
"""

from __future__ import annotations

import datetime
import functools
import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

import sqlalchemy as sa

from crashdb.base import Rows
from crashdb.validation import ColumnKind, columnKind

UTC = datetime.UTC
NULL = "\\N"
CHUNK = 65536  # characters handed to the driver per read


def escape(text: str) -> str:
    """``text`` as a field of COPY's text format (chained replaces: far quicker than
    ``str.translate`` with multi-character replacements, and a no-op replace copies nothing)."""
    return (
        text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
        .replace("\r", "\\r")
    )


def timestamp(value: datetime.datetime) -> str:
    """An aware datetime as COPY text: ISO 8601 in UTC."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat()


def _json(value: Any) -> str:
    return json.dumps(value)


_CONVERTERS: dict[ColumnKind, Callable[[Any], str] | None] = {
    ColumnKind.JSON: _json,
    ColumnKind.STRING: None,  # text goes as it is
    ColumnKind.TEXT: None,
    ColumnKind.BOOLEAN: lambda value: "t" if value else "f",
    ColumnKind.INTEGER: str,
    ColumnKind.DATETIME: timestamp,
    ColumnKind.DATE: datetime.date.isoformat,
}


def _clean(text: str, fields: int, nulls: int) -> bool:
    """True if ``text``, ``fields`` fields joined by tabs with ``nulls`` of them ``\\N``, needs
    no escaping: no tab, backslash, newline or carriage return besides its own."""
    return (
        text.count("\t") == fields - 1
        and text.count("\\") == nulls
        and "\n" not in text
        and "\r" not in text
    )


class CopyFormatter:
    """Turns rows of Python values for ``columns`` of ``table`` into COPY text."""

    def __init__(self, table: sa.Table, columns: Sequence[str]) -> None:
        self.columns = tuple(columns)
        self.conversions = [
            (position, converter)
            for position, converter in enumerate(
                _CONVERTERS[columnKind(table.c[name])] for name in columns)
            if converter is not None
        ]

    def line(self, row: Iterable[Any]) -> str:
        """One row as a line of COPY text, without its newline."""
        values = list(row)
        for position, converter in self.conversions:
            value = values[position]
            if value is not None:
                values[position] = converter(value)
        nulls = values.count(None)
        text = "\t".join([NULL if value is None else value for value in values] if nulls
                         else values)
        if _clean(text, len(values), nulls):
            return text
        return "\t".join(NULL if value is None else escape(value) for value in values)

    def text(self, rows: Iterable[Iterable[Any]]) -> str:
        """Many rows as COPY text, each line ending in a newline."""
        line = self.line
        return "".join([line(row) + "\n" for row in rows])


@functools.lru_cache(maxsize=1024)
def formatter(table: sa.Table, columns: tuple[str, ...]) -> CopyFormatter:
    """The (cached) formatter for ``columns`` of ``table``."""
    return CopyFormatter(table, columns)


# -- streaming to the driver ----------------------------------------------------------------------


class CopySource(Protocol):
    """Rows for ``copyRows`` that make their COPY lines themselves (e.g. with a
    :class:`CheckingEncoder`); iterating them gives their values, as for any other backend."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Sequence[Any]]: ...

    def copyLines(self, formatter: CopyFormatter) -> Iterator[str]: ...


def lines(formatter: CopyFormatter, rows: Rows) -> Iterator[str]:
    """The COPY lines of ``rows``: their own for a :class:`CopySource`, else ``formatter``'s."""
    copyLines = getattr(rows, "copyLines", None)
    return copyLines(formatter) if copyLines is not None else map(formatter.line, rows)


class _Chain:
    """Several row collections as one, :class:`CopySource` ones keeping their own lines."""

    def __init__(self, parts: Iterable[Rows]) -> None:
        self.parts = list(parts)

    def __len__(self) -> int:
        return sum(map(len, self.parts))

    def __iter__(self) -> Iterator[Any]:
        return itertools.chain.from_iterable(self.parts)

    def copyLines(self, formatter: CopyFormatter) -> Iterator[str]:
        return itertools.chain.from_iterable(lines(formatter, part) for part in self.parts)


def chain(parts: Iterable[Rows]) -> _Chain:
    """The rows of ``parts`` one after another, as one sized collection (a CopySource)."""
    return _Chain(parts)


class CopyReader:
    """A file-like object handing ``lines`` to the driver as it reads: lines are made chunk by
    chunk, so the server parses the first rows while later ones are still being prepared. An
    exception raised while making them aborts the COPY (the driver reports only its message)
    and is kept as ``error``."""

    def __init__(self, lines: Iterable[str]) -> None:
        self._lines = iter(lines)
        self.error: BaseException | None = None

    def read(self, size: int = -1) -> str:
        parts: list[str] = []
        length = 0
        try:
            for line in self._lines:
                parts.append(line)
                length += len(line) + 1
                if 0 < size <= length:
                    break
        except BaseException as error:
            self.error = error
            raise
        if not parts:
            return ""
        parts.append("")
        return "\n".join(parts)
