"""Behaviour of the top-crashers rollup (``tcbs``) against a brute-force count in Python."""

from __future__ import annotations

import collections
import datetime
import random

import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.internet import defer

from crashdb.exceptions import InvalidInputError
from crashdb.test.fake import fakedb
from crashdb.validation import STORED_DAYS

pytestmark = pytest.mark.citus  # also on a coordinator with two workers (SPEC 17)

UTC = datetime.UTC
DAY = datetime.timedelta(days=1)
# a Sunday and the Monday after it: the days straddle a week (partition) boundary
FIRST_DAY = datetime.date(2012, 10, 20)


def at(*args):
    return datetime.datetime(*args, tzinfo=UTC)


def report(day: datetime.date, seconds: int = 43200, **values) -> fakedb.Report:
    when = datetime.datetime(day.year, day.month, day.day, tzinfo=UTC)
    values.setdefault("product", "Firefox")
    values.setdefault("version", "16.0")
    values.setdefault("signature", "sig")
    return fakedb.Report(date_processed=when + datetime.timedelta(seconds=seconds), **values)


def randomReports(rng: random.Random, days: int, count: int) -> list[fakedb.Report]:
    rows = []
    for _ in range(count):
        day = FIRST_DAY + rng.randrange(days) * DAY
        # edge seconds on purpose: the first and last instants of a UTC day
        seconds = rng.choice([0, 1, 43200, 86399, rng.randrange(86400)])
        rows.append(
            report(
                day,
                seconds,
                product=rng.choice(["Firefox", "Firefox", "Thunderbird", None]),
                version=rng.choice(["16.0", "17.0b1", None]),
                signature=rng.choice(["js::GC", "nsFoo::Bar", "strlen", "@0x0", "", None]),
                os_name=rng.choice(["Windows NT", "Mac OS X", "Linux", "Solaris", None]),
                hangid=rng.choice([None, None, "", "hang-1"]),
                uptime=rng.choice([None, 0, 59, 60, 3600]),
            )
        )
    return rows


def bruteForceDay(rows: list[fakedb.Report], day: datetime.date) -> dict[tuple, dict]:
    """What the rollup of ``day`` must hold, counted row by row in Python."""
    table: dict[tuple, dict] = {}
    for row in rows:
        if row.date_processed.date() != day or row.product is None:
            continue
        key = (row.product, row.version or "", row.signature or "")
        counts = table.setdefault(key, collections.Counter())
        counts["count"] += 1
        counts["win_count"] += row.os_name == "Windows NT"
        counts["mac_count"] += row.os_name == "Mac OS X"
        counts["lin_count"] += row.os_name == "Linux"
        counts["hang_count"] += bool(row.hangid)
        counts["startup_count"] += row.uptime is not None and row.uptime < 60
    return {
        key: {name: counts[name] for name in (
            "count", "win_count", "mac_count", "lin_count", "hang_count", "startup_count")}
        for key, counts in table.items()
    }


def readTcbs(db, day=None):
    tcbs = db.model.tcbs

    def thd(conn):
        query = sa.select(tcbs)
        if day is not None:
            query = query.where(tcbs.c.day == day)
        table = {}
        for row in conn.execute(query).mappings():
            key = (row["product"], row["version"], row["signature"])
            table[(row["day"],) + key] = {
                name: row[name] for name in (
                    "count", "win_count", "mac_count", "lin_count", "hang_count", "startup_count")
            }
        return table

    return db.pool.do(thd)


def bruteForceRanking(rows, product, version, first, last):
    """[(signature, count)] in rank order for [first, last), with the period's total."""
    counts = collections.Counter()
    for row in rows:
        if row.product != product or not first <= row.date_processed.date() < last:
            continue
        if version is not None and (row.version or "") != version:
            continue
        counts[row.signature or ""] += 1
    ranking = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return ranking, sum(counts.values())


