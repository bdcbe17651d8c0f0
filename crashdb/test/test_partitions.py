"""Behaviour of weekly partitions: the pure helpers and the ``partitions`` component."""

from __future__ import annotations

import datetime

import pytest
import pytest_twisted

from crashdb.exceptions import InvalidInputError
from crashdb.partitions import partitionName, weekStart
from crashdb.test.fake import fakedb

pytestmark = pytest.mark.citus  # also on a coordinator with two workers (SPEC 17)

UTC = datetime.UTC


def at(*args, tz=UTC):
    return datetime.datetime(*args, tzinfo=tz)


def test_seed_example_tuesday_belongs_to_monday_week():
    assert partitionName("reports", at(2009, 1, 27, 15, 30)) == "reports_20090126"
    assert partitionName("reports", at(2009, 1, 5)) == "reports_20090105"


def test_week_boundaries_are_half_open():
    assert weekStart(at(2012, 10, 21, 23, 59, 59)) == at(2012, 10, 15)
    assert weekStart(at(2012, 10, 22, 0, 0, 0)) == at(2012, 10, 22)
    assert weekStart(at(2012, 10, 21, 23, 59, 59, 999999)) == at(2012, 10, 15)


def test_other_time_zones_are_converted_to_utc():
    tokyo = datetime.timezone(datetime.timedelta(hours=9))
    # Monday 08:00 in Tokyo is still Sunday 23:00 UTC
    assert partitionName("reports", at(2012, 10, 22, 8, 0, tz=tokyo)) == "reports_20121015"
    newyork = datetime.timezone(datetime.timedelta(hours=-5))
    # Sunday 20:00 in New York is Monday 01:00 UTC
    assert partitionName("reports", at(2012, 10, 21, 20, 0, tz=newyork)) == "reports_20121022"


def test_naive_datetime_and_unknown_table_are_rejected():
    with pytest.raises(InvalidInputError):
        weekStart(datetime.datetime(2012, 10, 16))
    with pytest.raises(InvalidInputError) as info:
        partitionName("jobs", at(2012, 10, 16))
    assert info.value.field == "table"


@pytest_twisted.inlineCallbacks
def test_ensure_week_creates_every_table_once(db):
    created = yield db.partitions.ensureWeek(at(2009, 1, 27))
    assert created == [
        "reports_20090126",
        "extensions_20090126",
        "plugins_reports_20090126",
        "raw_crashes_20090126",
    ]
    again = yield db.partitions.ensureWeek(at(2009, 1, 30))
    assert again == []


@pytest_twisted.inlineCallbacks
def test_get_partitions_orders_by_table_then_start(db):
    yield db.partitions.createAhead(2, now=at(2012, 10, 17))
    parts = yield db.partitions.getPartitions("reports")
    assert [p["name"] for p in parts] == [f"reports_201210{d}" for d in ("15", "22", "29")]
    assert parts[0]["start"] == at(2012, 10, 15) and parts[0]["end"] == at(2012, 10, 22)
    everything = yield db.partitions.getPartitions()
    assert [p["table"] for p in everything][:4] == ["extensions"] * 3 + ["plugins_reports"]
    assert len(everything) == 12


@pytest_twisted.inlineCallbacks
def test_drop_weeks_before_drops_only_weeks_ending_by_cutoff(db):
    yield db.partitions.createAhead(3, now=at(2012, 10, 1))
    dropped = yield db.partitions.dropWeeksBefore(at(2012, 10, 15))
    assert sorted(dropped) == sorted(
        f"{t}_{w}" for t in ("reports", "extensions", "plugins_reports", "raw_crashes")
        for w in ("20121001", "20121008")
    )
    # children referencing reports go first
    assert dropped.index("extensions_20121001") < dropped.index("reports_20121001")
    left = yield db.partitions.getPartitions("reports")
    assert [p["name"] for p in left] == ["reports_20121015", "reports_20121022"]


@pytest_twisted.inlineCallbacks
def test_insert_into_missing_week_creates_it(db):
    yield db.insertTestData([fakedb.Report(id=7, uuid="u1", date_processed=at(2009, 1, 27))])
    parts = yield db.partitions.getPartitions("reports")
    assert [p["name"] for p in parts] == ["reports_20090126"]


@pytest_twisted.inlineCallbacks
def test_bad_arguments_are_rejected(db):
    with pytest.raises(InvalidInputError):
        yield db.partitions.createAhead(-1)
    with pytest.raises(InvalidInputError):
        yield db.partitions.dropWeeksBefore(datetime.datetime(2012, 1, 1))
    with pytest.raises(InvalidInputError):
        yield db.partitions.getPartitions("jobs")


@pytest_twisted.inlineCallbacks
def test_partition_sizes_count_rows(db):
    yield db.insertTestData([fakedb.Report(date_processed=at(2009, 1, 27)) for _ in range(3)])
    sizes = yield db.partitions.getPartitionSizes()
    assert set(sizes) == {f"{t}_20090126" for t in
                          ("reports", "extensions", "plugins_reports", "raw_crashes")}
    rows, _ = sizes["reports_20090126"]
    assert rows in (3, None)  # PostgreSQL gives its estimate, None until analysed
    if db.kind != "postgresql":
        assert rows == 3


@pytest_twisted.inlineCallbacks
def test_ensure_week_rejects_a_naive_datetime(db):
    with pytest.raises(InvalidInputError):
        yield db.partitions.ensureWeek(datetime.datetime(2012, 1, 1))


def test_any_time_of_a_week_gives_the_child_of_that_whole_week():
    """Children are cached by name: a Tuesday must not leave a child that starts on Tuesday."""
    import sqlalchemy as sa

    from crashdb.partitions import childTable

    backend = fakedb.FakeDBConnector().backend
    tuesday = datetime.datetime(2031, 3, 4, 15, 30, tzinfo=datetime.UTC)
    first = childTable("reports", tuesday, backend)
    assert first is childTable("reports", weekStart(tuesday), backend)
    (check,) = [c for c in first.constraints if isinstance(c, sa.CheckConstraint)]
    assert "2031-03-03 00:00:00" in str(check.sqltext)
