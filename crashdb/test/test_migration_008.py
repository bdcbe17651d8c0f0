"""Migration 008: the summaries rollup's tables (signature_facets, product_facets, rollup_days)
on a database holding a week of crash data; the reads answer the same before and after the days
are rolled up."""

from __future__ import annotations

import datetime

import pytest_twisted
import sqlalchemy as sa
from alembic import command

from crashdb import migrate, partitions
from crashdb.backends import createEngine
from crashdb.connector import DBConnector
from crashdb.test.test_schema import differences
from crashdb.test.util.db import upgradeTo

WEEK = datetime.datetime(2012, 10, 15, tzinfo=datetime.UTC)
DAY = datetime.timedelta(days=1)
NEW_TABLES = {"signature_facets", "product_facets", "rollup_days"}


def _storeWeek(engine: sa.Engine, backend) -> None:
    """Three crashes of one signature over two days, two from one installation."""
    partitions.createWeek(engine, backend, WEEK)
    install = WEEK - 10 * DAY
    with engine.begin() as conn:
        for report_id, (day, os_name, age) in enumerate(
                ((1, "Linux", 3600), (1, "Linux", 7200), (2, "Windows NT", 60)), start=1):
            processed = WEEK + day * DAY + datetime.timedelta(hours=report_id)
            installed = install + datetime.timedelta(seconds=0 if report_id < 3 else 1)
            conn.execute(sa.text(
                "INSERT INTO reports_20121015 (id, uuid, date_processed, product, signature,"
                " os_name, client_crash_date, install_age) VALUES (:i, :u, :d, 'Firefox',"
                " 'js::GC', :o, :c, :a)"),
                {"i": report_id, "u": f"u-{report_id}", "d": processed, "o": os_name,
                 "c": installed + datetime.timedelta(seconds=age), "a": age})


def _summary(url: str):
    db = DBConnector(url)

    @pytest_twisted.inlineCallbacks
    def read():
        yield db.setup()
        try:
            summary = yield db.signatures.getSummary("js::GC", start_day=WEEK.date(),
                                                     end_day=WEEK.date() + 7 * DAY)
            return summary
        finally:
            yield db.stop()

    return read()


@pytest_twisted.inlineCallbacks
def test_upgrade_adds_the_summaries_tables_and_downgrades(emptyUrl):
    engine, backend, _ = createEngine(emptyUrl)
    try:
        upgradeTo(engine, backend, "007")
        _storeWeek(engine, backend)
        assert upgradeTo(engine, backend, "head") == ("007", migrate.headVersion())
        with engine.connect() as conn:
            assert NEW_TABLES <= set(sa.inspect(conn).get_table_names())
            assert differences(conn) == []
    finally:
        engine.dispose()

    before = yield _summary(emptyUrl)  # nothing rolled up: read from the reports
    assert (before["count"], before["installations"]) == (3, 2)
    assert [(t["term"], t["count"]) for t in before["facets"]["os_name"]] == [
        ("Linux", 2), ("Windows NT", 1)]
    db = DBConnector(emptyUrl)
    yield db.setup()
    try:
        for day in (WEEK.date() + DAY, WEEK.date() + 2 * DAY):
            assert (yield db.signatures.updateSummaries(day)) > 0
    finally:
        yield db.stop()
    assert (yield _summary(emptyUrl)) == before

    engine, backend, _ = createEngine(emptyUrl)
    try:
        with engine.begin() as conn:
            command.downgrade(migrate.alembicConfig(conn), "007")
        with engine.connect() as conn:
            assert not NEW_TABLES & set(sa.inspect(conn).get_table_names())
            assert conn.execute(sa.text("SELECT count(*) FROM reports_20121015")).scalar_one() \
                == 3
    finally:
        engine.dispose()
