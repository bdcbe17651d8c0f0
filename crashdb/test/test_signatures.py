"""Behaviour of ``db.signatures`` against brute-force Python over the same random rows."""

from __future__ import annotations

import collections
import datetime
import random

import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.internet import defer

from crashdb.exceptions import InvalidInputError
from crashdb.signatures import FACETS
from crashdb.test.fake import fakedb

pytestmark = pytest.mark.citus  # also on a coordinator with two workers (SPEC 17)

UTC = datetime.UTC
DAY = datetime.timedelta(days=1)
# ten days from a Thursday: three weekly partitions
FIRST_DAY = datetime.date(2012, 10, 11)
DAYS = [FIRST_DAY + n * DAY for n in range(10)]
SIGNATURES = ["js::GC", "nsFoo::Bar", "strlen", "@0x0", "OOM | small", "", None]
PRODUCTS = ["Firefox", "Firefox", "Thunderbird", None]
VERSIONS = ["16.0", "17.0b1", None]
ADDONS = ["adblock@x", "{noscript}", "ask@toolbar", "theme@moz"]
BASE = datetime.datetime(2012, 9, 1, tzinfo=UTC)
# few install times, with microseconds, so that installations repeat across reports
INSTALLS = [BASE + datetime.timedelta(seconds=1000 * k, microseconds=k * 7919 % 1000000)
            for k in range(12)]


def randomReports(rng: random.Random, count: int, signatures=SIGNATURES) -> list[fakedb.Report]:
    rows = []
    for _ in range(count):
        day = rng.choice(DAYS)
        # the first and last microsecond of a day on purpose
        seconds = rng.choice([0, 86399, rng.randrange(86400)])
        micro = rng.choice([0, 999999, rng.randrange(1000000)])
        processed = (datetime.datetime(day.year, day.month, day.day, tzinfo=UTC)
                     + datetime.timedelta(seconds=seconds, microseconds=micro))
        age = rng.choice([None, 0, 60, 3600, 86400 * 3])
        install = rng.choice(INSTALLS)
        crashed = None if age is None else install + datetime.timedelta(seconds=age)
        if rng.random() < 0.1:
            crashed = processed  # no install_age: not counted
            age = None
        rows.append(fakedb.Report(
            date_processed=processed,
            client_crash_date=crashed,
            install_age=age,
            product=rng.choice(PRODUCTS),
            version=rng.choice(VERSIONS),
            signature=rng.choice(signatures),
            build=rng.choice(["20121010", "20121005", "9", "10", None]),
            os_name=rng.choice(["Windows NT", "Mac OS X", "Linux", None]),
            os_version=rng.choice(["6.1", "10.8.2", None]),
            cpu_name=rng.choice(["x86", "amd64"]),
            cpu_info=rng.choice(["GenuineIntel", "AuthenticAMD", None]),
            flash_version=rng.choice(["11.4", None, None]),
            process_type=rng.choice(["plugin", None]),
            release_channel=rng.choice(["release", "beta", None]),
            reason=rng.choice(["SIGSEGV", "EXCEPTION_ACCESS_VIOLATION_READ"]),
            uptime=rng.choice([None, -5, 0, 59, 60, 299, 300, 899, 900, 3599, 3600, 90000]),
        ))
    return rows


def randomExtensions(rng: random.Random, reports) -> list[fakedb.Extension]:
    """Zero to three add-ons per report, sometimes the same id twice (counted once)."""
    rows = []
    for report in reports:
        chosen = rng.sample(ADDONS, rng.randrange(4))
        if chosen and rng.random() < 0.1:
            chosen.append(chosen[0])
        for key, addon in enumerate(chosen):
            rows.append(fakedb.Extension(report_id=report.id, date_processed=report.date_processed,
                                         extension_key=key, extension_id=addon))
    return rows


@pytest_twisted.inlineCallbacks
def seed(db, rng: random.Random, count: int, signatures=SIGNATURES):
    reports = randomReports(rng, count, signatures)
    yield db.insertTestData(reports)
    extensions = randomExtensions(rng, reports)
    yield db.insertTestData(extensions)
    addons = collections.defaultdict(set)
    for extension in extensions:
        addons[extension.report_id].add(extension.extension_id)
    return reports, addons


