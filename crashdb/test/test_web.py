"""``crashdb serve`` over HTTP: the JSON API against the components, errors, security headers,
escaping of hostile crash data, personal data and API tokens (SPEC 16)."""

from __future__ import annotations

import datetime
import http.client
import json
import re
import sqlite3
import urllib.parse

import pytest
import pytest_twisted

from crashdb.app.web import html
from crashdb.app.web.privacy import PERSONAL_COLUMNS, isPersonalRawKey
from crashdb.connector import DBConnector
from crashdb.test.util import sitedata
from crashdb.test.util.webserver import Server, Site, crashdbCommand

UTC = datetime.UTC
DAY = datetime.timedelta(days=1)
PAGES = ("/", "/topcrashers/Firefox", f"/report/{sitedata.HOSTILE_UUID}",
         "/signature?" + urllib.parse.urlencode({"signature": sitedata.SCRIPT_SIGNATURE}),
         "/search?signature=~alert")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    site = Site(tmp_path_factory.mktemp("web"))
    yield site
    site.server.stop()


@pytest.fixture
def db(site):
    db = DBConnector(site.url)
    pytest_twisted.blockon(db.setup())
    yield db
    pytest_twisted.blockon(db.stop())


def roundTrip(value):
    """``value`` as the API sends it: dates become ISO strings."""
    return json.loads(json.dumps(value, default=lambda v: v.isoformat()))


def test_serves_loopback_only_by_default(site):
    assert site.server.base.startswith("http://127.0.0.1:")
    usage = crashdbCommand("serve", "--help").stdout
    assert "127.0.0.1" in usage


@pytest.mark.parametrize("path", [*PAGES, "/api/products", "/static/crashstats.css",
                                  "/no/such/page", "/api/report/nope", "/api/topcrashers/F?days=x",
                                  "/explosive/Firefox", "/crashrates/Firefox"])
def test_every_response_carries_the_security_headers(site, path):
    _, headers, _ = site.server.get(path)
    policy = headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "script-src" not in policy and "unsafe-inline" not in policy
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"


def test_content_types(site):
    assert site.server.get("/")[1]["Content-Type"] == "text/html; charset=utf-8"
    assert site.server.get("/api/products")[1]["Content-Type"] == "application/json"
    assert site.server.get("/static/crashstats.css")[1]["Content-Type"].startswith("text/css")


@pytest.mark.parametrize("path, field", [
    ("/api/topcrashers/Firefox?days=abc", "days"),
    ("/api/topcrashers/Firefox?days=0", "days"),
    ("/api/topcrashers/" + "x" * 31, "product"),  # the component's own message
    ("/api/explosive/Firefox?day=yesterday", "day"),
    ("/api/signature", "signature"),
    ("/api/search?uptime=%3Esoon", "uptime"),
])
def test_bad_input_is_400_with_the_message_as_json(site, path, field):
    status, headers, body = site.server.get(path)
    assert status == 400
    error = json.loads(body)["error"]
    assert f"field '{field}'" in error
    assert "Traceback" not in error


def test_a_bad_page_request_is_a_400_page_without_traceback(site):
    status, headers, body = site.server.get("/topcrashers/Firefox?days=-1")
    assert status == 400
    assert headers["Content-Type"].startswith("text/html")
    assert b"must be from 1 to 366" in body and b"Traceback" not in body


def test_a_failure_is_a_bare_500_and_its_traceback_goes_to_stderr(tmp_path):
    # a database missing a table the crash-rates page reads: a failure no input causes
    url = f"sqlite:///{tmp_path / 'broken.sqlite'}"
    assert crashdbCommand("upgrade-db", "--db", url).returncode == 0
    with sqlite3.connect(tmp_path / "broken.sqlite") as conn:
        conn.execute("DROP TABLE product_adu")
    access = tmp_path / "access.log"
    server = Server(url, "--access-log", str(access))
    try:
        api = server.get("/api/crashrates/Firefox")
        page = server.get("/crashrates/Firefox")
        fine = server.get("/api/products")
    finally:
        errors = server.stop()
    assert api[0] == 500
    assert json.loads(api[2]) == {"error": "internal error (logged by the server)"}
    assert page[0] == 500 and page[1]["Content-Type"].startswith("text/html")
    assert b"product_adu" not in page[2] and b"Traceback" not in page[2]
    assert fine[0] == 200
    # the operator sees both failures, with their cause; the access log has every request
    assert errors.count("failed to answer") == 2 and "Traceback" in errors
    assert "no such table: product_adu" in errors
    logged = [re.search(r'"GET (\S+) HTTP/1.1" (\d{3}) ', line).groups()  # type: ignore[union-attr]
              for line in access.read_text().splitlines()]
    assert logged == [("/api/crashrates/Firefox", "500"), ("/crashrates/Firefox", "500"),
                      ("/api/products", "200")]


