"""Behaviour of ``db.search.search`` (SPEC §15): every answer equals a brute-force search in
Python over the same rows, on the fake, SQLite and PostgreSQL."""

from __future__ import annotations

import collections
import datetime
import json
import random
import re

import pytest
import pytest_twisted
import sqlalchemy as sa

from crashdb import search as searchModule
from crashdb.exceptions import InvalidInputError
from crashdb.partitions import WEEK, weekStart
from crashdb.summaries import UPTIME_BUCKETS
from crashdb.test.fake import fakedb

pytestmark = pytest.mark.citus  # also on a coordinator with two workers (SPEC 17)

UTC = datetime.UTC
DAY = datetime.timedelta(days=1)
MONDAY = datetime.datetime(2012, 10, 15, tzinfo=UTC)  # weeks 20121008, 20121015, 20121022 used
ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

SIGNATURES = ["js::GC", "JS::gc_marker", "nsFoo::Bar", "100%_sure", "100x_sure", "a\\b",
              "Ünïcode::Ärger", "ünïcode::ärger", "", None]
EXTENSION_IDS = ["{ext1}", "adblock@x", "100%_ext", "100x_ext", "NoScript@x", ""]
PLUGIN_FILES = ["NPSWF32.dll", "npctrl.dll", "np_%x.dll", "npAx.dll"]
ADAPTERS = ["0x10de", "0x10DE1", "0x8086", "0x10_e", "", "Ünï"]
NUMBERS = [12, -3, 1.5, 0.30000000000000004, 1000.0, "12", True, False, None, [1, 2], {"a": 1}]


def at(*args) -> datetime.datetime:
    return datetime.datetime(*args, tzinfo=UTC)


# -- the brute force ---------------------------------------------------------------------------