# -- brute force ---------------------------------------------------------------------------------


def bruteLifecycles(reports, days):
    """{signature: lifecycle}, {(signature, product, version): lifecycle} over ``days``."""
    overall: dict = {}
    versions: dict = {}

    def merge(table, key, report):
        first, build, last = table.get(key, (report.date_processed, None, report.date_processed))
        builds = [b for b in (build, report.build) if b is not None]
        table[key] = (min(first, report.date_processed), min(builds) if builds else None,
                      max(last, report.date_processed))

    for report in reports:
        if report.date_processed.date() not in days or not report.signature:
            continue
        merge(overall, report.signature, report)
        if report.product is not None:
            merge(versions, (report.signature, report.product, report.version or ""), report)
    return overall, versions


def readLifecycles(db):
    model = db.model

    def thd(conn):
        overall = {row.signature: (row.first_report, row.first_build, row.last_report)
                   for row in conn.execute(sa.select(model.signatures))}
        versions = {(row.signature, row.product, row.version):
                    (row.first_report, row.first_build, row.last_report)
                    for row in conn.execute(sa.select(model.signature_versions))}
        return overall, versions

    return db.pool.do(thd)


def inPeriod(report, start_day, end_day, signature=None, product=None, version=None):
    return (start_day <= report.date_processed.date() < end_day
            and (signature is None or report.signature == signature)
            and (product is None or report.product == product)
            and (version is None or report.version == version))


def bucket(uptime):
    if uptime is None or uptime < 0:
        return None
    for term, high in (("< 1 min", 60), ("1-5 min", 300), ("5-15 min", 900),
                       ("15-60 min", 3600)):
        if uptime < high:
            return term
    return "> 1 hour"


def ranked(counter: collections.Counter, total: int) -> list[dict]:
    order = sorted(counter.items(), key=lambda item: (-item[1], item[0] is None, item[0] or ""))
    return [{"term": term, "count": count, "percent": 100.0 * count / total}
            for term, count in order]


def bruteSummary(reports, addons, signature, product, version, start_day, end_day):
    mine = [r for r in reports if inPeriod(r, start_day, end_day, signature, product, version)]
    installs = {r.client_crash_date - datetime.timedelta(seconds=r.install_age)
                for r in mine if r.client_crash_date is not None and r.install_age is not None}
    facets = {}
    for field in FACETS:
        counter: collections.Counter = collections.Counter()
        for r in mine:
            if field == "addon":
                counter.update(addons.get(r.id, ()))
            elif field == "uptime":
                counter[bucket(r.uptime)] += 1
            else:
                counter[getattr(r, field)] += 1
        facets[field] = ranked(counter, len(mine))
    return {"count": len(mine), "installations": len(installs), "facets": facets}


CORRELATION_FIELDS = ("os_version", "cpu_info", "flash_version", "process_type",
                      "release_channel", "build")


def bruteCorrelations(reports, addons, signature, product, version, start_day, end_day,
                      min_count, min_difference):
    scope = [r for r in reports if inPeriod(r, start_day, end_day, None, product, version)]
    mine = [r for r in scope if r.signature == signature]
    if not mine or len(mine) < min_count:
        return []

    def values(report):
        found = [("addon", addon) for addon in addons.get(report.id, ())]
        found += [(field, getattr(report, field)) for field in CORRELATION_FIELDS
                  if getattr(report, field) is not None]
        return found

    overall = collections.Counter(pair for r in scope for pair in values(r))
    inside = collections.Counter(pair for r in mine for pair in values(r))
    rows = []
    for (field, value), count in overall.items():
        fraction = inside[(field, value)] / len(mine)
        share = count / len(scope)
        if fraction - share >= min_difference:
            rows.append({"field": field, "value": value, "count": inside[(field, value)],
                         "in_signature": fraction, "overall": share,
                         "difference": fraction - share})
    return sorted(rows, key=lambda row: (-row["difference"], row["field"], row["value"]))


