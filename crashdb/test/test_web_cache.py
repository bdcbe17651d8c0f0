"""The response cache of crash-stats' rollup-backed pages: what it keeps, for how long, for
whom; served in this process over HTTP on the fake, SQLite and PostgreSQL."""

from __future__ import annotations

import datetime
import json

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

from crashdb.app.web import CrashStats
from crashdb.app.web.cache import ResponseCache
from crashdb.test.fake import fakedb
from crashdb.test.util.webserver import crashdbCommand

UTC = datetime.UTC
DAY = datetime.timedelta(days=1)
SECONDS = 60.0
BANNER = b"token: personal data shown"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def crashes(signature: str, count: int, uuids: list[str] | None = None) -> list[fakedb.Report]:
    """``count`` Firefox crashes of ``signature`` at noon yesterday."""
    yesterday = datetime.datetime.now(UTC).date() - DAY
    noon = datetime.datetime(yesterday.year, yesterday.month, yesterday.day, 12, tzinfo=UTC)
    return [fakedb.Report(product="Firefox", version="16.0", signature=signature,
                          date_processed=noon, **({"uuid": uuids[n]} if uuids else {}))
            for n in range(count)]


class Served:
    """``CrashStats(db)`` listening on a free loopback port of this process."""

    def __init__(self, db, cache_seconds: float) -> None:
        self.clock = Clock()
        self.app = CrashStats(db, cache_seconds=cache_seconds, clock=self.clock)
        self.port = reactor.listenTCP(0, self.app.site(), interface="127.0.0.1")
        self.base = f"http://127.0.0.1:{self.port.getHost().port}"
        self.agent = Agent(reactor)

    async def get(self, path: str, token: str | None = None) -> tuple[int, bytes, bytes]:
        """``(status, content type, body)``."""
        headers = Headers({b"Authorization": [f"Bearer {token}".encode()]} if token else {})
        response = await self.agent.request(b"GET", (self.base + path).encode(), headers)
        body = await readBody(response)
        return response.code, response.headers.getRawHeaders(b"content-type")[0], body

    async def json(self, path: str) -> dict:
        status, _, body = await self.get(path)
        assert status == 200, (path, status, body[:300])
        return json.loads(body)


@pytest.fixture
def served(db):
    made = []

    def serve(cache_seconds: float = SECONDS) -> Served:
        made.append(Served(db, cache_seconds))
        return made[-1]

    yield serve
    for server in made:
        pytest_twisted.blockon(defer.maybeDeferred(server.port.stopListening))


async def rollUp(db, rows) -> None:
    await db.insertTestData(rows)
    await db.tcbs.updateTcbs(datetime.datetime.now(UTC).date() - DAY)


def signatures(answer: dict) -> dict[str, int]:
    return {c["signature"]: c["count"] for c in answer["crashers"]}


@pytest_twisted.ensureDeferred
async def test_a_page_shows_a_rewritten_rollup_once_its_seconds_pass(db, served):
    await rollUp(db, crashes("old", 3))
    server = served()
    assert signatures(await server.json("/api/topcrashers/Firefox")) == {"old": 3}
    first = await server.get("/topcrashers/Firefox")
    await rollUp(db, crashes("new", 5))  # the day's rollup rewritten
    server.clock.now += SECONDS - 1
    assert signatures(await server.json("/api/topcrashers/Firefox")) == {"old": 3}
    assert await server.get("/topcrashers/Firefox") == first
    server.clock.now += 1
    assert signatures(await server.json("/api/topcrashers/Firefox")) == {"new": 5, "old": 3}
    status, contentType, page = await server.get("/topcrashers/Firefox")
    assert (status, contentType) == (200, b"text/html; charset=utf-8")
    assert b">new<" in page and page != first[2]
    products = await server.json("/api/products")
    assert [c["signature"] for c in products["products"][0]["top"]] == ["new", "old"]


@pytest_twisted.ensureDeferred
async def test_without_a_cache_every_request_renders(db, served):
    await rollUp(db, crashes("old", 3))
    server = served(cache_seconds=0)
    assert signatures(await server.json("/api/topcrashers/Firefox")) == {"old": 3}
    await rollUp(db, crashes("new", 5))
    assert signatures(await server.json("/api/topcrashers/Firefox")) == {"new": 5, "old": 3}


@pytest_twisted.ensureDeferred
async def test_each_query_string_is_its_own_entry(db, served):
    await rollUp(db, crashes("old", 3))
    server = served()
    assert signatures(await server.json("/api/topcrashers/Firefox?days=7")) == {"old": 3}
    await rollUp(db, crashes("new", 5))
    assert signatures(await server.json("/api/topcrashers/Firefox?days=7")) == {"old": 3}
    assert signatures(await server.json("/api/topcrashers/Firefox?days=8")) == \
        {"new": 5, "old": 3}
    assert signatures(await server.json("/api/topcrashers/Firefox?limit=1")) == {"new": 5}


