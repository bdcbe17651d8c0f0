"""Legacy crash databases for tests and benchmarks: the pre-partitioning schema, bad data included.

The legacy schema is the seeds' before crashdb: one unpartitioned ``reports`` table keyed on a
serial ``id``, and ``extensions(report_id, extension_key, extension_id, extension_version)``
without ``date_processed``. Timestamps are ``timestamp without time zone`` (UTC by convention)
and strings are unbounded text, as in old databases that never enforced their lengths, so an
over-long signature can be there to be found.

:func:`buildProblemDatabase` writes a small database holding every problem an import meets, each
row annotated with what the import must do with it (:class:`LegacyRow`); the expected
reconciliation is counted from those annotations, not computed by importer code.
:func:`generateReports` makes large, mostly clean databases for the benchmark.
"""

from __future__ import annotations

import datetime
import os
import random
import uuid as uuidlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

UTC = datetime.UTC

# The legacy reports columns: the seed's, before hangid, process_type, release_channel and
# productid were added. Strings are text; lengths are crashdb's to check.
LEGACY_COLUMNS: dict[str, Any] = {
    "client_crash_date": sa.DateTime,
    "date_processed": sa.DateTime,
    "uuid": sa.Text,
    "product": sa.Text,
    "version": sa.Text,
    "build": sa.Text,
    "signature": sa.Text,
    "url": sa.Text,
    "install_age": sa.Integer,
    "last_crash": sa.Integer,
    "uptime": sa.Integer,
    "cpu_name": sa.Text,
    "cpu_info": sa.Text,
    "reason": sa.Text,
    "address": sa.Text,
    "os_name": sa.Text,
    "os_version": sa.Text,
    "email": sa.Text,
    "user_id": sa.Text,
    "started_datetime": sa.DateTime,
    "completed_datetime": sa.DateTime,
    "success": sa.Boolean,
    "truncated": sa.Boolean,
    "processor_notes": sa.Text,
    "user_comments": sa.Text,
    "app_notes": sa.Text,
    "distributor": sa.Text,
    "distributor_version": sa.Text,
}


def legacyMetadata() -> sa.MetaData:
    """The legacy schema: ``reports`` and ``extensions``, with a plain index on uuid."""
    metadata = sa.MetaData()
    sa.Table(
        "reports",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        *(sa.Column(name, kind) for name, kind in LEGACY_COLUMNS.items()),
        sa.Index("reports_uuid_idx", "uuid"),
    )
    sa.Table(
        "extensions",
        metadata,
        sa.Column("report_id", sa.Integer, sa.ForeignKey("reports.id"), nullable=False),
        sa.Column("extension_key", sa.Integer, nullable=False),
        sa.Column("extension_id", sa.Text, nullable=False),
        sa.Column("extension_version", sa.Text),
        sa.PrimaryKeyConstraint("report_id", "extension_key"),
    )
    return metadata


def legacyEngine(url: str) -> sa.Engine:
    engine = sa.create_engine(url)
    if engine.dialect.name == "postgresql":
        engine.dispose()
        engine = sa.create_engine(url, connect_args={"options": "-c timezone=UTC"})
    return engine


def writeLegacy(url: str, reports: Iterable[dict[str, Any]], chunk: int = 5000) -> int:
    """Create the legacy schema at ``url`` and write ``reports``; the number written.

    Each report is a dict of legacy columns plus ``id`` and, optionally, ``extensions``: a list
    of ``(extension_key, extension_id, extension_version)``. Naive datetimes are written as they
    are; aware ones as naive UTC.
    """
    engine = legacyEngine(url)
    metadata = legacyMetadata()
    tables = metadata.tables
    written = 0
    try:
        metadata.create_all(engine)
        batch: list[dict[str, Any]] = []
        for report in reports:
            batch.append(report)
            if len(batch) >= chunk:
                written += _writeChunk(engine, tables, batch)
                batch = []
        written += _writeChunk(engine, tables, batch)
    finally:
        engine.dispose()
    return written