@pytest.mark.parametrize("path", ["/api/report/00000000-0000-0000-0000-000000000000",
                                  "/api/no-such-thing", "/report/00000000-0000-0000-0000-00"])
def test_unknown_things_are_404(site, path):
    status, headers, body = site.server.get(path)
    assert status == 404
    if path.startswith("/api/"):
        assert "error" in json.loads(body)


def test_a_product_may_hold_slashes(site):
    # a product is crash data; its link escapes the slash, which twisted.web decodes
    for product in ("a/b", "/x", "a//b"):
        path = urllib.parse.quote(product, safe="")
        assert site.server.json(f"/api/topcrashers/{path}")["product"] == product
        assert site.server.json(f"/api/crashrates/{path}")["product"] == product
        assert site.server.get(f"/explosive/{path}")[0] == 200


def test_a_redirect_says_where_to(site):
    address = urllib.parse.urlsplit(site.server.base)
    conn = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
    try:  # (urllib would follow it)
        conn.request("GET", "/static")
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    assert response.status == 308
    assert response.getheader("Location") == site.server.base + "/static/"


def test_it_is_read_only(site):
    status, _, body = site.server.get("/api/products", method="POST")
    assert status == 405
    assert json.loads(body) == {"error": "Method Not Allowed"}


@pytest_twisted.inlineCallbacks
def test_products_api_equals_the_components(site, db):
    answer = site.server.json("/api/products")
    products = yield db.tcbs.getProducts()
    assert [{"product": p["product"], "versions": p["versions"]} for p in answer["products"]] \
        == products
    firefox = next(p for p in answer["products"] if p["product"] == "Firefox")
    end = datetime.datetime.now(UTC).date() + DAY
    top = yield db.tcbs.getTopCrashers("Firefox", start_day=end - 7 * DAY, end_day=end, limit=5)
    assert firefox["top"] == roundTrip(top)


@pytest_twisted.inlineCallbacks
def test_topcrashers_api_equals_the_components(site, db):
    answer = site.server.json("/api/topcrashers/Firefox?version=16.0.1&days=14")
    end = datetime.datetime.now(UTC).date() + DAY
    top = yield db.tcbs.getTopCrashers("Firefox", version="16.0.1", start_day=end - 14 * DAY,
                                       end_day=end, limit=50)
    daily = yield db.tcbs.getDailyCounts("Firefox", [c["signature"] for c in top],
                                         version="16.0.1", start_day=end - 14 * DAY, end_day=end)
    assert len(top) > 5
    assert answer["crashers"] == [{**c, "daily": daily[c["signature"]]} for c in top]
    assert all(len(c["daily"]) == 14 for c in answer["crashers"])
    assert (answer["start_day"], answer["end_day"]) == ((end - 14 * DAY).isoformat(),
                                                        end.isoformat())


@pytest_twisted.inlineCallbacks
def test_report_api_equals_the_components_without_personal_data(site, db):
    uuid = sitedata.HOSTILE_UUID
    answer = site.server.json(f"/api/report/{uuid}")
    report = yield db.reports.getReport(uuid)
    extensions = yield db.extensions.getExtensions(report["id"], report["date_processed"])
    raw = yield db.rawcrashes.getRawCrash(uuid)
    assert answer["report"] == roundTrip(
        {k: v for k, v in report.items() if k not in PERSONAL_COLUMNS})
    assert answer["extensions"] == roundTrip(extensions)
    assert answer["raw_crash"] == {k: v for k, v in raw.items() if not isPersonalRawKey(k)}
    assert set(answer["raw_crash"]) == set(raw) - {"URL", "Comments", "EMAIL", "userid"}