def rawText(value):
    """A raw crash value as search compares it (docs/components/search.md)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    return value if isinstance(value, str) else None


class World:
    """The rows of a test, and searches over them computed row by row in Python."""

    def __init__(self, rows: list[fakedb.Row]) -> None:
        self.reports = [row.values for row in rows if row.table == "reports"]
        self.addons = collections.defaultdict(list)
        self.plugins = collections.defaultdict(list)
        files = {row.id: row.filename for row in rows if row.table == "plugins"}
        for row in rows:
            if row.table == "extensions":
                self.addons[row.report_id].append(row.extension_id)
            elif row.table == "plugins_reports":
                self.plugins[row.report_id].append(files[row.plugin_id])
        self.raws = {(row.uuid, weekStart(row.date_processed)): row.raw_crash
                     for row in rows if row.table == "raw_crashes"}

    def terms(self, report: dict, name: str) -> list:
        """The values the report has for field ``name`` (None left out)."""
        if name == "addon":
            values = self.addons[report["id"]]
        elif name == "plugin":
            values = self.plugins[report["id"]]
        elif name.startswith("raw."):
            raw = self.raws.get((report["uuid"], weekStart(report["date_processed"])), {})
            values = [rawText(raw.get(name[4:]))]
        else:
            values = [report.get(name)]
        return [value for value in values if value is not None]

    @staticmethod
    def satisfies(term, op: str, value) -> bool:
        if op in ("=", "!="):
            return term in value
        if op == "exists":
            return term != ""
        if op == "~":
            return value.translate(ASCII_LOWER) in term.translate(ASCII_LOWER)
        if op == "^":
            return term.translate(ASCII_LOWER).startswith(value.translate(ASCII_LOWER))
        return {">": term > value, ">=": term >= value, "<": term < value,
                "<=": term <= value}[op]

    def matches(self, report: dict, name: str, op: str, value) -> bool:
        if op in ("=", "!=") and not isinstance(value, list | tuple):
            value = (value,)
        found = any(self.satisfies(term, op, value) for term in self.terms(report, name))
        negated = op == "!=" or (op == "exists" and value is False)
        return not found if negated else found

    @staticmethod
    def uptimeBucket(uptime):
        """SPEC 13's buckets: half-open [low, high) seconds; None, or negative, is no bucket."""
        for term, low, high in UPTIME_BUCKETS:
            if uptime is not None and uptime >= low and (high is None or uptime < high):
                return term
        return None

    def facet(self, matching: list[dict], name: str, size: int):
        if name == "_histogram.day":
            counts = collections.Counter(r["date_processed"].date() for r in matching)
            return counts
        if name == "_cardinality.installations":
            return len({r["client_crash_date"] - datetime.timedelta(seconds=r["install_age"])
                        for r in matching
                        if r["client_crash_date"] is not None and r["install_age"] is not None})
        counts: collections.Counter = collections.Counter()
        for report in matching:
            if name == "uptime":
                counts[self.uptimeBucket(report["uptime"])] += 1
            else:
                counts.update(set(self.terms(report, name)) or {None})
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0] is None,
                                                          item[0] if item[0] is not None else 0))
        return [{"term": term, "count": count} for term, count in ranked[:size]]

    def search(self, start, end, filters=(), facets=(), facet_size=10, columns=None,
               sort=("-date_processed",), limit=100, offset=0) -> dict:
        matching = [r for r in self.reports if start <= r["date_processed"] < end
                    and all(self.matches(r, *triple) for triple in filters)]
        hits = sorted(matching, key=lambda r: r["id"])
        for key in reversed(sort):
            column = key.lstrip("-")
            present = [r for r in hits if r.get(column) is not None]
            present.sort(key=lambda r: r[column], reverse=key.startswith("-"))
            hits = present + [r for r in hits if r.get(column) is None]
        columns = columns or searchModule.DEFAULT_COLUMNS
        result = {
            "total": len(matching),
            "hits": [{c: r.get(c) for c in columns} for r in hits[offset:offset + limit]],
            "facets": {name: self.facet(matching, name, facet_size) for name in facets},
        }
        if "_histogram.day" in result["facets"]:
            counts = result["facets"]["_histogram.day"]
            first, last = start.date(), (end - datetime.timedelta.resolution).date()
            days = [first + n * DAY for n in range((last - first).days + 1)]
            result["facets"]["_histogram.day"] = [{"term": d, "count": counts[d]} for d in days]
        return result


# -- random data and random searches -----------------------------------------------------------


