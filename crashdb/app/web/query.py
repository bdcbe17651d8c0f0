"""A request's query string, read into the values the components take.

A value that cannot be read is an :class:`InvalidInputError` naming the parameter, the same
error a component raises for a bad argument, so both become the same HTTP 400.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any

from crashdb import model
from crashdb.exceptions import InvalidInputError
from crashdb.validation import ColumnKind, columnKind

UTC = datetime.UTC
DAY = datetime.timedelta(days=1)

# Search parameters that are not filters.
SEARCH_OPTIONS = frozenset({"start", "end", "days", "facet", "facet_size", "column", "sort",
                            "limit", "offset"})
# A filter's value may start with its operator (Socorro's SuperSearch URLs: `signature=~GC`);
# the longest prefix wins, `=` makes the rest literal, and a bare value means `=`.
OPERATOR_PREFIXES = (("!__exists__", "exists", False), ("__exists__", "exists", True),
                     (">=", ">=", None), ("<=", "<=", None), ("!", "!=", None),
                     ("~", "~", None), ("^", "^", None), (">", ">", None), ("<", "<", None),
                     ("=", "=", None))
COLUMN_KINDS = {column.name: columnKind(column) for column in model.reports.c}


def today() -> datetime.date:
    return datetime.datetime.now(UTC).date()


class Query:
    """Typed access to one request's query arguments (decoded as UTF-8)."""

    def __init__(self, args: dict[bytes, list[bytes]]) -> None:
        self.args: dict[str, list[str]] = {}
        for key, values in args.items():
            try:
                name = key.decode("utf-8")
                self.args[name] = [value.decode("utf-8") for value in values]
            except UnicodeDecodeError:
                raise InvalidInputError("is not UTF-8", field=repr(key)[2:-1]) from None

    def text(self, name: str, default: str | None = None) -> str | None:
        """The last non-empty value of ``name``, else ``default``."""
        values = [value for value in self.args.get(name, ()) if value != ""]
        return values[-1] if values else default

    def texts(self, name: str) -> list[str]:
        """Every non-empty value of ``name``, comma-separated lists split."""
        return [part.strip() for value in self.args.get(name, ()) for part in value.split(",")
                if part.strip()]

    def integer(self, name: str, default: int, minimum: int, maximum: int) -> int:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise InvalidInputError("expected a whole number", field=name) from None
        if not minimum <= value <= maximum:
            raise InvalidInputError(f"must be from {minimum} to {maximum}", field=name)
        return value

    def day(self, name: str, default: datetime.date) -> datetime.date:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            return datetime.date.fromisoformat(raw)
        except ValueError:
            raise InvalidInputError("expected a day as YYYY-MM-DD", field=name) from None

    def period(self, default_days: int = 7, maximum: int = 366) -> tuple[datetime.date,
                                                                          datetime.date]:
        """``(start_day, end_day)`` of the last ``days`` days up to today (UTC), end exclusive."""
        days = self.integer("days", default_days, 1, maximum)
        end = today() + DAY
        return end - days * DAY, end

    def filters(self) -> list[tuple[str, str, Any]]:
        """Search filters: every parameter that is not an option, its operator read from the
        value's prefix; several ``=`` (or ``!=``) values of one field become a list."""
        grouped: dict[tuple[str, str], list[Any]] = {}
        single: list[tuple[str, str, Any]] = []
        for field, values in self.args.items():
            if field in SEARCH_OPTIONS:
                continue
            for raw in values:
                if raw == "":
                    continue
                op, value = _operator(raw)
                typed = value if op == "exists" else _typed(field, value)
                if op in ("=", "!="):
                    grouped.setdefault((field, op), []).append(typed)
                else:
                    single.append((field, op, typed))
        lists = [(field, op, values[0] if len(values) == 1 else values)
                 for (field, op), values in grouped.items()]
        return lists + single

    def searchArguments(self) -> dict[str, Any]:
        """Keyword arguments of ``db.search.search`` (SPEC 15) from this query."""
        if self.text("start") is None:
            start_day, end_day = self.period()
        else:
            start_day = self.day("start", today())
            # (a week after the start, or the last day Python has: search refuses it)
            end_day = self.day("end", start_day + min(7 * DAY, datetime.date.max - start_day))
        arguments: dict[str, Any] = {
            "start": datetime.datetime(start_day.year, start_day.month, start_day.day,
                                       tzinfo=UTC),
            "end": datetime.datetime(end_day.year, end_day.month, end_day.day, tzinfo=UTC),
            "filters": self.filters(),
            "facets": self.texts("facet") or ["signature", "product", "version", "os_name"],
            "facet_size": self.integer("facet_size", 10, 1, 1000),
            "limit": self.integer("limit", 50, 1, 1000),
            "offset": self.integer("offset", 0, 0, 1_000_000),
        }
        if self.texts("column"):
            arguments["columns"] = self.texts("column")
        if self.texts("sort"):
            arguments["sort"] = self.texts("sort")
        return arguments


def _operator(raw: str) -> tuple[str, Any]:
    for prefix, op, fixed in OPERATOR_PREFIXES:
        if raw.startswith(prefix):
            rest = raw[len(prefix):]
            if op == "exists":
                if rest:
                    raise InvalidInputError(f"nothing may follow {prefix}", field=raw)
                return op, fixed
            return op, rest
    return "=", raw


def _typed(field: str, value: str) -> Any:
    """``value`` as the type of the report column ``field`` (other fields are text)."""
    kind = COLUMN_KINDS.get(field)
    if kind is ColumnKind.INTEGER:
        try:
            return int(value)
        except ValueError:
            raise InvalidInputError("expected a whole number", field=field) from None
    if kind is ColumnKind.BOOLEAN:
        if value.lower() not in ("true", "false"):
            raise InvalidInputError("expected true or false", field=field)
        return value.lower() == "true"
    if kind is ColumnKind.DATETIME:
        try:
            when = datetime.datetime.fromisoformat(value)
        except ValueError:
            raise InvalidInputError("expected an ISO date and time", field=field) from None
        return when if when.tzinfo else when.replace(tzinfo=UTC)
    return value


def searchFields(arguments: dict[str, Any]) -> Iterable[Any]:
    """Every field a search names: filtered on, faceted on, returned or sorted by."""
    yield from (field for field, _, _ in arguments["filters"])
    yield from arguments["facets"]
    yield from arguments.get("columns", ())
    yield from (key.lstrip("-") for key in arguments.get("sort", ()))