# -- the rollup ----------------------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_rollup_is_order_independent_and_idempotent(db):
    rng = random.Random(15)
    reports, _ = yield seed(db, rng, 400)
    shuffled = DAYS[:7] + rng.sample(DAYS[:7], 4)  # seven days, some twice
    rng.shuffle(shuffled)
    for day in shuffled:
        yield db.signatures.updateSignatures(day)
    expected = bruteLifecycles(reports, set(DAYS[:7]))
    assert (yield readLifecycles(db)) == expected
    for day in sorted(DAYS[:7]):  # again, in date order: nothing changes
        yield db.signatures.updateSignatures(day)
    assert (yield readLifecycles(db)) == expected
    for day in DAYS[7:]:
        yield db.signatures.updateSignatures(day)
    assert (yield readLifecycles(db)) == bruteLifecycles(reports, set(DAYS))


@pytest_twisted.inlineCallbacks
def test_rollup_counts_rows_written_and_keeps_null_builds(db):
    day = DAYS[3]
    when = datetime.datetime(day.year, day.month, day.day, 5, tzinfo=UTC)
    yield db.insertTestData([
        fakedb.Report(date_processed=when, signature="a", product="Firefox", version="16.0"),
        fakedb.Report(date_processed=when, signature="a", product="Firefox", build="9"),
        fakedb.Report(date_processed=when, signature="b", build="10"),
        fakedb.Report(date_processed=when, signature="", product="Firefox", build="1"),
    ])
    written = yield db.signatures.updateSignatures(day)
    assert written == 2 + 2  # a, b; (a, Firefox, 16.0), (a, Firefox, ""); b has no product
    assert (yield db.signatures.updateSignatures(day)) == 0  # nothing changes: nothing written
    a = yield db.signatures.getSignature("a")
    assert a["first_build"] == "9"
    # same first report: ordered by version then
    assert [(v["version"], v["first_build"]) for v in a["versions"]] == [("", "9"), ("16.0", None)]
    b = yield db.signatures.getSignature("b")
    assert (b["first_build"], b["versions"]) == ("10", [])
    assert (yield db.signatures.getSignature("")) is None


@pytest_twisted.inlineCallbacks
def test_a_null_build_never_replaces_a_known_one(db):
    early, late = DAYS[1], DAYS[5]
    yield db.insertTestData([
        fakedb.Report(date_processed=datetime.datetime(early.year, early.month, early.day,
                                                       tzinfo=UTC), signature="s", build=None),
        fakedb.Report(date_processed=datetime.datetime(late.year, late.month, late.day,
                                                       tzinfo=UTC), signature="s", build="7"),
    ])
    for day in (late, early, late):
        yield db.signatures.updateSignatures(day)
    found = yield db.signatures.getSignature("s")
    assert found["first_build"] == "7"
    assert found["first_report"].date() == early and found["last_report"].date() == late
    assert found["first_report"].tzinfo == UTC


@pytest_twisted.inlineCallbacks
def test_get_signature_matches_brute_force(db):
    rng = random.Random(16)
    reports, _ = yield seed(db, rng, 300)
    for day in DAYS:
        yield db.rollups.runDay(day)
    overall, versions = bruteLifecycles(reports, set(DAYS))
    for signature in [s for s in SIGNATURES if s]:
        found = yield db.signatures.getSignature(signature)
        if signature not in overall:
            assert found is None
            continue
        first, build, last = overall[signature]
        expected = sorted(
            ({"product": p, "version": v, "first_report": f, "first_build": b, "last_report": la}
             for (s, p, v), (f, b, la) in versions.items() if s == signature),
            key=lambda row: (row["product"], row["first_report"], row["version"]),
        )
        assert found == {"signature": signature, "first_report": first, "first_build": build,
                         "last_report": last, "versions": expected}
    assert (yield db.signatures.getSignature("never seen")) is None