def randomRows(rng: random.Random, count: int = 120) -> list[fakedb.Row]:
    plugins = [fakedb.Plugin(id=n + 1, filename=name, name=f"plugin {n}")
               for n, name in enumerate(PLUGIN_FILES)]
    rows: list[fakedb.Row] = list(plugins)
    installs = [at(2012, 9, 1) + n * datetime.timedelta(hours=7, microseconds=n)
                for n in range(6)]
    for n in range(count):
        when = MONDAY - 2 * DAY + datetime.timedelta(seconds=rng.randrange(10 * 86400))
        when = rng.choice([when, when, when, MONDAY, MONDAY + 3 * DAY, MONDAY + WEEK])
        age = rng.choice([None, 0, 3600, 86400 * 3])
        installed = rng.choice(installs)
        crashed = None if age is None else installed + datetime.timedelta(seconds=age)
        report = fakedb.Report(
            id=n + 1, date_processed=when, uuid=f"uuid-{n % 100:03d}-{n}",
            product=rng.choice(["Firefox", "Firefox", "Thunderbird", "firefox", None, ""]),
            version=rng.choice(["17.0b3", "16.0", None, ""]),
            signature=rng.choice(SIGNATURES),
            os_name=rng.choice(["Windows NT", "Mac OS X", "Linux", None]),
            build=rng.choice(["20121010", "20121015", None]),
            uptime=rng.choice([None, -5, 0, 59, 60, 299, 300, 899, 900, 3599, 3600, 100000]),
            client_crash_date=rng.choice([crashed, crashed, None]),
            install_age=age,
            hangid=rng.choice([None, "", "hang-1"]),
            success=rng.choice([None, True, False]),
            reason=rng.choice(["EXCEPTION_ACCESS_VIOLATION", "SIGSEGV", None]),
        )
        rows.append(report)
        for key in range(rng.choice([0, 0, 1, 2, 3])):  # the same add-on twice, now and then
            rows.append(fakedb.Extension(report_id=n + 1, date_processed=when, extension_key=key,
                                         extension_id=rng.choice(EXTENSION_IDS)))
        for plugin in rng.sample(plugins, rng.choice([0, 0, 1, 2])):
            rows.append(fakedb.PluginReport(report_id=n + 1, plugin_id=plugin.id,
                                            date_processed=when))
        if rng.random() < 0.8:
            raw = {}
            if rng.random() < 0.8:
                raw["GraphicsAdapter"] = rng.choice(ADAPTERS)
            if rng.random() < 0.8:
                raw["Number"] = rng.choice(NUMBERS)
            # collected earlier than processed: now and then in the week before (not its raw)
            collected = when - datetime.timedelta(seconds=rng.choice([0, 60, 86400 * 4]))
            rows.append(fakedb.RawCrash(uuid=report.uuid, date_processed=collected,
                                        raw_crash=raw))
    # raw crashes of no report, one with a reported uuid in a week the report is not in
    rows.append(fakedb.RawCrash(uuid="uuid-orphan", date_processed=MONDAY,
                                raw_crash={"GraphicsAdapter": "0x10de"}))
    rows.append(fakedb.RawCrash(uuid="uuid-000-0", date_processed=MONDAY + 2 * WEEK,
                                raw_crash={"GraphicsAdapter": "0x10de"}))
    return rows


def randomFilter(rng: random.Random):
    kind = rng.choice(["string", "string", "integer", "datetime", "boolean", "addon", "plugin",
                       "raw", "raw"])
    if kind == "integer":
        op = rng.choice(["=", "!=", ">", ">=", "<", "<=", "exists"])
        value = rng.choice([0, 59, 60, 300, 3600]) if op != "exists" else rng.random() < 0.5
        if op in ("=", "!=") and rng.random() < 0.4:
            value = [0, 60, 100000]
        return (rng.choice(["uptime", "install_age"]), op, value)
    if kind == "datetime":
        op = rng.choice([">", ">=", "<", "<=", "=", "!=", "exists"])
        value = rng.choice([MONDAY, MONDAY + 2 * DAY, at(2012, 9, 1, 7)])
        return (rng.choice(["date_processed", "client_crash_date"]), op,
                rng.random() < 0.5 if op == "exists" else value)
    if kind == "boolean":
        op = rng.choice(["=", "!=", "exists"])
        return ("success", op, rng.random() < 0.5)
    name, pool = {
        "string": rng.choice([("signature", SIGNATURES[:-1]), ("product", ["Firefox", "fire"]),
                              ("version", ["17.0b3", "16", ""]), ("hangid", ["hang", ""])]),
        "addon": ("addon", EXTENSION_IDS),
        "plugin": ("plugin", PLUGIN_FILES),
        "raw": rng.choice([("raw.GraphicsAdapter", ADAPTERS), ("raw.Number", [
            "12", "-3", "1.5", "0.30000000000000004", "1000.0", "true", "false", "1"]),
            ("raw.Missing", ["x"])]),
    }[kind]
    op = rng.choice(searchModule.OPS)
    if op == "exists":
        return (name, op, rng.random() < 0.5)
    value = rng.choice(pool)
    if op in ("~", "^") and value:
        # a piece of a value, letter case flipped: "%" and "_" must match only themselves
        cut = rng.randrange(len(value))
        value = value[cut:cut + rng.randrange(1, 5)] if op == "~" else value[:cut + 1]
        value = value.swapcase() if rng.random() < 0.5 else value
        value = rng.choice([value, value, "100%", "0_e", "_", "%"])
    if op in ("=", "!=") and len(pool) > 1 and rng.random() < 0.3:
        value = rng.sample(pool, 2)
    return (name, op, value)


