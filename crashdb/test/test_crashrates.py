"""Behaviour of ``db.crashrates`` (SPEC 14) on the fake, SQLite and PostgreSQL.

The expected scores come from :func:`explosiveness`, a plain Python transcription of SPEC 14's
formulas (its own sums, ``max`` and ``statistics.stdev``), not from crashdb's SQL.
"""

from __future__ import annotations

import datetime
import math
import random
import statistics

import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.internet import defer

from crashdb.exceptions import InvalidInputError
from crashdb.test.fake import fakedb

UTC = datetime.UTC
DAY = datetime.timedelta(days=1)
SCORED = datetime.date(2012, 10, 22)  # a Monday: the ten days cross a week boundary
WINDOW = [SCORED - (9 - k) * DAY for k in range(10)]


# -- SPEC 14, transcribed ------------------------------------------------------------------------


def explosiveness(counts: list[int], adu: list[int | None]) -> tuple[float, float]:
    """(one_day, three_day), unrounded, of ten daily counts and ADU figures, oldest first."""
    if all(a for a in adu):
        rates = [c * 10**6 / a for c, a in zip(counts, adu, strict=True)]
        floor = 30 * 10**6 / adu[9]
    else:
        rates = [float(c) for c in counts]
        floor = 30
    before = rates[:9]
    mean9 = sum(before) / 9
    one_day = 0.0
    if rates[9] > 10:
        one_day = (rates[9] - mean9) / max(max(before) - mean9, floor)
    base = rates[:7]
    mean3, mean7 = sum(rates[7:]) / 3, sum(base) / 7
    three_day = 0.0
    if mean3 > 10:
        three_day = (mean3 - mean7) / max(statistics.stdev(base), floor)
    return one_day, three_day


def expectedExplosive(
    histories: dict[str, list[int]], adu: list[int | None], limit: int = 20
) -> list[dict]:
    """What getExplosive must return for these signatures' ten-day counts."""
    scored = []
    for signature, counts in histories.items():
        if counts[9] == 0:
            continue
        one_day, three_day = explosiveness(counts, adu)
        if one_day > 0 or three_day > 0:
            scored.append((-max(one_day, three_day), signature, one_day, three_day, counts))
    scored.sort()
    return [
        {"signature": signature, "one_day": round(one, 4), "three_day": round(three, 4),
         "counts": list(counts)}
        for _, signature, one, three, counts in scored[:limit]
    ]


