"""Checking caller input before anything is written or read.

Each column's check is derived from its kind in the model (:func:`columnKind`: length, NUL
characters, integer range, booleans, aware datetimes), so a new column is validated without new
code. SQLite enforces none of this, PostgreSQL only part of it; crashdb checks everywhere,
identically. The ``require*`` functions check one argument; :func:`validatesInput` turns the
InvalidInputError they raise into the failed Deferred that a component method returns.
"""

from __future__ import annotations

import datetime
import enum
import functools
import json
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec

import sqlalchemy as sa
from twisted.internet import defer

from crashdb.exceptions import InvalidInputError

INT32 = (-(2**31), 2**31 - 1)

Check = Callable[[Any], str | None]  # returns an error message, or None when the value is fine
P = ParamSpec("P")


class ColumnKind(enum.Enum):
    """What a column holds, as far as checking and bulk formatting are concerned."""

    JSON = "json"
    STRING = "string"  # text of a bounded length
    TEXT = "text"
    BOOLEAN = "boolean"
    INTEGER = "integer"
    DATETIME = "datetime"
    DATE = "date"


def baseType(column: sa.Column) -> sa.types.TypeEngine:
    """The column's type, seen through a TypeDecorator (UTCDateTime is a DateTime)."""
    kind = column.type
    return kind.impl_instance if isinstance(kind, sa.types.TypeDecorator) else kind


def columnLength(column: sa.Column) -> int | None:
    """The length limit of a string column, or None (Text, or not a string)."""
    return getattr(baseType(column), "length", None)


def columnKind(column: sa.Column) -> ColumnKind:
    """The kind of ``column``: the one place that reads the model's column types."""
    kind = baseType(column)
    if isinstance(kind, sa.JSON):
        return ColumnKind.JSON
    if isinstance(kind, sa.String):  # Text too
        return ColumnKind.TEXT if kind.length is None else ColumnKind.STRING
    if isinstance(kind, sa.Boolean):
        return ColumnKind.BOOLEAN
    if isinstance(kind, sa.Integer):
        return ColumnKind.INTEGER
    if isinstance(kind, sa.DateTime):
        return ColumnKind.DATETIME
    if isinstance(kind, sa.Date):
        return ColumnKind.DATE
    raise TypeError(f"no kind for column {column} of type {column.type!r}")


# -- why a value does not fit ---------------------------------------------------------------------


def stringProblem(value: Any, length: int | None = None) -> str | None:
    """Why ``value`` is not a string fit for a column of ``length``, or None."""
    if type(value) is not str:
        return f"expected a string, got {type(value).__name__}"
    if length is not None and len(value) > length:
        return f"longer than {length} characters ({len(value)})"
    if "\x00" in value:
        return "contains a NUL character"
    return None


def integerProblem(value: Any) -> str | None:
    """Why ``value`` is not an integer fit for an integer column, or None."""
    if type(value) is not int:
        return f"expected an integer, got {type(value).__name__}"
    if not INT32[0] <= value <= INT32[1]:
        return f"integer out of range ({value})"
    return None


def booleanProblem(value: Any) -> str | None:
    """Why ``value`` is not a bool (0 and 1 are not), or None."""
    if type(value) is not bool:
        return f"expected a boolean, got {type(value).__name__}"
    return None


def datetimeProblem(value: Any) -> str | None:
    """Why ``value`` is not an aware datetime, or None."""
    if not isinstance(value, datetime.datetime):
        return f"expected a datetime, got {type(value).__name__}"
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        return "naive datetime; give a timezone-aware one"
    return None


def dateProblem(value: Any) -> str | None:
    """Why ``value`` is not a ``datetime.date`` (a datetime is not a day), or None."""
    if isinstance(value, datetime.datetime) or not isinstance(value, datetime.date):
        return f"expected a date, got {type(value).__name__}"
    return None


def jsonProblem(value: Any) -> str | None:
    """Why ``value`` cannot be stored as JSON on every backend, or None.

    PostgreSQL's JSONB refuses ``\\u0000`` in strings, and NaN or infinity are not JSON.
    """
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as error:
        return f"not JSON-serialisable: {error}"
    if "\\u0000" in text:
        return "contains a NUL character"
    return None