@pytest_twisted.ensureDeferred
async def test_token_and_no_token_responses_never_mix(db, served):
    await rollUp(db, crashes("old", 3))
    token = await db.tokens.createToken("tester")
    server = served()
    for _ in range(2):  # the second round is served from the cache
        assert BANNER not in (await server.get("/topcrashers/Firefox"))[2]
        assert BANNER in (await server.get("/topcrashers/Firefox", token))[2]
    # the other order, on a page not rendered yet
    assert BANNER in (await server.get("/topcrashers/Firefox?days=3", token))[2]
    assert BANNER not in (await server.get("/topcrashers/Firefox?days=3"))[2]
    # a token that is not valid is refused even for a page kept rendered
    status, _, body = await server.get("/api/topcrashers/Firefox", "not-a-token")
    assert (status, json.loads(body)) == (401, {"error": "invalid API token"})
    assert await db.tokens.revokeToken("tester")
    assert (await server.get("/topcrashers/Firefox", token))[0] == 401


@pytest_twisted.ensureDeferred
async def test_bad_input_is_still_400_and_not_kept(db, served):
    await rollUp(db, crashes("old", 3))
    server = served()
    for _ in range(2):
        status, contentType, body = await server.get("/api/topcrashers/Firefox?days=abc")
        assert (status, contentType) == (400, b"application/json")
        assert json.loads(body) == {"error": "field 'days': expected a whole number"}
        status, _, body = await server.get("/explosive/Firefox?day=yesterday")
        assert status == 400 and b"expected a day as YYYY-MM-DD" in body
    assert signatures(await server.json("/api/topcrashers/Firefox?days=7")) == {"old": 3}


@pytest_twisted.ensureDeferred
async def test_pages_reading_reports_are_not_kept(db, served):
    server = served()
    yesterday = datetime.datetime.now(UTC).date() - DAY
    uuid = f"11111111-2222-3333-4444-555555{yesterday:%y%m%d}"  # the day ends a crash's uuid
    assert (await server.get(f"/api/report/{uuid}"))[0] == 404
    await db.insertTestData(crashes("old", 1, uuids=[uuid]))
    assert (await server.json(f"/api/report/{uuid}"))["report"]["uuid"] == uuid


def test_serve_refuses_a_cache_lifetime_out_of_range(tmp_path):
    for seconds in ("-1", "86401"):
        done = crashdbCommand("serve", "--cache-seconds", seconds,
                              "--db", f"sqlite:///{tmp_path / 'never.sqlite'}")
        assert done.returncode == 1
        assert done.stderr.strip() == "crashdb: error: --cache-seconds must be from 0 to 86400"
    assert "--cache-seconds" in crashdbCommand("serve", "--help").stdout


# -- the cache itself ---------------------------------------------------------------------------


def test_one_rendering_serves_every_request_waiting_for_it():
    cache = ResponseCache(SECONDS, clock=Clock())
    pending: list[defer.Deferred] = []

    async def render():
        pending.append(defer.Deferred())
        return await pending[-1]

    first, second = cache.get("k", render), cache.get("k", render)
    assert len(pending) == 1 and not first.called and not second.called
    pending[0].callback("page")
    assert first.result == second.result == "page"
    assert cache.get("k", render).result == "page" and len(pending) == 1


def test_a_failed_rendering_reaches_its_waiters_and_is_not_kept():
    cache = ResponseCache(SECONDS, clock=Clock())
    calls = []

    async def fail():
        calls.append(1)
        raise ValueError("boom")

    for _ in range(2):
        failed = cache.get("k", fail)
        assert failed.result.check(ValueError)
        failed.addErrback(lambda failure: None)
    assert len(calls) == 2


def test_a_cancelled_request_does_not_stop_the_rendering_for_others():
    cache = ResponseCache(SECONDS, clock=Clock())
    pending: defer.Deferred = defer.Deferred()

    async def render():
        return await pending

    gone, waiting = cache.get("k", render), cache.get("k", render)
    gone.cancel()
    gone.addErrback(lambda failure: failure.trap(defer.CancelledError))
    pending.callback("page")
    assert waiting.result == "page"


def test_it_keeps_at_most_size_responses_dropping_the_oldest():
    clock = Clock()
    cache = ResponseCache(SECONDS, size=2, clock=clock)
    renders = []

    def renderer(value):
        async def render():
            renders.append(value)
            return value
        return render

    for key in ("a", "b", "c"):
        cache.get(key, renderer(key))
    for key in ("b", "c", "a"):  # b, c kept; a rendered again (and b dropped for it)
        cache.get(key, renderer(key))
    assert renders == ["a", "b", "c", "a"]
    clock.now += SECONDS
    cache.get("c", renderer("c"))
    assert renders[-1] == "c" and len(renders) == 5
