"""The demo's crash rates: its usage figures, and the signature it makes explode."""

from __future__ import annotations

import collections
import datetime
import os
import random

import pytest
import pytest_twisted
from twisted.internet import defer

from crashdb.app.demo import DEMO_DAYS, CrashGenerator, Demo
from crashdb.app.demo.generator import (
    EXPLOSIVE_SIGNATURE,
    PRODUCTS,
    dailyUsers,
    explosionSize,
    withExplosion,
)
from crashdb.test.fake.fakedb import FakeDBConnector

UTC = datetime.UTC
DAY = datetime.timedelta(days=1)
NOW = datetime.datetime(2012, 10, 31, 15, 0, tzinfo=UTC)


def test_the_planted_signature_crashes_only_on_its_day_and_only_firefox():
    day = NOW.date() - DAY
    crashes = withExplosion(CrashGenerator(random.Random(4), NOW), 4000, day)
    assert len(crashes) == 4000 and len({uuid for uuid, _, _ in crashes}) == 4000
    assert [when for _, when, _ in crashes] == sorted(when for _, when, _ in crashes)
    planted = [(uuid, when, raw) for uuid, when, raw in crashes
               if raw["dump"]["signature"] == EXPLOSIVE_SIGNATURE]
    assert len(planted) == explosionSize(4000) >= 40
    assert {when.date() for _, when, _ in planted} == {day}
    assert all(uuid.endswith(f"2{day:%y%m%d}") and raw["ProductName"] == "Firefox"
               and int(raw["CrashTime"]) < when.timestamp() for uuid, when, raw in planted)


@pytest.mark.parametrize("crashes", [1, 150, 4000, 100_000])
def test_the_explosion_takes_a_fair_share(crashes):
    size = explosionSize(crashes)
    assert 0 <= size <= crashes // 4 and (crashes < 160 or size >= 40)


def test_usage_grows_and_moves_to_the_release():
    days = [NOW.date() - k * DAY for k in range(DEMO_DAYS, -1, -1)]
    rows = dailyUsers(4000, days)
    assert len(rows) == len(days) * sum(len(p.versions) for p in PRODUCTS)
    total = collections.Counter()
    byVersion = collections.Counter()
    for row in rows:
        assert row["adu"] >= 1
        total[(row["product"], row["day"])] += row["adu"]
        byVersion[(row["version"], row["day"])] += row["adu"] if row["product"] == "Firefox" else 0
    weekdays = [day for day in days if day.weekday() < 5]
    assert total[("Firefox", weekdays[-1])] > total[("Firefox", weekdays[0])]
    # ~4000 / 21 days × 68% of crashes, at one crash per 100 ADU
    assert 10_000 < total[("Firefox", weekdays[0])] < 16_000
    assert byVersion[("16.0.1", days[-1])] > 1.4 * byVersion[("16.0.1", days[-8])]


@pytest_twisted.inlineCallbacks
def test_the_demo_lists_the_planted_signature_first():
    from twisted.internet import reactor

    db = FakeDBConnector()
    lines: list[str] = []
    demo = Demo(reactor, db, crashes=300, processors=2, seed=9, out=lines.append,
                progress_stream=open(os.devnull, "w"))
    result = yield defer.ensureDeferred(demo.run())
    assert result.explosive and result.explosive[0]["signature"] == EXPLOSIVE_SIGNATURE
    assert result.explosive[0]["counts"][:9] == [0] * 9
    assert result.explosive[0]["counts"][9] == explosionSize(300)
    output = "\n".join(lines)
    assert "Explosive crashes: Firefox (all versions) on" in output
    table = output[output.index("Explosive crashes"):].splitlines()
    assert EXPLOSIVE_SIGNATURE in table[3]
