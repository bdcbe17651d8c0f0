"""The schema as other tools see it: the seed's ``reports`` and ``extensions``, column for
column, and report ids that writers other than crashdb (psql, COPY) share with it.

The seed's listings (``psql``'s ``\\d`` of the parents and of week 20121015's children, from
Socorro's DatabaseSchema page) are copied below as data. The deliberate differences are read
from docs/schema.md, their one home, so neither an unlisted difference nor a stale entry passes.
"""

from __future__ import annotations

import datetime
import pathlib
import random
import re
import uuid as uuidlib

import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.internet import threads

from crashdb import model, partitions
from crashdb.backends import createEngine
from crashdb.partitions import childTable, partitionName, weekStart
from crashdb.test.util import db as dbutil
from crashdb.test.util.pgschema import describeTable, normalized, runClient

UTC = datetime.UTC
WEEK_OF = datetime.datetime(2012, 10, 15, tzinfo=UTC)
SCHEMA_DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "schema.md"

# -- the seed's listings (seed 000: Socorro's DatabaseSchema) -------------------------------------

SEED_REPORTS_COLUMNS = [
    "id | integer | not null default nextval('reports_id_seq'::regclass)",
    "client_crash_date | timestamp with time zone |",
    "date_processed | timestamp with time zone |",
    "uuid | character varying(50) | not null",
    "product | character varying(30) |",
    "version | character varying(16) |",
    "build | character varying(30) |",
    "signature | character varying(255) |",
    "url | character varying(255) |",
    "install_age | integer |",
    "last_crash | integer |",
    "uptime | integer |",
    "cpu_name | character varying(100) |",
    "cpu_info | character varying(100) |",
    "reason | character varying(255) |",
    "address | character varying(20) |",
    "os_name | character varying(100) |",
    "os_version | character varying(100) |",
    "email | character varying(100) |",
    "user_id | character varying(50) |",
    "started_datetime | timestamp with time zone |",
    "completed_datetime | timestamp with time zone |",
    "success | boolean |",
    "truncated | boolean |",
    "processor_notes | text |",
    "user_comments | character varying(1024) |",
    "app_notes | character varying(1024) |",
    "distributor | character varying(20) |",
    "distributor_version | character varying(20) |",
    "topmost_filenames | text |",
    "addons_checked | boolean |",
    "flash_version | text |",
    "hangid | text |",
    "process_type | text |",
    "release_channel | text |",
    "productid | text |",
]
SEED_EXTENSIONS_COLUMNS = [
    "report_id | integer | not null",
    "date_processed | timestamp with time zone |",
    "extension_key | integer | not null",
    "extension_id | text | not null",
    "extension_version | text |",
]
SEED_DATE_CHECK = (
    "CHECK ('2012-10-15 00:00:00+00'::timestamp with time zone <= date_processed AND "
    "date_processed < '2012-10-22 00:00:00+00'::timestamp with time zone)"
)
SEED_REPORTS_CHILD = {
    '"reports_20121015_pkey" PRIMARY KEY, btree (id)',
    '"reports_20121015_unique_uuid" UNIQUE, btree (uuid)',
    '"reports_20121015_build_key" btree (build)',
    '"reports_20121015_date_processed_key" btree (date_processed)',
    '"reports_20121015_hangid_idx" btree (hangid)',
    '"reports_20121015_product_version_key" btree (product, version)',
    '"reports_20121015_reason" btree (reason)',
    '"reports_20121015_signature_date_processed_build_key" btree (signature, date_processed, '
    "build)",
    '"reports_20121015_url_key" btree (url)',
    '"reports_20121015_uuid_key" btree (uuid)',
    f'"reports_20121015_date_check" {SEED_DATE_CHECK}',
    'TABLE "extensions_20121015" CONSTRAINT "extensions_20121015_report_id_fkey" FOREIGN KEY '
    "(report_id) REFERENCES reports_20121015(id) ON DELETE CASCADE",
    'TABLE "plugins_reports_20121015" CONSTRAINT "plugins_reports_20121015_report_id_fkey" '
    "FOREIGN KEY (report_id) REFERENCES reports_20121015(id) ON DELETE CASCADE",
    "Inherits: reports",
}
SEED_EXTENSIONS_CHILD = {
    '"extensions_20121015_pkey" PRIMARY KEY, btree (report_id, extension_key)',
    '"extensions_20121015_extension_id_extension_version_idx" btree (extension_id, '
    "extension_version)",
    '"extensions_20121015_report_id_date_key" btree (report_id, date_processed, extension_key)',
    f'"extensions_20121015_date_check" {SEED_DATE_CHECK}',
    '"extensions_20121015_report_id_fkey" FOREIGN KEY (report_id) REFERENCES '
    "reports_20121015(id) ON DELETE CASCADE",
    "Inherits: extensions",
}
# table: (columns in order, everything else); the parents hold no indexes ("none exist on the
# parent tables", seed 001)
SEED = {
    "reports": (SEED_REPORTS_COLUMNS, set()),
    "reports_20121015": (SEED_REPORTS_COLUMNS, SEED_REPORTS_CHILD),
    "extensions": (SEED_EXTENSIONS_COLUMNS, set()),
    "extensions_20121015": (SEED_EXTENSIONS_COLUMNS, SEED_EXTENSIONS_CHILD),
}

