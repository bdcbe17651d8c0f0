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
