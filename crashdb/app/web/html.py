"""HTML the templates draw many times a page, built in Python: a signature's link, the
top-crashers table's rows, a signature's reports and the crash rates' days.

Jinja escapes every value and looks every name up at run time, which is what makes it safe and
what makes a 50-row table with a link and a sparkline per row cost more than the queries behind
it. These functions escape the same way (``markupsafe``: every crash-supplied string passes
through :func:`escape` or ``Markup.format``) and return ``Markup``, which the templates insert
as is.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from typing import Any

from markupsafe import Markup, escape

from crashdb.app.web import svg

NO_SIGNATURE = "(no signature)"


def queryString(**params: Any) -> str:
    """``a=1&b=x%26y`` of the parameters that are not None or empty."""
    return urllib.parse.urlencode({k: v for k, v in params.items() if v not in (None, "")})


def signatureLink(name: str | None, product: str | None = None,
                  version: str | None = None) -> Markup:
    """A link to a signature's page, its label and its query escaped."""
    query = queryString(signature=name, product=product, version=version)
    return Markup(f'<a class="sig" href="/signature?{escape(query)}">'
                  f"{escape(name or NO_SIGNATURE)}</a>")


def rankMove(crasher: dict[str, Any]) -> str:
    """``+2`` (up two places), ``-1``, ``=``, or ``new`` (unranked in the period before)."""
    if crasher["previous_rank"] is None:
        return "new"
    moved = crasher["previous_rank"] - crasher["rank"]
    return "=" if moved == 0 else f"{moved:+d}"


def topCrasherRows(crashers: Sequence[dict[str, Any]], product: str,
                   version: str | None) -> Markup:
    """The ``<tr>`` of each crasher: rank, move, signature link, counts, a 14-day sparkline."""
    rows = []
    for c in crashers:
        counts = "".join(f'<td class="num">{int(c[name])}</td>' for name in (
            "win_count", "mac_count", "lin_count", "hang_count", "startup_count"))
        rows.append(
            f'<tr><td class="num">{int(c["rank"])}</td>'
            f'<td class="move">{escape(rankMove(c))}</td>'
            f"<td>{signatureLink(c['signature'], product, version)}</td>"
            f'<td class="num">{int(c["count"])}</td><td class="num">{c["percent"]:.2f}</td>'
            f"{counts}<td>{svg.sparkline(c['daily'], c['signature'] or NO_SIGNATURE)}</td></tr>")
    return Markup("\n".join(rows))


REPORT_CELLS = ("product", "version", "build", "os_name", "reason")


def reportRows(reports: Sequence[dict[str, Any]]) -> Markup:
    """The ``<tr>`` of each report of a signature's page: its uuid linked, when it was
    processed, product, version, build, OS, reason and uptime."""
    rows = []
    for r in reports:
        uuid, processed, uptime = r["uuid"], r["date_processed"], r["uptime"]
        cells = "".join(f"<td>{escape(r[name] or '')}</td>" for name in REPORT_CELLS)
        rows.append(
            f'<tr><td><a class="uuid" href="/report/{escape(urllib.parse.quote(uuid, safe=""))}">'
            f"{escape(uuid)}</a></td>"
            f'<td class="when">{processed.strftime("%Y-%m-%d %H:%M:%S") if processed else ""}</td>'
            f'{cells}<td class="num">{"" if uptime is None else int(uptime)}</td></tr>')
    return Markup("\n".join(rows))


def rateRows(rates: Sequence[dict[str, Any]]) -> Markup:
    """The ``<tr>`` of each day of the crash-rates table: crashes, adjusted for the throttle,
    ADU and crashes per 100 ADU (a dash for a day without ADU). Every cell is a number or a
    date: nothing here comes from crash data."""
    rows = []
    for r in rates:
        adu, per100 = r["adu"], r["per_100_adu"]
        rows.append(
            f'<tr><td>{r["day"].isoformat()}</td><td class="num">{int(r["crashes"])}</td>'
            f'<td class="num">{r["adjusted"]:.1f}</td>'
            f'<td class="num">{"—" if adu is None else int(adu)}</td>'
            f'<td class="num">{"—" if per100 is None else f"{per100:.3f}"}</td></tr>')
    return Markup("\n".join(rows))