DIFFERENCE = re.compile(r"^- only in (the seed|crashdb): `([^`]+)`: `([^`]+)`", re.MULTILINE)


def documentedDifferences() -> set[tuple[str, str, str]]:
    """``(side, table, normalized fact)`` for each deliberate difference docs/schema.md lists."""
    if not SCHEMA_DOC.is_file():
        pytest.fail(f"{SCHEMA_DOC} is missing: the seed differences are documented there")
    text = SCHEMA_DOC.read_text(encoding="utf-8")
    return {(side, table, normalized(fact)) for side, table, fact in DIFFERENCE.findall(text)}


@pytest.mark.parametrize("dbUrl", ["postgresql"], indirect=True)
def test_postgres_schema_is_the_seeds_but_for_the_documented_differences(dbUrl):
    engine, backend, _ = createEngine(dbUrl)
    try:
        partitions.createWeek(engine, backend, WEEK_OF)
        with engine.connect() as conn:
            found = {table: describeTable(conn, table) for table in SEED}
    finally:
        engine.dispose()
    differences = set()
    for table, (seedColumns, seedFacts) in SEED.items():
        columns, facts = found[table]
        # column for column: names, order, types, defaults; columns crashdb adds come last,
        # each a documented difference
        assert columns[:len(seedColumns)] == seedColumns, table
        seed = {normalized(fact) for fact in seedFacts}
        ours = {normalized(fact) for fact in (*facts, *columns[len(seedColumns):])}
        differences |= {("the seed", table, fact) for fact in seed - ours}
        differences |= {("crashdb", table, fact) for fact in ours - seed}
    assert differences == documentedDifferences()


def test_the_seeds_columns_are_the_models():
    """The reportdict's columns (SPEC 5) are the seed's, in its order, on every backend."""
    assert [c.name for c in model.reports.c] == [line.split(" | ")[0] for line in
                                                 SEED_REPORTS_COLUMNS]
    # then the report's uuid (migration 007; docs/schema.md)
    assert [c.name for c in model.extensions.c] == [line.split(" | ")[0] for line in
                                                    SEED_EXTENSIONS_COLUMNS] + ["uuid"]


# -- ids shared with writers that are not crashdb -------------------------------------------------

WEEKS = [WEEK_OF + datetime.timedelta(days=7 * n) for n in range(3)]


def _report(rng: random.Random) -> dict:
    return {
        "uuid": str(uuidlib.UUID(int=rng.getrandbits(128))),
        "date_processed": rng.choice(WEEKS) + datetime.timedelta(seconds=rng.randrange(604800)),
        "product": rng.choice(["Firefox", "Thunderbird"]),
        "signature": rng.choice(["js::GC", "nsFoo::Bar", None]),
    }


def _copyScript(target: str, reports: list[dict]) -> str:
    """What a DBA feeds psql: COPY without ids, in COPY's text format (as a plain dump has it)."""
    lines = [f"COPY {target} (uuid, date_processed, product, signature) FROM stdin;"]
    for r in reports:
        lines.append("\t".join([r["uuid"], r["date_processed"].isoformat(), r["product"],
                                r["signature"] or "\\N"]))
    return "\n".join(lines + ["\\.", ""])


def _psqlCopy(url: str, target: str, reports: list[dict]) -> None:
    runClient("psql", url, "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "-f", "-",
              stdin=_copyScript(target, reports))