def tcbsRows(histories: dict[str, list[int]], versions=("16.0", "17.0"), product="Firefox"):
    """Rollup rows for ten-day histories, each day's count split over ``versions``."""
    rows = []
    for signature, counts in histories.items():
        for day, count in zip(WINDOW, counts, strict=True):
            if not count:
                continue
            shares = [count // len(versions)] * len(versions)
            shares[0] += count - sum(shares)
            rows.extend(
                fakedb.Tcbs(day=day, product=product, version=version, signature=signature,
                            count=share)
                for version, share in zip(versions, shares, strict=True) if share
            )
    return rows


def aduRows(adu: list[int | None], versions=("16.0", "17.0"), product="Firefox"):
    """ADU rows for the ten days (None: no row that day), each day split over ``versions``."""
    rows = []
    for day, total in zip(WINDOW, adu, strict=True):
        if total is None:
            continue
        first = total // 3
        for version, share in zip(versions, (first, total - first), strict=False):
            rows.append({"day": day, "product": product, "version": version, "adu": share})
    return rows


@defer.inlineCallbacks
def seed(db, histories, adu):
    yield db.insertTestData(tcbsRows(histories))
    yield db.crashrates.addAdu(aduRows(adu))


STEADY_ADU = [100_000] * 10


# -- explosiveness: the scenarios ----------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_a_flat_signature_scores_zero_and_is_not_listed(db):
    histories = {"flat": [20] * 10, "flat-small": [3] * 10}
    assert explosiveness(histories["flat"], STEADY_ADU) == (0.0, 0.0)
    yield seed(db, histories, STEADY_ADU)
    assert (yield db.crashrates.getExplosive("Firefox", SCORED)) == []


@pytest_twisted.inlineCallbacks
def test_a_one_day_spike(db):
    histories = {
        "spike": [12, 15, 9, 14, 11, 13, 10, 16, 12, 240],
        "steady": [30, 31, 29, 30, 30, 32, 28, 30, 31, 30],
    }
    adu = [95_000, 97_000, 99_000, 101_000, 103_000, 100_000, 98_000, 102_000, 104_000, 106_000]
    yield seed(db, histories, adu)
    found = yield db.crashrates.getExplosive("Firefox", SCORED)
    assert found == expectedExplosive(histories, adu)
    assert found[0]["signature"] == "spike"
    assert found[0]["one_day"] > 5 and found[0]["three_day"] > 1


@pytest_twisted.inlineCallbacks
def test_a_three_day_ramp_scores_on_three_days_more_than_on_one(db):
    histories = {"ramp": [10, 11, 10, 9, 10, 11, 10, 60, 120, 180]}
    yield seed(db, histories, STEADY_ADU)
    found = yield db.crashrates.getExplosive("Firefox", SCORED)
    assert found == expectedExplosive(histories, STEADY_ADU)
    assert found[0]["three_day"] > found[0]["one_day"] > 0


@pytest_twisted.inlineCallbacks
def test_adu_that_doubles_with_the_crashes_is_no_alarm(db):
    histories = {"release-day": [40] * 7 + [80] * 3}
    adu = [100_000] * 7 + [200_000] * 3
    one_day, three_day = explosiveness(histories["release-day"], [None] * 10)
    assert one_day > 0 and three_day > 0  # raw counts alone would alarm
    assert explosiveness(histories["release-day"], adu) == (0.0, 0.0)
    yield seed(db, histories, adu)
    assert (yield db.crashrates.getExplosive("Firefox", SCORED)) == []


@pytest_twisted.inlineCallbacks
def test_adu_missing_one_day_falls_back_to_counts(db):
    histories = {
        "growing": [20, 20, 20, 20, 20, 20, 20, 20, 20, 75],
        "doubling": [40] * 7 + [80] * 3,
    }
    adu = [100_000] * 7 + [None, 400_000, 400_000]
    withAdu = expectedExplosive(histories, [100_000] * 7 + [400_000] * 3)
    assert withAdu != expectedExplosive(histories, [None] * 10)
    yield seed(db, histories, adu)
    found = yield db.crashrates.getExplosive("Firefox", SCORED)
    assert found == expectedExplosive(histories, [None] * 10)
    assert [row["signature"] for row in found] == ["growing", "doubling"]


@pytest_twisted.inlineCallbacks
def test_a_signature_absent_nine_days_then_fifty_crashes(db):
    """Seeded from reports through the TCBS rollup."""
    reports = [fakedb.Report(date_processed=_at(SCORED, minute), product="Firefox",
                             version="16.0", signature="new | crash") for minute in range(50)]
    for k, day in enumerate(WINDOW):  # a background signature every day
        reports.extend(fakedb.Report(date_processed=_at(day, minute), product="Firefox",
                                     version="17.0", signature="background")
                       for minute in range(25 + k % 3))
    yield db.insertTestData(reports)
    for day in WINDOW:
        yield db.tcbs.updateTcbs(day)
    histories = {"new | crash": [0] * 9 + [50], "background": [25 + k % 3 for k in range(10)]}
    found = yield db.crashrates.getExplosive("Firefox", SCORED)
    assert found == expectedExplosive(histories, [None] * 10)
    assert found[0] == {"signature": "new | crash", "one_day": round(50 / 30, 4),
                        "three_day": round(50 / 3 / 30, 4), "counts": [0] * 9 + [50]}
    # with usage known every day, the same fifty crashes are measured per million ADU
    yield db.crashrates.addAdu(aduRows([250_000] * 10))
    found = yield db.crashrates.getExplosive("Firefox", SCORED)
    assert found == expectedExplosive(histories, [250_000] * 10)
    assert found[0]["signature"] == "new | crash"


def _at(day: datetime.date, minute: int) -> datetime.datetime:
    return datetime.datetime(day.year, day.month, day.day, 8, tzinfo=UTC) + minute * (
        datetime.timedelta(minutes=1)
    )


# -- explosiveness: random data, versions, order, limit ------------------------------------------


def randomHistories(rng: random.Random, count: int) -> dict[str, list[int]]:
    histories = {}
    for n in range(count):
        base = rng.choice([0, 1, 5, 20, 80])
        counts = [max(0, int(rng.gauss(base, base / 4 + 1))) for _ in range(10)]
        shape = rng.choice(["flat", "spike", "ramp", "new", "drop"])
        if shape == "spike":
            counts[9] += rng.randrange(10, 300)
        elif shape == "ramp":
            for k, extra in zip((7, 8, 9), sorted(rng.sample(range(5, 200), 3)), strict=True):
                counts[k] += extra
        elif shape == "new":
            counts = [0] * 9 + [rng.randrange(1, 120)]
        elif shape == "drop":
            counts[9] = rng.randrange(1, 4)
        counts[9] = max(counts[9], 1)
        histories[f"sig{n:03d}::{shape}"] = counts
    histories["twin-b"] = histories["twin-a"] = [2, 3, 1, 2, 2, 3, 2, 2, 3, 90]  # a tie
    return histories


@pytest.mark.parametrize("with_adu", [True, False])
@pytest_twisted.inlineCallbacks
def test_random_signatures_match_the_formulas(db, with_adu):
    rng = random.Random(16)
    histories = randomHistories(rng, 120)
    adu = [rng.randrange(50_000, 400_000) for _ in range(10)] if with_adu else [None] * 10
    yield seed(db, histories, adu)
    # another product's crashes and usage change nothing
    yield db.insertTestData(tcbsRows({"twin-a": [500] * 10}, product="Thunderbird"))
    yield db.crashrates.addAdu(aduRows([7] * 10, product="Thunderbird"))
    found = yield db.crashrates.getExplosive("Firefox", SCORED, limit=1000)
    expected = expectedExplosive(histories, adu, limit=1000)
    assert found == expected
    assert 20 < len(found) < len(histories)
    twins = [row["signature"] for row in found if row["signature"].startswith("twin")]
    assert twins == ["twin-a", "twin-b"]
    assert (yield db.crashrates.getExplosive("Firefox", SCORED, limit=7)) == expected[:7]
    assert (yield db.crashrates.getExplosive("Firefox", SCORED)) == expected[:20]


@pytest_twisted.inlineCallbacks
def test_a_version_uses_its_own_crashes_and_usage(db):
    rng = random.Random(61)
    histories = randomHistories(rng, 40)
    adu = [rng.randrange(50_000, 400_000) for _ in range(10)]
    yield seed(db, histories, adu)
    # tcbsRows gives 16.0 the larger half of each count; aduRows gives it a third of the ADU
    half = {s: [c - c // 2 for c in counts] for s, counts in histories.items()}
    third = [a // 3 for a in adu]
    found = yield db.crashrates.getExplosive("Firefox", SCORED, version="16.0", limit=100)
    assert found == expectedExplosive(half, third, limit=100)
    assert (yield db.crashrates.getExplosive("Firefox", SCORED, version="99.0")) == []


@pytest_twisted.inlineCallbacks
def test_zero_adu_counts_as_unknown(db):
    histories = {"spike": [5] * 9 + [60]}
    yield seed(db, histories, [100_000] * 9 + [0])
    found = yield db.crashrates.getExplosive("Firefox", SCORED)
    assert found == expectedExplosive(histories, [None] * 10)


@pytest.mark.parametrize("arguments,field", [
    ({"product": 5}, "product"),
    ({"product": ""}, "product"),
    ({"day": datetime.datetime(2012, 10, 22, tzinfo=UTC)}, "day"),
    ({"day": datetime.date(1, 1, 1)}, "day"),  # its ten days would begin before year 1
    ({"version": 16}, "version"),
    ({"limit": 0}, "limit"),
    ({"limit": True}, "limit"),
    ({"limit": 10**20}, "limit"),
])
@pytest_twisted.inlineCallbacks
def test_get_explosive_rejects_bad_arguments(db, arguments, field):
    call = {"product": "Firefox", "day": SCORED, **arguments}
    with pytest.raises(InvalidInputError) as raised:
        yield db.crashrates.getExplosive(**call)
    assert raised.value.field == field


# -- crash rates ---------------------------------------------------------------------------------


def bruteForceRates(tcbs, adu, throttle, product, version, first, end):
    """The getCrashRates list for these rows, day by day in Python."""
    out = []
    day = first
    while day < end:
        crashes = sum(row.count for row in tcbs if row.product == product and row.day == day
                      and version in (None, row.version))
        users = [row["adu"] for row in adu if row["product"] == product and row["day"] == day
                 and version in (None, row["version"])]
        total = sum(users) if users else None
        adjusted = crashes / throttle
        out.append({"day": day, "crashes": crashes, "adjusted": adjusted, "adu": total,
                    "per_100_adu": adjusted * 100 / total if total else None})
        day += DAY
    return out


def approximately(rows):
    return [{key: pytest.approx(value, rel=1e-12) if isinstance(value, float) else value
             for key, value in row.items()} for row in rows]


@pytest_twisted.inlineCallbacks
def test_crash_rates_match_brute_force_with_gaps_and_a_throttle(db):
    rng = random.Random(14)
    tcbs, adu = [], []
    for day in WINDOW:
        for product in ("Firefox", "Thunderbird"):
            for version in ("16.0", "17.0"):
                for signature in ("a", "b", "c"):
                    if day != WINDOW[3] and rng.random() < 0.8:  # no crashes on WINDOW[3]
                        tcbs.append(fakedb.Tcbs(day=day, product=product, version=version,
                                                signature=signature, count=rng.randrange(1, 500)))
                if day not in (WINDOW[5], WINDOW[6]):  # no usage known those days
                    users = rng.randrange(1000, 10**7)
                    if day == WINDOW[7] and version == "16.0":
                        users = 0
                    adu.append({"day": day, "product": product, "version": version,
                                "adu": users})
    adu.append({"day": WINDOW[6], "product": "Firefox", "version": "17.0", "adu": 0})
    yield db.insertTestData(tcbs)
    yield db.crashrates.addAdu(adu)
    yield db.crashrates.setThrottle("Firefox", 0.1)
    first, end = WINDOW[0] - 2 * DAY, WINDOW[9] + 3 * DAY
    for product, version, throttle in (("Firefox", None, 0.1), ("Firefox", "16.0", 0.1),
                                       ("Thunderbird", "17.0", 1.0), ("Seamonkey", None, 1.0)):
        rates = yield db.crashrates.getCrashRates(product, version, first, end)
        assert rates == approximately(
            bruteForceRates(tcbs, adu, throttle, product, version, first, end))
    rates = yield db.crashrates.getCrashRates("Firefox", start_day=first, end_day=end)
    byDay = {row["day"]: row for row in rates}
    assert len(rates) == 14 and byDay[first]["crashes"] == 0 and byDay[first]["adu"] is None
    assert byDay[WINDOW[6]]["adu"] == 0 and byDay[WINDOW[6]]["per_100_adu"] is None
    assert byDay[WINDOW[3]]["crashes"] == 0 and byDay[WINDOW[3]]["per_100_adu"] == 0.0


@pytest_twisted.inlineCallbacks
def test_crash_rates_default_to_the_last_seven_days(db):
    today = datetime.datetime.now(UTC).date()
    yield db.insertTestData([fakedb.Tcbs(day=today, count=4), fakedb.Tcbs(day=today - 7 * DAY)])
    yield db.crashrates.addAdu([{"day": today, "product": "Firefox", "version": "1.0",
                                 "adu": 800}])
    rates = yield db.crashrates.getCrashRates("Firefox")
    assert [row["day"] for row in rates] == [today - k * DAY for k in range(6, -1, -1)]
    assert rates[-1] == {"day": today, "crashes": 4, "adjusted": 4.0, "adu": 800,
                         "per_100_adu": 0.5}
    assert sum(row["crashes"] for row in rates) == 4


@pytest.mark.parametrize("arguments,field", [
    ({"product": None}, "product"),
    ({"version": 3}, "version"),
    ({"start_day": SCORED, "end_day": SCORED}, "start_day"),
    ({"end_day": "2012-10-22"}, "end_day"),
])
@pytest_twisted.inlineCallbacks
def test_get_crash_rates_rejects_bad_arguments(db, arguments, field):
    with pytest.raises(InvalidInputError) as raised:
        yield db.crashrates.getCrashRates(**{"product": "Firefox", **arguments})
    assert raised.value.field == field


# -- ADU and throttles ---------------------------------------------------------------------------


def readAdu(db):
    table = db.model.product_adu

    def thd(conn):
        rows = conn.execute(sa.select(table).order_by(table.c.day, table.c.version))
        return [tuple(row) for row in rows]

    return db.pool.do(thd)


@pytest_twisted.inlineCallbacks
def test_add_adu_replaces_rows_of_the_same_key(db):
    day = WINDOW[0]
    stored = yield db.crashrates.addAdu([
        {"day": day, "product": "Firefox", "version": "16.0", "adu": 10},
        {"day": day, "product": "Firefox", "version": "17.0", "adu": 20},
        {"day": day, "product": "Firefox", "version": "16.0", "adu": 11},  # later wins
    ])
    assert stored == 2
    assert (yield readAdu(db)) == [(day, "Firefox", "16.0", 11), (day, "Firefox", "17.0", 20)]
    yield db.crashrates.addAdu([{"day": day, "product": "Firefox", "version": "17.0",
                                 "adu": 3_000_000_000}])
    assert (yield readAdu(db)) == [(day, "Firefox", "16.0", 11),
                                   (day, "Firefox", "17.0", 3_000_000_000)]
    assert (yield db.crashrates.addAdu([])) == 0


GOOD_ADU = {"day": SCORED, "product": "Firefox", "version": "16.0", "adu": 5}


@pytest.mark.parametrize("change,field", [
    ({"adu": -1}, "adu"),
    ({"adu": 1.5}, "adu"),
    ({"adu": True}, "adu"),
    ({"adu": 2**63}, "adu"),
    ({"adu": None}, "adu"),
    ({"day": "2012-10-22"}, "day"),
    ({"day": datetime.datetime(2012, 10, 22, tzinfo=UTC)}, "day"),
    ({"product": ""}, "product"),
    ({"product": "  "}, "product"),  # blank: a product no page could name
    ({"product": "x" * 31}, "product"),
    ({"version": "1\x000"}, "version"),
    ({"version": ""}, "version"),
    ({"version": " "}, "version"),
    ({"users": 5}, "users"),
])
@pytest_twisted.inlineCallbacks
def test_a_bad_adu_row_rejects_the_batch(db, change, field):
    bad = {**GOOD_ADU, **change}
    rows = [GOOD_ADU, {**GOOD_ADU, "version": "17.0"}, bad]
    with pytest.raises(InvalidInputError) as raised:
        yield db.crashrates.addAdu(rows)
    assert (raised.value.index, raised.value.field) == (2, field)
    assert (yield readAdu(db)) == []


@pytest_twisted.inlineCallbacks
def test_throttle_defaults_to_one_and_can_be_replaced(db):
    assert (yield db.crashrates.getThrottle("Firefox")) == 1.0
    yield db.crashrates.setThrottle("Firefox", 0.25)
    yield db.crashrates.setThrottle("Thunderbird", 1)
    yield db.crashrates.setThrottle("Firefox", 0.5)
    assert (yield db.crashrates.getThrottle("Firefox")) == 0.5
    assert (yield db.crashrates.getThrottle("Thunderbird")) == 1.0


@pytest.mark.parametrize("throttle", [0, -0.5, 1.01, math.nan, math.inf, True, "0.5", None])
@pytest_twisted.inlineCallbacks
def test_a_bad_throttle_is_rejected(db, throttle):
    with pytest.raises(InvalidInputError) as raised:
        yield db.crashrates.setThrottle("Firefox", throttle)
    assert raised.value.field == "throttle"
    assert (yield db.crashrates.getThrottle("Firefox")) == 1.0


@pytest.mark.parametrize("rows,index", [
    (GOOD_ADU, None),
    (None, None),
    ((row for row in [GOOD_ADU]), None),
    ([GOOD_ADU, ["2012-10-22", "Firefox", "16.0", 5]], 1),
])
@pytest_twisted.inlineCallbacks
def test_add_adu_wants_a_list_of_dicts(db, rows, index):
    with pytest.raises(InvalidInputError) as raised:
        yield db.crashrates.addAdu(rows)
    assert raised.value.index == index
    assert (yield readAdu(db)) == []