@pytest_twisted.inlineCallbacks
def test_rollup_matches_brute_force_count_on_random_data(db):
    rng = random.Random(6)
    rows = randomReports(rng, days=4, count=300)
    yield db.insertTestData(rows)
    for offset in range(4):
        day = FIRST_DAY + offset * DAY
        written = yield db.tcbs.updateTcbs(day)
        expected = bruteForceDay(rows, day)
        stored = yield readTcbs(db, day)
        assert {key[1:]: counts for key, counts in stored.items()} == expected
        assert written == len(expected)


@pytest_twisted.inlineCallbacks
def test_update_is_idempotent_and_replaces_stale_rows(db):
    day = datetime.date(2012, 10, 16)
    yield db.insertTestData([report(day, signature="a"), report(day, signature="b")])
    first = yield db.tcbs.updateTcbs(day)
    before = yield readTcbs(db)
    again = yield db.tcbs.updateTcbs(day)
    assert (first, again) == (2, 2)
    assert (yield readTcbs(db)) == before
    # a stale row for the day (a signature since re-processed away) is removed
    yield db.insertTestData([fakedb.Tcbs(day=day, product="Firefox", signature="gone")])
    yield db.tcbs.updateTcbs(day)
    assert (yield readTcbs(db)) == before


@pytest_twisted.inlineCallbacks
def test_update_leaves_other_days_alone(db):
    monday, tuesday = datetime.date(2012, 10, 15), datetime.date(2012, 10, 16)
    yield db.insertTestData([report(monday), report(tuesday), report(tuesday)])
    yield db.tcbs.updateTcbs(monday)
    yield db.tcbs.updateTcbs(tuesday)
    yield db.tcbs.updateTcbs(monday)
    stored = yield readTcbs(db)
    assert stored[(tuesday, "Firefox", "16.0", "sig")]["count"] == 2
    assert stored[(monday, "Firefox", "16.0", "sig")]["count"] == 1


@pytest_twisted.inlineCallbacks
def test_update_of_a_day_without_reports_or_partitions_writes_nothing(db):
    written = yield db.tcbs.updateTcbs(datetime.date(1999, 1, 1))
    assert written == 0
    assert (yield readTcbs(db)) == {}


@pytest_twisted.inlineCallbacks
def test_os_hang_and_startup_counts(db):
    day = datetime.date(2012, 10, 16)
    yield db.insertTestData([
        report(day, os_name="Windows NT", uptime=10),
        report(day, os_name="Windows NT", hangid="abc", uptime=60),
        report(day, os_name="Mac OS X", hangid="def", uptime=59),
        report(day, os_name="Linux"),
        report(day, os_name="Windows 7"),  # not 'Windows NT': counted in no OS column
    ])
    yield db.tcbs.updateTcbs(day)
    (crasher,) = yield db.tcbs.getTopCrashers("Firefox", end_day=day + DAY)
    assert crasher["count"] == 5
    assert (crasher["win_count"], crasher["mac_count"], crasher["lin_count"]) == (2, 1, 1)
    assert crasher["hang_count"] == 2
    assert crasher["startup_count"] == 2


@pytest_twisted.inlineCallbacks
def test_top_crashers_match_brute_force_ranking(db):
    rng = random.Random(60)
    rows = randomReports(rng, days=6, count=400)
    yield db.insertTestData(rows)
    for offset in range(6):
        yield db.tcbs.updateTcbs(FIRST_DAY + offset * DAY)
    start, end = FIRST_DAY + 3 * DAY, FIRST_DAY + 6 * DAY
    for version in (None, "16.0", ""):
        crashers = yield db.tcbs.getTopCrashers(
            "Firefox", version=version, start_day=start, end_day=end
        )
        ranking, total = bruteForceRanking(rows, "Firefox", version, start, end)
        previous, _ = bruteForceRanking(rows, "Firefox", version, FIRST_DAY, start)
        previousRank = {signature: i + 1 for i, (signature, _) in enumerate(previous)}
        assert [(c["signature"], c["count"]) for c in crashers] == ranking
        assert [c["rank"] for c in crashers] == list(range(1, len(ranking) + 1))
        assert [c["previous_rank"] for c in crashers] == [previousRank.get(s) for s, _ in ranking]
        for crasher in crashers:
            assert crasher["percent"] == pytest.approx(100.0 * crasher["count"] / total)
        assert sum(c["percent"] for c in crashers) == pytest.approx(100.0)


