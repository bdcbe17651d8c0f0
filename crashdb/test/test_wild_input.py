"""Input from the wild: every value a crash can carry is stored and read back identically on the
fake, SQLite and PostgreSQL, or refused by all three with InvalidInputError, the database (rows
and partitions) unchanged; queries given any strings answer alike or are refused alike.

The first tests are examples (the cases of issue 20) on the ``db`` fixture. The property tests
(Hypothesis) run each generated value through all three backends at once, one database each for
the whole module; examples use fresh uuids, so they never meet. They are deterministic
(``derandomize``) with a small budget; for a longer run before a release, set
``CRASHDB_WILD_PROFILE=release`` (random seeds, 1,000 examples a test) or
``CRASHDB_WILD_EXAMPLES=<n>``; see docs/testing.md.
"""

from __future__ import annotations

import datetime
import itertools
import math

import pytest
import pytest_twisted
import sqlalchemy as sa
from hypothesis import event, given
from hypothesis import strategies as st
from twisted.internet import defer

from crashdb import model
from crashdb.exceptions import InvalidInputError
from crashdb.partitions import listChildren, readable
from crashdb.reports import REPORT_FIELDS
from crashdb.test.fake.fakedb import FakeDBConnector
from crashdb.test.util.db import TestDBConnector, postgres, upgradeUrl
from crashdb.test.util.wild import wildSettings
from crashdb.validation import FLOAT_LIMIT, MAX_JSON_DEPTH, STORED_DATETIMES

UTC = datetime.UTC
MONDAY = datetime.datetime(2013, 8, 5, tzinfo=UTC)
WEEK = datetime.timedelta(days=7)
BAD_NAME = "foo.xpi\udf03@0x1b3c"  # Socorro bug 1552709: an undecodable byte of a file name

PROFILE = wildSettings(ci=12)


def refusal(deferred: defer.Deferred) -> defer.Deferred:
    """Deferred of the InvalidInputError ``deferred`` fails with (any other outcome fails)."""

    def stored(result):
        raise AssertionError(f"not refused: {result!r}")

    def refused(failure):
        failure.trap(InvalidInputError)
        return failure.value

    return deferred.addCallbacks(stored, refused)


def snapshot(db) -> defer.Deferred:
    """Every partition and the row count of every table: what a refused call must not change."""

    def thd(conn: sa.Connection) -> dict:
        backend = db.backend
        counts = {
            parent: conn.execute(sa.select(sa.func.count()).select_from(
                readable(conn, backend, parent))).scalar_one()
            for parent in model.PARTITIONED_TABLES
        }
        counts["plugins"] = conn.execute(
            sa.select(sa.func.count()).select_from(model.plugins)).scalar_one()
        return {"partitions": sorted(listChildren(conn, backend)), "rows": counts}

    return db.pool.do(thd)


@defer.inlineCallbacks
def snapshots(connectors):
    """The snapshot of each of ``connectors``."""
    states = []
    for db in connectors:
        states.append((yield snapshot(db)))
    return states


def report(uuid: str, **values) -> dict:
    return {"uuid": uuid, "date_processed": MONDAY + datetime.timedelta(hours=1), **values}


# -- the cases of issue 20, on each backend -------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_lone_surrogate_in_a_report_is_refused_and_creates_no_partition(db):
    before = yield snapshot(db)
    error = (yield refusal(db.reports.addReport(report("s1", signature=BAD_NAME))))
    assert error.field == "signature" and "surrogate" in error.message
    batch = [report(f"s{n}", signature="ok") for n in range(16)]
    batch[7]["signature"] = BAD_NAME
    error = (yield refusal(db.reports.addReports(batch)))
    assert (error.index, error.field) == (7, "signature")
    error = (yield refusal(db.reports.addReport(report("s2", plugins=[
        {"filename": BAD_NAME, "name": "n", "version": "1"}]))))
    assert error.field == "plugins.filename"
    error = (yield refusal(db.reports.addReport(report("s3", extensions=[
        {"extension_id": "e", "extension_version": BAD_NAME}]))))
    assert error.field == "extensions.extension_version"
    assert (yield snapshot(db)) == before


