"""Wild requests to ``crashdb serve``: whatever a client puts in a path or a query string, the
answer is a page or a clear refusal (400, 403, 404), never a failure of the server (500).

Hypothesis draws requests from the parameters the pages read, the filters search takes and
values chosen to break parsers (numbers past any column, days at the ends of the calendar,
operators with nothing after them, NUL, lone surrogates escaped, bytes that are not UTF-8).
``CRASHDB_WILD_PROFILE=release`` draws 1,000 requests instead of CI's 200 (and
``CRASHDB_WILD_EXAMPLES=N`` N), as in test_wild_input.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from crashdb.test.conftest import _postgresUrl
from crashdb.test.util.db import postgres
from crashdb.test.util.webserver import Site
from crashdb.test.util.wild import wildSettings

PROFILE = wildSettings(ci=200)

# each route and the parameters it reads (search: its options and fields to filter on)
ROUTES = {
    "/": ("days",),
    "/topcrashers/{}": ("version", "days", "limit"),
    "/signature": ("signature", "product", "version", "days"),
    "/report/{}": (),
    "/search": ("start", "end", "days", "facet", "facet_size", "column", "sort", "limit",
                "offset", "signature", "product", "version", "uptime", "build",
                "date_processed", "install_age", "hangid", "url", "email", "raw.Theme",
                "addon", "os_name", "_histogram.day"),
    "/explosive/{}": ("day", "version", "limit"),
    "/crashrates/{}": ("version", "days"),
}
PARAMETERS = tuple(sorted({name for names in ROUTES.values() for name in names}))
EDGES = ("", "0", "-1", "1", "366", "367", "1000", "1001", str(2**63), str(-(2**63) - 1),
         "9" * 5000, "1e3", "NaN", "0001-01-01", "9999-12-31", "2012-02-30", "2026-13-01",
         "0001-01-01T00:00:00", "9999-12-31T23:59:59+14:00", "true", "TRUE", "maybe",
         "__exists__", "!__exists__", "__exists__x", "~", "^", ">", ">=", "<", "!", "=",
         "signature,product", "-signature", "uptime,_histogram.day", "raw.Theme",
         "_cardinality.installations", "Firefox", "std::vector<int>::operator[]",
         "\x00", "a\x00b", "\ufffd", "😀" * 40, "x" * 300, "%", "%FF", "%ED%A0%80")
PERCENT_ESCAPES = ("%FF", "%ED%A0%80", "%00", "%C0%AF", "%", "%G1")


def value() -> st.SearchStrategy[str]:
    """A parameter's value: an edge, an edge behind a search operator, a number, any text."""
    prefixes = st.sampled_from(["", "~", "^", "!", ">", "<", ">=", "<=", "="])
    return st.one_of(st.sampled_from(EDGES),
                     st.builds(str.__add__, prefixes, st.sampled_from(EDGES)),
                     st.integers().map(str), st.text(max_size=40))


@st.composite
def requests(draw: st.DrawFn) -> str:
    """A request target: a route (a page or its API twin) and a query string, mostly of the
    parameters that route reads."""
    route = draw(st.sampled_from(sorted(ROUTES)))
    names = st.one_of(st.sampled_from(ROUTES[route] or PARAMETERS), st.sampled_from(PARAMETERS),
                      st.text(max_size=12))
    if "{}" in route:
        segment = draw(st.one_of(st.sampled_from(EDGES), st.text(max_size=40)))
        route = route.format(urllib.parse.quote(segment, safe="") or "x")
    if draw(st.booleans()):
        route = "/api/products" if route == "/" else "/api" + route
    pairs = draw(st.lists(st.tuples(names, value()), max_size=5))
    raw = draw(st.lists(st.tuples(st.sampled_from(PARAMETERS),
                                  st.sampled_from(PERCENT_ESCAPES)), max_size=1))
    query = "&".join(part for part in (urllib.parse.urlencode(pairs),
                                       *(f"{k}={v}" for k, v in raw)) if part)
    return route + ("?" + query if query else "")


def serve(tmp_path_factory: Any, url: str | None = None) -> Iterator[Site]:
    site = Site(tmp_path_factory.mktemp("wild"), crashes=200, url=url)
    yield site
    site.server.stop()
    if url is not None:
        postgres.dropDatabase(url)


@pytest.fixture(scope="module")
def sqliteSite(tmp_path_factory):
    yield from serve(tmp_path_factory)


@pytest.fixture(scope="module")
def postgresSite(tmp_path_factory):
    yield from serve(tmp_path_factory, _postgresUrl())


def wild(test: Callable[..., None]) -> Callable[..., None]:
    """Run ``test(site, target, token)`` on drawn requests, with a token or without (personal
    fields are then searched, not refused), and on what earlier versions failed (500, or a
    redirect without a Location): a week after the start past Python's dates, the ten days
    before a day before year 1, products holding slashes. (One test per backend: a
    parametrized site would have pytest-twisted wrap Hypothesis's test twice.)"""
    for target, token in (("/api/search?start=9999-12-31", False),
                          ("/api/explosive/Firefox?day=0001-01-01", False),
                          ("/crashrates/%2F0", True), ("/topcrashers/a%2F%2Fb", False)):
        test = example(target=target, token=token)(test)
    return PROFILE(given(target=requests(), token=st.booleans())(test))


def check(site: Site, target: str, token: bool) -> None:
    """``target``'s answer is a page or a refusal, never a failure."""
    # (twisted.web drops a request line past 16 kB, as a proxy would refuse it first)
    assume(len(target) < 8000)
    status, headers, body = site.server.get(target, site.bearer() if token else None)
    assert status in (200, 400, 403, 404), (target, status, body[:300])
    assert b"Traceback" not in body
    if urllib.parse.urlsplit(target).path.startswith("/api/"):
        answer = json.loads(body)
        if status != 200:
            assert set(answer) == {"error"} and answer["error"], (target, answer)


@wild
def test_any_request_is_answered_or_refused_on_sqlite(sqliteSite, target, token):
    check(sqliteSite, target, token)


@wild
def test_any_request_is_answered_or_refused_on_postgresql(postgresSite, target, token):
    check(postgresSite, target, token)