FACETS = ["signature", "product", "uptime", "addon", "plugin", "raw.GraphicsAdapter",
          "raw.Number", "success", "build", "install_age", "client_crash_date",
          "_histogram.day", "_cardinality.installations"]
SORTS = [("-date_processed",), ("signature", "-uptime"), ("-signature",), ("success", "uuid"),
         ("product", "-client_crash_date"), ("id",)]
RANGES = [  # two weeks and a bit; one week exactly; an odd stretch of one week
    (MONDAY - 2 * DAY, MONDAY + WEEK + DAY),
    (MONDAY, MONDAY + WEEK),
    (MONDAY + datetime.timedelta(hours=30, seconds=7), MONDAY + datetime.timedelta(days=4)),
]


def randomSearch(rng: random.Random) -> dict:
    start, end = rng.choice(RANGES)
    return {
        "start": start, "end": end,
        "filters": [randomFilter(rng) for _ in range(rng.choice([0, 1, 1, 2, 3]))],
        "facets": rng.sample(FACETS, rng.choice([1, 2, 4])),
        "facet_size": rng.choice([1, 3, 10]),
        "columns": rng.choice([None, ["id", "signature", "uptime", "success",
                                      "client_crash_date"]]),
        "sort": rng.choice(SORTS),
        "limit": rng.choice([0, 5, 100]),
        "offset": rng.choice([0, 0, 3]),
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest_twisted.inlineCallbacks
def test_random_searches_equal_a_brute_force_search(db, seed):
    rng = random.Random(seed)
    rows = randomRows(rng)
    yield db.insertTestData(rows)
    world = World(rows)
    for _ in range(40):
        arguments = randomSearch(rng)
        expected = world.search(**arguments)
        got = yield db.search.search(**arguments)
        assert got == expected, arguments


# -- each operator, field and facet, by example -------------------------------------------------


def reports(*values: dict) -> list[fakedb.Report]:
    return [fakedb.Report(id=n + 1, date_processed=MONDAY + n * datetime.timedelta(hours=1),
                          **each) for n, each in enumerate(values)]


@pytest_twisted.inlineCallbacks
def test_like_wildcards_match_themselves_and_ascii_case_is_ignored(db):
    rows = reports({"signature": "100%_sure"}, {"signature": "100x_sure"},
                   {"signature": "100%xsure"}, {"signature": "A\\b"},
                   {"signature": "ÉCOLE::go"}, {"signature": "école::go"}, {"signature": None})
    yield db.insertTestData(rows)

    @pytest_twisted.inlineCallbacks
    def ids(op, value):
        result = yield db.search.search(MONDAY, MONDAY + WEEK, [("signature", op, value)],
                                        columns=["id"], sort=["id"])
        return [hit["id"] for hit in result["hits"]]

    assert (yield ids("~", "%_")) == [1]
    assert (yield ids("~", "_SURE")) == [1, 2]
    assert (yield ids("^", "100%")) == [1, 3]
    assert (yield ids("~", "a\\")) == [4]
    assert (yield ids("~", "COLE::GO")) == [5, 6]  # ASCII letters fold
    assert (yield ids("^", "éCOLE")) == [6]  # É and é do not fold: the same on both backends
    assert (yield ids("~", "")) == [1, 2, 3, 4, 5, 6]  # every set value contains ''


@pytest_twisted.inlineCallbacks
def test_not_equal_and_exists_count_unset_values(db):
    rows = reports({"product": "Firefox"}, {"product": "Thunderbird"}, {"product": ""},
                   {"product": None})
    rows += [fakedb.Extension(report_id=1, date_processed=rows[0].date_processed,
                              extension_id="a@x"),
             fakedb.RawCrash(uuid=rows[1].uuid, date_processed=MONDAY, raw_crash={"K": ""}),
             fakedb.RawCrash(uuid=rows[2].uuid, date_processed=MONDAY, raw_crash={"K": "v"})]
    yield db.insertTestData(rows)

    @pytest_twisted.inlineCallbacks
    def ids(*triple):
        result = yield db.search.search(MONDAY, MONDAY + WEEK, [triple], columns=["id"],
                                        sort=["id"])
        return [hit["id"] for hit in result["hits"]]

    assert (yield ids("product", "!=", "Firefox")) == [2, 3, 4]
    assert (yield ids("product", "!=", ["Firefox", "Thunderbird"])) == [3, 4]
    assert (yield ids("product", "=", ["Firefox", "Thunderbird"])) == [1, 2]
    assert (yield ids("product", "exists", True)) == [1, 2]
    assert (yield ids("product", "exists", False)) == [3, 4]
    assert (yield ids("addon", "!=", "a@x")) == [2, 3, 4]
    assert (yield ids("addon", "exists", False)) == [2, 3, 4]
    assert (yield ids("raw.K", "exists", True)) == [3]
    assert (yield ids("raw.K", "!=", "v")) == [1, 2, 4]
    assert (yield ids("raw.K", "exists", False)) == [1, 2, 4]


@pytest_twisted.inlineCallbacks
def test_raw_values_compare_as_text(db):
    values = [12, 1.5, True, False, None, [1], {"a": 1}, "12", -0, 2**62]  # (ints of 64 bits)
    rows = reports(*({} for _ in values))
    rows += [fakedb.RawCrash(uuid=row.uuid, date_processed=row.date_processed,
                             raw_crash={"N": value}) for row, value in zip(rows, values)]
    yield db.insertTestData(rows)
    result = yield db.search.search(MONDAY, MONDAY + WEEK, facets=["raw.N"], facet_size=20)
    terms = sorted(result["facets"]["raw.N"], key=lambda t: (t["term"] is None, t["term"] or ""))
    assert terms == [{"term": "0", "count": 1}, {"term": "1.5", "count": 1},
                     {"term": "12", "count": 2},
                     {"term": str(2**62), "count": 1}, {"term": "false", "count": 1},
                     {"term": "true", "count": 1}, {"term": None, "count": 3}]
    result = yield db.search.search(MONDAY, MONDAY + WEEK, [("raw.N", "=", "12")])
    assert result["total"] == 2
    result = yield db.search.search(MONDAY, MONDAY + WEEK, [("raw.N", ">", "12")])
    assert result["total"] == 3  # "4611686018427387904", "false" and "true", as text
    result = yield db.search.search(MONDAY, MONDAY + WEEK, [("raw.N", "~", "1")])
    assert result["total"] == 4  # not [1] nor {"a": 1}: arrays and objects are unset
    result = yield db.search.search(MONDAY, MONDAY + WEEK, [("raw.N", "exists", True)])
    assert result["total"] == 7


@pytest_twisted.inlineCallbacks
def test_a_reports_raw_crash_is_the_same_uuid_in_the_same_week(db):
    rows = reports({}, {})
    rows += [
        # collected on the Sunday before: another week, so not this report's raw crash
        fakedb.RawCrash(uuid=rows[0].uuid, date_processed=MONDAY - datetime.timedelta(hours=1),
                        raw_crash={"K": "earlier"}),
        fakedb.RawCrash(uuid=rows[1].uuid, date_processed=MONDAY + 5 * DAY,
                        raw_crash={"K": "same week"}),
    ]
    yield db.insertTestData(rows)
    for start, end in [(MONDAY, MONDAY + WEEK), (MONDAY - WEEK, MONDAY + 2 * WEEK)]:
        result = yield db.search.search(start, end, facets=["raw.K"])
        assert result["facets"]["raw.K"] == [{"term": "same week", "count": 1},
                                             {"term": None, "count": 1}]


@pytest_twisted.inlineCallbacks
def test_facets_histogram_installations_and_uptime(db):
    installed = at(2012, 10, 1, 8, 0, 0, 250)
    rows = []
    for n in range(50):  # one machine crashing 50 times is one installation
        rows.append(fakedb.Report(
            date_processed=MONDAY + DAY + n * datetime.timedelta(minutes=1),
            client_crash_date=installed + datetime.timedelta(seconds=1000 + n),
            install_age=1000 + n, uptime=n * 100))
    rows.append(fakedb.Report(date_processed=MONDAY + 3 * DAY, install_age=5,
                              client_crash_date=installed, uptime=None))
    rows.append(fakedb.Report(date_processed=MONDAY + 3 * DAY, install_age=None,
                              client_crash_date=installed, uptime=-30))  # a wrong clock: None
    yield db.insertTestData(rows)
    result = yield db.search.search(
        MONDAY, MONDAY + 5 * DAY,
        facets=["_histogram.day", "_cardinality.installations", "uptime"])
    facets = result["facets"]
    assert facets["_cardinality.installations"] == 2
    assert facets["_histogram.day"] == [
        {"term": (MONDAY + n * DAY).date(), "count": count}
        for n, count in enumerate([0, 50, 0, 2, 0])]
    assert facets["uptime"] == [
        {"term": "15-60 min", "count": 27}, {"term": "> 1 hour", "count": 14},
        {"term": "5-15 min", "count": 6}, {"term": "1-5 min", "count": 2},
        {"term": None, "count": 2}, {"term": "< 1 min", "count": 1},
    ]


@pytest_twisted.inlineCallbacks
def test_hits_follow_sort_limit_and_offset(db):
    rows = reports(*({"signature": s, "uptime": u} for s, u in
                     [("b", 1), ("a", 2), (None, 3), ("a", None), ("B", 5)]))
    yield db.insertTestData(rows)
    result = yield db.search.search(MONDAY, MONDAY + WEEK, sort=["signature", "-uptime"],
                                    columns=["id"], limit=3, offset=1)
    # "B" < "a" < "b" in code point order; NULLs last; a's: uptime 2 first, NULL uptime last
    assert result["total"] == 5
    assert [hit["id"] for hit in result["hits"]] == [2, 4, 1]
    result = yield db.search.search(MONDAY, MONDAY + WEEK, sort=["-signature"], columns=["id"])
    assert [hit["id"] for hit in result["hits"]] == [1, 2, 4, 5, 3]


# -- only the weeks of the range are read ----------------------------------------------------------

# a weekly child, or on Citus one of its shards (reports_20121015_102008)
CHILD = re.compile(r"\b(?:reports|extensions|plugins_reports|raw_crashes)_(\d{8})(?:_\d+)?\b")


@pytest_twisted.inlineCallbacks
def test_only_the_overlapping_weeks_are_read(db):
    rows = randomRows(random.Random(9), count=60)
    yield db.insertTestData(rows)
    statements = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield db.search.search(
            MONDAY + DAY, MONDAY + 2 * DAY,
            [("addon", "!=", "x"), ("plugin", "exists", False), ("raw.Number", "^", "1")],
            facets=FACETS)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)
    searches = [(s, p) for s, p in statements if "reports" in s]
    assert len(searches) == len(FACETS) + 2  # the total, the hits, each facet
    if db.backend.name == "sqlite":
        named = {week for statement, _ in searches for week in CHILD.findall(statement)}
    else:  # PostgreSQL reads through the parents: the plans show which children were pruned

        def explain(conn):
            plans = []
            if db.kind == "citus":  # every shard's plan, not one for all
                conn.exec_driver_sql("SET LOCAL citus.explain_all_tasks = on")
            for statement, parameters in searches:
                plans.extend(line for (line,) in conn.exec_driver_sql(
                    "EXPLAIN " + statement, parameters))
            return "\n".join(plans)

        plans = yield db.pool.do(explain)
        named = set(CHILD.findall(plans))
    assert named == {f"{MONDAY:%Y%m%d}"}


