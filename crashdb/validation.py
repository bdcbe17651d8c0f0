"""Checking caller input before anything is written or read.

Each column's check is derived from its kind in the model (:func:`columnKind`: length, NUL
characters and lone surrogates, integer range, booleans, aware datetimes within the stored range,
JSON values every backend stores identically), so a new column is validated without new code.
SQLite enforces none of this, PostgreSQL only part of it; crashdb checks everywhere,
identically (docs/input.md says what is accepted, what is refused and why). The ``require*``
functions check one argument; :func:`validatesInput` turns the InvalidInputError they raise into
the failed Deferred that a component method returns.
"""

from __future__ import annotations

import datetime
import enum
import functools
import math
import re
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec

import sqlalchemy as sa
from twisted.internet import defer

from crashdb.exceptions import InvalidInputError

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
#: the stored range of datetimes, in UTC: from the first Monday of year 1000 to the last Monday
#: of year 9999 (exclusive), so that every week holding one is named by a four-digit year and ends
#: before Python's datetime does
STORED_DATETIMES = (
    datetime.datetime(1000, 1, 6, tzinfo=datetime.UTC),
    datetime.datetime(9999, 12, 27, tzinfo=datetime.UTC),
)
#: The days a component takes, first and last: those of STORED_DATETIMES (no report is on a day
#: outside them), which keeps a day's arithmetic (its week, the ten days before it) within
#: Python's dates. A period's exclusive ``end_day`` may be the day after the last.
STORED_DAYS = (STORED_DATETIMES[0].date(),
               STORED_DATETIMES[1].date() - datetime.timedelta(days=1))
#: how deeply JSON lists and objects may nest (a bare scalar is depth 0): far below what any of
#: Python's json (the recursion limit), SQLite's JSON functions (1000) or PostgreSQL (its stack
#: depth) give up at, far above a real crash (Socorro's raw crashes nest three or four deep)
MAX_JSON_DEPTH = 100
#: JSON floats must be smaller in magnitude: PostgreSQL's jsonb keeps numbers as decimals and
#: gives ``1e16`` back as the integer 10000000000000000 (and ``1e23`` as an integer that is not
#: the float at all), where Python writes floats from 1e16 on with an exponent
FLOAT_LIMIT = 1e16
# a code point that UTF-8 cannot encode: Python's stand-in for an undecodable byte
SURROGATE = re.compile("[\ud800-\udfff]")

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
    return textProblem(value)


def textProblem(value: str) -> str | None:
    """Why the string ``value`` cannot be stored as it is on every backend, or None: a NUL
    character (PostgreSQL refuses it) or a lone surrogate (no UTF-8 encodes it: PostgreSQL
    refuses it, SQLite's driver fails on it). ``isascii`` is constant time in CPython, so ASCII
    text costs one call."""
    if "\x00" in value:
        return "contains a NUL character"
    if not value.isascii() and SURROGATE.search(value) is not None:
        return ("contains a lone surrogate (not Unicode text: e.g. an undecodable byte of a"
                " file name); decode such bytes with errors='replace' or 'backslashreplace'")
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
    """Why ``value`` is not an aware datetime that has a UTC time, or None."""
    if not isinstance(value, datetime.datetime):
        return f"expected a datetime, got {type(value).__name__}"
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        return "naive datetime; give a timezone-aware one"
    try:
        value.astimezone(datetime.UTC)
    except OverflowError:
        return "has no UTC time within Python's datetime range"
    return None


def storedDatetimeProblem(value: Any) -> str | None:
    """Why ``value`` is not an aware datetime within :data:`STORED_DATETIMES`, or None."""
    problem = datetimeProblem(value)
    if problem is None and not STORED_DATETIMES[0] <= value < STORED_DATETIMES[1]:
        return (f"out of range: give a time from {STORED_DATETIMES[0]:%Y-%m-%d} to before"
                f" {STORED_DATETIMES[1]:%Y-%m-%d} UTC")
    return problem


def dateProblem(value: Any, end: bool = False) -> str | None:
    """Why ``value`` is not a ``datetime.date`` (a datetime is not a day) of
    :data:`STORED_DAYS` (or, for a period's exclusive ``end``, the day after), or None."""
    if isinstance(value, datetime.datetime) or not isinstance(value, datetime.date):
        return f"expected a date, got {type(value).__name__}"
    first, last = STORED_DAYS[0], STORED_DAYS[1] + datetime.timedelta(days=int(end))
    if not first <= value <= last:
        return f"out of range: give a day from {first} to {last}"
    return None