@pytest.mark.parametrize("dbUrl", ["postgresql"], indirect=True)
@pytest_twisted.inlineCallbacks
def test_psql_copy_and_addReports_share_the_sequence(dbUrl):
    """COPY without ids, through the parent and into a child, while crashdb's bulk path runs:
    every id distinct, every report readable through getReport."""
    rng = random.Random(14)
    db = dbutil.TestDBConnector(dbUrl)
    yield db.setup()
    try:
        for monday in WEEKS:
            yield db.partitions.ensureWeek(monday)

        # in turn: the ids of each writer lie between those of the writers before and after it
        first = [_report(rng) for _ in range(30)]
        yield threads.deferToThread(_psqlCopy, dbUrl, "reports", first)
        middle = [_report(rng) for _ in range(30)]
        middleIds = yield db.reports.addReports(middle)
        last = [_report(rng) for _ in range(30)]
        child = partitionName("reports", WEEKS[1])
        for r in last:
            r["date_processed"] = WEEKS[1] + datetime.timedelta(hours=rng.randrange(168))
        yield threads.deferToThread(_psqlCopy, dbUrl, child, last)

        # at the same time: psql COPYs in a thread, addReports batches on the pool
        copied: list[dict] = []

        def copyRounds(batches: list[list[dict]]) -> None:
            for n, batch in enumerate(batches):
                target = "reports" if n % 2 == 0 else partitionName(
                    "reports", batch[0]["date_processed"])
                if target != "reports":
                    monday = weekStart(batch[0]["date_processed"])
                    for r in batch:
                        r["date_processed"] = monday + datetime.timedelta(
                            seconds=rng.randrange(604800))
                _psqlCopy(dbUrl, target, batch)
                copied.extend(batch)

        copyBatches = [[_report(rng) for _ in range(40)] for _ in range(6)]
        ours = [[_report(rng) for _ in range(40)] for _ in range(6)]
        copying = threads.deferToThread(copyRounds, copyBatches)
        added: dict[str, int] = {r["uuid"]: i for r, i in zip(middle, middleIds)}
        for batch in ours:
            ids = yield db.reports.addReports(batch)
            added.update((r["uuid"], i) for r, i in zip(batch, ids))
        yield copying

        def stored(conn):
            return {uuid: report_id for uuid, report_id in
                    conn.execute(sa.select(model.reports.c.uuid, model.reports.c.id))}

        ids = yield db.pool.do(stored)
        everyone = first + middle + last + copied + [r for batch in ours for r in batch]
        assert len(ids) == len(everyone) == len({r["uuid"] for r in everyone})
        assert len(set(ids.values())) == len(ids)  # every id distinct, across weeks and writers
        assert all(ids[uuid] == report_id for uuid, report_id in added.items())
        assert max(ids[r["uuid"]] for r in first) < min(middleIds)
        assert max(middleIds) < min(ids[r["uuid"]] for r in last)
        for r in everyone:
            got = yield db.reports.getReport(r["uuid"], r["date_processed"])
            assert got is not None and got["id"] == ids[r["uuid"]]
            assert (got["date_processed"], got["product"], got["signature"]) == (
                r["date_processed"], r["product"], r["signature"])
    finally:
        yield db.stop()


@pytest_twisted.inlineCallbacks
def test_insert_without_id_through_crashdbs_sql_gets_a_unique_id(db):
    """An INSERT built from crashdb's child tables that names no id gets one from the shared
    counter (PostgreSQL: the sequence, the column's default; SQLite: id_sequences), unique
    across weeks and interleaved with the ids addReports reserves."""
    rng = random.Random(1414)
    for monday in WEEKS:
        yield db.partitions.ensureWeek(monday)

    def insertWithoutIds(conn, reports):
        made = {}
        for r in reports:
            child = childTable("reports", weekStart(r["date_processed"]), db.backend)
            made[r["uuid"]] = conn.execute(child.insert().values(**r)).inserted_primary_key[0]
        return made

    ids: dict[str, int] = {}
    everyone: list[dict] = []
    for _ in range(3):
        plain = [_report(rng) for _ in range(10)]
        made = yield db.pool.do(insertWithoutIds, plain)
        ids.update(made)
        bulk = [_report(rng) for _ in range(20)]
        reserved = yield db.reports.addReports(bulk)
        assert min(reserved) > max(made.values())  # the same counter, drawn in turn
        ids.update((r["uuid"], i) for r, i in zip(bulk, reserved))
        everyone += plain + bulk
    assert len(set(ids.values())) == len(everyone)
    for r in everyone:
        got = yield db.reports.getReport(r["uuid"], r["date_processed"])
        assert got["id"] == ids[r["uuid"]]