def _jsonObjectProblem(value: Any) -> str | None:
    if not isinstance(value, dict):
        return f"expected a JSON object (dict), got {type(value).__name__}"
    return jsonProblem(value)


def columnCheck(column: sa.Column) -> Check:
    """The check for one column, from its kind."""
    kind = columnKind(column)
    if kind in (ColumnKind.STRING, ColumnKind.TEXT):
        return functools.partial(stringProblem, length=columnLength(column))
    return {
        ColumnKind.JSON: _jsonObjectProblem,
        ColumnKind.BOOLEAN: booleanProblem,
        ColumnKind.INTEGER: integerProblem,
        ColumnKind.DATETIME: datetimeProblem,
        ColumnKind.DATE: dateProblem,
    }[kind]


class RowValidator:
    """Validates input rows for ``table``: known keys only, required keys present and not None,
    each value fit for its column. ``extra`` names further keys the caller handles itself."""

    def __init__(
        self,
        table: sa.Table,
        required: Iterable[str] = (),
        exclude: Iterable[str] = (),
        extra: Iterable[str] = (),
    ) -> None:
        excluded = set(exclude)
        self.checks: dict[str, Check] = {
            c.name: columnCheck(c) for c in table.columns if c.name not in excluded
        }
        self.required = tuple(required)
        self.extra = frozenset(extra)
        self.excluded = frozenset(excluded)

    def validate(self, row: Any, index: int | None = None) -> None:
        """Raise InvalidInputError (with ``field`` and ``index``) for the first problem."""
        if not isinstance(row, dict):
            raise InvalidInputError(f"expected a dict, got {type(row).__name__}", index=index)
        for name in self.required:
            if row.get(name) is None:
                raise InvalidInputError("is required", field=name, index=index)
        checks = self.checks
        for name, value in row.items():
            check = checks.get(name)
            if check is None:
                if name in self.extra:
                    continue
                why = "is set by crashdb" if name in self.excluded else "is not a known column"
                raise InvalidInputError(why, field=name, index=index)
            if value is not None:
                problem = check(value)
                if problem is not None:
                    raise InvalidInputError(problem, field=name, index=index)


# -- one argument at a time -----------------------------------------------------------------------


def _require(problem: str | None, field: str) -> None:
    if problem is not None:
        raise InvalidInputError(problem, field=field)


def requireString(value: Any, field: str, length: int | sa.Column | None = None) -> None:
    """InvalidInputError unless ``value`` is a string of at most ``length`` characters (or
    fit for the column ``length``)."""
    if isinstance(length, sa.Column):
        length = columnLength(length)
    _require(stringProblem(value, length), field)


def requireInteger(value: Any, field: str, minimum: int | None = None) -> None:
    """InvalidInputError unless ``value`` is an integer fit for an integer column (and at least
    ``minimum``)."""
    _require(integerProblem(value), field)
    if minimum is not None and value < minimum:
        raise InvalidInputError(f"must be at least {minimum}", field=field)


def requireBoolean(value: Any, field: str) -> None:
    """InvalidInputError unless ``value`` is a bool."""
    _require(booleanProblem(value), field)


def requireDatetime(value: Any, field: str, optional: bool = False) -> None:
    """InvalidInputError unless ``value`` is an aware datetime (or None when ``optional``)."""
    if value is None and optional:
        return
    _require(datetimeProblem(value), field)


def requireDay(value: Any, field: str, optional: bool = False) -> None:
    """InvalidInputError unless ``value`` is a ``datetime.date`` (or None when ``optional``)."""
    if value is None and optional:
        return
    _require(dateProblem(value), field)


def validatesInput(method: Callable[P, defer.Deferred]) -> Callable[P, defer.Deferred]:
    """A component method that checks its arguments by raising InvalidInputError returns a
    failed Deferred instead: every public method reports bad input the same way."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kw: P.kwargs) -> defer.Deferred:
        try:
            return method(*args, **kw)
        except InvalidInputError as error:
            return defer.fail(error)

    return wrapper
