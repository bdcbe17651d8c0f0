"""Search with facets (SPEC §15, Socorro's SuperSearch): any question about the crashes of a date
range, answered in SQL over only the weeks the range overlaps.

A search is a list of ``(field, op, value)`` filters ANDed together, a list of facets (term
counts, the day histogram, the installations count) and a page of hits. Nothing of the caller's
reaches the SQL as text: fields come from a whitelist (the report columns, ``addon``,
``plugin``, ``raw.KEY`` with KEY matching ``[A-Za-z0-9_]{1,64}``), operators from a fixed table,
and every value is a bound parameter checked against the field's type first.

Fields living in other tables (``addon``, ``plugin``, ``raw.KEY``) are tested with ``EXISTS``
subqueries; ``!=`` and ``exists False`` with ``NOT EXISTS``, so a report lacking the thing
matches them. A report's raw crash is the row of ``raw_crashes`` with the same uuid in the same
week (``raw_crashes`` has its own ``date_processed``, set when the crash was collected; the
weekly partitions of both tables line up, and a uuid is unique within a week).
"""

from __future__ import annotations

import datetime
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from twisted.internet import defer

from crashdb import model
from crashdb.backends.base import Backend
from crashdb.base import DBConnectorComponent
from crashdb.exceptions import InvalidInputError
from crashdb.partitions import WEEK, readable, weekStart
from crashdb.summaries import COLUMN_FIELDS, byCountThenTerm, readFacets, uptimeBucket
from crashdb.validation import (
    baseType,
    requireDatetime,
    requireInteger,
    requirePeriod,
    requireString,
    validatesInput,
)

UTC = datetime.UTC
DAY = datetime.timedelta(days=1)

OPS = ("=", "!=", "~", "^", ">", ">=", "<", "<=", "exists")
COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
}
#: which operators each kind of value allows
KIND_OPS = {
    "string": frozenset(OPS),
    "integer": frozenset(("=", "!=", ">", ">=", "<", "<=", "exists")),
    "datetime": frozenset(("=", "!=", ">", ">=", "<", "<=", "exists")),
    "boolean": frozenset(("=", "!=", "exists")),
}
DEFAULT_COLUMNS = ("uuid", "date_processed", "product", "version", "signature", "os_name",
                   "build", "reason")
DEFAULT_SORT = ("-date_processed",)
REPORT_COLUMNS = tuple(column.name for column in model.reports.c)
RAW_PREFIX = "raw."
RAW_KEY = re.compile(r"[A-Za-z0-9_]{1,64}")
HISTOGRAM_DAY = "_histogram.day"
INSTALLATIONS = "_cardinality.installations"
UPTIME = "uptime"
MAX_LIMIT = 10_000
MAX_FACET_SIZE = 10_000
MAX_VALUES = 500  # values in one `=` or `!=` list
MAX_FILTERS = 50  # so that a statement's bound values stay under SQLite's limit (32766)
MAX_FACETS = 50
MAX_HISTOGRAM_DAYS = 3660
YEARS = (1000, 9000)  # datetimes from 1000 to 8999: no overflow converting zones or weeks


def _columnKind(column: sa.Column) -> str:
    kind = baseType(column)
    if isinstance(kind, sa.Boolean):
        return "boolean"
    if isinstance(kind, sa.Integer):
        return "integer"
    if isinstance(kind, sa.DateTime):
        return "datetime"
    return "string"


COLUMN_KINDS = {column.name: _columnKind(column) for column in model.reports.c}


@dataclass(frozen=True)
class Field:
    """A searchable field: ``source`` is ``column``, ``addon``, ``plugin`` or ``raw``; ``kind``
    the type its values have (``string``, ``integer``, ``datetime``, ``boolean``)."""

    name: str
    source: str
    kind: str
    key: str  # the report column, or the raw crash's key


def fieldFor(name: Any, argument: str) -> Field:
    """The field called ``name``, or InvalidInputError naming it (``argument`` if it is not even
    a string)."""
    if not isinstance(name, str):
        raise InvalidInputError(f"expected a field name, got {type(name).__name__}",
                                field=argument)
    if name in COLUMN_KINDS:
        return Field(name, "column", COLUMN_KINDS[name], name)
    if name in ("addon", "plugin"):
        return Field(name, name, "string", name)
    if name.startswith(RAW_PREFIX):
        key = name[len(RAW_PREFIX):]
        if RAW_KEY.fullmatch(key) is None:
            raise InvalidInputError("a raw crash key is 1 to 64 of A-Z, a-z, 0-9 and _",
                                    field=name)
        return Field(name, "raw", "string", key)
    raise InvalidInputError("unknown field", field=name)