@pytest_twisted.inlineCallbacks
def test_new_signatures_match_brute_force(db):
    rng = random.Random(17)
    signatures = [f"sig{n}" for n in range(30)]
    reports, _ = yield seed(db, rng, 300, signatures)
    for day in DAYS:
        yield db.rollups.runDay(day)
    for product, version, start_day, end_day, limit in (
        ("Firefox", None, DAYS[4], DAYS[9], 100),
        ("Firefox", "17.0b1", DAYS[2], DAYS[6], 100),
        ("Thunderbird", None, DAYS[0], DAYS[9] + DAY, 5),
        ("Thunderbird", "16.0", DAYS[8], DAYS[9] + DAY, 100),
    ):
        firsts: dict = {}
        for r in reports:
            if r.product != product or (version is not None and (r.version or "") != version):
                continue
            first, build = firsts.get(r.signature, (r.date_processed, None))
            builds = [b for b in (build, r.build) if b is not None]
            firsts[r.signature] = (min(first, r.date_processed), min(builds) if builds else None)
        counts = collections.Counter(
            r.signature for r in reports
            if r.product == product and (version is None or (r.version or "") == version)
            and start_day <= r.date_processed.date() < end_day)
        expected = sorted(
            ({"signature": s, "first_report": f, "first_build": b, "count": counts[s]}
             for s, (f, b) in firsts.items() if start_day <= f.date() < end_day),
            key=lambda row: (-row["count"], row["signature"]),
        )[:limit]
        found = yield db.signatures.getNewSignatures(product, version, start_day, end_day, limit)
        assert found == expected
        assert expected  # the case checks something


# -- summary and correlations --------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_summary_matches_brute_force(db):
    rng = random.Random(18)
    reports, addons = yield seed(db, rng, 500)
    cases = [
        ("js::GC", None, None, DAYS[0], DAYS[9] + DAY),
        ("js::GC", "Firefox", None, DAYS[2], DAYS[8]),
        ("strlen", "Firefox", "16.0", DAYS[0], DAYS[5]),
        ("@0x0", None, "17.0b1", DAYS[3], DAYS[4]),
        ("never seen", None, None, DAYS[0], DAYS[9]),
    ]
    for signature, product, version, start_day, end_day in cases:
        found = yield db.signatures.getSummary(signature, product, version, start_day, end_day)
        expected = bruteSummary(reports, addons, signature, product, version, start_day,
                                end_day)
        assert found == expected, (signature, product, version)
    big = yield db.signatures.getSummary("js::GC", start_day=DAYS[0], end_day=DAYS[9] + DAY)
    assert 0 < big["installations"] < big["count"]  # reports share installations
    assert set(big["facets"]) == set(FACETS) and big["facets"]["addon"]


@pytest_twisted.inlineCallbacks
def test_installations_need_both_crash_date_and_install_age(db):
    when = datetime.datetime(2012, 10, 16, 12, tzinfo=UTC)
    install = datetime.datetime(2012, 10, 1, 8, 30, 15, 250000, tzinfo=UTC)

    def crash(after: int, **values):
        return fakedb.Report(date_processed=when, signature="s",
                             client_crash_date=install + datetime.timedelta(seconds=after),
                             install_age=after, **values)

    yield db.insertTestData([
        crash(10), crash(86400 * 5), crash(3),  # one installation, three crashes
        fakedb.Report(date_processed=when, signature="s", client_crash_date=when),
        fakedb.Report(date_processed=when, signature="s", install_age=100),
        fakedb.Report(date_processed=when, signature="s",
                      client_crash_date=install + datetime.timedelta(seconds=11, microseconds=1),
                      install_age=11),  # one microsecond later: another installation
    ])
    summary = yield db.signatures.getSummary("s", start_day=when.date(),
                                             end_day=when.date() + DAY)
    assert (summary["count"], summary["installations"]) == (6, 2)


@pytest_twisted.inlineCallbacks
def test_correlations_match_brute_force(db):
    rng = random.Random(19)
    reports, addons = yield seed(db, rng, 600, ["a", "b", "c", "d"])
    cases = [
        ("a", "Firefox", None, DAYS[0], DAYS[9] + DAY, 10, 0.05),
        ("b", "Firefox", "16.0", DAYS[0], DAYS[9] + DAY, 5, 0.0),
        ("c", "Thunderbird", None, DAYS[2], DAYS[9], 3, -0.1),
        ("d", "Firefox", None, DAYS[0], DAYS[9] + DAY, 10, 0.02),
    ]
    for signature, product, version, start_day, end_day, min_count, min_difference in cases:
        found = yield db.signatures.getCorrelations(signature, product, version, start_day,
                                                    end_day, min_count, min_difference)
        expected = bruteCorrelations(reports, addons, signature, product, version, start_day,
                                     end_day, min_count, min_difference)
        assert found == expected, (signature, product, version)
        assert expected


