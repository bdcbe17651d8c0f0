"""Wild crash data on crash-stats' pages: whatever text a crash carries in the fields the pages
show (signature, product, version, OS, reason, build, add-on), once stored and rolled up, every
page renders it, and only escaped (SPEC 16: "crash-supplied text is escaped everywhere").

Each example stores one report through ``db.reports.addReports`` into the fake (the real
components over in-memory SQLite, synchronously), rolls its day up, and renders every page that
shows it through the view and its template, as ``crashdb serve`` does. Every drawn value holds a
tag (``<q>``): the tag must never reach a page as markup.
``CRASHDB_WILD_PROFILE=release`` draws 500 reports instead of CI's 40 (and
``CRASHDB_WILD_EXAMPLES=N`` N), as in test_wild_input.
"""

from __future__ import annotations

import datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from markupsafe import escape
from twisted.internet import defer

from crashdb import model
from crashdb.app.web import CrashStats, server
from crashdb.app.web.query import Query
from crashdb.test.fake.fakedb import FakeDBConnector
from crashdb.test.util.wild import wildSettings
from crashdb.validation import columnLength

PROFILE = wildSettings(ci=40, release=500)

UTC = datetime.UTC
DAY = datetime.timedelta(days=1)
TAG = "<q>"  # (no template writes a <q>)
SHOWN = ("signature", "product", "version", "os_name", "reason", "build")
# text a browser or a template might take for markup, and text that is merely unusual
PIECES = ("<", ">", "&", '"', "'", "`", "</textarea>", "<script>alert(1)</script>", "{{ 7*7 }}",
          "{% if %}", "%2F", "/", "\\", "..", "?", "#", "&amp;", "\u202e", "\u200b", "\t", "\n",
          "😀", "ü", "\ufffd", " ")
TEXT = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")


def hostile(length: int) -> st.SearchStrategy[str]:
    """A value of at most ``length`` characters holding :data:`TAG` amid markup and odd text."""
    room = (length - len(TAG)) // 2
    pieces = st.lists(st.one_of(st.sampled_from(PIECES), st.text(TEXT, max_size=6)), max_size=6)
    return st.builds(lambda before, after: "".join(before)[:room] + TAG + "".join(after)[:room],
                     pieces, pieces)


@st.composite
def reports(draw: st.DrawFn) -> dict[str, Any]:
    """One processed crash of yesterday whose shown fields are all hostile."""
    yesterday = datetime.datetime.now(UTC).date() - DAY
    report: dict[str, Any] = {
        "uuid": "00000000-0000-4000-8000-000000hostile",
        "date_processed": datetime.datetime(yesterday.year, yesterday.month, yesterday.day,
                                            12, tzinfo=UTC),
        "uptime": draw(st.integers(-5, 10**6)),
        "extensions": [{"extension_id": draw(hostile(100)), "extension_version": "1.0"}],
    }
    for name in SHOWN:
        report[name] = draw(hostile(columnLength(model.reports.c[name]) or 255))
    return report


def render(db: Any, view: Any, template: str, args: dict[str, str] | None = None,
           **kw: Any) -> str:
    """The page ``view`` renders with ``template`` for the query ``args``: a view's
    Deferreds have all fired by the time it returns, on the synchronous fake."""
    app = CrashStats(db)
    query = Query({k.encode(): [v.encode()] for k, v in (args or {}).items()})
    done = defer.ensureDeferred(view(app, query, False, **kw))
    failures: list[Any] = []
    done.addErrback(failures.append)
    if failures:
        failures[0].raiseException()
    data = done.result
    return app._render(template, {**data, "authorized": False, "form": query}).decode("utf-8")


@PROFILE
@given(report=reports())
def test_every_page_shows_wild_crash_text_escaped(report):
    db = FakeDBConnector()
    stored = db.reports.addReports([report])
    assert isinstance(stored.result, list), stored.result  # (the fake has answered already)
    day = report["date_processed"].date()
    assert db.rollups.runDay(day).result["signatures"] > 0
    product, signature = report["product"], report["signature"]
    pages = {
        "products": render(db, server.products, "products.html"),
        "topcrashers": render(db, server.topCrashers, "topcrashers.html", product=product),
        "signature": render(db, server.signature, "signature.html",
                            {"signature": signature, "product": product}),
        "report": render(db, server.report, "report.html", uuid=report["uuid"]),
        "search": render(db, server.search, "search.html",
                         {"product": "=" + product, "facet": "signature,os_name,addon"}),
        "explosive": render(db, server.explosive, "explosive.html",
                            {"day": day.isoformat()}, product=product),
        "crashrates": render(db, server.crashRates, "crashrates.html", product=product),
    }
    for name, page in pages.items():
        assert TAG not in page, name
    # the text is there, escaped, where a person looks for it
    assert str(escape(signature)) in pages["topcrashers"]
    assert str(escape(signature)) in pages["signature"]
    for field in SHOWN:
        assert str(escape(report[field])) in pages["report"], field
