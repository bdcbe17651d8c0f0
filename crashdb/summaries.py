"""The daily facet rollups behind a signature's summary and correlations (SPEC 13; seed:
Socorro's ``signature_summary_*`` tables).

A signature's page asks of a week of reports: how many of its crashes have each system, build,
add-on..., from how many installations, and how do the product's crashes as a whole compare.
Reading a million reports for that takes seconds, so ``signatures.updateSummaries(day)`` groups
one UTC day once into two tables:

- ``signature_facets``: per (day, signature, product, version), how many reports have each term
  of each field of :data:`SIGNATURE_FIELDS` (``installation``: each distinct install time);
- ``product_facets``: the same per (day, product, version) over all the product's reports, for
  :data:`PRODUCT_FIELDS` (``product``'s one term counts them all): the correlations' baseline,
  and the facets of a search of a product's days (``search.rolledUpFacets``);

and marks the day in ``rollup_days``, in the same transaction. A read takes the covered days
from those tables and every other day (today before its first rollup, a day never rolled up)
from the reports, through the same :func:`facetRows`, so both give the same numbers. Like TCBS,
a covered day counts as of its last rollup: reports stored for it later count from the next run
(cron's hourly ``crashdb rollup`` re-runs yesterday and today).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Mapping, Sequence

import sqlalchemy as sa

from crashdb import model
from crashdb.backends import Backend
from crashdb.tcbs import DAY, dayStart

ROLLUP = "summaries"  # its name in rollup_days and in rollups.ROLLUPS
# Uptime buckets: (term, from, to) in seconds, half-open; the last has no end.
UPTIME_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("< 1 min", 0, 60), ("1-5 min", 60, 300), ("5-15 min", 300, 900), ("15-60 min", 900, 3600),
    ("> 1 hour", 3600, None),
)
# Report columns counted as they are (cast to text).
COLUMN_FIELDS = ("product", "version", "os_name", "os_version", "cpu_name", "cpu_info",
                 "flash_version", "build", "process_type", "release_channel", "reason")
# Counted per signature: the summary's facets, the correlations' fields, install times.
SIGNATURE_FIELDS = (*COLUMN_FIELDS, "uptime", "addon", "installation")
# Counted per product: the correlations' fields (``product``'s one term counts every report),
# and what a search of a product's days facets on (search.rolledUpFacets).
PRODUCT_FIELDS = (*COLUMN_FIELDS, "signature", "uptime", "addon")
# What facetRows reads of a report: the key tying it to its add-ons (uuid: co-located on
# Citus), the install time's parts, and the columns counted.
SCOPE_COLUMNS = ("id", "uuid", "date_processed", "client_crash_date", "install_age", "uptime",
                 "signature", *COLUMN_FIELDS)
MICROSECONDS = 1_000_000
# A component's ``readable``: what to read a partitioned parent's rows of [start, end) from.
Readable = Callable[[sa.Connection, str, datetime.datetime, datetime.datetime, Sequence[str]],
                    sa.FromClause]
# what facetRows reads of the add-ons
EXTENSION_COLUMNS = ("report_id", "uuid", "date_processed", "extension_id")


def uptimeBucket(uptime: sa.ColumnElement[int]) -> sa.ColumnElement[str]:
    """The ``uptime`` facet's term for a report: a bucket name, or NULL (no or negative uptime)."""
    return sa.case(
        *((sa.and_(uptime >= low, *([] if high is None else [uptime < high])), term)
          for term, low, high in UPTIME_BUCKETS),
        else_=sa.null(),
    )


def installTime(backend: Backend, scope: sa.ColumnCollection) -> sa.ColumnElement[int]:
    """``client_crash_date − install_age`` seconds as integer microseconds (Socorro's
    installation: 50 crashes from one machine are one installation)."""
    return (backend.epochMicroseconds(scope.client_crash_date)
            - sa.cast(scope.install_age, sa.BigInteger) * MICROSECONDS)


def facetRows(
    backend: Backend, scope: sa.CTE, extensions: sa.FromClause, fields: Sequence[str],
    groups: Sequence[str] = (),
) -> sa.CompoundSelect:
    """``(*groups, field, term, count)`` over the reports of ``scope``: for each of ``fields``,
    how many reports have each term (NULL included; ``addon``: each add-on a report has, once;
    ``installation``: each install time, reports lacking one left out). The rollup groups by
    day, product, version (and signature); a read of days not rolled up groups by nothing."""
    s = scope.c
    keys = [s[name] for name in groups]
    parts = []
    for field in fields:
        if field == "addon":
            e = extensions.c
            addons = sa.select(*keys, sa.literal(field).label("field"),
                               e.extension_id.label("term"),
                               sa.func.count(sa.distinct(e.report_id)).label("count"))
            if keys:  # a day's reports, and their add-ons: one join
                addons = addons.select_from(scope.join(extensions, sa.and_(
                    e.report_id == s.id, e.uuid == s.uuid, e.date_processed == s.date_processed)))
            else:  # a few reports, say one signature's: a semi-join, so that the planner walks
                # them and looks their add-ons up by key instead of reading every add-on
                addons = addons.where(sa.tuple_(e.report_id, e.uuid, e.date_processed).in_(
                    sa.select(s.id, s.uuid, s.date_processed)))
            parts.append(addons.group_by(*keys, e.extension_id))
            continue
        where: list[sa.ColumnElement[bool]] = []
        if field == "uptime":
            term = uptimeBucket(s.uptime)
        elif field == "installation":
            term = sa.cast(installTime(backend, s), sa.Text)
            where = [s.client_crash_date.is_not(None), s.install_age.is_not(None)]
        else:
            term = sa.cast(s[field], sa.Text)
        parts.append(
            sa.select(*keys, sa.literal(field).label("field"), term.label("term"),
                      sa.func.count().label("count"))
            .select_from(scope).where(*where).group_by(*keys, term))
    return sa.union_all(*parts)