@dataclass(frozen=True)
class Filter:
    field: Field
    op: str
    value: Any  # a tuple of values for = and !=, a bool for exists, else one value


def requireMoment(value: Any, field: str) -> None:
    """InvalidInputError unless ``value`` is an aware datetime of the years crashdb searches."""
    requireDatetime(value, field)
    if not YEARS[0] <= value.year < YEARS[1]:
        raise InvalidInputError(f"expected a year from {YEARS[0]} to {YEARS[1] - 1}",
                                field=field)


def _checkValue(field: Field, value: Any) -> None:
    if field.kind == "string":
        if type(value) is not str:
            raise InvalidInputError(f"expected a string, got {type(value).__name__}",
                                    field=field.name)
        if "\x00" in value:
            raise InvalidInputError("contains a NUL character", field=field.name)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInputError("not valid Unicode text (a lone surrogate)",
                                    field=field.name) from None
    elif field.kind == "integer":
        requireInteger(value, field.name)
    elif field.kind == "datetime":
        requireMoment(value, field.name)
    elif type(value) is not bool:
        raise InvalidInputError(f"expected a boolean, got {type(value).__name__}",
                                field=field.name)


def parseFilter(triple: Any) -> Filter:
    """One ``(field, op, value)`` triple, checked."""
    if not isinstance(triple, tuple | list) or len(triple) != 3:
        raise InvalidInputError("each filter is a (field, op, value) triple", field="filters")
    name, op, value = triple
    field = fieldFor(name, "filters")
    if not isinstance(op, str) or op not in OPS:
        raise InvalidInputError(f"unknown operator; use one of {' '.join(OPS)}", field=field.name)
    if op not in KIND_OPS[field.kind]:
        raise InvalidInputError(f"operator {op} does not apply to {field.kind} values",
                                field=field.name)
    if op == "exists":
        if type(value) is not bool:
            raise InvalidInputError("exists takes True or False", field=field.name)
        return Filter(field, op, value)
    if op in ("=", "!="):
        values = tuple(value) if isinstance(value, list | tuple) else (value,)
        if not values or len(values) > MAX_VALUES:
            raise InvalidInputError(f"expected 1 to {MAX_VALUES} values", field=field.name)
        for each in values:
            _checkValue(field, each)
        return Filter(field, op, values)
    _checkValue(field, value)
    return Filter(field, op, value)


def _sequence(value: Any, argument: str, longest: int) -> Sequence[Any]:
    if not isinstance(value, list | tuple):
        raise InvalidInputError(f"expected a list, got {type(value).__name__}", field=argument)
    if len(value) > longest:
        raise InvalidInputError(f"at most {longest}", field=argument)
    return value


def _count(value: Any, argument: str, lowest: int, highest: int) -> None:
    requireInteger(value, argument)
    if not lowest <= value <= highest:
        raise InvalidInputError(f"must be from {lowest} to {highest}", field=argument)


def parseFacet(name: Any) -> Field | str:
    """A facet: one of the two special ones (its name), else the field it counts terms of."""
    if name in (HISTOGRAM_DAY, INSTALLATIONS):
        return name
    return fieldFor(name, "facets")


def parseSort(key: Any) -> tuple[str, bool]:
    """``(column, descending)`` for ``"column"`` or ``"-column"``."""
    if not isinstance(key, str):
        raise InvalidInputError(f"expected a column name, got {type(key).__name__}",
                                field="sort")
    column = key.removeprefix("-")
    if column not in COLUMN_KINDS:
        raise InvalidInputError("sort by a report column", field=key)
    return column, key.startswith("-")


@dataclass(frozen=True)
class Search:
    """A search, checked."""

    start: datetime.datetime
    end: datetime.datetime
    filters: tuple[Filter, ...]
    facets: tuple[tuple[str, Field | str], ...]
    facet_size: int
    columns: tuple[str, ...]
    sort: tuple[tuple[str, bool], ...]
    limit: int
    offset: int

    @property
    def weekBounds(self) -> tuple[datetime.datetime, datetime.datetime]:
        """[Monday of the first week, Monday after the last week) the range overlaps."""
        return weekStart(self.start), weekStart(self.end - datetime.timedelta.resolution) + WEEK