def test_personal_data_only_with_a_valid_token(site):
    uuid = sitedata.HOSTILE_UUID
    plain = site.server.json(f"/api/report/{uuid}")
    assert PERSONAL_COLUMNS.isdisjoint(plain["report"])
    text = json.dumps(plain)
    for secret in (sitedata.HOSTILE_EMAIL, "alert(2)", "alert(3)", "user-<b>"):
        assert secret not in text
    page = site.server.get(f"/report/{uuid}")[2].decode()
    assert sitedata.HOSTILE_EMAIL not in page and "alert(2)" not in page

    full = site.server.json(f"/api/report/{uuid}", site.bearer())
    assert full["report"]["email"] == sitedata.HOSTILE_EMAIL
    assert full["report"]["url"] == sitedata.HOSTILE_URL
    assert full["report"]["user_comments"] == sitedata.HOSTILE_COMMENTS
    assert full["raw_crash"]["EMAIL"] == sitedata.HOSTILE_EMAIL
    assert full["raw_crash"]["userid"] == sitedata.HOSTILE_USER_ID
    page = site.server.get(f"/report/{uuid}", site.bearer())[2].decode()
    assert sitedata.HOSTILE_EMAIL in page


@pytest.mark.parametrize("header", ["Bearer wrong", "Bearer ", "Basic dGVzdGVyOng="])
def test_an_invalid_token_is_401(site, header):
    status, headers, body = site.server.get("/api/products", {"Authorization": header})
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert json.loads(body) == {"error": "invalid API token"}


@pytest.mark.parametrize("query", [
    "url=~facebook", "email=__exists__", "user_id=1", "user_comments=~crash",
    "raw.Email=x", "raw.URL=~http", "raw.comments=x", "raw.USERID=x",
    "facet=url", "facet=raw.email", "column=user_comments", "sort=-email",
])
def test_a_search_naming_personal_fields_needs_a_token(site, query):
    status, _, body = site.server.get(f"/api/search?{query}")
    assert status == 403
    assert "personal data" in json.loads(body)["error"]
    assert site.server.get(f"/search?{query}")[0] == 403


@pytest.mark.parametrize("path", PAGES)
def test_hostile_text_is_escaped(site, path):
    body = site.server.get(path, site.bearer())[2].decode()
    assert "<script>" not in body
    assert "onerror=alert" not in body.replace("onerror=alert(4)&gt;", "")  # only as text
    assert "<svg onload" not in body and "<marquee>" not in body and "</textarea><" not in body
    if path != "/":
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


def test_hostile_report_shows_every_hostile_value_as_text(site):
    body = site.server.get(f"/report/{sitedata.HOSTILE_UUID}", site.bearer())[2].decode()
    for value in (sitedata.HOSTILE_URL, sitedata.HOSTILE_COMMENTS, "<marquee>theme</marquee>",
                  '"><svg onload=alert(5)>', "EXCEPTION_<ACCESS>_VIOLATION"):
        escaped = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        assert escaped.replace('"', "&#34;") in body or escaped in body, value


def test_signature_links_carry_the_signature_encoded(site):
    body = site.server.get("/topcrashers/Firefox")[2].decode()
    encoded = urllib.parse.urlencode({"signature": sitedata.TEMPLATE_SIGNATURE,
                                      "product": "Firefox"})
    assert f'href="/signature?{encoded}"' in body.replace("&amp;", "&")


def test_tokens_command_lists_and_revokes(site):
    made = crashdbCommand("tokens", "create", "short-lived", "--db", site.url)
    assert made.returncode == 0, made.stderr
    token = made.stdout.splitlines()[0]
    assert site.server.get("/api/products", site.bearer(token))[0] == 200
    listed = crashdbCommand("tokens", "list", "--db", site.url)
    assert "short-lived" in listed.stdout and "tester" in listed.stdout
    assert token not in listed.stdout and site.token not in listed.stdout
    again = crashdbCommand("tokens", "create", "short-lived", "--db", site.url)
    assert again.returncode == 1 and "exists" in again.stderr
    revoked = crashdbCommand("tokens", "revoke", "short-lived", "--db", site.url)
    assert revoked.returncode == 0, revoked.stderr
    assert site.server.get("/api/products", site.bearer(token))[0] == 401
    missing = crashdbCommand("tokens", "revoke", "short-lived", "--db", site.url)
    assert missing.returncode == 1
    assert missing.stderr.strip() == "crashdb: error: no token named 'short-lived'"


def test_serve_passes_replicas_to_the_connector(site):
    refused = crashdbCommand("serve", "--db", site.url, "--replica", site.url, "--port", "0")
    assert refused.returncode == 1
    assert refused.stderr.startswith("crashdb: error: field 'replica_urls': ")
    assert len(refused.stderr.strip().splitlines()) == 1