@pytest.mark.parametrize("bad", [
    {"Module": BAD_NAME}, {BAD_NAME: 1}, {"a": [{"b": BAD_NAME}]}, {"n": math.nan},
    {"n": math.inf}, {"n": -math.inf}, {"n": 2**63}, {"n": -(2**63) - 1}, {"n": FLOAT_LIMIT},
    {"n": "\x00"}, {1: "int key"}, {"t": (1, 2)}, {"s": {1, 2}},
], ids=repr)
@pytest_twisted.inlineCallbacks
def test_raw_crash_json_that_a_backend_cannot_keep_is_refused(db, bad):
    before = yield snapshot(db)
    error = (yield refusal(db.rawcrashes.addRawCrash("r1", MONDAY, bad)))
    assert error.field == "raw_crash"
    assert (yield snapshot(db)) == before


@pytest_twisted.inlineCallbacks
def test_raw_crash_json_at_the_bounds_round_trips(db):
    nested: object = "bottom"
    for _ in range(MAX_JSON_DEPTH - 1):  # in the crash, itself one deep
        nested = [nested]
    crash = {"deep": nested, "big": 2**63 - 1, "small": -(2**63), "float": 9.999999999999998e15,
             "tiny": 5e-324, "é😀\\\"\t": "\\u0000 is text", "": ""}
    assert (yield db.rawcrashes.addRawCrash("r2", MONDAY, crash)) is True
    assert (yield db.rawcrashes.getRawCrash("r2", MONDAY)) == crash
    before = yield snapshot(db)
    error = (yield refusal(db.rawcrashes.addRawCrash("r3", MONDAY, {"deep": [nested]})))
    assert "nested deeper" in error.message
    assert (yield snapshot(db)) == before


@pytest.mark.parametrize("when", [
    datetime.datetime(999, 12, 31, tzinfo=UTC),
    datetime.datetime(1, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=5))),
    datetime.datetime(9999, 12, 27, tzinfo=UTC),
    datetime.datetime(9999, 12, 31, 23, tzinfo=datetime.timezone(-datetime.timedelta(hours=5))),
], ids=str)
@pytest_twisted.inlineCallbacks
def test_datetimes_out_of_the_stored_range_are_refused(db, when):
    before = yield snapshot(db)
    assert (yield refusal(db.reports.addReport(report("d1", date_processed=when)))).field == \
        "date_processed"
    assert (yield refusal(db.reports.addReport(report("d2", client_crash_date=when)))).field == \
        "client_crash_date"
    assert (yield refusal(db.reports.addReports([report("d3", client_crash_date=when)]))).index == 0
    assert (yield refusal(db.rawcrashes.addRawCrash("d4", when, {}))).field == "date_processed"
    batch = [report(f"d{n}") for n in range(5, 25)]
    batch[17]["date_processed"] = when
    error = yield refusal(db.reports.addReports(batch))
    assert (error.index, error.field) == (17, "date_processed")
    assert (yield snapshot(db)) == before


@pytest_twisted.inlineCallbacks
def test_datetimes_at_the_ends_of_the_stored_range_round_trip(db):
    odd = datetime.timezone(datetime.timedelta(hours=-13, minutes=-59, seconds=-59,
                                               microseconds=-1))
    for uuid, when in (("e1", STORED_DATETIMES[0]),
                       ("e2", STORED_DATETIMES[1] - datetime.timedelta(microseconds=1)),
                       ("e3", datetime.datetime(2013, 8, 4, 12, tzinfo=odd))):
        yield db.reports.addReport(report(uuid, date_processed=when, client_crash_date=when))
        stored = (yield db.reports.getReport(uuid, when))
        assert stored["date_processed"] == when and stored["client_crash_date"] == when
        assert stored["date_processed"].tzinfo == UTC


@pytest_twisted.inlineCallbacks
def test_queries_with_wild_strings_are_refused_or_answered(db):
    keys = {"é": 1, 'a"b': 2, "a\\b": True, "tab\t": None, "x.y": "v", "😀": [1]}
    yield db.rawcrashes.addRawCrash("q1", MONDAY, keys)
    before = yield snapshot(db)
    for key, value in keys.items():
        if value is not None and not isinstance(value, list):
            found = (yield db.rawcrashes.getRawCrashes(MONDAY, MONDAY + WEEK, where={key: value}))
            assert [row["uuid"] for row in found] == ["q1"], key
        counts = (yield db.rawcrashes.countRawCrashesBy(key, MONDAY, MONDAY + WEEK))
        assert counts == {value if not isinstance(value, list) else "[1]": 1}, key
    assert (yield refusal(db.rawcrashes.getRawCrashes(MONDAY, MONDAY + WEEK,
                                               where={BAD_NAME: 1}))).field == "where"
    assert (yield refusal(db.rawcrashes.getRawCrashes(MONDAY, MONDAY + WEEK,
                                               where={"a": BAD_NAME}))).field == "where"
    assert (yield refusal(db.rawcrashes.getRawCrashes(MONDAY, MONDAY + WEEK,
                                               where={"a": 2**64}))).field == "where"
    error = yield refusal(db.rawcrashes.countRawCrashesBy(BAD_NAME, MONDAY, MONDAY + WEEK))
    assert error.field == "key"
    assert (yield refusal(db.reports.getReports(signature=BAD_NAME))).field == "signature"
    assert (yield snapshot(db)) == before