# -- bad input -----------------------------------------------------------------------------------

HOSTILE = ["'; DROP TABLE reports; --", 'raw."x"', "raw.", "raw." + "a" * 65, "raw.a b",
           "raw.a'--", "signature; DELETE FROM reports", "Ünïcode", "\x00", "%", "_",
           "-", "", "--", "uptime)", "raw.ä", "_histogram.week", "_cardinality.uuid",
           "addon'", "reports.id", "1=1"]
ODD_VALUES = [None, 2**40, -(2**70), 1.5, float("nan"), b"bytes", object(), {"a": 1}, [], [[1]],
              "\x00", "\ud800", "x" * 10_000, True, MONDAY.replace(tzinfo=None),
              datetime.date(2012, 1, 1), ["x"] * 501, [("signature", "=", "x")] * 51,
              datetime.datetime(1, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=5))),
              datetime.datetime(9999, 12, 31, 23, tzinfo=UTC),
              MONDAY + datetime.timedelta(days=4000)]


def hostileCalls():
    good = {"start": MONDAY, "end": MONDAY + WEEK}
    for bad in HOSTILE + ODD_VALUES:
        yield {**good, "filters": [(bad, "=", "x")]}
        yield {**good, "filters": [("signature", bad, "x")]}
        yield {**good, "filters": [("signature", "=", bad)]}
        yield {**good, "filters": [("uptime", ">", bad)]}
        yield {**good, "filters": [("date_processed", "<", bad)]}
        yield {**good, "filters": [("raw.GraphicsAdapter", "~", bad)]}
        yield {**good, "filters": [("addon", "exists", bad)]}
        yield {**good, "filters": [("success", "=", bad)]}
        yield {**good, "filters": [bad]}
        yield {**good, "filters": bad}
        yield {**good, "facets": [bad]}
        yield {**good, "facets": ["_histogram.day"], "end": bad}
        yield {**good, "facets": bad}
        yield {**good, "columns": [bad]}
        yield {**good, "sort": [bad]}
        yield {**good, "sort": ["-" + bad] if isinstance(bad, str) else bad}
        yield {**good, "facet_size": bad}
        yield {**good, "limit": bad}
        yield {**good, "offset": bad}
        yield {**good, "start": bad}
        yield {**good, "end": bad}


