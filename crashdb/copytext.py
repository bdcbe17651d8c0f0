"""PostgreSQL's COPY text format, written from rows of Python values.

Used by the PostgreSQL strategy's ``copyRows``, the bulk path of ``reports.addReports``. A row
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

:class:`CheckingEncoder` goes one step further for input dicts: it checks each value (a strict
subset of what :mod:`crashdb.validation` accepts) in the same pass that formats it, so that a
bulk insert touches each value once.
"""

from __future__ import annotations

import datetime
import functools
import itertools
import json
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import Any, Protocol

import sqlalchemy as sa

from crashdb.validation import baseType

UTC = datetime.UTC
NULL = "\\N"
CHUNK = 65536  # characters handed to the driver per read
INT32 = (-(2**31), 2**31 - 1)


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


def _integer(value: int) -> str:
    return str(value)


def _boolean(value: bool) -> str:
    return "t" if value else "f"


def _date(value: datetime.date) -> str:
    return value.isoformat()


def _json(value: Any) -> str:
    return json.dumps(value)


def _converter(column: sa.Column) -> Callable[[Any], str] | None:
    """How a non-None value of ``column`` becomes text; None for text columns (as they are)."""
    kind = baseType(column)
    if isinstance(kind, sa.JSON):
        return _json
    if isinstance(kind, sa.String):
        return None
    if isinstance(kind, sa.Boolean):
        return _boolean
    if isinstance(kind, sa.Integer):
        return _integer
    if isinstance(kind, sa.DateTime):
        return timestamp
    if isinstance(kind, sa.Date):
        return _date
    raise TypeError(f"no COPY text format for column {column} of type {column.type!r}")


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
            for position, converter in enumerate(_converter(table.c[name]) for name in columns)
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


# -- checking while formatting --------------------------------------------------------------------

_TEXT, _STRING, _INTEGER, _BOOLEAN, _DATETIME, _OTHER = range(6)
# a str equal to NULL that no caller can hold: tells the markers from values in a line's fields
_MARKER = "".join(["\\", "N"])


def _kind(column: sa.Column) -> tuple[int, int]:
    kind = baseType(column)
    if isinstance(kind, sa.JSON):
        return _OTHER, 0
    if isinstance(kind, sa.String):
        return (_TEXT, 0) if kind.length is None else (_STRING, kind.length)
    if isinstance(kind, sa.Boolean):
        return _BOOLEAN, 0
    if isinstance(kind, sa.Integer):
        return _INTEGER, 0
    if isinstance(kind, sa.DateTime):
        return _DATETIME, 0
    return _OTHER, 0


class CheckingEncoder:
    """Rows straight from input dicts, each value checked as it is taken.

    ``line(row, lead)`` gives ``lead`` (``leadFields`` fields already formatted and joined by
    tabs, needing no escapes: e.g. an id the caller assigned) and the values of ``columns`` as
    one COPY line; ``values(row, lead)`` gives ``[lead, *values]``, the values as they are (the
    bulk path of the other backends). Both give None unless the row is certainly valid: its
    keys among ``keys``, the ``required`` ones not None, and every value of exactly the type its
    column takes (``str`` within the column's length and free of NUL characters, ``int`` within
    32 bits, ``bool``, timezone-aware ``datetime``). That is a strict subset of what
    :class:`crashdb.validation.RowValidator` accepts; on None the caller validates the row
    properly (which raises the exact error) and takes it the plain way.

    Both are generated code (their text is ``source``): one straight run of checks (and
    conversions) per column, no loop and no call per value, because they run for every value of
    every bulk-inserted row; a loop over the columns costs a tenth to a third more.
    """

    def __init__(
        self, table: sa.Table, columns: Sequence[str], keys: Iterable[str],
        required: Iterable[str], leadFields: int = 1,
    ) -> None:
        required = set(required)
        fields = [f"f{position}" for position in range(len(columns))]
        kinds = [_kind(table.c[name]) for name in columns]
        line = ["def line(row, lead):", *_PROLOGUE, "    nulls = 0"]
        values = ["def values(row, lead):", *_PROLOGUE]
        for name, field, (kind, limit) in zip(columns, fields, kinds):
            line.append(f"    value = get({name!r})")
            values.append(f"    {field} = get({name!r})")
            if name in required:
                line.append("    if value is None: return None")
                values.append(f"    if {field} is None: return None")
            else:
                line.append(f"    if value is None: {field} = MARKER; nulls += 1")
                values.append(f"    if {field} is None: pass")
            for code, branches in ((line, _BRANCHES), (values, _CHECKS)):
                code.extend(f"    {branch}" for branch in branches[kind].format(
                    field=field, limit=limit).splitlines())
                code.append("    else: return None")
        line += [
            '    text = f"{lead}\\t' + "\\t".join(f"{{{field}}}" for field in fields) + '"',
            '    if "\\x00" in text: return None  # only strings can hold one: all at once',
            f'    if text.count("\\t") == {len(fields) + leadFields - 1}'
            ' and text.count("\\\\") == nulls'
            ' and "\\n" not in text and "\\r" not in text:',
            "        return text",
            "    return \"\\t\".join([lead, *[field if field is MARKER else escape(field)",
            f"                             for field in ({', '.join(fields)},)]])",
        ]
        values.append(f"    return [lead, {', '.join(fields)}]")
        self.source = "\n".join(line + [""] + values)
        namespace = {"KEYS": frozenset(keys), "MARKER": _MARKER, "escape": escape, "UTC": UTC,
                     "datetime": datetime.datetime, "LOW": INT32[0], "HIGH": INT32[1]}
        exec(compile(self.source, f"<CheckingEncoder for {table.name}>", "exec"), namespace)
        self.line: Callable[[Any, str], str | None] = namespace["line"]
        self.values: Callable[[Any, Any], list | None] = namespace["values"]


