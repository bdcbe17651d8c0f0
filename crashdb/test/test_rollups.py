"""Behaviour of ``db.rollups.runDay``: every daily rollup of a day, idempotent."""

from __future__ import annotations

import datetime
import random

import pytest
import pytest_twisted

from crashdb.rollups import ROLLUPS
from crashdb.test.test_signatures import bruteLifecycles, countFacetRows, readLifecycles
from crashdb.test.test_tcbs import FIRST_DAY, bruteForceDay, readTcbs
from crashdb.test.test_tcbs import randomReports as randomTcbsReports

pytestmark = pytest.mark.citus  # also on a coordinator with two workers (SPEC 17)

DAY = datetime.timedelta(days=1)


def randomReports(rng: random.Random, days: int, count: int):
    """test_tcbs's random reports, each with a build (sometimes none) for the lifecycles."""
    rows = randomTcbsReports(rng, days, count)
    for row in rows:
        row.values["build"] = rng.choice(["20121010", "20121005", "9", None])
    return rows


@pytest_twisted.inlineCallbacks
def test_run_day_runs_every_rollup_and_matches_brute_force(db):
    rng = random.Random(25)
    rows = randomReports(rng, days=4, count=300)
    yield db.insertTestData(rows)
    days = [FIRST_DAY + n * DAY for n in range(4)]
    for day in days:
        written = yield db.rollups.runDay(day)
        assert set(written) == {name for name, _, _ in ROLLUPS} \
            == {"tcbs", "signatures", "summaries"}
        expected = bruteForceDay(rows, day)
        assert {key[1:]: counts for key, counts in (yield readTcbs(db, day)).items()} == expected
        assert written["tcbs"] == len(expected)
        overall, versions = bruteLifecycles(rows, {day})
        assert written["signatures"] == len(overall) + len(versions) > 0
        assert written["summaries"] == (yield countFacetRows(db, day)) > 0
    assert (yield readLifecycles(db)) == bruteLifecycles(rows, set(days))


@pytest_twisted.inlineCallbacks
def test_run_day_is_idempotent_in_any_order(db):
    rng = random.Random(26)
    rows = randomReports(rng, days=4, count=200)
    yield db.insertTestData(rows)
    days = [FIRST_DAY + n * DAY for n in range(4)]
    first = {}
    for day in days:
        first[day] = yield db.rollups.runDay(day)
    tcbs, lifecycles = (yield readTcbs(db)), (yield readLifecycles(db))
    for day in reversed(days):
        again = yield db.rollups.runDay(day)
        # the same rows again; no lifecycle changes
        assert again == {"tcbs": first[day]["tcbs"], "signatures": 0,
                         "summaries": first[day]["summaries"]}
    assert (yield readTcbs(db)) == tcbs
    assert (yield readLifecycles(db)) == lifecycles


@pytest_twisted.inlineCallbacks
def test_a_day_without_reports_writes_nothing(db):
    written = yield db.rollups.runDay(datetime.date(2012, 10, 16))
    assert written == {"tcbs": 0, "signatures": 0, "summaries": 0}