@pytest_twisted.inlineCallbacks
def test_hostile_input_is_refused_or_answered_correctly(db):
    rng = random.Random(4)
    rows = randomRows(rng, count=40)
    yield db.insertTestData(rows)
    world = World(rows)
    before = yield db.reports.countReports()
    answered = refused = 0
    for call in hostileCalls():
        try:
            got = yield db.search.search(**call)
        except InvalidInputError as error:
            assert error.field is not None, call
            refused += 1
        else:
            assert got == world.search(**call), call
            answered += 1
    assert (yield db.reports.countReports()) == before
    assert answered and refused


@pytest.mark.parametrize("kw,field", [
    ({"filters": [("nosuch", "=", "x")]}, "nosuch"),
    ({"filters": [("raw.bad-key", "=", "x")]}, "raw.bad-key"),
    ({"filters": [("uptime", "~", "1")]}, "uptime"),
    ({"filters": [("uptime", "=", "1")]}, "uptime"),
    ({"filters": [("date_processed", ">", "2012-10-15")]}, "date_processed"),
    ({"filters": [("signature", "like", "x")]}, "signature"),
    ({"filters": [("signature", "=", [])]}, "signature"),
    ({"filters": [("signature", "exists", "yes")]}, "signature"),
    ({"filters": [("signature", "=")]}, "filters"),
    ({"facets": ["_histogram.week"]}, "_histogram.week"),
    ({"columns": ["raw.K"]}, "raw.K"),
    ({"sort": ["-nosuch"]}, "-nosuch"),
    ({"limit": -1}, "limit"),
    ({"facet_size": 0}, "facet_size"),
    ({"end": MONDAY}, "end"),
    ({"start": MONDAY.replace(tzinfo=None)}, "start"),
])
def test_bad_arguments_name_the_field(kw, field):
    db = fakedb.FakeDBConnector()
    arguments = {"start": MONDAY, "end": MONDAY + WEEK, **kw}
    failures = []
    db.search.search(**arguments).addErrback(failures.append)  # the fake answers at once
    assert failures and failures[0].check(InvalidInputError)
    assert failures[0].value.field == field