def _period(days: int) -> dict[str, datetime.date]:
    end = datetime.datetime.now(UTC).date() + DAY
    return {"start_day": end - days * DAY, "end_day": end}


@pytest_twisted.inlineCallbacks
def test_signature_api_equals_the_components(site, db):
    top = site.server.json("/api/topcrashers/Firefox")["crashers"][0]["signature"]
    query = urllib.parse.urlencode({"signature": top, "product": "Firefox", "days": 14})
    answer = site.server.json(f"/api/signature?{query}")
    period = _period(14)
    lifecycle = yield db.signatures.getSignature(top)
    summary = yield db.signatures.getSummary(top, product="Firefox", **period)
    correlations = yield db.signatures.getCorrelations(top, "Firefox", **period)
    daily = yield db.tcbs.getDailyCounts("Firefox", [top], **period)
    assert answer["lifecycle"] == roundTrip(lifecycle)
    assert answer["summary"] == roundTrip(summary)
    assert answer["correlations"] == roundTrip(correlations)
    assert [d["count"] for d in answer["daily"]] == daily[top]
    assert answer["total"] == summary["count"] == sum(daily[top]) > 0
    reports = yield db.reports.getReports(product="Firefox", signature=top,
                                          start=answer_start(answer), limit=1000)
    assert [r["uuid"] for r in answer["reports"]] == \
        [r["uuid"] for r in reversed(reports)][:50]
    assert PERSONAL_COLUMNS.isdisjoint(answer["reports"][0])


def answer_start(answer) -> datetime.datetime:
    return datetime.datetime.fromisoformat(answer["start_day"]).replace(tzinfo=UTC)


@pytest_twisted.inlineCallbacks
def test_signature_without_a_product_sums_its_products_and_has_no_correlations(site, db):
    query = urllib.parse.urlencode({"signature": "js::gc::MarkObjectUnbarriered"})
    answer = site.server.json(f"/api/signature?{query}")
    assert answer["correlations"] is None
    lifecycle = yield db.signatures.getSignature("js::gc::MarkObjectUnbarriered")
    total = 0
    for product in {v["product"] for v in lifecycle["versions"]}:
        counts = yield db.tcbs.getDailyCounts(product, ["js::gc::MarkObjectUnbarriered"],
                                              **_period(7))
        total += sum(counts["js::gc::MarkObjectUnbarriered"])
    assert sum(d["count"] for d in answer["daily"]) == total == answer["total"]


def test_an_unknown_signature_is_404(site):
    status, _, body = site.server.get("/api/signature?signature=never%20seen")
    assert status == 404 and json.loads(body) == {"error": "no signature 'never seen'"}


@pytest_twisted.inlineCallbacks
def test_search_api_equals_the_component(site, db):
    answer = site.server.json(
        "/api/search?product=Firefox&uptime=%3C600&signature=!%400x0&facet=os_name,uptime"
        "&days=14&limit=20")
    period = _period(14)
    start = datetime.datetime.combine(period["start_day"], datetime.time(), UTC)
    end = datetime.datetime.combine(period["end_day"], datetime.time(), UTC)
    found = yield db.search.search(
        start, end, filters=[("product", "=", "Firefox"), ("signature", "!=", "@0x0"),
                             ("uptime", "<", 600)],
        facets=["os_name", "uptime", "_histogram.day"], limit=20)
    assert answer["total"] == found["total"] > 20
    assert answer["hits"] == roundTrip(found["hits"])
    assert answer["facets"] == roundTrip(found["facets"])
    assert answer["rolled_up"] is False  # an uptime filter: the rollup cannot answer it


@pytest_twisted.inlineCallbacks
def test_a_product_search_takes_its_facets_from_the_rollup(site, db):
    answer = site.server.json("/api/search?product=Firefox&version=17.0b3&days=14"
                              "&facet=signature,os_name,uptime&limit=20")
    assert answer["rolled_up"] is True
    period = _period(14)
    start = datetime.datetime.combine(period["start_day"], datetime.time(), UTC)
    end = datetime.datetime.combine(period["end_day"], datetime.time(), UTC)
    facets = ["signature", "os_name", "uptime", "_histogram.day"]
    rolled = yield db.search.rolledUpFacets("Firefox", version="17.0b3", facets=facets,
                                            **period)
    found = yield db.search.search(start, end, facets=facets, limit=20, filters=[
        ("product", "=", "Firefox"), ("version", "=", "17.0b3")])
    assert answer["facets"] == roundTrip(rolled["facets"])
    # every day was rolled up after its reports were stored: the same as counting them
    assert rolled["facets"] == found["facets"] and rolled["total"] == found["total"] > 20
    assert answer["total"] == found["total"]
    assert answer["hits"] == roundTrip(found["hits"])