@pytest_twisted.inlineCallbacks
def test_correlations_find_a_planted_addon(db):
    rng = random.Random(20)
    when = datetime.datetime(2012, 10, 16, tzinfo=UTC)
    reports = [fakedb.Report(date_processed=when + datetime.timedelta(minutes=n),
                             product="Firefox", signature="planted" if n < 40 else "other")
               for n in range(400)]
    yield db.insertTestData(reports)
    yield db.insertTestData([
        fakedb.Extension(report_id=r.id, date_processed=r.date_processed, extension_id="bad@x")
        for r in reports if r.signature == "planted" or rng.random() < 0.05])
    found = yield db.signatures.getCorrelations("planted", "Firefox", start_day=when.date(),
                                                end_day=when.date() + DAY)
    assert [(row["field"], row["value"], row["count"], row["in_signature"]) for row in found] == [
        ("addon", "bad@x", 40, 1.0)]
    assert found[0]["overall"] < 0.2
    assert (yield db.signatures.getCorrelations("planted", "Firefox", start_day=when.date(),
                                                end_day=when.date() + DAY, min_count=41)) == []


# -- the summaries rollup behind them -----------------------------------------------------------


def countFacetRows(db, day):
    """Rows of signature_facets and product_facets for ``day``."""
    tables = (db.model.signature_facets, db.model.product_facets)

    def thd(conn):
        return sum(conn.execute(sa.select(sa.func.count()).select_from(t).where(t.c.day == day))
                   .scalar_one() for t in tables)

    return db.pool.do(thd)


def readFacetTables(db):
    """Every row of both facet tables, as sorted tuples (for comparing whole tables)."""
    tables = (db.model.signature_facets, db.model.product_facets)

    def thd(conn):
        return [sorted(tuple(map(str, row)) for row in conn.execute(sa.select(t)))
                for t in tables]

    return db.pool.do(thd)


SUMMARY_CASES = [
    ("js::GC", None, None, DAYS[0], DAYS[9] + DAY),
    ("js::GC", "Firefox", None, DAYS[2], DAYS[8]),
    ("strlen", "Firefox", "16.0", DAYS[0], DAYS[5]),
    ("@0x0", None, "17.0b1", DAYS[3], DAYS[4]),
]
CORRELATION_CASES = [
    ("js::GC", "Firefox", None, DAYS[0], DAYS[9] + DAY, 5, 0.0),
    ("strlen", "Firefox", "16.0", DAYS[0], DAYS[9] + DAY, 2, -0.1),
    ("nsFoo::Bar", "Thunderbird", None, DAYS[2], DAYS[9], 3, 0.01),
]


@pytest_twisted.inlineCallbacks
def assertReadsMatchBruteForce(db, reports, addons):
    for signature, product, version, start_day, end_day in SUMMARY_CASES:
        found = yield db.signatures.getSummary(signature, product, version, start_day, end_day)
        assert found == bruteSummary(reports, addons, signature, product, version, start_day,
                                     end_day), (signature, product, version, start_day)
    for case in CORRELATION_CASES:
        found = yield db.signatures.getCorrelations(*case)
        assert found == bruteCorrelations(reports, addons, *case), case
        assert found


@pytest_twisted.inlineCallbacks
def test_summary_and_correlations_are_the_same_over_rolled_up_days(db):
    rng = random.Random(21)
    reports, addons = yield seed(db, rng, 600)
    # some days rolled up (one twice), others not: each read mixes the rollup and the reports
    for day in (DAYS[0], DAYS[3], DAYS[4], DAYS[4], DAYS[8]):
        assert (yield db.signatures.updateSummaries(day)) == (yield countFacetRows(db, day)) > 0
    yield assertReadsMatchBruteForce(db, reports, addons)
    for day in DAYS:
        yield db.rollups.runDay(day)
    yield assertReadsMatchBruteForce(db, reports, addons)