def parseSearch(start, end, filters, facets, facet_size, columns, sort, limit, offset) -> Search:
    """Every argument of ``search``, checked; InvalidInputError naming the first bad one."""
    requireMoment(start, "start")
    requireMoment(end, "end")
    if not start < end:
        raise InvalidInputError("must be after start", field="end")
    parsedFilters = tuple(parseFilter(triple)
                          for triple in _sequence(filters, "filters", MAX_FILTERS))
    parsedFacets = tuple((name, parseFacet(name))
                         for name in _sequence(facets, "facets", MAX_FACETS))
    if HISTOGRAM_DAY in facets and end - start > MAX_HISTOGRAM_DAYS * DAY:
        raise InvalidInputError(f"at most {MAX_HISTOGRAM_DAYS} days", field=HISTOGRAM_DAY)
    _count(facet_size, "facet_size", 1, MAX_FACET_SIZE)
    if columns is None:
        columns = DEFAULT_COLUMNS
    for name in _sequence(columns, "columns", len(REPORT_COLUMNS)):
        if not isinstance(name, str) or name not in COLUMN_KINDS:
            raise InvalidInputError("hits show report columns",
                                    field=name if isinstance(name, str) else "columns")
    parsedSort = tuple(parseSort(key) for key in _sequence(sort, "sort", len(REPORT_COLUMNS)))
    _count(limit, "limit", 0, MAX_LIMIT)
    _count(offset, "offset", 0, 2**31 - 1)
    return Search(start.astimezone(UTC), end.astimezone(UTC), parsedFilters, parsedFacets,
                  facet_size, tuple(columns), parsedSort, limit, offset)