# -- the facets a rollup keeps ----------------------------------------------------------------


ROLLED_UP_CASES = [  # (product, version, signature, first day, days)
    ("Firefox", None, None, MONDAY.date() - 2 * DAY, 10),
    ("Firefox", "16.0", None, MONDAY.date(), 7),
    ("Thunderbird", None, "js::GC", MONDAY.date() - 2 * DAY, 10),
    ("Firefox", "17.0b3", "nsFoo::Bar", MONDAY.date() + DAY, 3),
    ("", None, None, MONDAY.date() - 2 * DAY, 10),
]


@pytest_twisted.inlineCallbacks
def assertRolledUpFacetsAreTheSearchs(db):
    for product, version, signature, first, days in ROLLED_UP_CASES:
        filters = [(field, "=", value) for field, value in
                   (("product", product), ("version", version), ("signature", signature))
                   if value is not None]
        for size in (3, 100):
            start = datetime.datetime(first.year, first.month, first.day, tzinfo=UTC)
            expected = yield db.search.search(start, start + days * DAY, filters=filters,
                                              facets=searchModule.ROLLED_UP_FACETS,
                                              facet_size=size, limit=0)
            got = yield db.search.rolledUpFacets(
                product, first, first + days * DAY, version, signature,
                facets=searchModule.ROLLED_UP_FACETS, facet_size=size)
            assert got == {"total": expected["total"], "facets": expected["facets"]}, \
                (product, version, signature, size)
            assert got["total"] > 0 or product == ""