def coveredDays(conn: sa.Connection, first: datetime.date, last: datetime.date
                ) -> set[datetime.date]:
    """The days of [first, last) the summaries rollup has covered."""
    days = model.rollup_days.c
    query = sa.select(days.day).where(days.rollup == ROLLUP, days.day >= first, days.day < last)
    return set(conn.execute(query).scalars())


def uncoveredRanges(first: datetime.date, last: datetime.date, covered: set[datetime.date]
                    ) -> list[tuple[datetime.datetime, datetime.datetime]]:
    """[start, end) datetimes of the runs of days in [first, last) not in ``covered``."""
    ranges: list[tuple[datetime.datetime, datetime.datetime]] = []
    day = first
    while day < last:
        if day in covered:
            day += DAY
            continue
        start = day
        while day < last and day not in covered:
            day += DAY
        ranges.append((dayStart(start), dayStart(day)))
    return ranges


def byCountThenTerm(item: tuple[str | None, int]) -> tuple[int, bool, str]:
    """A facet's order for ``(term, count)``: count descending, then term by code point, None
    last (getSummary's and search's)."""
    term, count = item
    return -count, term is None, term or ""


class FacetCounts:
    """``(field, term) → count`` over a period, per the rollup where it covers the period's
    days and per the reports elsewhere; ``installations`` and ``daily`` (reports per day)
    when asked for."""

    def __init__(self, counts: dict[tuple[str, str | None], int], installations: int,
                 daily: dict[datetime.date, int] | None = None) -> None:
        self.counts = counts
        self.installations = installations
        self.daily = daily or {}

    def total(self) -> int:
        """Every report counted: each has one ``product`` term (NULL included)."""
        return sum(count for (field, _), count in self.counts.items() if field == "product")

    def terms(self, field: str) -> Iterable[tuple[str | None, int]]:
        return ((term, count) for (name, term), count in self.counts.items() if name == field)


def readFacets(
    conn: sa.Connection, backend: Backend, readable: Readable, table: sa.Table,
    fields: Sequence[str], first: datetime.date, last: datetime.date,
    equal: Mapping[str, str | None], daily: bool = False,
    covered: set[datetime.date] | None = None,
) -> FacetCounts:
    """The counts of ``fields`` over [first, last) of the reports whose columns equal
    ``equal``'s values (None: any), from ``table`` (signature_facets or product_facets) for the
    covered days and from the reports (via ``readable(conn, parent, start, end, columns)``) for the
    others, in one statement; with ``daily``, also the reports of each day, in a second.
    ``covered``: the days to read from ``table``, if the caller has asked already (two reads
    compared with each other should split the period the same way)."""
    if covered is None:
        covered = coveredDays(conn, first, last)
    ranges = uncoveredRanges(first, last, covered)
    t = table.c
    stored = [t.day >= first, t.day < last,
              *(t[name] == value for name, value in equal.items() if value is not None)]
    parts: list[sa.Select | sa.CompoundSelect] = []
    if covered:
        parts.append(sa.select(t.field, t.term, t.count).where(*stored, t.field.in_(fields)))
    if ranges:
        start, end = ranges[0][0], ranges[-1][1]
        columns = tuple(dict.fromkeys((*SCOPE_COLUMNS, *equal)))
        r = readable(conn, "reports", start, end, columns).c
        live = [sa.or_(*(sa.and_(r.date_processed >= low, r.date_processed < high)
                         for low, high in ranges)),
                *(r[name] == value for name, value in equal.items() if value is not None)]
        scope = sa.select(*r[columns]).where(*live).cte("scope")
        extensions = readable(conn, "extensions", start, end, EXTENSION_COLUMNS)
        grouped = facetRows(backend, scope, extensions, fields).subquery("live")
        parts.append(sa.select(grouped.c.field, grouped.c.term, grouped.c["count"]))
    days: dict[datetime.date, int] = {}
    if daily:
        if covered:
            query = sa.select(t.day, sa.func.sum(t.count)).where(*stored, t.field == "product") \
                .group_by(t.day)
            days.update(conn.execute(query).all())
        if ranges:
            day = backend.utcDay(r.date_processed)
            for when, count in conn.execute(sa.select(day, sa.func.count()).where(*live)
                                            .group_by(day)):
                days[when if isinstance(when, datetime.date)
                     else datetime.date.fromisoformat(when)] = count
    if not parts:
        return FacetCounts({}, 0, days)
    rows = sa.union_all(*parts).cte("rows") if len(parts) > 1 else parts[0].cte("rows")
    c = rows.c
    summed = (sa.select(c.field, c.term, sa.func.sum(c["count"]))
              .where(c.field != "installation").group_by(c.field, c.term))
    installations = (sa.select(sa.literal("#installations"), sa.null(),
                               sa.func.count(sa.distinct(c.term)))
                     .where(c.field == "installation"))
    counts: dict[tuple[str, str | None], int] = {}
    found = 0
    for field, term, count in conn.execute(sa.union_all(summed, installations)):
        if field == "#installations":
            found = int(count)
        else:
            counts[field, term] = int(count)
    return FacetCounts(counts, found, {day: int(count) for day, count in days.items()})