def escapeLike(value: str) -> str:
    """``value`` with LIKE's wildcards (and the escape character) matching themselves."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# -- what the two backends write differently (see docs/components/search.md) -----------------------


class _Query:
    """The SQL of one search on one connection: its tables (only the weeks it overlaps) and
    the pieces every statement of the search shares."""

    def __init__(self, conn: sa.Connection, backend: Backend, search: Search) -> None:
        self.conn = conn
        self.backend = backend
        self.search = search
        self.reports = readable(conn, backend, "reports", search.start, search.end)
        self.linked: dict[str, sa.FromClause] = {}
        r = self.reports.c
        self.where = [r.date_processed >= search.start, r.date_processed < search.end]
        self.where.extend(self.condition(r, each) for each in search.filters)

    def table(self, parent: str) -> sa.FromClause:
        if parent not in self.linked:
            self.linked[parent] = readable(
                self.conn, self.backend, parent, self.search.start, self.search.end)
        return self.linked[parent]

    def linkedTerm(self, field: Field, r: Any) -> tuple[sa.FromClause, list, sa.ColumnElement,
                                                        Any]:
        """For a field kept outside ``reports``: the FROM clause holding it, the conditions
        tying its rows to the report ``r``, the term's expression, and a condition the term
        must also meet to count as set (or None)."""
        first, last = self.search.weekBounds
        if field.source == "addon":
            extensions = self.table("extensions")
            link = [extensions.c.report_id == r.id, extensions.c.uuid == r.uuid]
            return extensions, self._inWeeks(extensions, link), extensions.c.extension_id, None
        if field.source == "plugin":
            plugins = self.table("plugins_reports")
            joined = plugins.join(model.plugins, model.plugins.c.id == plugins.c.plugin_id)
            link = [plugins.c.report_id == r.id, plugins.c.uuid == r.uuid]
            return joined, self._inWeeks(plugins, link), model.plugins.c.filename, None
        raw = self.table("raw_crashes")
        link = [raw.c.uuid == r.uuid]
        if first + WEEK < last:  # one week's bounds already make it the report's week
            link.append(self.backend.sameWeek(raw.c.date_processed, r.date_processed))
        return raw, self._inWeeks(raw, link), *self.backend.jsonText(raw.c.raw_crash, field.key)

    def _inWeeks(self, table: sa.FromClause, link: list) -> list:
        first, last = self.search.weekBounds
        return [*link, table.c.date_processed >= first, table.c.date_processed < last]

    def matches(self, term: sa.ColumnElement, field: Field, op: str, value: Any):
        """``term`` satisfies ``op value`` (never for NULL). ``!=`` is tested as ``=`` and
        ``exists`` as ``exists True``: the caller negates them for ``!=`` and ``exists False``."""
        if op in ("=", "!="):
            return term == value[0] if len(value) == 1 else term.in_(value)
        if op == "exists":
            return sa.and_(term.is_not(None), term != "") if field.kind == "string" \
                else term.is_not(None)
        if op == "~":
            return self.backend.caseInsensitiveLike(term, f"%{escapeLike(value)}%")
        if op == "^":
            return self.backend.caseInsensitiveLike(term, f"{escapeLike(value)}%")
        if field.kind == "string":
            term = self.backend.codePointOrder(term)
        return COMPARISONS[op](term, value)

    def condition(self, r: Any, each: Filter) -> sa.ColumnElement[bool]:
        field, op, value = each.field, each.op, each.value
        negated = op == "!=" or (op == "exists" and value is False)
        if field.source == "column":
            term = r[field.key]
            found = self.matches(term, field, op, value)
            return sa.or_(term.is_(None), sa.not_(found)) if negated else found
        source, link, term, isSet = self.linkedTerm(field, r)
        found = sa.exists(sa.select(sa.literal(1)).select_from(source).where(
            *link, self.matches(term, field, op, value),
            *(() if isSet is None else (isSet,))))
        return sa.not_(found) if negated else found

    # -- the statements ----------------------------------------------------------------------

    def total(self) -> int:
        query = sa.select(sa.func.count()).select_from(self.reports).where(*self.where)
        return self.conn.execute(query).scalar_one()

    def hits(self) -> list[dict[str, Any]]:
        r = self.reports.c
        order = []
        for column, descending in self.search.sort:
            term: sa.ColumnElement[Any] = r[column]
            if COLUMN_KINDS[column] == "string":
                term = self.backend.codePointOrder(term)
            term = term.desc() if descending else term.asc()
            # date_processed is never NULL within the range: its index gives the order as is
            order.append(term if column == "date_processed" else term.nulls_last())
        query = (
            sa.select(*(r[name] for name in self.search.columns))
            .where(*self.where)
            .order_by(*order, r.id)
            .limit(self.search.limit)
            .offset(self.search.offset)
        )
        return [dict(row._mapping) for row in self.conn.execute(query)]

    def facet(self, facet: Field | str) -> Any:
        if facet == HISTOGRAM_DAY:
            return self.histogram()
        if facet == INSTALLATIONS:
            return self.installations()
        assert isinstance(facet, Field)
        return self.terms(facet)

    def terms(self, field: Field) -> list[dict[str, Any]]:
        """``[{term, count}]``: count descending, then term (None last), the first
        ``facet_size``; a report counts once under each term it has."""
        r = self.reports.c
        if field.source == "column":
            term = uptimeBucket(r.uptime) if field.key == UPTIME else r[field.key]
            terms = sa.select(term.label("term")).where(*self.where).subquery("terms")
            count = sa.func.count()
        else:
            matching = sa.select(r.id, r.uuid, r.date_processed).where(*self.where) \
                .subquery("matching")
            source, link, term, isSet = self.linkedTerm(field, matching.c)
            if isSet is not None:
                term = sa.case((isSet, term), else_=sa.null())
            terms = (
                sa.select(matching.c.id, term.label("term"))
                .select_from(matching.outerjoin(source, sa.and_(*link)))
                .subquery("terms")
            )
            count = sa.func.count(sa.distinct(terms.c.id))
        byTerm: sa.ColumnElement[Any] = terms.c.term
        if field.kind == "string":
            byTerm = self.backend.codePointOrder(byTerm)
        query = (
            sa.select(terms.c.term, count.label("count"))
            .group_by(terms.c.term)
            .order_by(count.desc(), byTerm.asc().nulls_last())
            .limit(self.search.facet_size)
        )
        return [{"term": term, "count": count} for term, count in self.conn.execute(query)]

    def histogram(self) -> list[dict[str, Any]]:
        """``[{term: day, count}]`` for every UTC day of the range, in date order."""
        r = self.reports.c
        days = sa.select(self.backend.utcDay(r.date_processed).label("day")).where(*self.where) \
            .subquery("days")
        query = sa.select(days.c.day, sa.func.count()).group_by(days.c.day)
        counts = {}
        for day, count in self.conn.execute(query):
            counts[day if isinstance(day, datetime.date) else datetime.date.fromisoformat(day)] \
                = count
        first = self.search.start.date()
        last = (self.search.end - datetime.timedelta.resolution).date()
        return [{"term": first + offset * DAY, "count": counts.get(first + offset * DAY, 0)}
                for offset in range((last - first).days + 1)]

    def installations(self) -> int:
        """Distinct install times ``client_crash_date − install_age`` seconds (SPEC §13)."""
        r = self.reports.c
        installed = (self.backend.epochMicroseconds(r.client_crash_date)
                     - sa.cast(r.install_age, sa.BigInteger) * 1_000_000)
        query = sa.select(sa.func.count(sa.distinct(installed))).where(
            *self.where, r.client_crash_date.is_not(None), r.install_age.is_not(None))
        return self.conn.execute(query).scalar_one()


#: the facets a search of whole days, filtered on no more than product, version and signature,
#: can take from the summaries rollup (rolledUpFacets): every column the rollup counts
ROLLED_UP_FACETS = (*COLUMN_FIELDS, "signature", UPTIME, HISTOGRAM_DAY)


class SearchConnectorComponent(DBConnectorComponent):
    """``db.search``: filtered, faceted, paged reads of the reports of a date range."""

    @validatesInput
    def search(
        self,
        start: datetime.datetime,
        end: datetime.datetime,
        filters: Sequence[tuple[str, str, Any]] = (),
        facets: Sequence[str] = (),
        facet_size: int = 10,
        columns: Sequence[str] | None = None,
        sort: Sequence[str] = DEFAULT_SORT,
        limit: int = 100,
        offset: int = 0,
    ) -> defer.Deferred:
        """Deferred of ``{total, hits, facets}`` over the reports with ``start <=
        date_processed < end`` matching every filter; see docs/components/search.md.

        ``total`` counts every match; ``hits`` are dicts of ``columns`` in ``sort`` order (ties
        by id), the page ``[offset, offset + limit)``; ``facets`` maps each facet named to its
        terms (or, for ``_cardinality.installations``, an int). Bad input (an unknown field,
        operator, or a value of the wrong type) gets InvalidInputError naming the field.
        """
        checked = parseSearch(start, end, filters, facets, facet_size, columns, sort,
                              limit, offset)

        def thd(conn: sa.Connection) -> dict[str, Any]:
            query = _Query(conn, self.db.backend, checked)
            return {
                "total": query.total(),
                "hits": query.hits(),
                "facets": {name: query.facet(facet) for name, facet in checked.facets},
            }

        return self.db.pool.doReplicaRead(thd)

    @validatesInput
    def rolledUpFacets(
        self,
        product: str,
        start_day: datetime.date | None = None,
        end_day: datetime.date | None = None,
        version: str | None = None,
        signature: str | None = None,
        facets: Sequence[str] = ("signature",),
        facet_size: int = 10,
    ) -> defer.Deferred:
        """The facets :meth:`search` would give for the reports of ``product`` (and ``version``,
        ``signature``) in the whole UTC days [start_day, end_day), counted by the summaries
        rollup for the days it covers and from the reports for the others (as the signature
        summary is: a covered day counts as of its last rollup; see crashdb.summaries).

        Deferred of ``{facets, total}``: ``facets`` maps each name of ``facets`` (any of
        :data:`ROLLED_UP_FACETS`) to search's shape (``[{term, count}]``, count descending,
        then term, None last, at most ``facet_size``; ``_histogram.day`` every day in order);
        ``total`` is the reports counted. A page of a product's week reads a few thousand rows
        instead of a million reports.
        """
        requireString(product, "product", model.reports.c.product)
        for name, value in (("version", version), ("signature", signature)):
            if value is not None:
                requireString(value, name, model.reports.c[name])
        first, last = requirePeriod(start_day, end_day)
        names = list(_sequence(facets, "facets", MAX_FILTERS))
        for name in names:
            if name not in ROLLED_UP_FACETS:
                raise InvalidInputError(
                    f"{name!r} is not kept by the rollup (one of "
                    f"{', '.join(ROLLED_UP_FACETS)})", field="facets")
        _count(facet_size, "facet_size", 1, MAX_FACET_SIZE)
        fields = tuple(name for name in names if name not in (HISTOGRAM_DAY, "signature"))
        if signature is None and "signature" in names:
            fields += ("signature",)
        table = model.product_facets if signature is None else model.signature_facets
        equal = {"product": product, "version": version, "signature": signature}  # None: any

        def thd(conn: sa.Connection) -> dict[str, Any]:
            found = readFacets(conn, self.db.backend, self.readable, table,
                               tuple(dict.fromkeys(("product", *fields))), first, last, equal,
                               daily=HISTOGRAM_DAY in names)
            total = found.total()
            answer: dict[str, Any] = {}
            for name in names:
                if name == HISTOGRAM_DAY:
                    answer[name] = [{"term": first + n * DAY,
                                     "count": found.daily.get(first + n * DAY, 0)}
                                    for n in range((last - first).days)]
                    continue
                terms = [(signature, total)] if name == "signature" and signature is not None \
                    and total else found.terms(name)
                ranked = sorted(terms, key=byCountThenTerm)
                answer[name] = [{"term": term, "count": count}
                                for term, count in ranked[:facet_size]]
            return {"total": total, "facets": answer}

        return self.db.pool.doReplicaRead(thd)