@pytest_twisted.inlineCallbacks
def test_rank_ties_are_broken_by_signature(db):
    day = datetime.date(2012, 10, 16)
    rows = [report(day, signature=s) for s in ("b", "c", "a", "c", "z", "z")]
    yield db.insertTestData(rows)
    yield db.tcbs.updateTcbs(day)
    crashers = yield db.tcbs.getTopCrashers("Firefox", start_day=day, end_day=day + DAY)
    assert [(c["rank"], c["signature"], c["count"]) for c in crashers] == [
        (1, "c", 2), (2, "z", 2), (3, "a", 1), (4, "b", 1)
    ]
    assert [c["percent"] for c in crashers] == pytest.approx([100 / 3, 100 / 3, 100 / 6, 100 / 6])


@pytest_twisted.inlineCallbacks
def test_previous_rank_comes_from_the_period_just_before(db):
    # periods of two days: current [18, 20), previous [16, 18); the 15th is outside both
    rows = (
        [report(datetime.date(2012, 10, 15), signature=s) for s in ("x",) * 5]
        + [report(datetime.date(2012, 10, 16), signature=s) for s in ("a", "b", "b")]
        + [report(datetime.date(2012, 10, 17), signature=s) for s in ("b", "c")]
        + [report(datetime.date(2012, 10, 18), signature=s) for s in ("a", "a", "a", "c")]
        + [report(datetime.date(2012, 10, 19), signature=s) for s in ("new", "x")]
    )
    yield db.insertTestData(rows)
    for day in range(15, 20):
        yield db.tcbs.updateTcbs(datetime.date(2012, 10, day))
    crashers = yield db.tcbs.getTopCrashers(
        "Firefox", start_day=datetime.date(2012, 10, 18), end_day=datetime.date(2012, 10, 20)
    )
    # previous ranking: b (3), a (1), c (1) -> b 1, a 2, c 3; x only before the previous period
    assert [(c["signature"], c["rank"], c["previous_rank"]) for c in crashers] == [
        ("a", 1, 2), ("c", 2, 3), ("new", 3, None), ("x", 4, None)
    ]


@pytest_twisted.inlineCallbacks
def test_limit_keeps_the_top_and_previous_rank_counts_every_signature(db):
    rows = [report(datetime.date(2012, 10, 16), signature=s) for s in "aaabbc"]
    rows += [report(datetime.date(2012, 10, 17), signature=s) for s in "ccb"]
    yield db.insertTestData(rows)
    for day in (16, 17):
        yield db.tcbs.updateTcbs(datetime.date(2012, 10, day))
    crashers = yield db.tcbs.getTopCrashers(
        "Firefox", start_day=datetime.date(2012, 10, 17), end_day=datetime.date(2012, 10, 18),
        limit=1,
    )
    assert [(c["signature"], c["previous_rank"], c["percent"]) for c in crashers] == [
        ("c", 3, pytest.approx(200 / 3))
    ]


@pytest_twisted.inlineCallbacks
def test_default_period_is_the_last_seven_days_up_to_today(db):
    today = datetime.datetime.now(UTC).date()
    yield db.insertTestData([
        report(today, signature="today"),
        report(today - 6 * DAY, signature="six days ago"),
        report(today - 7 * DAY, signature="a week ago"),
        report(today - 7 * DAY, signature="a week ago"),
    ])
    for back in (0, 6, 7):
        yield db.tcbs.updateTcbs(today - back * DAY)
    crashers = yield db.tcbs.getTopCrashers("Firefox")
    assert [(c["signature"], c["previous_rank"]) for c in crashers] == [
        ("six days ago", None), ("today", None)
    ]
    earlier = yield db.tcbs.getTopCrashers("Firefox", end_day=today - 6 * DAY)
    assert [c["signature"] for c in earlier] == ["a week ago"]


