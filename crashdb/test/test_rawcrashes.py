"""Behaviour of ``db.rawcrashes`` on every backend: JSON in, SQL over keys nobody declared."""

from __future__ import annotations

import datetime

import pytest
import pytest_twisted

from crashdb.exceptions import InvalidInputError

pytestmark = pytest.mark.citus  # also on a coordinator with two workers (SPEC 17)

UTC = datetime.UTC
MONDAY = datetime.datetime(2013, 8, 5, tzinfo=UTC)


def day(n, hour=12):
    return MONDAY + datetime.timedelta(days=n, hours=hour)


@pytest_twisted.inlineCallbacks
def test_raw_crash_round_trips_and_is_idempotent(db):
    crash = {"ProductName": "Firefox", "Version": "23.0", "Uptime": 12, "Nested": {"a": [1, 2]},
             "Unicode": "café ✓", "Flag": True, "Nothing": None}
    assert (yield db.rawcrashes.addRawCrash("u1", day(1), crash)) is True
    assert (yield db.rawcrashes.addRawCrash("u1", day(2), {"ProductName": "Other"})) is False
    assert (yield db.rawcrashes.getRawCrash("u1")) == crash
    assert (yield db.rawcrashes.getRawCrash("u1", day(3))) == crash
    assert (yield db.rawcrashes.getRawCrash("u1", day(8))) is None
    assert (yield db.rawcrashes.getRawCrash("missing")) is None


@pytest_twisted.inlineCallbacks
def test_where_filters_on_keys_no_migration_declared(db):
    crashes = [
        ("a", day(0), {"ProductName": "Firefox", "BrandNewKey": "x", "Uptime": 5, "Hang": True}),
        ("b", day(1), {"ProductName": "Firefox", "BrandNewKey": "y", "Uptime": 5.0}),
        ("c", day(2), {"ProductName": "Thunderbird", "BrandNewKey": "x", "Uptime": "5"}),
        ("d", day(9), {"ProductName": "Firefox", "BrandNewKey": "x", "Hang": False}),
    ]
    for uuid, when, crash in crashes:
        yield db.rawcrashes.addRawCrash(uuid, when, crash)
    week = (MONDAY, MONDAY + datetime.timedelta(days=7))
    fx = yield db.rawcrashes.getRawCrashes(*week, where={"ProductName": "Firefox"})
    assert [c["uuid"] for c in fx] == ["a", "b"]
    assert fx[0] == {"uuid": "a", "date_processed": day(0), "raw_crash": crashes[0][2]}
    both = yield db.rawcrashes.getRawCrashes(*week, where={"ProductName": "Firefox",
                                                           "BrandNewKey": "x"})
    assert [c["uuid"] for c in both] == ["a"]
    numeric = yield db.rawcrashes.getRawCrashes(*week, where={"Uptime": 5})
    assert [c["uuid"] for c in numeric] == ["a", "b"]  # the string "5" is not the number 5
    hung = yield db.rawcrashes.getRawCrashes(MONDAY, day(14), where={"Hang": True})
    assert [c["uuid"] for c in hung] == ["a"]
    limited = yield db.rawcrashes.getRawCrashes(MONDAY, day(14), limit=2)
    assert [c["uuid"] for c in limited] == ["a", "b"]


@pytest_twisted.inlineCallbacks
def test_count_by_groups_in_sql(db):
    for i, product in enumerate(["Firefox", "Firefox", "Fennec", None, "Firefox"]):
        crash = {"ProductName": product} if product else {"Other": 1}
        yield db.rawcrashes.addRawCrash(f"u{i}", day(i), crash)
    counts = yield db.rawcrashes.countRawCrashesBy("ProductName", MONDAY, day(4, hour=0))
    assert counts == {"Firefox": 2, "Fennec": 1, None: 1}
    everything = yield db.rawcrashes.countRawCrashesBy("ProductName", MONDAY, day(30))
    assert everything["Firefox"] == 3


BAD_CALLS = [
    ("addRawCrash", ("u", datetime.datetime(2013, 8, 5), {}), "date_processed"),
    ("addRawCrash", ("u", day(0), ["not", "a", "dict"]), "raw_crash"),
    ("addRawCrash", ("u", day(0), {"k": "nul\x00"}), "raw_crash"),
    ("addRawCrash", ("u", day(0), {"k": float("nan")}), "raw_crash"),
    ("addRawCrash", ("u" * 51, day(0), {}), "uuid"),
    ("getRawCrashes", (MONDAY, datetime.datetime(2013, 9, 1)), "end"),
    ("getRawCrashes", (MONDAY, day(3), {"k": [1]}), "where"),
    ("countRawCrashesBy", ("", MONDAY, day(3)), "key"),
]


@pytest.mark.parametrize("method,args,field", BAD_CALLS,
                         ids=[f"{m}-{f}-{i}" for i, (m, _, f) in enumerate(BAD_CALLS)])
@pytest_twisted.inlineCallbacks
def test_bad_input_is_rejected(db, method, args, field):
    with pytest.raises(InvalidInputError) as info:
        yield getattr(db.rawcrashes, method)(*args)
    assert info.value.field == field
    assert (yield db.rawcrashes.getRawCrashes(MONDAY, day(30))) == []