# -- properties, all three backends at once -------------------------------------------------------


QUERY_CRASHES = {
    "q1": {"ProductName": "Firefox", "é": "é", 'a"b': 1, "a\\b": True, "n": None, "f": 1.5},
    "q2": {"ProductName": "Fire%", "é": 2, 'a"b': "1", "tab\t": [1, {"x": None}], "f": 1},
    "q3": {"ProductName": "", "": "", "😀": "😀", "a\\b": 1, "n": False},
}


@pytest.fixture(scope="module")
def trio(tmp_path_factory):
    """The fake, a SQLite file and a PostgreSQL database, for the whole module, holding
    ``QUERY_CRASHES`` (as raw crashes and as reports); their state before any property ran
    is ``trio.before``."""
    sqliteUrl = f"sqlite:///{tmp_path_factory.mktemp('wild') / 'crashdb.sqlite'}"
    upgradeUrl(sqliteUrl)
    postgresUrl = postgres.newDatabase()
    connectors = _Trio([FakeDBConnector(), TestDBConnector(sqliteUrl),
                        TestDBConnector(postgresUrl)])
    for db in connectors:
        for uuid, crash in QUERY_CRASHES.items():
            pytest_twisted.blockon(db.rawcrashes.addRawCrash(
                uuid, MONDAY + datetime.timedelta(hours=1), crash))
            pytest_twisted.blockon(db.reports.addReport(report(
                uuid, product=crash["ProductName"], signature=uuid)))
    yield connectors
    for connector in connectors:
        pytest_twisted.blockon(connector.stop())
    postgres.dropDatabase(postgresUrl)


class _Trio(list):
    """The three connectors (a list, so that it can carry notes)."""

    queried: list | None = None  # their snapshots before the query property ran


_uuids = (f"w{n:06d}" for n in itertools.count())

# any character, with the troublesome ones often
WILD_CHARACTERS = st.one_of(
    st.characters(exclude_categories=()),
    st.sampled_from(["\udf03", "\ud800", "\udfff", "\x00", "\t", "\n", "\r", "\\", '"', "'",
                     "%", "_", "é", "😀", "\u2028", "\ufeff"]),
)
WILD_TEXT = st.text(WILD_CHARACTERS, max_size=20)
# any text a backend can store (so that many examples are stored, not refused at once)
SAFE_TEXT_CHARACTERS = st.characters(codec="utf-8", exclude_characters="\x00")
SAFE_TEXT = st.text(SAFE_TEXT_CHARACTERS, max_size=20)


def wildText(limit: int | None) -> st.SearchStrategy:
    """Storable text, wild text, and text around ``limit`` characters long."""
    if limit is None:
        return SAFE_TEXT | WILD_TEXT
    return (SAFE_TEXT.filter(lambda text: len(text) <= limit) | WILD_TEXT
            | st.text(WILD_CHARACTERS, min_size=max(0, limit - 2), max_size=limit + 2))


ZONES = st.builds(datetime.timezone, st.timedeltas(
    min_value=-datetime.timedelta(hours=23, minutes=59, seconds=59, microseconds=999999),
    max_value=datetime.timedelta(hours=23, minutes=59, seconds=59, microseconds=999999)))
DATETIMES = st.datetimes(timezones=ZONES) | st.datetimes(
    min_value=datetime.datetime(1999, 1, 1), max_value=datetime.datetime(2030, 1, 1),
    timezones=ZONES)
STORABLE_DATETIMES = st.datetimes(
    min_value=datetime.datetime(1000, 1, 7), max_value=datetime.datetime(9999, 12, 25),
    timezones=ZONES) | st.datetimes(
    min_value=datetime.datetime(2012, 1, 1), max_value=datetime.datetime(2013, 1, 1),
    timezones=ZONES)
