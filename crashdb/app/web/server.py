"""crash-stats for crashdb: the pages and the JSON API of ``crashdb serve`` (SPEC 16).

Each view is one function that gathers component results into a dict; its page renders that dict
with a template (Jinja2, autoescaping every value), its ``/api/...`` twin returns it as JSON.
Views call only the public component API: no SQL here, and no component knows about HTTP.

Every response carries the headers of :data:`SECURITY_HEADERS` (set by :class:`SecureRequest`
before any route runs, so error pages and static files have them too). Bad input is HTTP 400
with ``{"error": ...}`` (the component's own message), an unknown thing 404, personal data
asked for without a token 403, and an unexpected failure a bare 500, logged, never shown.
"""

from __future__ import annotations

import datetime
import functools
import json
import pathlib
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any, cast

import jinja2
from klein import Klein
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, pages, resource, server, static
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter, RequestRedirect

from crashdb.app.web import svg
from crashdb.app.web.cache import ResponseCache
from crashdb.app.web.html import (
    queryString,
    rateRows,
    reportRows,
    signatureLink,
    topCrasherRows,
)
from crashdb.app.web.privacy import (
    PersonalDataError,
    publicRawCrash,
    publicReport,
    refusePersonalFields,
)
from crashdb.app.web.query import DAY, Query, searchFields, today
from crashdb.exceptions import InvalidInputError
from crashdb.search import ROLLED_UP_FACETS

HERE = pathlib.Path(__file__).parent
SECURITY_HEADERS = {
    # no script at all, style only from our own sheet, nothing framed, nothing sent elsewhere
    b"Content-Security-Policy": b"default-src 'none'; style-src 'self'; img-src 'self'; "
                                b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    b"X-Content-Type-Options": b"nosniff",
    b"X-Frame-Options": b"DENY",
    b"Referrer-Policy": b"no-referrer",
    b"Vary": b"Authorization",
}
SPARK_DAYS = 14
REPORT_COLUMNS = ("uuid", "date_processed", "product", "version", "build", "os_name",
                  "reason", "uptime")
SIGNATURE_REPORTS = 50
MIDNIGHT = datetime.time(tzinfo=datetime.UTC)
HTML = b"text/html; charset=utf-8"
JSON = b"application/json"

log = Logger()


class NotFoundError(Exception):
    """The thing a request names does not exist (HTTP 404)."""


class AuthorizationError(Exception):
    """A request bore a token that is not valid (HTTP 401)."""


class SecureRequest(server.Request):
    """A request whose response carries :data:`SECURITY_HEADERS`, whatever answers it."""

    def process(self) -> None:
        for name, value in SECURITY_HEADERS.items():
            self.setHeader(name, value)
        super().process()


class Site(server.Site):
    """twisted.web's site, writing an access log only to a file it was given: without one,
    Site would format a line for every request and hand it to the global log, where
    ``crashdb serve`` keeps only warnings and failures (the reverse proxy logs access)."""

    def log(self, request: http.Request) -> None:
        if self.logPath is not None:
            super().log(request)


class NameConverter(BaseConverter):
    """A path segment naming a product: any text, slashes included (a product is crash data,
    so ``a/b`` or ``/x`` is possible; its link escapes the slash as ``%2F``, which twisted.web
    decodes before routing)."""

    part_isolating = False
    regex = ".+"


class StaticFiles(static.File):
    """The style sheet and icon: files only, no directory listings."""

    def directoryListing(self) -> resource.IResource:
        return pages.notFound()


def _jsonValue(value: Any) -> Any:
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def toJson(data: Any) -> bytes:
    return json.dumps(data, default=_jsonValue, ensure_ascii=True).encode("ascii")


def prettyJson(data: Any) -> str:
    """Indented JSON text, for people (the template escapes it)."""
    return json.dumps(data, default=_jsonValue, indent=2, sort_keys=True, ensure_ascii=False)


async def together(deferreds: list[defer.Deferred]) -> list[Any]:
    """The results of ``deferreds`` run together; the first failure as itself (an
    InvalidInputError stays one, for its 400), never wrapped in FirstError."""
    try:
        return await defer.gatherResults(deferreds, consumeErrors=True)
    except defer.FirstError as error:
        error.subFailure.raiseException()
        raise  # (raiseException always raises)


def _days(start: datetime.date, end: datetime.date) -> list[datetime.date]:
    return [start + n * DAY for n in range((end - start).days)]


View = Callable[..., Awaitable[dict[str, Any]]]