@pytest_twisted.inlineCallbacks
def test_other_products_and_versions_are_not_counted(db):
    day = datetime.date(2012, 10, 16)
    yield db.insertTestData([
        report(day, signature="s", version="16.0"),
        report(day, signature="s", version="17.0"),
        report(day, signature="t", product="Thunderbird"),
    ])
    yield db.tcbs.updateTcbs(day)
    everyVersion = yield db.tcbs.getTopCrashers("Firefox", end_day=day + DAY)
    assert [(c["signature"], c["count"]) for c in everyVersion] == [("s", 2)]
    one = yield db.tcbs.getTopCrashers("Firefox", version="17.0", end_day=day + DAY)
    assert [(c["signature"], c["count"], c["percent"]) for c in one] == [("s", 1, 100.0)]
    assert (yield db.tcbs.getTopCrashers("Camino", end_day=day + DAY)) == []


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"product": 3}, "product"),
        ({"product": "x" * 31}, "product"),
        ({"product": "Firefox", "version": 16}, "version"),
        ({"product": "Firefox", "end_day": at(2012, 10, 16)}, "end_day"),
        ({"product": "Firefox", "start_day": "2012-10-10"}, "start_day"),
        ({"product": "Firefox", "start_day": datetime.date(2012, 10, 16),
          "end_day": datetime.date(2012, 10, 16)}, "start_day"),
        ({"product": "Firefox", "limit": 0}, "limit"),
        ({"product": "Firefox", "limit": True}, "limit"),
        ({"product": "Firefox", "limit": 2.5}, "limit"),
        ({"product": "Firefox", "limit": 2**31}, "limit"),  # past what SQL's LIMIT takes
    ],
)
@pytest_twisted.inlineCallbacks
def test_bad_arguments_are_rejected(db, kwargs, field):
    with pytest.raises(InvalidInputError) as info:
        yield db.tcbs.getTopCrashers(**kwargs)
    assert info.value.field == field


@pytest_twisted.inlineCallbacks
def test_the_widest_period_ranks_against_the_days_before_it(db):
    # the period before [1000-01-06, 9999-12-27) would begin before year 1: it is cut there
    yield db.insertTestData([report(datetime.date(2012, 10, 16), signature="a")])
    yield db.tcbs.updateTcbs(datetime.date(2012, 10, 16))
    first, last = STORED_DAYS
    end = last + datetime.timedelta(days=1)  # (exclusive: the day after the last)
    crashers = yield db.tcbs.getTopCrashers("Firefox", start_day=first, end_day=end)
    assert [(c["signature"], c["count"], c["previous_rank"]) for c in crashers] == [
        ("a", 1, None)]
    with pytest.raises(InvalidInputError) as info:
        yield db.tcbs.getTopCrashers("Firefox", start_day=first - datetime.timedelta(days=1),
                                     end_day=end)
    assert info.value.field == "start_day"
    with pytest.raises(InvalidInputError) as info:
        yield db.tcbs.getTopCrashers("Firefox", start_day=first,
                                     end_day=end + datetime.timedelta(days=1))
    assert info.value.field == "end_day"


@pytest_twisted.inlineCallbacks
def test_update_rejects_a_datetime_or_a_string(db):
    for bad in (at(2012, 10, 16), "2012-10-16", None, datetime.date(1, 1, 1),
                datetime.date.max):
        with pytest.raises(InvalidInputError) as info:
            yield db.tcbs.updateTcbs(bad)
        assert info.value.field == "day"
    assert (yield readTcbs(db)) == {}


@pytest_twisted.inlineCallbacks
def test_concurrent_updates_of_the_same_day_all_succeed(realdb):
    rng = random.Random(66)
    rows = randomReports(rng, days=1, count=200)
    yield realdb.insertTestData(rows)
    results = yield defer.gatherResults(
        [realdb.tcbs.updateTcbs(FIRST_DAY) for _ in range(6)], consumeErrors=True
    )
    expected = bruteForceDay(rows, FIRST_DAY)
    assert results == [len(expected)] * 6
    stored = yield readTcbs(realdb, FIRST_DAY)
    assert {key[1:]: counts for key, counts in stored.items()} == expected