def test_search_with_a_token_may_name_personal_fields(site):
    answer = site.server.json("/api/search?url=__exists__&facet=url&column=uuid&column=url",
                              site.bearer())
    assert answer["total"] > 0
    assert all(hit["url"] for hit in answer["hits"])
    assert sitedata.HOSTILE_URL in [term["term"] for term in answer["facets"]["url"]]


@pytest_twisted.inlineCallbacks
def test_explosive_and_crash_rates_apis_equal_the_components(site, db):
    yesterday = datetime.datetime.now(UTC).date() - DAY
    answer = site.server.json(f"/api/explosive/Firefox?day={yesterday}")
    explosive = yield db.crashrates.getExplosive("Firefox", yesterday)
    assert answer["explosive"] == roundTrip(explosive)
    assert answer["explosive"][0]["signature"] == \
        "mozilla::layers::ImageBridgeChild::FlushAllImages"
    rates = site.server.json("/api/crashrates/Firefox?version=16.0.1&days=10")
    expected = yield db.crashrates.getCrashRates("Firefox", version="16.0.1", **_period(10))
    assert rates["rates"] == roundTrip(expected)
    assert len(rates["rates"]) == 10 and all(r["adu"] for r in rates["rates"])


@pytest.mark.parametrize("path", [
    "/api/signature?signature=%400x0&product=Firefox&version=" + "9" * 17,
    "/api/signature?signature=%400x0&version=16.0",
    "/api/crashrates/Firefox?version=" + "9" * 17,
])
def test_bad_input_to_calls_made_together_is_still_400(site, path):
    status, _, body = site.server.get(path)
    assert status == 400, body
    assert "field 'version'" in json.loads(body)["error"]


def test_rows_built_in_python_escape_as_the_templates_do():
    crasher = {"rank": 1, "previous_rank": None, "signature": '<b>x</b>"&y', "count": 3,
               "percent": 37.5, "win_count": 1, "mac_count": 1, "lin_count": 1,
               "hang_count": 0, "startup_count": 0, "daily": [1, 2]}
    rows = str(html.topCrasherRows([crasher, {**crasher, "signature": ""}], "Fire&fox", None))
    assert "<b>" not in rows and "&lt;b&gt;x&lt;/b&gt;&#34;&amp;y</a>" in rows
    assert 'href="/signature?signature=%3Cb%3Ex%3C%2Fb%3E%22%26y&amp;product=Fire%26fox"' in rows
    assert ">(no signature)</a>" in rows and '<td class="move">new</td>' in rows
    assert '<td class="num">37.50</td>' in rows
    reports = str(html.reportRows([{"uuid": 'u"/<x>', "date_processed": None, "uptime": None,
                                    "product": "<p>", "version": None, "build": "b&",
                                    "os_name": None, "reason": "</td><script>"}]))
    assert "<script>" not in reports and "<p>" not in reports
    assert 'href="/report/u%22%2F%3Cx%3E">u&#34;/&lt;x&gt;</a>' in reports
    assert "<td>&lt;p&gt;</td><td></td><td>b&amp;</td>" in reports


def test_rate_rows_show_a_day_without_adu_as_a_dash():
    day = datetime.date(2026, 11, 30)
    rows = str(html.rateRows([
        {"day": day, "crashes": 12, "adjusted": 120.0, "adu": 4000, "per_100_adu": 3.0},
        {"day": day + DAY, "crashes": 5, "adjusted": 5.25, "adu": None, "per_100_adu": None},
    ])).splitlines()
    assert rows == [
        '<tr><td>2026-11-30</td><td class="num">12</td><td class="num">120.0</td>'
        '<td class="num">4000</td><td class="num">3.000</td></tr>',
        '<tr><td>2026-12-01</td><td class="num">5</td><td class="num">5.2</td>'
        '<td class="num">—</td><td class="num">—</td></tr>',
    ]