def _naive(value: Any) -> Any:
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def _writeChunk(engine: sa.Engine, tables, batch: list[dict[str, Any]]) -> int:
    if not batch:
        return 0
    rows = [
        {"id": report["id"]} | {name: _naive(report.get(name)) for name in LEGACY_COLUMNS}
        for report in batch
    ]
    extensions = [
        {"report_id": report["id"], "extension_key": key, "extension_id": ext_id,
         "extension_version": version}
        for report in batch
        for key, ext_id, version in report.get("extensions", ())
    ]
    with engine.begin() as conn:
        conn.execute(tables["reports"].insert(), rows)
        if extensions:
            conn.execute(tables["extensions"].insert(), extensions)
    return len(rows)


# -- the problem fixture --------------------------------------------------------------------------

WRITTEN = "written"
CONSOLIDATED = "consolidated"
REJECTED = "rejected"

# The version map loaded before the import: every spelling of 4.0b1, 16.0.1 and 3.6.13.
VERSION_MAP = [
    ("Firefox", "4.0 Beta 1", "4.0b1"),
    ("Firefox", "4.0B1", "4.0b1"),
    ("Firefox", "4.0 beta 1", "4.0b1"),
    ("Firefox", "4.0beta1", "4.0b1"),
    ("Firefox", "Firefox 4.0 Beta 1", "4.0b1"),
    ("Firefox", "16.0.1pre", "16.0.1"),
    ("Firefox", "16.0.1 pre", "16.0.1"),
    ("Firefox", "3.6.13.0", "3.6.13"),
    ("Firefox", "3.6.13", "3.6.13"),  # identity rows make a version canonical
    ("Firefox", "4.0b1", "4.0b1"),
]

# Monday 2012-10-15 is the week most rows fall in; 2012-10-22 the next.
WEEK_1 = datetime.datetime(2012, 10, 8, 12, 0)
WEEK_2 = datetime.datetime(2012, 10, 16, 9, 30)
SUNDAY_LAST_SECOND = datetime.datetime(2012, 10, 21, 23, 59, 59)
MONDAY_FIRST_SECOND = datetime.datetime(2012, 10, 22, 0, 0, 0)
WEEK_3 = datetime.datetime(2012, 10, 24, 18, 0)


@dataclass
class LegacyRow:
    """One legacy report and its expected fate: ``written`` (as ``version``, in the week of
    ``week``), ``consolidated``, or ``rejected`` with a reason containing ``reason``."""

    id: int
    values: dict[str, Any]
    fate: str
    extensions: list[tuple[int, str, str | None]] = field(default_factory=list)
    version: str | None = None
    aliased: bool = False
    reason: str = ""
    week: str = ""

    def legacy(self) -> dict[str, Any]:
        return {"id": self.id, **self.values, "extensions": self.extensions}


@dataclass
class ProblemDatabase:
    """What :func:`buildProblemDatabase` wrote, and what an import of it must report."""

    url: str
    rows: list[LegacyRow]
    new_versions: list[tuple[str, str]]

    def byFate(self, fate: str) -> list[LegacyRow]:
        return [row for row in self.rows if row.fate == fate]

    def expectedSummary(self) -> dict[str, int]:
        written = self.byFate(WRITTEN)
        return {
            "read": len(self.rows),
            "written": len(written),
            "consolidated": len(self.byFate(CONSOLIDATED)),
            "rejected": len(self.byFate(REJECTED)),
            "aliased": sum(row.aliased for row in written),
            "versions_added": len(self.new_versions),
        }


def _report(uuid: str | None, processed: datetime.datetime | None, **values: Any) -> dict:
    base = {
        "uuid": uuid,
        "date_processed": processed,
        "client_crash_date": processed - datetime.timedelta(minutes=5) if processed else None,
        "product": "Firefox",
        "version": "4.0b1",
        "build": "20121015030201",
        "signature": "nsFoo::Bar()",
        "os_name": "Windows NT",
        "uptime": 120,
        "success": True,
    }
    base.update(values)
    return base