class CrashStats:
    """The web application over ``db`` (a set-up :class:`~crashdb.connector.DBConnector`).

    The rollup-backed pages (``cached=True`` views) are kept rendered for ``cache_seconds``
    (:mod:`~crashdb.app.web.cache`; 0, the default, renders every request); ``clock`` is the
    cache's."""

    app = Klein()
    app.url_map.converters["name"] = NameConverter
    app.url_map.merge_slashes = False  # "a//b" is a name, not a path to tidy up

    def __init__(self, db: Any, cache_seconds: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.cache = ResponseCache(cache_seconds, clock=clock) if cache_seconds > 0 else None
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,  # every value, in every template
            undefined=jinja2.StrictUndefined,
            auto_reload=False,  # the package's own files: no stat of each per page rendered
        )
        self.templates.globals.update(svg=svg, qs=queryString, signatureLink=signatureLink,
                                      topCrasherRows=topCrasherRows, reportRows=reportRows,
                                      rateRows=rateRows)
        self.templates.filters["pretty"] = prettyJson
        self.templates.filters["segment"] = functools.partial(urllib.parse.quote, safe="")

    def site(self, access_log: str | None = None) -> server.Site:
        """The twisted.web site serving every page, the API and the static files; one line per
        request appended to ``access_log`` (a path; the combined log format), if given."""
        site = Site(self.app.resource(), logPath=access_log)
        site.requestFactory = SecureRequest
        site.displayTracebacks = False
        return site

    # -- answering ----------------------------------------------------------------------------

    async def _authorized(self, request: server.Request) -> bool:
        """True for a valid ``Authorization: Bearer TOKEN``; AuthorizationError for an invalid
        one; False without one."""
        header = request.getHeader(b"authorization")
        if header is None:
            return False
        scheme, _, token = header.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not (await self.db.tokens.checkToken(token.strip())):
            raise AuthorizationError("invalid API token")
        return True

    def _render(self, template: str, data: dict[str, Any]) -> bytes:
        return self.templates.get_template(template).render(**data).encode("utf-8")

    def _page(self, request: server.Request, template: str, data: dict[str, Any]) -> bytes:
        request.setHeader(b"Content-Type", HTML)
        return self._render(template, data)

    @staticmethod
    def _json(request: server.Request, data: Any) -> bytes:
        request.setHeader(b"Content-Type", JSON)
        return toJson(data)

    @staticmethod
    def _isApi(request: server.Request) -> bool:
        return request.path.startswith(b"/api/")

    def _error(self, request: server.Request, code: int, message: str) -> bytes:
        request.setResponseCode(code)
        if self._isApi(request):
            return self._json(request, {"error": message})
        return self._page(request, "error.html",
                          {"code": code, "message": message, "authorized": False})

    @app.handle_errors(InvalidInputError)
    def _invalid(self, request: server.Request, failure: Failure) -> bytes:
        return self._error(request, 400, str(failure.value))

    @app.handle_errors(AuthorizationError)
    def _unauthorized(self, request: server.Request, failure: Failure) -> bytes:
        request.setHeader(b"WWW-Authenticate", b'Bearer realm="crashdb"')
        return self._error(request, 401, str(failure.value))

    @app.handle_errors(PersonalDataError)
    def _personal(self, request: server.Request, failure: Failure) -> bytes:
        return self._error(request, 403, str(failure.value))

    @app.handle_errors(NotFoundError)
    def _notFound(self, request: server.Request, failure: Failure) -> bytes:
        return self._error(request, 404, str(failure.value))

    @app.handle_errors(HTTPException)
    def _http(self, request: server.Request, failure: Failure) -> bytes:
        error = failure.value
        assert isinstance(error, HTTPException)
        if isinstance(error, RequestRedirect):  # "/static" to "/static/"
            request.setHeader(b"Location", error.new_url.encode("ascii"))
        return self._error(request, error.code or 500, error.name)

    @app.handle_errors(Exception)
    def _failed(self, request: server.Request, failure: Failure) -> bytes:
        log.failure("failed to answer {path}", failure, path=request.path)
        return self._error(request, 500, "internal error (logged by the server)")

    @staticmethod
    def view(path: str, template: str, api: str | None = None,
             cached: bool = False) -> Callable[[View], View]:
        """Serve ``gather(self, query, authorized, **path arguments)`` as the page
        ``path`` (rendered by ``template``) and as JSON at ``api`` (``/api`` + ``path``);
        ``cached``: through the response cache, for views that read only rollups."""

        def register(gather: View) -> View:
            async def answer(self: CrashStats, request: server.Request, asJson: bool,
                             **kw: Any) -> bytes:
                authorized = await self._authorized(request)
                query = Query(request.args or {})

                async def render() -> tuple[bytes, bytes]:
                    data = await gather(self, query, authorized, **kw)
                    if asJson:
                        return JSON, toJson(data)
                    return HTML, self._render(template,
                                              {**data, "authorized": authorized, "form": query})

                if cached and self.cache is not None:
                    # the whole request target and the token's validity: nothing personal
                    # rendered for a token-bearer reaches anyone else
                    key = (request.uri, authorized)
                    contentType, body = await self.cache.get(key, render)
                else:
                    contentType, body = await render()
                request.setHeader(b"Content-Type", contentType)
                return body

            def page(self: CrashStats, request: server.Request, **kw: Any) -> defer.Deferred:
                return defer.ensureDeferred(answer(self, request, False, **kw))

            def apiAnswer(self: CrashStats, request: server.Request, **kw: Any) -> defer.Deferred:
                return defer.ensureDeferred(answer(self, request, True, **kw))

            name = gather.__name__
            CrashStats.app.route(path, methods=["GET", "HEAD"], endpoint=name)(page)
            CrashStats.app.route(api or "/api" + path, methods=["GET", "HEAD"],
                                 endpoint=name + "Api")(apiAnswer)
            return gather

        return register

    @app.route("/static/", branch=True)
    def staticFiles(self, request: server.Request) -> resource.IResource:
        # (File provides IResource through zope.interface, which mypy cannot see)
        return cast(resource.IResource, StaticFiles(str(HERE / "static")))