@pytest_twisted.inlineCallbacks
def test_rolled_up_facets_are_the_searchs_facets(db):
    rng = random.Random(30)
    yield db.insertTestData(randomRows(rng, 400))
    yield assertRolledUpFacetsAreTheSearchs(db)  # nothing rolled up: all from the reports
    first = MONDAY.date() - 2 * DAY
    for day in (first, first + 3 * DAY, first + 4 * DAY, first + 9 * DAY):
        yield db.signatures.updateSummaries(day)
    yield assertRolledUpFacetsAreTheSearchs(db)  # some days from the rollup
    for n in range(10):
        yield db.signatures.updateSummaries(first + n * DAY)
    yield assertRolledUpFacetsAreTheSearchs(db)  # all from the rollup


@pytest.mark.parametrize("kw,field", [
    ({"product": None}, "product"),
    ({"version": 16}, "version"),
    ({"signature": "x" * 256}, "signature"),
    ({"facets": ["addon"]}, "facets"),
    ({"facets": ["_cardinality.installations"]}, "facets"),
    ({"facets": "signature"}, "facets"),
    ({"facet_size": 0}, "facet_size"),
    ({"start_day": MONDAY.date(), "end_day": MONDAY.date()}, "start_day"),
])
def test_rolled_up_facets_refuse_what_the_rollup_cannot_answer(kw, field):
    db = fakedb.FakeDBConnector()
    failures = []
    db.search.rolledUpFacets(**{"product": "Firefox", **kw}).addErrback(failures.append)
    assert failures and failures[0].check(InvalidInputError)
    assert failures[0].value.field == field