def problemRows(with_nul: bool = True) -> list[LegacyRow]:
    """The legacy rows of the problem fixture, in key order (ids far apart where it matters)."""
    rows = [
        # clean rows, two extensions with keys that have gaps (renumbered 0, 1 in order)
        LegacyRow(1, _report("clean-1", WEEK_2), WRITTEN, version="4.0b1", week="20121015",
                  extensions=[(0, "ext-a@example.com", "1.0"), (3, "ext-b@example.com", None)]),
        LegacyRow(2, _report("clean-2", WEEK_1, version="3.6.13"), WRITTEN, version="3.6.13",
                  week="20121008"),
        # a uuid processed twice: the later row (id 900) wins, only its extensions are kept
        LegacyRow(3, _report("dup-1", WEEK_2), CONSOLIDATED,
                  extensions=[(0, "old@example.com", "1.0"), (1, "gone@example.com", "2.0")]),
        # versions in a dozen spellings
        LegacyRow(10, _report("ver-01", WEEK_2, version="4.0 Beta 1"), WRITTEN, version="4.0b1",
                  aliased=True, week="20121015"),
        LegacyRow(11, _report("ver-02", WEEK_2, version="4.0b1 "), WRITTEN, version="4.0b1",
                  week="20121015"),
        LegacyRow(12, _report("ver-03", WEEK_2, version=" 4.0b1"), WRITTEN, version="4.0b1",
                  week="20121015"),
        LegacyRow(13, _report("ver-04", WEEK_2, version="4.0B1"), WRITTEN, version="4.0b1",
                  aliased=True, week="20121015"),
        LegacyRow(14, _report("ver-05", WEEK_2, version="4.0 beta 1 "), WRITTEN, version="4.0b1",
                  aliased=True, week="20121015"),
        LegacyRow(15, _report("ver-06", WEEK_2, version="4.0beta1"), WRITTEN, version="4.0b1",
                  aliased=True, week="20121015"),
        LegacyRow(16, _report("ver-07", WEEK_2, version="Firefox 4.0 Beta 1"), WRITTEN,
                  version="4.0b1", aliased=True, week="20121015"),
        LegacyRow(17, _report("ver-08", WEEK_2, version="16.0.1pre"), WRITTEN, version="16.0.1",
                  aliased=True, week="20121015"),
        LegacyRow(18, _report("ver-09", WEEK_2, version="16.0.1 pre"), WRITTEN, version="16.0.1",
                  aliased=True, week="20121015"),
        LegacyRow(19, _report("ver-10", WEEK_2, version="3.6.13.0"), WRITTEN, version="3.6.13",
                  aliased=True, week="20121015"),
        LegacyRow(20, _report("ver-11", WEEK_2, version=" 3.6.13 "), WRITTEN, version="3.6.13",
                  week="20121015"),
        # no canonical form, no alias: added as canonical (once), listed in the summary
        LegacyRow(21, _report("ver-12", WEEK_2, version="3.7a1pre "), WRITTEN, version="3.7a1pre",
                  week="20121015"),
        LegacyRow(22, _report("ver-13", WEEK_2, version="3.7a1pre"), WRITTEN, version="3.7a1pre",
                  week="20121015"),
        LegacyRow(23, _report("ver-14", WEEK_2, product="Thunderbird", version="3.1"), WRITTEN,
                  version="3.1", week="20121015"),
        LegacyRow(24, _report("ver-15", WEEK_2, version=None), WRITTEN, version=None,
                  week="20121015"),
        # an unknown version too long to be a canonical version: rejected, adds nothing
        LegacyRow(25, _report("ver-16", WEEK_2, version="3.0 pre-release build 7"), REJECTED,
                  reason="version"),
        # rows crashdb cannot take
        LegacyRow(30, _report(None, WEEK_2), REJECTED, reason="no uuid"),
        LegacyRow(31, _report("", WEEK_2), REJECTED, reason="no uuid"),
        LegacyRow(32, _report("no-date", None), REJECTED, reason="no date_processed"),
        LegacyRow(33, _report("long-sig", WEEK_2, signature="x" * 300), REJECTED,
                  reason="signature"),
        # the Sunday/Monday boundary: the last second of a week, the first of the next
        LegacyRow(40, _report("sunday", SUNDAY_LAST_SECOND), WRITTEN, version="4.0b1",
                  week="20121015", extensions=[(0, "sun@example.com", "1")]),
        LegacyRow(41, _report("monday", MONDAY_FIRST_SECOND), WRITTEN, version="4.0b1",
                  week="20121022", extensions=[(0, "mon@example.com", "1")]),
        # duplicated across weeks: the later processing (week 3) wins
        LegacyRow(50, _report("dup-weeks", WEEK_1), CONSOLIDATED,
                  extensions=[(0, "early@example.com", "1")]),
        # duplicated, but the later row is unusable: the earlier valid one wins
        LegacyRow(60, _report("dup-bad", WEEK_1), WRITTEN, version="4.0b1", week="20121008",
                  extensions=[(0, "kept@example.com", "1")]),
        # duplicated, identical but for the key: the highest id wins the tie
        LegacyRow(70, _report("dup-tie", WEEK_2, signature="same"), CONSOLIDATED),
        LegacyRow(71, _report("dup-tie", WEEK_2, signature="same"), CONSOLIDATED),
        # ...far apart in key order from their first rows
        LegacyRow(900, _report("dup-1", WEEK_2 + datetime.timedelta(days=1)), WRITTEN,
                  version="4.0b1", week="20121015",
                  extensions=[(0, "new@example.com", "3.0")]),
        LegacyRow(901, _report("dup-weeks", WEEK_3), WRITTEN, version="4.0b1", week="20121022",
                  extensions=[(0, "late@example.com", "2")]),
        LegacyRow(902, _report("dup-bad", WEEK_2, signature="y" * 256), REJECTED,
                  reason="signature"),
        LegacyRow(903, _report("dup-tie", WEEK_2, signature="same"), WRITTEN, version="4.0b1",
                  week="20121015"),
        LegacyRow(904, _report("dup-1", None), REJECTED, reason="no date_processed"),
    ]
    if with_nul:  # PostgreSQL text cannot hold NUL, so only other sources carry this row
        rows.append(
            LegacyRow(905, _report("nul", WEEK_2, user_comments="crashed\x00here"), REJECTED,
                      reason="NUL")
        )
    return rows


