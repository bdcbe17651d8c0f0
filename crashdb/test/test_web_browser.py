"""crash-stats in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``, named by path) drives ``crashdb serve`` over a database the demo's
generator filled. Pages show the components' numbers, graphs are drawn, links navigate, the
console stays clean and hostile crash data stays text."""

from __future__ import annotations

import datetime

import pytest
import pytest_twisted
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from crashdb.connector import DBConnector
from crashdb.test.util import sitedata
from crashdb.test.util.webserver import Site, newBrowser

UTC = datetime.UTC
DAY = datetime.timedelta(days=1)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    site = Site(tmp_path_factory.mktemp("browser"))
    yield site
    site.server.stop()


@pytest.fixture(scope="module")
def chromium():
    browser = newBrowser()
    yield browser
    browser.quit()


@pytest.fixture
def browser(chromium, site):
    """The browser, with its console checked for errors after the test."""
    chromium.get_log("browser")  # what earlier tests left
    yield chromium
    errors = [entry for entry in chromium.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []


@pytest.fixture
def db(site):
    db = DBConnector(site.url)
    pytest_twisted.blockon(db.setup())
    yield db
    pytest_twisted.blockon(db.stop())


def week() -> tuple[datetime.date, datetime.date]:
    end = datetime.datetime.now(UTC).date() + DAY
    return end - 7 * DAY, end


def assertNoAlert(browser) -> None:
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 - reading it is the check


def assertGraphsDrawn(browser, selector: str, minimum: int) -> None:
    graphs = browser.find_elements(By.CSS_SELECTOR, selector)
    assert len(graphs) >= minimum
    for graph in graphs:
        assert graph.size["width"] > 0 and graph.size["height"] > 0
        shapes = graph.find_elements(By.CSS_SELECTOR, "polyline, rect, circle")
        assert shapes, graph.get_attribute("outerHTML")[:200]
        for line in graph.find_elements(By.CSS_SELECTOR, "polyline"):
            assert len(line.get_attribute("points").split()) >= 2


@pytest_twisted.inlineCallbacks
def test_products_page_shows_the_components_answers(browser, site, db):
    browser.get(site.server.base + "/")
    products = yield db.tcbs.getProducts()
    start, end = week()
    shown = browser.find_elements(By.CSS_SELECTOR, "section.product")
    assert [s.find_element(By.TAG_NAME, "h2").text for s in shown] == \
        [p["product"] for p in products]
    for section, product in zip(shown, products, strict=True):
        versions = [a.text for a in section.find_elements(By.CSS_SELECTOR, ".versions a")]
        assert versions == product["versions"]
        top = yield db.tcbs.getTopCrashers(product["product"], start_day=start, end_day=end,
                                           limit=5)
        rows = section.find_elements(By.CSS_SELECTOR, "ol.top li")
        assert [(r.find_element(By.TAG_NAME, "a").text, r.find_element(By.CLASS_NAME, "num").text)
                for r in rows] == [(c["signature"], str(c["count"])) for c in top]


@pytest_twisted.inlineCallbacks
def test_top_crashers_page_numbers_moves_and_sparklines(browser, site, db):
    browser.get(site.server.base + "/topcrashers/Firefox")
    start, end = week()
    top = yield db.tcbs.getTopCrashers("Firefox", start_day=start, end_day=end, limit=50)
    daily = yield db.tcbs.getDailyCounts("Firefox", [c["signature"] for c in top],
                                         start_day=end - 14 * DAY, end_day=end)
    rows = browser.find_elements(By.CSS_SELECTOR, "table.topcrashers tbody tr")
    assert len(rows) == len(top) > 10
    for row, crasher in zip(rows, top, strict=True):
        cells = [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
        assert cells[0] == str(crasher["rank"])
        assert cells[2] == crasher["signature"]
        assert cells[3:10] == [str(crasher["count"]), f"{crasher['percent']:.2f}",
                               *(str(crasher[k]) for k in ("win_count", "mac_count",
                                                           "lin_count", "hang_count",
                                                           "startup_count"))]
        previous = crasher["previous_rank"]
        assert cells[1] == ("new" if previous is None else
                            "=" if previous == crasher["rank"] else
                            f"{previous - crasher['rank']:+d}")
        title = row.find_element(By.CSS_SELECTOR, "svg.spark title")
        expected = ", ".join(str(n) for n in daily[crasher["signature"]])
        assert title.get_attribute("textContent").endswith(": " + expected)
    assertGraphsDrawn(browser, "svg.spark", len(top))


def test_links_navigate(browser, site):
    browser.get(site.server.base + "/")
    browser.find_element(By.LINK_TEXT, "Thunderbird").click()
    assert browser.current_url == site.server.base + "/topcrashers/Thunderbird"
    assert browser.find_element(By.TAG_NAME, "h1").text == \
        "Top crashers: Thunderbird (all versions)"
    browser.find_element(By.LINK_TEXT, "14 days").click()
    assert browser.current_url.endswith("/topcrashers/Thunderbird?days=14")
    browser.find_element(By.LINK_TEXT, "Products").click()
    assert browser.current_url == site.server.base + "/"
    browser.find_element(By.CSS_SELECTOR, "section.product .versions a").click()
    assert "?version=" in browser.current_url


def test_report_page_shows_the_report_and_its_raw_crash(browser, site):
    uuid = site.uuids[0]
    browser.get(f"{site.server.base}/report/{uuid}")
    fields = {row.find_element(By.TAG_NAME, "th").text: row.find_element(By.TAG_NAME, "td").text
              for row in browser.find_elements(By.CSS_SELECTOR, "table.fields tr")}
    assert fields["uuid"] == uuid
    assert fields["product"] and fields["signature"]
    assert "email" not in fields and "url" not in fields
    raw = browser.find_element(By.CSS_SELECTOR, "pre.raw").text
    assert '"ProductName"' in raw


def test_a_planted_script_signature_is_text_and_never_runs(browser, site):
    browser.get(site.server.base + "/topcrashers/Firefox?days=1")
    link = browser.find_element(By.LINK_TEXT, sitedata.SCRIPT_SIGNATURE)
    assert link.text == "<script>alert(1)</script>"
    assertNoAlert(browser)
    assert browser.find_elements(By.TAG_NAME, "script") == []

    browser.get(f"{site.server.base}/report/{sitedata.HOSTILE_UUID}")
    assertNoAlert(browser)
    assert browser.find_elements(By.TAG_NAME, "script") == []
    assert browser.find_elements(By.TAG_NAME, "marquee") == []
    heading = browser.find_element(By.CSS_SELECTOR, "main p a.sig")
    assert heading.text == sitedata.SCRIPT_SIGNATURE
    assert sitedata.HOSTILE_URL not in browser.page_source
    addon = browser.find_element(By.CSS_SELECTOR, "table.addons td a")
    assert addon.text == '"><svg onload=alert(5)>'
    assert browser.find_elements(By.CSS_SELECTOR, "svg[onload]") == []


@pytest_twisted.inlineCallbacks
def test_signature_page_shows_lifecycle_graph_facets_and_reports(browser, site, db):
    start, end = week()
    top = yield db.tcbs.getTopCrashers("Firefox", start_day=start, end_day=end, limit=1)
    browser.get(site.server.base + "/topcrashers/Firefox")
    browser.find_element(By.LINK_TEXT, top[0]["signature"]).click()
    assert browser.find_element(By.TAG_NAME, "h1").text == top[0]["signature"]
    summary = yield db.signatures.getSummary(top[0]["signature"], product="Firefox",
                                             start_day=start, end_day=end)
    assert browser.find_element(By.CSS_SELECTOR, ".total").text == str(summary["count"])
    assert browser.find_element(By.CSS_SELECTOR, ".installations").text == \
        str(summary["installations"])
    facets = browser.find_elements(By.CSS_SELECTOR, "section.facet")
    assert [f.find_element(By.TAG_NAME, "h3").text for f in facets] == list(summary["facets"])
    for section, terms in zip(facets, summary["facets"].values(), strict=True):
        bars = section.find_elements(By.CSS_SELECTOR, "rect.bar")
        assert len(bars) == len(terms)
    assertGraphsDrawn(browser, "svg.chart", 1)
    assertGraphsDrawn(browser, "svg.bars", 1)
    dots = browser.find_elements(By.CSS_SELECTOR, "svg.chart circle.dot title")
    assert sum(int(d.get_attribute("textContent").rsplit(": ", 1)[1]) for d in dots) == \
        summary["count"]
    reports = browser.find_elements(By.CSS_SELECTOR, "table.reports tbody tr")
    assert len(reports) == min(50, summary["count"])
    uuid = reports[0].find_element(By.CSS_SELECTOR, "a.uuid").text
    reports[0].find_element(By.CSS_SELECTOR, "a.uuid").click()
    assert browser.find_element(By.TAG_NAME, "h1").text == f"Report {uuid}"


@pytest_twisted.inlineCallbacks
def test_search_page_shows_total_histogram_facets_and_hits(browser, site, db):
    browser.get(site.server.base + "/search?product=Thunderbird&facet=os_name,uptime")
    start, end = week()
    found = yield db.search.search(
        datetime.datetime.combine(start, datetime.time(), UTC),
        datetime.datetime.combine(end, datetime.time(), UTC),
        filters=[("product", "=", "Thunderbird")], facets=["os_name", "uptime"], limit=50)
    assert browser.find_element(By.CSS_SELECTOR, ".total").text == str(found["total"])
    assert [f.find_element(By.TAG_NAME, "h3").text
            for f in browser.find_elements(By.CSS_SELECTOR, "section.facet")] == \
        ["os_name", "uptime"]
    assertGraphsDrawn(browser, "svg.chart", 1)
    assertGraphsDrawn(browser, "svg.bars", 2)
    rows = browser.find_elements(By.CSS_SELECTOR, "table.hits tbody tr")
    assert [r.find_element(By.CSS_SELECTOR, "a.uuid").text for r in rows] == \
        [hit["uuid"] for hit in found["hits"]]
    box = browser.find_element(By.NAME, "signature")
    box.send_keys("~js::")
    box.submit()  # (Selenium's submit does not wait for the page it asks for)
    WebDriverWait(browser, 30).until(lambda b: "signature=%7Ejs%3A%3A" in b.current_url)
    assert all("js::" in r.find_elements(By.TAG_NAME, "td")[4].text
               for r in browser.find_elements(By.CSS_SELECTOR, "table.hits tbody tr"))


@pytest_twisted.inlineCallbacks
def test_explosive_and_crash_rate_pages(browser, site, db):
    browser.get(site.server.base + "/")
    browser.find_element(By.CSS_SELECTOR, "section.product a[href='/explosive/Firefox']").click()
    yesterday = datetime.datetime.now(UTC).date() - DAY
    explosive = yield db.crashrates.getExplosive("Firefox", yesterday)
    rows = browser.find_elements(By.CSS_SELECTOR, "table.explosive tbody tr")
    assert [r.find_element(By.TAG_NAME, "td").text for r in rows] == \
        [e["signature"] for e in explosive]
    assert rows[0].find_elements(By.TAG_NAME, "td")[1].text == f"{explosive[0]['one_day']:.2f}"
    assertGraphsDrawn(browser, "svg.spark", len(explosive))

    browser.get(site.server.base + "/crashrates/Firefox")
    start = datetime.datetime.now(UTC).date() + DAY - 28 * DAY
    rates = yield db.crashrates.getCrashRates("Firefox", start_day=start,
                                              end_day=start + 28 * DAY)
    cells = [[c.text for c in r.find_elements(By.TAG_NAME, "td")]
             for r in browser.find_elements(By.CSS_SELECTOR, "table.rates tbody tr")]
    assert [(c[0], c[1]) for c in cells] == [(r["day"].isoformat(), str(r["crashes"]))
                                             for r in rates]
    assertGraphsDrawn(browser, "svg.chart", 2)