@pytest_twisted.inlineCallbacks
def test_ties_follow_code_point_order_whatever_the_collation(db):
    if db.kind == "postgresql":  # a linguistic collation would put "a" before "B"

        def useIcuCollation(conn):
            if conn.exec_driver_sql(
                "SELECT 1 FROM pg_collation WHERE collname = 'und-x-icu'"
            ).scalar():
                conn.exec_driver_sql(
                    'ALTER TABLE tcbs ALTER COLUMN signature TYPE varchar(255) COLLATE "und-x-icu"'
                )

        yield db.pool.do(useIcuCollation)
    day = datetime.date(2012, 10, 16)
    signatures = ["a", "B", "_x", "Zed", "é", "e", "@0x0", ""]
    yield db.insertTestData([report(day, signature=s) for s in signatures])
    yield db.tcbs.updateTcbs(day)
    crashers = yield db.tcbs.getTopCrashers("Firefox", start_day=day, end_day=day + DAY)
    assert [c["signature"] for c in crashers] == sorted(signatures)


@pytest_twisted.inlineCallbacks
def test_get_products_lists_products_and_their_versions(db):
    yield db.insertTestData([
        fakedb.Tcbs(day=FIRST_DAY, product="Thunderbird", version="16.0.2"),
        fakedb.Tcbs(day=FIRST_DAY, product="Firefox", version="16.0", signature="a"),
        fakedb.Tcbs(day=FIRST_DAY, product="Firefox", version="17.0b3", signature="a"),
        fakedb.Tcbs(day=FIRST_DAY + DAY, product="Firefox", version="16.0", signature="b"),
        fakedb.Tcbs(day=FIRST_DAY, product="Firefox", version="", signature="c"),
    ])
    products = yield db.tcbs.getProducts()
    assert products == [
        {"product": "Firefox", "versions": ["17.0b3", "16.0"]},
        {"product": "Thunderbird", "versions": ["16.0.2"]},
    ]


@pytest_twisted.inlineCallbacks
def test_get_daily_counts_sums_versions_and_zero_fills_days(db):
    yield db.insertTestData([
        fakedb.Tcbs(day=FIRST_DAY, version="16.0", signature="a", count=3),
        fakedb.Tcbs(day=FIRST_DAY, version="17.0", signature="a", count=4),
        fakedb.Tcbs(day=FIRST_DAY + 2 * DAY, version="16.0", signature="a", count=5),
        fakedb.Tcbs(day=FIRST_DAY + DAY, version="16.0", signature="b", count=1),
        fakedb.Tcbs(day=FIRST_DAY + 3 * DAY, version="16.0", signature="a", count=9),  # after
        fakedb.Tcbs(day=FIRST_DAY, product="Thunderbird", signature="a", count=8),
    ])
    counts = yield db.tcbs.getDailyCounts("Firefox", ["a", "b", "none"], start_day=FIRST_DAY,
                                          end_day=FIRST_DAY + 3 * DAY)
    assert counts == {"a": [7, 0, 5], "b": [0, 1, 0], "none": [0, 0, 0]}
    only = yield db.tcbs.getDailyCounts("Firefox", ["a"], version="17.0", start_day=FIRST_DAY,
                                        end_day=FIRST_DAY + 3 * DAY)
    assert only == {"a": [4, 0, 0]}


@pytest_twisted.inlineCallbacks
def test_get_daily_counts_rejects_bad_input(db):
    with pytest.raises(InvalidInputError) as caught:
        yield db.tcbs.getDailyCounts("Firefox", "a")
    assert caught.value.field == "signatures"
    with pytest.raises(InvalidInputError) as caught:
        yield db.tcbs.getDailyCounts("Firefox", ["a"], start_day=FIRST_DAY, end_day=FIRST_DAY)
    assert caught.value.field == "start_day"
