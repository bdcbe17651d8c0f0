"""Checking while formatting: bulk rows straight from input dicts, each value checked once.

:class:`CheckingEncoder` is generated code (its text is ``source``, viewable for debugging): one
straight run of checks and conversions per column, because it runs for every value of every
bulk-inserted row.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from crashdb.bulk.copytext import escape
from crashdb.validation import (
    INT32,
    STORED_DATETIMES,
    SURROGATE,
    ColumnKind,
    columnKind,
    columnLength,
)

UTC = datetime.UTC

# a str equal to NULL that no caller can hold: tells the markers from values in a line's fields
_MARKER = "".join(["\\", "N"])


def _kind(column: sa.Column) -> tuple[ColumnKind, int]:
    kind = columnKind(column)
    return kind, (columnLength(column) or 0)


class CheckingEncoder:
    """Rows straight from input dicts, each value checked as it is taken.

    ``line(row, lead)`` gives ``lead`` (``leadFields`` fields already formatted and joined by
    tabs, needing no escapes: e.g. an id the caller assigned) and the values of ``columns`` as
    one COPY line; ``values(row, lead)`` gives ``[lead, *values]``, the values as they are (the
    bulk path of the other backends). Both give None unless the row is certainly valid: its
    keys among ``keys``, the ``required`` ones not None, and every value of exactly the type its
    column takes (``str`` within the column's length and free of NUL characters and lone
    surrogates, ``int`` within 32 bits, ``bool``, timezone-aware ``datetime`` within
    ``STORED_DATETIMES``). That is a strict subset of what
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
                code.extend(f"    {branch}" for branch in branches.get(kind, "").format(
                    field=field, limit=limit).splitlines())
                code.append("    else: return None")
        line += [
            '    text = f"{lead}\\t' + "\\t".join(f"{{{field}}}" for field in fields) + '"',
            '    if "\\x00" in text: return None  # only strings can hold one: all at once',
            "    if not text.isascii() and SURROGATE(text) is not None: return None  # likewise",
            f'    if text.count("\\t") == {len(fields) + leadFields - 1}'
            ' and text.count("\\\\") == nulls'
            ' and "\\n" not in text and "\\r" not in text:',
            "        return text",
            "    return \"\\t\".join([lead, *[field if field is MARKER else escape(field)",
            f"                             for field in ({', '.join(fields)},)]])",
        ]
        values.append(f"    return [lead, {', '.join(fields)}]")
        self.source = "\n".join(line + [""] + values)
        namespace: dict[str, Any] = {
            "KEYS": frozenset(keys), "MARKER": _MARKER, "escape": escape, "UTC": UTC,
            "datetime": datetime.datetime, "LOW": INT32[0], "HIGH": INT32[1],
            "SURROGATE": SURROGATE.search, "EARLIEST": STORED_DATETIMES[0],
            "LATEST": STORED_DATETIMES[1]}
        exec(compile(self.source, f"<CheckingEncoder for {table.name}>", "exec"), namespace)
        self.line: Callable[[Any, str], str | None] = namespace["line"]
        self.values: Callable[[Any, Any], list | None] = namespace["values"]


_PROLOGUE = (
    "    if type(row) is not dict or not row.keys() <= KEYS:",
    "        return None",
    "    get = row.get",
)

# what each kind of column accepts (besides None), and how it becomes COPY text; JSON and dates
# are left to the caller
_BRANCHES = {
    ColumnKind.STRING: "elif type(value) is str and len(value) <= {limit}: {field} = value",
    ColumnKind.TEXT: "elif type(value) is str: {field} = value",
    ColumnKind.INTEGER: "elif type(value) is int and LOW <= value <= HIGH: {field} = str(value)",
    ColumnKind.BOOLEAN: "elif value is True: {field} = 't'\nelif value is False: {field} = 'f'",
    ColumnKind.DATETIME: (
        "elif type(value) is datetime and value.tzinfo is UTC and EARLIEST <= value < LATEST:\n"
        "    {field} = value.isoformat()\n"
        "elif type(value) is datetime and value.utcoffset() is not None"
        " and EARLIEST <= value < LATEST:\n"
        "    {field} = value.astimezone(UTC).isoformat()"
    ),
}

# the same checks, for values kept as they are (``isascii`` is constant time in CPython: only
# text with other characters is searched for a lone surrogate)
_CHECKS = {
    ColumnKind.STRING: "elif type({field}) is str and len({field}) <= {limit}"
                       " and '\\x00' not in {field}"
                       " and ({field}.isascii() or SURROGATE({field}) is None): pass",
    ColumnKind.TEXT: "elif type({field}) is str and '\\x00' not in {field}"
                     " and ({field}.isascii() or SURROGATE({field}) is None): pass",
    ColumnKind.INTEGER: "elif type({field}) is int and LOW <= {field} <= HIGH: pass",
    ColumnKind.BOOLEAN: "elif type({field}) is bool: pass",
    ColumnKind.DATETIME: "elif type({field}) is datetime and {field}.utcoffset() is not None"
                         " and EARLIEST <= {field} < LATEST: pass",
}