NUMBERS = st.integers() | st.integers(-(2**31) - 2, 2**31 + 2) | st.floats() | st.booleans()
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats() | SAFE_TEXT
    | WILD_TEXT,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(SAFE_TEXT | WILD_TEXT | st.integers(), children, max_size=4),
    max_leaves=12,
)


def _valueFor(column: sa.Column, wild: bool) -> st.SearchStrategy:
    """Any value for ``column`` (``wild``), or one every backend stores."""
    kind = column.type
    if isinstance(kind, model.UTCDateTime):
        return DATETIMES if wild else STORABLE_DATETIMES
    if isinstance(kind, sa.String):
        if wild:
            return wildText(kind.length)
        return SAFE_TEXT if kind.length is None else st.text(
            SAFE_TEXT_CHARACTERS, max_size=kind.length)
    if isinstance(kind, sa.Boolean):
        return NUMBERS if wild else st.booleans()
    return NUMBERS if wild else st.integers(-(2**31), 2**31 - 1)


def _reports(wild: bool) -> st.SearchStrategy:
    """Reports with their extensions and plugins: any (``wild``), or storable ones."""
    text = wildText if wild else (lambda limit: SAFE_TEXT if limit is None else st.text(
        SAFE_TEXT_CHARACTERS, max_size=limit))
    values = st.fixed_dictionaries(
        {"date_processed": DATETIMES if wild else STORABLE_DATETIMES},
        optional={c.name: _valueFor(c, wild) | st.none() for c in model.reports.c
                  if c.name not in ("id", "uuid", "date_processed")},
    )
    extensions = st.lists(st.fixed_dictionaries(
        {"extension_id": text(100)}, optional={"extension_version": text(16) | st.none()}),
        max_size=3)
    plugins = st.lists(st.fixed_dictionaries(
        {"filename": text(None), "name": text(None), "version": text(None)}),
        max_size=3, unique_by=lambda plugin: (plugin["filename"], plugin["name"]))
    return st.tuples(values, st.none() | extensions, st.none() | plugins)


REPORTS = _reports(wild=True)
# batches of storable reports, sometimes with one wild report somewhere: enough rows for the
# bulk path (COPY on PostgreSQL) are stored, not refused for one bad row among eighteen
BATCHES = st.tuples(st.lists(_reports(wild=False), min_size=1, max_size=18),
                    st.none() | st.tuples(st.integers(0, 18), REPORTS)).map(
    lambda drawn: drawn[0] if drawn[1] is None else
    [*drawn[0][:drawn[1][0]], drawn[1][1], *drawn[0][drawn[1][0]:]])


@defer.inlineCallbacks
def outcomes(calls):
    """Each call's result, or its InvalidInputError's (index, field), one call at a time."""
    results = []
    for call in calls:
        try:
            results.append(("stored", (yield call())))
        except InvalidInputError as error:
            results.append(("refused", (error.index, error.field)))
    return results


def _asReport(values: tuple) -> dict:
    row, extensions, plugins = values
    built = {"uuid": next(_uuids), **row}
    if extensions is not None:
        built["extensions"] = extensions
    if plugins is not None:
        built["plugins"] = plugins
    return built


@defer.inlineCallbacks
def _readBack(db, stored: dict, report_id: int):
    when = stored["date_processed"]
    found = yield db.reports.getReport(stored["uuid"], when)
    extensions = yield db.extensions.getExtensions(report_id, when)
    plugins = yield db.plugins.getPluginReports(report_id, when)
    return (
        {name: found[name] for name in REPORT_FIELDS[1:]},
        [(e["extension_id"], e["extension_version"]) for e in extensions],
        sorted((p["filename"], p["name"], p["version"]) for p in plugins),
    )


def _expected(report: dict) -> tuple:
    return (
        {name: report.get(name) for name in REPORT_FIELDS[1:]},
        [(e["extension_id"], e.get("extension_version")) for e in report.get("extensions") or ()],
        sorted((p["filename"], p["name"], p["version"]) for p in report.get("plugins") or ()),
    )