_PROLOGUE = (
    "    if type(row) is not dict or not row.keys() <= KEYS:",
    "        return None",
    "    get = row.get",
)

# what each kind of column accepts (besides None), and how it becomes COPY text
_BRANCHES = {
    _STRING: "elif type(value) is str and len(value) <= {limit}: {field} = value",
    _TEXT: "elif type(value) is str: {field} = value",
    _INTEGER: "elif type(value) is int and LOW <= value <= HIGH: {field} = str(value)",
    _BOOLEAN: "elif value is True: {field} = 't'\nelif value is False: {field} = 'f'",
    _DATETIME: (
        "elif type(value) is datetime and value.tzinfo is UTC: {field} = value.isoformat()\n"
        "elif type(value) is datetime and value.utcoffset() is not None:\n"
        "    {field} = value.astimezone(UTC).isoformat()"
    ),
    _OTHER: "",  # JSON, dates: left to the caller
}

# the same checks, for values kept as they are
_CHECKS = {
    _STRING: "elif type({field}) is str and len({field}) <= {limit} and '\\x00' not in {field}:"
             " pass",
    _TEXT: "elif type({field}) is str and '\\x00' not in {field}: pass",
    _INTEGER: "elif type({field}) is int and LOW <= {field} <= HIGH: pass",
    _BOOLEAN: "elif type({field}) is bool: pass",
    _DATETIME: "elif type({field}) is datetime and {field}.utcoffset() is not None: pass",
    _OTHER: "",
}


# -- streaming to the driver ----------------------------------------------------------------------


class CopySource(Protocol):
    """Rows for ``copyRows`` that make their COPY lines themselves (e.g. with a
    :class:`CheckingEncoder`); iterating them gives their values, as for any other backend."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Sequence[Any]]: ...

    def copyLines(self, formatter: CopyFormatter) -> Iterator[str]: ...


def lines(formatter: CopyFormatter, rows: Collection[Any]) -> Iterator[str]:
    """The COPY lines of ``rows``: their own for a :class:`CopySource`, else ``formatter``'s."""
    copyLines = getattr(rows, "copyLines", None)
    return copyLines(formatter) if copyLines is not None else map(formatter.line, rows)


class _Chain:
    """Several row collections as one, :class:`CopySource` ones keeping their own lines."""

    def __init__(self, parts: Iterable[Collection[Any]]) -> None:
        self.parts = list(parts)

    def __len__(self) -> int:
        return sum(map(len, self.parts))

    def __iter__(self) -> Iterator[Any]:
        return itertools.chain.from_iterable(self.parts)

    def copyLines(self, formatter: CopyFormatter) -> Iterator[str]:
        return itertools.chain.from_iterable(lines(formatter, part) for part in self.parts)


def chain(parts: Iterable[Collection[Any]]) -> _Chain:
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