def jsonProblem(value: Any) -> str | None:
    """Why ``value`` cannot be stored as JSON and read back equal on every backend, or None.

    Accepted: dicts with string keys, lists, strings, bools, None, integers within 64 bits,
    finite floats smaller in magnitude than :data:`FLOAT_LIMIT`, nested at most
    :data:`MAX_JSON_DEPTH` deep. Refused: what JSON has no value for (NaN, infinity, tuples and
    other types, which would come back as something else), what a backend cannot store (a NUL
    character in PostgreSQL's jsonb, a lone surrogate anywhere) or gives back changed (integers
    beyond 64 bits, which SQLite's JSON functions turn into floats; large floats, which jsonb
    turns into integers; non-string keys, which JSON turns into strings).
    """
    stack: list[tuple[Any, int, tuple | None]] = [(value, 0, None)]  # (value, depth, trail)
    while stack:
        item, depth, trail = stack.pop()
        kind = type(item)
        if kind is str:
            problem = textProblem(item)
        elif kind is dict or kind is list:
            if depth == MAX_JSON_DEPTH:
                problem = f"nested deeper than {MAX_JSON_DEPTH} lists and objects"
            elif kind is list:
                stack.extend((child, depth + 1, (trail, position))
                             for position, child in enumerate(item))
                continue
            else:
                problem = None
                for key, child in item.items():
                    problem = (textProblem(key) if type(key) is str
                               else f"object key {key!r} is not a string")
                    if problem is not None:
                        trail = (trail, key)
                        break
                    stack.append((child, depth + 1, (trail, key)))
        elif kind is int:
            problem = None if INT64[0] <= item <= INT64[1] else "integer beyond 64 bits"
        elif kind is float:
            problem = (None if math.isfinite(item) and abs(item) < FLOAT_LIMIT
                       else f"float {item!r} is not finite or not below {FLOAT_LIMIT:g}")
        elif item is None or kind is bool:
            problem = None
        else:
            problem = f"{kind.__name__} is not a JSON value"
        if problem is not None:
            return problem if trail is None else f"{problem} (at {_jsonPath(trail)})"
    return None


def _jsonPath(trail: tuple) -> str:
    """``[key][0]...`` of a value, from its trail of (parent's trail, key) pairs; shortened."""
    steps: list[str] = []
    while trail is not None:
        trail, key = trail
        steps.append(f"[{key!r}]")
    path = "".join(reversed(steps))
    return path if len(path) <= 80 else f"{path[:80]}..."


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
        ColumnKind.DATETIME: storedDatetimeProblem,
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


def requireName(value: Any, field: str, length: int | sa.Column | None = None,
                index: int | None = None) -> str:
    """``value`` if it is a string of at most ``length`` characters that is not blank (a
    product, a version, a token's name), else InvalidInputError naming ``field`` (and the
    batch row ``index``)."""
    if isinstance(length, sa.Column):
        length = columnLength(length)
    problem = stringProblem(value, length)
    if problem is None and not value.strip():
        problem = "is empty"
    if problem is not None:
        raise InvalidInputError(problem, field=field, index=index)
    return value


def requireInteger(value: Any, field: str, minimum: int | None = None) -> None:
    """InvalidInputError unless ``value`` is an integer fit for an integer column (and at least
    ``minimum``)."""
    _require(integerProblem(value), field)
    if minimum is not None and value < minimum:
        raise InvalidInputError(f"must be at least {minimum}", field=field)


def requireBoolean(value: Any, field: str) -> None:
    """InvalidInputError unless ``value`` is a bool."""
    _require(booleanProblem(value), field)


def requireDatetime(
    value: Any, field: str, optional: bool = False, stored: bool = False
) -> None:
    """InvalidInputError unless ``value`` is an aware datetime (or None when ``optional``);
    ``stored``: one within :data:`STORED_DATETIMES` (e.g. the time of a row to find)."""
    if value is None and optional:
        return
    _require((storedDatetimeProblem if stored else datetimeProblem)(value), field)


def requireDay(value: Any, field: str, optional: bool = False) -> None:
    """InvalidInputError unless ``value`` is a ``datetime.date`` (or None when ``optional``)."""
    if value is None and optional:
        return
    _require(dateProblem(value), field)


#: SPEC 8's default period: the week up to tomorrow (UTC)
DEFAULT_PERIOD = datetime.timedelta(days=7)


def requirePeriod(start_day: Any, end_day: Any) -> tuple[datetime.date, datetime.date]:
    """[start_day, end_day) with SPEC 8's defaults (end: tomorrow, UTC; start: a week before
    the end); InvalidInputError unless both are days and start comes before end."""
    if end_day is None:
        end_day = datetime.datetime.now(datetime.UTC).date() + datetime.timedelta(days=1)
    _require(dateProblem(end_day, end=True), "end_day")
    if start_day is None:
        start_day = end_day - DEFAULT_PERIOD
    requireDay(start_day, "start_day")
    if start_day >= end_day:
        raise InvalidInputError("must be before end_day", field="start_day")
    return start_day, end_day


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
