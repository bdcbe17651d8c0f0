"""Checking caller input against the model before anything is written.

Each column's check is derived from its type in the model (length, NUL characters, integer
range, booleans, aware datetimes), so a new column is validated without new code. SQLite
enforces none of this, PostgreSQL only part of it; crashdb checks everywhere, identically.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Iterable
from typing import Any

import sqlalchemy as sa

from crashdb.exceptions import InvalidInputError

INT32 = (-(2**31), 2**31 - 1)

Check = Callable[[Any], str | None]  # returns an error message, or None when the value is fine


def _stringCheck(length: int | None) -> Check:
    def check(value: Any) -> str | None:
        if type(value) is not str:
            return f"expected a string, got {type(value).__name__}"
        if length is not None and len(value) > length:
            return f"longer than {length} characters ({len(value)})"
        if "\x00" in value:
            return "contains a NUL character"
        return None

    return check


def _integerCheck(value: Any) -> str | None:
    if type(value) is not int:
        return f"expected an integer, got {type(value).__name__}"
    if not INT32[0] <= value <= INT32[1]:
        return f"integer out of range ({value})"
    return None


def _booleanCheck(value: Any) -> str | None:
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


def _dateCheck(value: Any) -> str | None:
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


def _jsonCheck(value: Any) -> str | None:
    if not isinstance(value, dict):
        return f"expected a JSON object (dict), got {type(value).__name__}"
    return jsonProblem(value)


def baseType(column: sa.Column) -> sa.types.TypeEngine:
    """The column's type, seen through a TypeDecorator (UTCDateTime is a DateTime)."""
    kind = column.type
    return kind.impl_instance if isinstance(kind, sa.types.TypeDecorator) else kind


def columnCheck(column: sa.Column) -> Check:
    """The check for one column, from its type."""
    kind = baseType(column)
    if isinstance(kind, sa.JSON):
        return _jsonCheck
    if isinstance(kind, sa.String):  # Text too
        return _stringCheck(kind.length)
    if isinstance(kind, sa.Boolean):
        return _booleanCheck
    if isinstance(kind, sa.Integer):
        return _integerCheck
    if isinstance(kind, sa.DateTime):
        return datetimeProblem
    if isinstance(kind, sa.Date):
        return _dateCheck
    raise TypeError(f"no check for column {column} of type {column.type!r}")


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

    def validateAll(self, rows: Any) -> None:
        """Validate a batch; the error names the first bad row's ``index``."""
        if not isinstance(rows, list | tuple):
            raise InvalidInputError(f"expected a list, got {type(rows).__name__}")
        for index, row in enumerate(rows):
            self.validate(row, index)


def requireDatetime(value: Any, field: str, optional: bool = False) -> None:
    """InvalidInputError unless ``value`` is an aware datetime (or None when ``optional``)."""
    if value is None and optional:
        return
    problem = datetimeProblem(value)
    if problem is not None:
        raise InvalidInputError(problem, field=field)


def requireString(value: Any, field: str, length: int | None = None) -> None:
    """InvalidInputError unless ``value`` is a string fit for a column of ``length``."""
    problem = _stringCheck(length)(value)
    if problem is not None:
        raise InvalidInputError(problem, field=field)


def requireInteger(value: Any, field: str) -> None:
    """InvalidInputError unless ``value`` is an integer fit for an integer column."""
    problem = _integerCheck(value)
    if problem is not None:
        raise InvalidInputError(problem, field=field)