def buildProblemDatabase(url: str) -> ProblemDatabase:
    """Write the problem fixture at ``url`` (an empty database of any backend)."""
    engine = sa.create_engine(url)
    with_nul = engine.dialect.name != "postgresql"
    engine.dispose()
    rows = problemRows(with_nul)
    writeLegacy(url, (row.legacy() for row in rows))
    new_versions = [("Firefox", "3.7a1pre"), ("Thunderbird", "3.1")]
    return ProblemDatabase(url, rows, new_versions)


def newEmptyPostgresDatabase(prefix: str = "crashdb_legacy") -> str:
    """The URL of a new, empty database on the test PostgreSQL (drop it with
    ``postgres.dropDatabase(url)``); raises PostgresUnavailable when there is none."""
    from crashdb.test.util.db import postgres

    admin = sa.make_url(postgres.adminUrl())
    name = f"{prefix}_{os.getpid()}_{uuidlib.uuid4().hex[:8]}"
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        engine.dispose()
    return admin.set(database=name).render_as_string(hide_password=False)


# -- large databases for the benchmark ------------------------------------------------------------

SPELLINGS = ["4.0b1", "4.0 Beta 1", "4.0b1 ", "16.0.1", "16.0.1pre", "3.6.13", "3.6.13.0"]


def generateReports(
    count: int, seed: int = 9, duplicate_every: int = 100, start: datetime.datetime | None = None
) -> Iterator[dict[str, Any]]:
    """``count`` legacy reports over about eight weeks: mostly clean, every
    ``duplicate_every``-th row repeating an earlier uuid, every report with 0-3 extensions."""
    rng = random.Random(seed)
    start = start or datetime.datetime(2012, 9, 3)
    seconds = 8 * 7 * 24 * 3600
    earlier: list[str] = []
    for legacy_id in range(1, count + 1):
        if earlier and duplicate_every and legacy_id % duplicate_every == 0:
            uuid = rng.choice(earlier)
        else:
            uuid = str(uuidlib.UUID(int=rng.getrandbits(128), version=4))
            if len(earlier) < 10000:
                earlier.append(uuid)
        processed = start + datetime.timedelta(seconds=rng.randrange(seconds))
        yield {
            "id": legacy_id,
            **_report(
                uuid,
                processed,
                version=rng.choice(SPELLINGS),
                signature=f"sig{rng.randrange(500)}",
                url=f"http://example.com/{rng.randrange(10000)}",
                uptime=rng.randrange(100000),
                cpu_name="x86",
                os_version="6.1.7601 Service Pack 1",
            ),
            "extensions": [
                (key, f"ext{rng.randrange(50)}@example.com", f"{rng.randrange(9)}.0")
                for key in range(rng.randrange(4))
            ],
        }