@pytest_twisted.inlineCallbacks
def test_a_rolled_up_day_counts_as_of_its_last_rollup(db):
    when = datetime.datetime(2012, 10, 16, 12, tzinfo=UTC)
    period = {"start_day": when.date(), "end_day": when.date() + DAY}

    def crashes(count, signature="s"):
        return [fakedb.Report(date_processed=when, product="Firefox", signature=signature,
                              os_name="Linux", uptime=30) for _ in range(count)]

    yield db.insertTestData(crashes(3) + crashes(7, "other"))
    yield db.signatures.updateSummaries(when.date())
    yield db.insertTestData(crashes(2))  # stored after the day's rollup
    summary = yield db.signatures.getSummary("s", **period)
    assert (summary["count"], summary["facets"]["uptime"]) == (
        3, [{"term": "< 1 min", "count": 3, "percent": 100.0}])
    assert (yield db.signatures.getCorrelations("s", "Firefox", min_count=3, **period)) == []
    yield db.signatures.updateSummaries(when.date())  # the next run counts them
    assert (yield db.signatures.getSummary("s", **period))["count"] == 5
    # the day before and after, never rolled up, are read from the reports
    wider = {"start_day": when.date() - DAY, "end_day": when.date() + 2 * DAY}
    yield db.insertTestData([fakedb.Report(date_processed=when + DAY, signature="s")])
    assert (yield db.signatures.getSummary("s", **wider))["count"] == 6


@pytest_twisted.inlineCallbacks
def test_summaries_rollup_is_idempotent_in_any_order(db):
    rng = random.Random(22)
    yield seed(db, rng, 300)
    for day in DAYS:
        yield db.signatures.updateSummaries(day)
    tables = yield readFacetTables(db)
    assert all(tables)
    for day in reversed(DAYS):
        yield db.signatures.updateSummaries(day)
    assert (yield readFacetTables(db)) == tables


@pytest_twisted.inlineCallbacks
def test_concurrent_runs_of_a_day_leave_one_copy(realdb):
    rng = random.Random(23)
    yield seed(realdb, rng, 300)
    yield realdb.signatures.updateSummaries(DAYS[4])
    once = yield readFacetTables(realdb)
    counts = yield defer.gatherResults(
        [realdb.signatures.updateSummaries(DAYS[4]) for _ in range(4)], consumeErrors=True)
    assert len(set(counts)) == 1 and counts[0] > 0
    assert (yield readFacetTables(realdb)) == once


@pytest.mark.parametrize("call,field", [
    (lambda db: db.signatures.updateSignatures(datetime.datetime(2012, 10, 16, tzinfo=UTC)),
     "day"),
    (lambda db: db.signatures.getSignature(None), "signature"),
    (lambda db: db.signatures.getSignature("x" * 256), "signature"),
    (lambda db: db.signatures.getNewSignatures("Firefox", limit=0), "limit"),
    (lambda db: db.signatures.getNewSignatures("Firefox", limit=2**63), "limit"),
    (lambda db: db.signatures.getNewSignatures("F", start_day=DAYS[3], end_day=DAYS[2]),
     "start_day"),
    (lambda db: db.signatures.getSummary("s", version=16), "version"),
    (lambda db: db.signatures.getSummary("s", end_day="2012-10-16"), "end_day"),
    (lambda db: db.signatures.getCorrelations("s", None), "product"),
    (lambda db: db.signatures.getCorrelations("s", "Firefox", min_count=-1), "min_count"),
    (lambda db: db.signatures.getCorrelations("s", "Firefox", min_difference="x"),
     "min_difference"),
    (lambda db: db.rollups.runDay("2012-10-16"), "day"),
    (lambda db: db.signatures.updateSummaries(None), "day"),
])
@pytest_twisted.inlineCallbacks
def test_bad_input_is_rejected(db, call, field):
    with pytest.raises(InvalidInputError) as raised:
        yield call(db)
    assert raised.value.field == field