view = CrashStats.view


# -- the views ------------------------------------------------------------------------------------


@view("/", "products.html", api="/api/products", cached=True)
async def products(self: CrashStats, query: Query, authorized: bool) -> dict[str, Any]:
    """Every product with its versions and its five top crashers of the last week."""
    start_day, end_day = query.period()
    found = await self.db.tcbs.getProducts()
    tops = await together([
        self.db.tcbs.getTopCrashers(p["product"], start_day=start_day, end_day=end_day, limit=5)
        for p in found
    ])
    return {"start_day": start_day, "end_day": end_day,
            "products": [{**p, "top": top} for p, top in zip(found, tops, strict=True)]}


@view("/topcrashers/<name:product>", "topcrashers.html", cached=True)
async def topCrashers(self: CrashStats, query: Query, authorized: bool,
                      product: str) -> dict[str, Any]:
    """A product's (or version's) top crashers with their rank move and 14 days of counts."""
    version = query.text("version")
    start_day, end_day = query.period()
    limit = query.integer("limit", 50, 1, 500)
    crashers = await self.db.tcbs.getTopCrashers(product, version=version, start_day=start_day,
                                                 end_day=end_day, limit=limit)
    daily = await self.db.tcbs.getDailyCounts(
        product, [c["signature"] for c in crashers], version=version,
        start_day=end_day - SPARK_DAYS * DAY, end_day=end_day)
    return {"product": product, "version": version, "start_day": start_day, "end_day": end_day,
            "crashers": [{**c, "daily": daily[c["signature"]]} for c in crashers]}


@view("/report/<uuid>", "report.html")
async def report(self: CrashStats, query: Query, authorized: bool,
                 uuid: str) -> dict[str, Any]:
    """One report: its fields, add-ons, plugins and raw crash (personal data only with a
    token)."""
    found = await self.db.reports.getReport(uuid)
    if found is None:
        raise NotFoundError(f"no report {uuid}")
    processed = found["date_processed"]
    extensions, plugins, raw = await together([
        self.db.extensions.getExtensions(found["id"], processed),
        self.db.plugins.getPluginReports(found["id"], processed),
        self.db.rawcrashes.getRawCrash(uuid, processed),
    ])
    if raw is None:  # collected in an earlier week than it was processed in
        raw = await self.db.rawcrashes.getRawCrash(uuid)
    if not authorized:
        found = publicReport(found)
        raw = None if raw is None else publicRawCrash(raw)
    return {"report": found, "extensions": extensions, "plugins": plugins, "raw_crash": raw}