@defer.inlineCallbacks
def _storeAlike(trio, call, check):
    """``call(db)`` on each backend: all store (``check(db, result)`` each, a Deferred), or all
    refuse alike and change nothing."""
    before = yield snapshots(trio)
    results = yield outcomes([lambda db=db: call(db) for db in trio])
    kinds = {kind for kind, _ in results}
    event(f"{'/'.join(sorted(kinds))}")
    assert len(kinds) == 1, results
    if kinds == {"refused"}:
        assert len({detail for _, detail in results}) == 1, results
        assert (yield snapshots(trio)) == before
    else:
        for db, (_, result) in zip(trio, results):
            yield check(db, result)
    return kinds


@PROFILE
@given(values=REPORTS)
@pytest_twisted.inlineCallbacks
def test_any_report_is_stored_alike_or_refused_alike(trio, values):
    built = _asReport(values)

    @defer.inlineCallbacks
    def readBack(db, report_id):
        assert (yield _readBack(db, built, report_id)) == _expected(built)

    yield _storeAlike(trio, lambda db: db.reports.addReport(built), readBack)


@PROFILE
@given(batch=BATCHES)
@pytest_twisted.inlineCallbacks
def test_any_batch_is_stored_alike_or_refused_alike(trio, batch):
    built = [_asReport(values) for values in batch]

    @defer.inlineCallbacks
    def readBack(db, ids):
        for stored, report_id in zip(built, ids):
            assert (yield _readBack(db, stored, report_id)) == _expected(stored)

    yield _storeAlike(trio, lambda db: db.reports.addReports(built), readBack)


@PROFILE
@given(when=DATETIMES,
       crash=st.dictionaries(SAFE_TEXT | WILD_TEXT | st.integers(), JSON, max_size=6))
@pytest_twisted.inlineCallbacks
def test_any_raw_crash_is_stored_alike_or_refused_alike(trio, when, crash):
    uuid = next(_uuids)

    @defer.inlineCallbacks
    def readBack(db, stored):
        assert stored is True
        assert (yield db.rawcrashes.getRawCrash(uuid, when)) == crash

    yield _storeAlike(trio, lambda db: db.rawcrashes.addRawCrash(uuid, when, crash), readBack)


KEYS = st.sampled_from(sorted({k for crash in QUERY_CRASHES.values() for k in crash}))
SCALARS = (st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats()
           | WILD_TEXT | st.sampled_from(["Firefox", "é", "1", "😀", 1.5]))
PERIODS = st.sampled_from([(MONDAY, MONDAY + WEEK), (MONDAY - WEEK, MONDAY + 2 * WEEK),
                           (MONDAY + WEEK, MONDAY)]) | st.tuples(DATETIMES, DATETIMES)
FILTERS = st.fixed_dictionaries({}, optional={
    "product": WILD_TEXT | st.sampled_from(["Firefox", "Fire%", ""]),
    "version": WILD_TEXT, "signature": WILD_TEXT | st.just("q2")})


@pytest_twisted.inlineCallbacks
def test_queries_start_from_a_known_state(trio):
    """Notes the state the query property must leave unchanged (the next two tests)."""
    trio.queried = yield snapshots(trio)
    assert all(state["rows"]["raw_crashes"] >= len(QUERY_CRASHES) for state in trio.queried)


@PROFILE
@given(where=st.dictionaries(KEYS | WILD_TEXT, SCALARS | JSON, max_size=3),
       key=KEYS | WILD_TEXT, span=PERIODS, filters=FILTERS)
@pytest_twisted.inlineCallbacks
def test_any_query_answers_alike(trio, where, key, span, filters):
    answers = []
    for db in trio:
        answers.append((yield outcomes([
            lambda db=db: db.rawcrashes.getRawCrashes(*span, where=where),
            lambda db=db: db.rawcrashes.countRawCrashesBy(key, *span),
            lambda db=db: db.reports.getReports(**filters),
            lambda db=db: db.reports.countReports(**filters),
        ])))
    crashes, counts, reports, numbers = zip(*answers)
    assert crashes[0] == crashes[1] == crashes[2], crashes
    assert counts[0] == counts[1] == counts[2], counts
    assert [_withoutIds(answer) for answer in reports] == [_withoutIds(reports[0])] * 3
    assert numbers[0] == numbers[1] == numbers[2], numbers


@pytest_twisted.inlineCallbacks
def test_queries_changed_nothing(trio):
    assert trio.queried is not None
    assert (yield snapshots(trio)) == trio.queried


def _withoutIds(outcome: tuple) -> object:
    kind, value = outcome
    if kind == "stored":
        return [{k: v for k, v in row.items() if k != "id"} for row in value]
    return outcome