@view("/signature", "signature.html")
async def signature(self: CrashStats, query: Query, authorized: bool) -> dict[str, Any]:
    """A signature's lifecycle, crashes per day, summary facets, correlations (with a product)
    and its latest reports."""
    name = query.text("signature")
    if name is None:
        raise InvalidInputError("is required", field="signature")
    product, version = query.text("product"), query.text("version")
    if version is not None and product is None:
        raise InvalidInputError("needs a product", field="version")
    start_day, end_day = query.period()
    lifecycle = await self.db.signatures.getSignature(name)
    if lifecycle is None:
        raise NotFoundError(f"no signature {name!r}")
    products = [product] if product else sorted({v["product"] for v in lifecycle["versions"]})
    period = {"start_day": start_day, "end_day": end_day}
    start = datetime.datetime(start_day.year, start_day.month, start_day.day,
                              tzinfo=datetime.UTC)
    end = start + (end_day - start_day)
    summary, latest, daily, correlations = await together([
        self.db.signatures.getSummary(name, product=product, version=version, **period),
        # the newest reports: read back from the end of the signature's index, never counted
        self.db.reports.getReports(product=product, version=version, signature=name,
                                   start=start, end=end, limit=SIGNATURE_REPORTS,
                                   newestFirst=True),
        defer.ensureDeferred(together([
            self.db.tcbs.getDailyCounts(p, [name], version=version, **period) for p in products
        ])),
        # correlations compare with the product's other crashes: only for a product
        defer.succeed(None) if product is None else
        self.db.signatures.getCorrelations(name, product, version=version, **period),
    ])
    days = _days(start_day, end_day)
    counts = [sum(column) for column in zip(*(d[name] for d in daily), strict=True)]
    return {
        "signature": name, "product": product, "version": version, **period,
        "lifecycle": lifecycle, "summary": summary, "correlations": correlations,
        "daily": [{"day": day, "count": count}
                  for day, count in zip(days, counts or [0] * len(days), strict=True)],
        "total": summary["count"],
        "reports": [{column: r[column] for column in REPORT_COLUMNS} for r in latest],
    }


@view("/search", "search.html")
async def search(self: CrashStats, query: Query, authorized: bool) -> dict[str, Any]:
    """Search with facets (SPEC 15): filters from the query string, as in SuperSearch URLs."""
    arguments = query.searchArguments()
    if not authorized:
        refusePersonalFields(searchFields(arguments))
    if "_histogram.day" not in arguments["facets"]:
        arguments["facets"] = [*arguments["facets"], "_histogram.day"]
    question = rolledUpQuestion(arguments)
    if question is None:
        found = await self.db.search.search(**arguments)
        return {"query": arguments, **found, "rolled_up": False}
    # a product's (version's, signature's) days: the facets from the summaries rollup, the
    # total and the hits from the reports (a week of a million: 0.2 s instead of 1.7 s)
    found, rolled = await together([
        self.db.search.search(**{**arguments, "facets": []}),
        self.db.search.rolledUpFacets(**question),
    ])
    return {"query": arguments, "total": found["total"], "hits": found["hits"],
            "facets": rolled["facets"], "rolled_up": True}


def rolledUpQuestion(arguments: dict[str, Any]) -> dict[str, Any] | None:
    """``search.rolledUpFacets``'s arguments for a search whose facets the rollup keeps: whole
    days (the page's ranges always are), one product, at most one version and signature, and
    no other filter; else None."""
    equal: dict[str, str] = {}
    for field, op, value in arguments["filters"]:
        if isinstance(value, list | tuple) and len(value) == 1:
            value = value[0]
        if field not in ("product", "version", "signature") or op != "=" or field in equal \
                or not isinstance(value, str):
            return None
        equal[field] = value
    facets = arguments["facets"]
    if "product" not in equal or not set(facets) <= set(ROLLED_UP_FACETS):
        return None
    start, end = arguments["start"], arguments["end"]
    if start.timetz() != MIDNIGHT or end.timetz() != MIDNIGHT:
        return None
    return {**equal, "start_day": start.date(), "end_day": end.date(), "facets": facets,
            "facet_size": arguments["facet_size"]}


@view("/explosive/<name:product>", "explosive.html", cached=True)
async def explosive(self: CrashStats, query: Query, authorized: bool,
                    product: str) -> dict[str, Any]:
    """Signatures exploding on a day (by default yesterday, the last complete day)."""
    day = query.day("day", today() - DAY)
    version = query.text("version")
    found = await self.db.crashrates.getExplosive(product, day, version=version,
                                                   limit=query.integer("limit", 20, 1, 500))
    return {"product": product, "version": version, "day": day, "explosive": found}


@view("/crashrates/<name:product>", "crashrates.html", cached=True)
async def crashRates(self: CrashStats, query: Query, authorized: bool,
                     product: str) -> dict[str, Any]:
    """Crashes per 100 active daily users, day by day."""
    version = query.text("version")
    start_day, end_day = query.period(default_days=28)
    rates = await self.db.crashrates.getCrashRates(product, version=version,
                                                   start_day=start_day, end_day=end_day)
    return {"product": product, "version": version, "start_day": start_day,
            "end_day": end_day, "rates": rates}
